// The operators' page at /tenancy/admin: a thin client of the JSON admin API (docs/ADMIN_API.md).
// Named .mjs on purpose: ComfyUI loads every .js file of web/ into the graph editor, and this is not for it.
import { el } from "./dom.mjs";

const API = "/tenancy/admin";
const QUEUE_REFRESH_MS = 2000;
const $ = (selector) => document.querySelector(selector);

const state = { plans: {}, tenants: [], picked: null };

// -- plumbing -------------------------------------------------------------------------------------------------
async function call(method, path, body) {
  const options = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  if (response.status === 401) {
    location.href = `/tenancy/login?next=${encodeURIComponent(location.pathname)}`;
    throw new Error("not signed in");
  }
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer?.error?.message || `${method} ${path}: ${response.status}`);
  return answer;
}

function say(text, kind = "ok") {
  const box = $("#message");
  box.textContent = text;
  box.className = kind;
}

function failed(error) {
  say(error.message || String(error), "error");
}

function when(epoch) {
  return epoch ? new Date(epoch * 1000).toISOString().replace("T", " ").slice(0, 19) : "–";
}

function secs(value) {
  if (value === null || value === undefined) return "–";
  return value < 0 ? "∞" : Number(value).toFixed(1);
}

function ago(epoch) {
  if (!epoch) return "–";
  const s = Math.max(0, Date.now() / 1000 - epoch);
  return s < 90 ? `${s.toFixed(0)} s` : `${(s / 60).toFixed(1)} min`;
}

function fill(tbody, rows, empty) {
  tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 9, class: "muted" }, empty))]));
}

// -- tenants ----------------------------------------------------------------------------------------------------
function planOptions(selected) {
  return Object.keys(state.plans).map((name) => el("option", { value: name, selected: name === selected }, name));
}

async function loadTenants() {
  const { tenants } = await call("GET", `${API}/tenants`);
  state.tenants = tenants;
  const rows = tenants.map((t) => {
    const plan = el("select", { class: "plan" }, planOptions(t.plan));
    const status = el("select", { class: "status" }, ["active", "disabled"].map((s) =>
      el("option", { value: s, selected: s === t.status }, s)));
    const tags = el("input", { class: "tags", value: t.tags.join(", "), size: 16 });
    const save = el("button", { class: "save", type: "button", onclick: () => saveTenant(t.id, plan, status, tags) }, "Save");
    return el("tr", { "data-tenant": t.id, class: t.status === "disabled" ? "disabled" : "" },
      el("td", {}, el("code", {}, t.id)), el("td", {}, plan), el("td", {}, status), el("td", {}, tags),
      el("td", { class: "num" }, t.members), el("td", { class: "num" }, t.active_keys), el("td", {}, save));
  });
  fill($("#tenants-table tbody"), rows, "no tenants yet");
  const picker = $("#tenant-picker");
  const keep = state.picked ?? picker.value;
  picker.replaceChildren(...tenants.map((t) => el("option", { value: t.id, selected: t.id === keep }, t.id)));
  state.picked = picker.value || null;
  for (const filter of document.querySelectorAll(".tenant-filter")) {
    const current = filter.value;
    filter.replaceChildren(el("option", { value: "" }, "all"),
      ...tenants.map((t) => el("option", { value: t.id, selected: t.id === current }, t.id)));
  }
}

async function saveTenant(id, plan, status, tags) {
  try {
    await call("PATCH", `${API}/tenants/${encodeURIComponent(id)}`,
      { plan: plan.value, status: status.value, tags: tags.value.split(",").map((s) => s.trim()).filter(Boolean) });
    say(`Tenant ${id} saved.`);
    await Promise.all([loadTenants(), loadUsage()]);
  } catch (error) { failed(error); }
}

async function createTenant(event) {
  event.preventDefault();
  const id = $("#new-tenant-id").value.trim();
  try {
    await call("POST", `${API}/tenants`, { id, plan: $("#new-tenant-plan").value,
      tags: $("#new-tenant-tags").value.split(",").map((s) => s.trim()).filter(Boolean) });
    say(`Tenant ${id} created.`);
    event.target.reset();
    state.picked = id;
    await Promise.all([loadTenants(), loadUsage()]);
    await loadPeople();
  } catch (error) { failed(error); }
}

