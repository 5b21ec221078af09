"""What a tenant reads back of its prompts (history, queue): its own names, its own client fields and whole queue
numbers, so that whatever it reads back it can post again unchanged and it means the same files.

Pure: the inverse of the workflow walk (`tenancy.workflow`) over ComfyUI's stored prompt; copies only what it
changes and shares the rest with the stored entry, which it never changes."""

from __future__ import annotations

import copy
from typing import Any

from .catalogue import PREFIX_INPUTS, Catalogue
from .paths import tenant_root, virtual_subfolder

GUARD_EXTRA_DATA = "tenancy"  # the guard's own key in extra_data: the owner and its plan


def owner_in(extra_data: Any) -> str | None:
    """The tenant that queued a prompt, from the key the guard put in its extra_data (None: an operator's)."""
    tenancy = extra_data.get(GUARD_EXTRA_DATA) if isinstance(extra_data, dict) else None
    return tenancy.get("tenant") if isinstance(tenancy, dict) else None


def whole_number(number: Any) -> Any:
    """ComfyUI stores a posted `number` as a float; the guard's are whole."""
    return int(number) if isinstance(number, float) and number.is_integer() else number


def posted_item(item: list | tuple, tenant: str, catalogue: Catalogue | None) -> list:
    """ComfyUI's queue item or history `prompt` as the tenant would have posted it: (number, prompt id, workflow,
    extra_data, outputs to execute); what follows them (the sensitive keys) is never shown, as in ComfyUI."""
    number, prompt_id, workflow, extra_data, outputs = item[:5]
    return [whole_number(number), prompt_id, posted_workflow(workflow, tenant, catalogue),
            posted_extra_data(extra_data, tenant), outputs]


def posted_workflow(workflow: Any, tenant: str, catalogue: Catalogue | None) -> Any:
    """The workflow with the names the walk confined (file, folder and prefix inputs) back to the tenant's own."""
    if not isinstance(workflow, dict):
        return workflow
    posted = {}
    for node_id, node in workflow.items():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        spec = catalogue.get(node.get("class_type")) if catalogue is not None and isinstance(inputs, dict) else None
        names = PREFIX_INPUTS | (spec.file_inputs | set(spec.folder_inputs) if spec is not None else set())
        confined = {name: _posted_name(value, tenant) for name, value in inputs.items() if name in names} \
            if isinstance(inputs, dict) else {}
        posted[node_id] = dict(node, inputs=dict(inputs, **confined)) if confined else node
    return posted


def _posted_name(value: Any, tenant: str) -> Any:
    root = tenant_root(tenant) + "/"
    return value[len(root):] if isinstance(value, str) and value.startswith(root) else value


def posted_extra_data(extra_data: Any, tenant: str) -> Any:
    """extra_data without the guard's key, and the client id without the tenant's namespace."""
    if not isinstance(extra_data, dict):
        return extra_data
    posted = {key: value for key, value in extra_data.items() if key != GUARD_EXTRA_DATA}
    client_id, prefix = posted.get("client_id"), f"{tenant}:"
    if isinstance(client_id, str) and client_id.startswith(prefix):
        posted["client_id"] = client_id[len(prefix):]
    return posted


def virtual_outputs(outputs: Any, tenant: str) -> Any:
    """History outputs (node -> kind -> file refs) with the tenant's own folder shown as the root."""
    return {node: virtual_refs(items, tenant) for node, items in outputs.items()} if isinstance(outputs, dict) \
        else outputs


def virtual_refs(output: Any, tenant: str) -> Any:
    """One node's output (kind -> file refs), with the tenant's own folder shown as the root."""
    output = copy.deepcopy(output)
    for refs in output.values() if isinstance(output, dict) else ():
        for ref in refs if isinstance(refs, list) else ():
            if isinstance(ref, dict) and isinstance(ref.get("subfolder"), str):
                virtual = virtual_subfolder(tenant, ref["subfolder"])
                if virtual is not None:
                    ref["subfolder"] = virtual
    return output


def tenant_entry(entry: dict, tenant: str, catalogue: Catalogue | None, outcome: str | None) -> dict:
    """One history entry as its tenant reads it back; `outcome` is the guard's (timeout, cancelled), if any."""
    shown = dict(entry, outputs=virtual_outputs(entry.get("outputs"), tenant))
    prompt = entry.get("prompt")
    if isinstance(prompt, (list, tuple)) and len(prompt) >= 5:
        shown["prompt"] = posted_item(prompt, tenant, catalogue)
    if outcome is not None:
        shown["status"] = dict(entry.get("status") or {}, tenancy_outcome=outcome)
    return shown
