// A DOM element in one call, for the editor's status element (tenancy.js) and the operators' page (admin.mjs).
// Named .mjs: ComfyUI loads every .js file of web/ into the graph editor, and this is a module they import.
//
// attrs: `style` an object of style properties; `on<event>` a listener; `selected`/`disabled` set as properties
// (true or false); any other key an attribute, left out when undefined or null. Children: nodes, or text.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "style") Object.assign(node.style, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "selected" || key === "disabled") node[key] = Boolean(value);
    else if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}