// -- members and keys --------------------------------------------------------------------------------------------
async function loadPeople() {
  const tenant = state.picked;
  if (!tenant) {
    fill($("#members-table tbody"), [], "pick a tenant");
    fill($("#keys-table tbody"), [], "pick a tenant");
    return;
  }
  const base = `${API}/tenants/${encodeURIComponent(tenant)}`;
  const [{ members }, { keys }] = await Promise.all([call("GET", `${base}/members`), call("GET", `${base}/keys`)]);
  fill($("#members-table tbody"), members.map((m) => el("tr", { "data-username": m.username, class: m.disabled ? "disabled" : "" },
    el("td", {}, m.username), el("td", {}, m.role), el("td", {}, m.disabled ? "disabled" : "active"),
    el("td", {}, el("button", { type: "button", class: "quiet", onclick: () => toggleMember(tenant, m) },
      m.disabled ? "Enable" : "Disable")))), "no members");
  fill($("#keys-table tbody"), keys.slice().reverse().map((k) => el("tr", { "data-key-id": k.key_id, class: k.state === "active" ? "" : "disabled" },
    el("td", {}, el("code", {}, k.key_id)), el("td", {}, k.name), el("td", {}, when(k.created)),
    el("td", {}, k.expires ? when(k.expires) : "never"), el("td", { class: "state" }, k.state),
    el("td", {}, k.state === "active"
      ? el("button", { type: "button", class: "danger revoke", onclick: () => revokeKey(k.key_id) }, "Revoke") : ""))),
  "no keys");
}

async function toggleMember(tenant, member) {
  try {
    await call("PATCH", `${API}/tenants/${encodeURIComponent(tenant)}/members/${encodeURIComponent(member.username)}`,
      { disabled: !member.disabled });
    say(`${member.username} ${member.disabled ? "enabled" : "disabled"}.`);
    await loadPeople();
  } catch (error) { failed(error); }
}

async function createMember(event) {
  event.preventDefault();
  const username = $("#new-member-username").value.trim();
  const password = $("#new-member-password").value;
  try {
    const answer = await call("POST", `${API}/tenants/${encodeURIComponent(state.picked)}/members`,
      { username, role: $("#new-member-role").value, ...(password ? { password } : {}) });
    const output = $("#new-member-output");
    output.hidden = !answer.password;
    output.replaceChildren(...(answer.password
      ? ["Generated password for ", el("b", {}, username), " (shown once): ", el("code", {}, answer.password)] : []));
    say(`Member ${username} added to ${state.picked}.`);
    event.target.reset();
    await Promise.all([loadPeople(), loadTenants()]);
  } catch (error) { failed(error); }
}

async function createKey(event) {
  event.preventDefault();
  const days = Number($("#new-key-days").value);
  try {
    const answer = await call("POST", `${API}/tenants/${encodeURIComponent(state.picked)}/keys`,
      { name: $("#new-key-name").value.trim() || "api", ...(days > 0 ? { expires_in_s: days * 86400 } : {}) });
    $("#new-key-id").textContent = answer.key_id;
    $("#new-key-value").textContent = answer.key;
    $("#new-key-output").hidden = false;
    say(`Key ${answer.key_id} created for ${state.picked}.`);
    await Promise.all([loadPeople(), loadTenants()]);
  } catch (error) { failed(error); }
}

async function revokeKey(keyId) {
  try {
    await call("DELETE", `${API}/keys/${encodeURIComponent(keyId)}`);
    say(`Key ${keyId} revoked: it stops working at once.`);
    await Promise.all([loadPeople(), loadTenants()]);
  } catch (error) { failed(error); }
}

// -- usage and the ledger ----------------------------------------------------------------------------------------
async function loadUsage() {
  const { usage } = await call("GET", `${API}/usage`);
  fill($("#usage-table tbody"), usage.map((u) => el("tr", { "data-tenant": u.tenant },
    el("td", {}, u.tenant), el("td", {}, u.plan), el("td", {}, u.day), el("td", { class: "num" }, secs(u.used_seconds)),
    el("td", { class: "num" }, secs(u.held_seconds)), el("td", { class: "num" }, secs(u.remaining_seconds)),
    el("td", { class: "num" }, secs(u.daily_seconds)), el("td", { class: "num" }, u.active_prompts))), "no tenants");
}

function ledgerQuery() {
  const query = new URLSearchParams();
  if ($("#ledger-tenant").value) query.set("tenant", $("#ledger-tenant").value);
  if ($("#ledger-since").value) query.set("since", $("#ledger-since").value);
  if ($("#ledger-until").value) query.set("until", $("#ledger-until").value);
  return query;
}

async function loadLedger(event) {
  event?.preventDefault();
  const query = ledgerQuery();
  const csv = new URLSearchParams(query);
  csv.set("format", "csv");
  $("#ledger-csv").href = `${API}/ledger?${csv}`;
  query.set("limit", $("#ledger-limit").value || "200");
  try {
    const { entries, total, truncated } = await call("GET", `${API}/ledger?${query}`);
    $("#ledger-summary").textContent = `${total} entries${truncated ? `, newest ${entries.length} shown` : ""}`;
    fill($("#ledger-table tbody"), entries.map((e) => el("tr", {},
      el("td", {}, when(e.time)), el("td", {}, e.tenant), el("td", {}, el("code", {}, e.prompt_id.slice(0, 8))),
      el("td", {}, e.kind), el("td", { class: "num" }, Number(e.seconds).toFixed(3)), el("td", {}, e.day),
      el("td", {}, e.outcome))), "no entries");
  } catch (error) { failed(error); }
}

// -- the live queue ----------------------------------------------------------------------------------------------
async function loadQueue() {
  try {
    const { running, pending } = await call("GET", `${API}/queue`);
    $("#queue-summary").textContent = `${running.length} running, ${pending.length} queued`;
    const rows = [...running, ...pending].map((p) => el("tr", { "data-prompt-id": p.prompt_id, "data-state": p.state },
      el("td", {}, p.state), el("td", { class: "num" }, p.state === "pending" ? p.position : "▶"),
      el("td", {}, p.tenant ?? el("span", { class: "muted" }, "(operator)")),
      el("td", {}, el("code", { title: p.prompt_id }, p.prompt_id.slice(0, 8))),
      el("td", { title: p.classes.join(", ") }, `${p.nodes}: ${p.classes.slice(0, 3).join(", ")}${p.classes.length > 3 ? "…" : ""}`),
      el("td", {}, p.state === "running" ? ago(p.started) : ago(p.admitted)),
      el("td", {}, el("button", { type: "button", class: "danger cancel", onclick: () => cancel(p) }, "Cancel"))));
    fill($("#queue-table tbody"), rows, "the queue is empty");
  } catch (error) { failed(error); }
}

async function cancel(prompt) {
  try {
    const answer = await call("POST", `${API}/queue/${encodeURIComponent(prompt.prompt_id)}/cancel`);
    say(`Prompt ${prompt.prompt_id.slice(0, 8)} of ${answer.tenant ?? "an operator"} cancelled (${answer.state}).`);
    await Promise.all([loadQueue(), loadUsage()]);
  } catch (error) { failed(error); }
}

// -- the cluster's instances (cluster.enabled) ------------------------------------------------------------------------
async function loadCluster() {
  try {
    const cluster = await call("GET", `${API}/cluster`);
    $("#instances").hidden = $("#instances-link").hidden = !cluster.enabled;
    if (!cluster.enabled) return;
    const alive = cluster.instances.filter((i) => i.liveness === "alive").length;
    $("#instances-summary").textContent = `${alive} of ${cluster.instances.length} alive, ${cluster.queued} queued`;
    fill($("#instances-table tbody"), cluster.instances.map((i) => {
      const runs = i.holds.map((h) => el("div", {}, el("code", { title: h.prompt_id }, h.prompt_id.slice(0, 8)), " ",
        h.tenant, el("span", { class: "muted" }, h.started ? ` running ${secs(h.held_s)} s` : " handed out")));
      const drained = Boolean(i.drain);
      const action = el("button", { type: "button", class: drained ? "undrain" : "danger drain",
        onclick: () => drain(i.name, !drained) }, drained ? "Undrain" : "Drain");
      return el("tr", { "data-instance": i.name, "data-drain": i.drain, "data-liveness": i.liveness },
        el("td", {}, el("code", {}, i.name), i.name === cluster.this_instance ? el("span", { class: "muted" }, " (this)") : null),
        el("td", {}, i.liveness), el("td", { class: "num" }, i.heartbeat_age_s === null ? "–" : `${secs(i.heartbeat_age_s)} s`),
        el("td", {}, runs.length ? runs : el("span", { class: "muted" }, "idle")), el("td", {}, i.drain || "–"),
        el("td", {}, action));
    }), "no instance has beaten yet");
    fill($("#cluster-tenants-table tbody"), cluster.tenants.map((t) => el("tr", { "data-tenant": t.tenant },
      el("td", {}, t.tenant), el("td", { class: "num" }, t.queued), el("td", { class: "num" }, t.running),
      el("td", { class: "num" }, t.cap || "–"), el("td", { class: "num" }, t.oldest_wait_s === null ? "–" : `${secs(t.oldest_wait_s)} s`))),
    "nothing queued or running");
  } catch (error) { failed(error); }
}

async function drain(name, on) {
  try {
    await call("POST", `${API}/cluster/instances/${encodeURIComponent(name)}/${on ? "drain" : "undrain"}`);
    say(on ? `Instance ${name} drains: it takes no new prompts.` : `Instance ${name} takes prompts again.`);
    await loadCluster();
  } catch (error) { failed(error); }
}

// -- audit ---------------------------------------------------------------------------------------------------------
const SHOWN = new Set(["time", "decision", "reason", "action", "tenant", "principal", "route", "prompt_id"]);

async function loadAudit(event) {
  event?.preventDefault();
  const query = new URLSearchParams();
  const fields = { tenant: "#audit-tenant", decision: "#audit-decision", reason: "#audit-reason", route: "#audit-route",
    prompt_id: "#audit-prompt", limit: "#audit-limit" };
  for (const [name, selector] of Object.entries(fields)) if ($(selector).value.trim()) query.set(name, $(selector).value.trim());
  if ($("#audit-since").value) query.set("since", $("#audit-since").value);
  try {
    const { entries } = await call("GET", `${API}/audit?${query}`);
    fill($("#audit-table tbody"), entries.map((e) => {
      const rest = Object.fromEntries(Object.entries(e).filter(([k]) => !SHOWN.has(k)));
      return el("tr", { "data-decision": e.decision ?? "" },
        el("td", {}, when(e.time)), el("td", {}, e.decision ?? ""), el("td", {}, e.reason ?? e.action ?? ""),
        el("td", {}, e.tenant ?? ""), el("td", {}, e.principal ?? ""), el("td", {}, e.route ?? ""),
        el("td", {}, e.prompt_id ? el("code", { title: e.prompt_id }, e.prompt_id.slice(0, 8)) : ""),
        el("td", { class: "muted" }, Object.keys(rest).length ? JSON.stringify(rest) : ""));
    }), "no matching entries");
  } catch (error) { failed(error); }
}

// -- start ---------------------------------------------------------------------------------------------------------
async function start() {
  try {
    const me = await call("GET", "/tenancy/me");
    $("#whoami").textContent = me.subject;
    const { plans } = await call("GET", `${API}/plans`);
    state.plans = plans;
    $("#new-tenant-plan").replaceChildren(...planOptions("basic"));
    await loadTenants();
    await Promise.all([loadPeople(), loadUsage(), loadLedger(), loadQueue(), loadCluster(), loadAudit()]);
    document.body.dataset.ready = "1";
  } catch (error) { failed(error); }
  $("#tenant-form").addEventListener("submit", createTenant);
  $("#member-form").addEventListener("submit", createMember);
  $("#key-form").addEventListener("submit", createKey);
  $("#ledger-form").addEventListener("submit", loadLedger);
  $("#audit-form").addEventListener("submit", loadAudit);
  $("#tenant-picker").addEventListener("change", (event) => {
    state.picked = event.target.value;
    $("#new-key-output").hidden = true;
    loadPeople().catch(failed);
  });
  $("#new-key-copy").addEventListener("click", () => navigator.clipboard?.writeText($("#new-key-value").textContent));
  $("#new-key-dismiss").addEventListener("click", () => {
    $("#new-key-output").hidden = true;
    $("#new-key-value").textContent = "";
  });
  $("#logout").addEventListener("click", async () => {
    await fetch("/tenancy/logout", { method: "POST", credentials: "same-origin" }).catch(() => {});
    location.href = "/tenancy/login?logged_out=1";
  });
  setInterval(() => {
    if (document.visibilityState !== "visible") return;
    loadQueue();
    if (!$("#instances").hidden) loadCluster();
  }, QUEUE_REFRESH_MS);
}

start();
