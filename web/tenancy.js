// comfyui-tenancy: the graph editor's view of the tenancy guard.
//
// - a small status element: tenant, plan, seconds used / held / left today, the caller's own queued and running
//   prompts with their place in the queue. It is refreshed from /tenancy/me and /tenancy/queue when websocket
//   events say something changed (plus a slow fallback once a minute), never by fast polling;
// - "Log out" in the menu (and in the status element);
// - silent session refresh before the access cookie expires, and one retry after a refresh when a request
//   comes back 401 because the session lapsed (a laptop that slept);
// - a dismissible notice when the guard rewrote a queued workflow (node, input, before, after, why) or refused
//   it (the editor highlights the offending node itself from `node_errors`; the notice keeps the reason in view).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { el } from "./lib/dom.mjs";

const LOGIN = "/tenancy/login";
const REFRESH_MARGIN_S = 60; // refresh this long before the access cookie expires
const FALLBACK_REFRESH_MS = 60_000; // status refresh when no event arrived (day rollover, missed events)
const EVENT_DEBOUNCE_MS = 400;
const SESSION_LAPSED = new Set(["token_expired", "token_revoked", "invalid_token", "unauthenticated"]);

const REASONS = {
  forbidden_input: "not adjustable on your plan: reset to the default",
  clamped: "outside your plan's range: clamped",
  plan_limit: "above your plan's maximum: lowered",
  model_routing: "served by another model for your account",
};

const state = { me: null, queue: null, updates: 0, refreshTimer: null, statusTimer: null, refreshing: null };

// -- small DOM helpers ------------------------------------------------------------------------------------
function seconds(value) {
  if (value === null || value === undefined) return "–";
  if (value < 0) return "unlimited";
  return `${Number(value).toFixed(value >= 100 ? 0 : 1)} s`;
}

function injectStyle() {
  if (document.getElementById("tenancy-style")) return;
  document.head.append(el("style", { id: "tenancy-style" }, `
    #tenancy-status { position: fixed; left: 50%; transform: translateX(-50%); bottom: 10px; z-index: 1000;
      display: flex; gap: .6em; align-items: center; padding: 4px 10px; border-radius: 6px;
      font: 12px/1.4 system-ui, sans-serif; color: #ddd; background: rgba(30, 30, 30, .88);
      border: 1px solid #444; pointer-events: auto; white-space: nowrap; }
    #tenancy-status .tenancy-sep { color: #666; }
    #tenancy-status .tenancy-left { color: #9fe29f; font-weight: 600; }
    #tenancy-status .tenancy-left.tenancy-low { color: #ffb26b; }
    #tenancy-status a, #tenancy-status button { color: #8ab4ff; background: none; border: 0; padding: 0;
      font: inherit; cursor: pointer; text-decoration: underline; }
    #tenancy-notice { position: fixed; top: 56px; left: 50%; transform: translateX(-50%); z-index: 1100;
      width: max-content; max-width: min(760px, 92vw); box-sizing: border-box; padding: 10px 14px 12px; border-radius: 8px; font: 13px/1.45 system-ui, sans-serif;
      color: #eee; background: #2b2b2b; border: 1px solid #666; box-shadow: 0 6px 24px rgba(0, 0, 0, .5); }
    #tenancy-notice[data-kind="refusal"] { border-color: #d9534f; }
    #tenancy-notice[data-kind="rewrites"] { border-color: #d9a441; }
    #tenancy-notice h3 { margin: 0 28px 6px 0; font-size: 14px; }
    #tenancy-notice table { border-collapse: collapse; width: 100%; }
    #tenancy-notice td, #tenancy-notice th { text-align: left; padding: 2px 8px 2px 0; vertical-align: top;
      white-space: normal; overflow-wrap: anywhere; }
    #tenancy-notice th { color: #aaa; font-weight: 500; }
    #tenancy-notice code { background: #1b1b1b; padding: 0 3px; border-radius: 3px; }
    #tenancy-notice .tenancy-close { position: absolute; top: 6px; right: 8px; background: none; border: 0;
      color: #bbb; font-size: 18px; cursor: pointer; }
  `));
}

// -- the session ------------------------------------------------------------------------------------------
function toLogin(reason) {
  const next = encodeURIComponent(location.pathname + location.search);
  location.href = `${LOGIN}?next=${next}${reason ? `&error=${encodeURIComponent(reason)}` : ""}`;
}

// POST /tenancy/refresh (the refresh cookie's path is /tenancy/, so never through /api/); one at a time.
function refreshSession() {
  if (!state.refreshing) {
    state.refreshing = fetch("/tenancy/refresh", { method: "POST", credentials: "same-origin" })
      .then(async (response) => {
        if (!response.ok) return false;
        const answer = await response.json().catch(() => ({}));
        scheduleRefresh(answer.expires_in);
        return true;
      })
      .catch(() => false)
      .finally(() => { state.refreshing = null; });
  }
  return state.refreshing;
}

function scheduleRefresh(expiresInS) {
  clearTimeout(state.refreshTimer);
  if (!expiresInS || expiresInS <= 0) return;
  const lead = Math.min(REFRESH_MARGIN_S, expiresInS / 2);
  const dueAt = Date.now() + (expiresInS - lead) * 1000;
  state.refreshDueAt = dueAt;
  state.refreshTimer = setTimeout(async () => {
    if (!(await refreshSession())) toLogin("session_ended");
  }, Math.max(1000, dueAt - Date.now()));
}

// Timers sleep with the laptop: when the tab comes back, refresh at once if the moment has passed.
document.addEventListener("visibilitychange", async () => {
  if (document.visibilityState === "visible" && state.refreshDueAt && Date.now() >= state.refreshDueAt) {
    if (!(await refreshSession())) toLogin("session_ended");
  }
});

// A request refused because the session lapsed: refresh once and repeat it; otherwise back to the login page.
function wrapFetchApi() {
  const original = api.fetchApi.bind(api);
  api.fetchApi = async (route, options) => {
    const response = await original(route, options);
    if (response.status !== 401 || String(route).startsWith("/tenancy/")) return response;
    const answer = await response.clone().json().catch(() => null);
    if (!SESSION_LAPSED.has(answer?.error?.type)) return response;
    if (await refreshSession()) return original(route, options);
    toLogin("session_ended");
    return response;
  };
}

// Server logs are the operators' (/internal/logs is admin-only): the editor's error report and log panel get a
// short explanation instead of a "failed to fetch" error for everyone else.
function quietOperatorOnlyLogs() {
  const operatorOnly = "Server logs are available to operators only.";
  const wrap = (name, substitute) => {
    if (typeof api[name] !== "function") return;
    const original = api[name].bind(api);
    api[name] = async (...args) => (state.me && state.me.role !== "admin" ? substitute() : original(...args));
  };
  wrap("getLogs", () => operatorOnly);
  wrap("getRawLogs", () => ({ size: { cols: 80, rows: 24 }, entries: [{ t: new Date().toISOString(), m: `${operatorOnly}\n` }] }));
  wrap("subscribeLogs", () => undefined);
}

async function logout() {
  try {
    await fetch("/tenancy/logout", { method: "POST", credentials: "same-origin" });
  } finally {
    location.href = `${LOGIN}?logged_out=1`;
  }
}

// -- the status element -----------------------------------------------------------------------------------
async function loadStatus() {
  try {
    const [meResponse, queueResponse] = await Promise.all([api.fetchApi("/tenancy/me"), api.fetchApi("/tenancy/queue")]);
    if (meResponse.ok) {
      state.me = await meResponse.json();
      const serverNow = Date.parse(meResponse.headers.get("Date") || "") / 1000 || Date.now() / 1000;
      if (state.me.session_expires && !state.refreshTimer) scheduleRefresh(state.me.session_expires - serverNow);
    }
    if (queueResponse.ok) state.queue = await queueResponse.json();
  } catch (error) {
    console.warn("[tenancy] status not available", error);
  }
  state.updates += 1;
  renderStatus();
}

let pending = null;
function statusSoon() {
  clearTimeout(pending);
  pending = setTimeout(loadStatus, EVENT_DEBOUNCE_MS);
}

function queueText(queue) {
  if (!queue) return "";
  const parts = [];
  if (queue.running.length) parts.push(`running ${queue.running.length}`);
  if (queue.pending.length) parts.push(`queued ${queue.pending.map((p) => `#${p.position}`).join(", ")}`);
  return parts.length ? parts.join(" · ") : "nothing queued";
}

function renderStatus() {
  injectStyle();
  let box = document.getElementById("tenancy-status");
  if (!box) {
    box = el("div", { id: "tenancy-status", role: "status", "aria-live": "polite" });
    document.body.append(box);
  }
  const me = state.me;
  if (!me) {
    box.replaceChildren("tenancy: …");
    return;
  }
  const usage = me.usage;
  const who = me.tenant ? `${me.tenant} · ${me.plan}` : "operator";
  const items = [el("span", { class: "tenancy-who", title: me.subject }, who)];
  if (usage) {
    const low = usage.remaining_seconds >= 0 && usage.remaining_seconds < 0.1 * usage.daily_seconds;
    items.push(el("span", { class: "tenancy-sep" }, "|"),
      el("span", { class: "tenancy-used", title: "seconds of media generated today" }, `${seconds(usage.used_seconds)} used`),
      el("span", { class: "tenancy-held", title: "seconds reserved by queued and running prompts" },
        `${seconds(usage.held_seconds)} held`),
      el("span", { class: `tenancy-left${low ? " tenancy-low" : ""}`, title: `of ${seconds(usage.daily_seconds)} today` },
        `${seconds(usage.remaining_seconds)} left today`));
  }
  items.push(el("span", { class: "tenancy-sep" }, "|"), el("span", { class: "tenancy-queue" }, queueText(state.queue)));
  if (me.role === "admin") {
    items.push(el("span", { class: "tenancy-sep" }, "|"), el("a", { href: "/tenancy/admin", target: "_blank" }, "Admin"));
  }
  items.push(el("span", { class: "tenancy-sep" }, "|"), el("button", { class: "tenancy-logout", onclick: logout }, "Log out"));
  box.replaceChildren(...items);
  Object.assign(box.dataset, {
    tenant: me.tenant ?? "", plan: me.plan ?? "", updates: String(state.updates),
    used: String(usage?.used_seconds ?? ""), held: String(usage?.held_seconds ?? ""),
    remaining: String(usage?.remaining_seconds ?? ""),
    running: String(state.queue?.running.length ?? 0), pending: String(state.queue?.pending.length ?? 0),
  });
}

// -- rewrites and refusals --------------------------------------------------------------------------------
function nodeLabel(id, classType) {
  const node = app.graph?.getNodeById?.(Number(id)) ?? app.graph?.getNodeById?.(id);
  const title = node?.title || classType || node?.type || "";
  return `#${id}${title ? ` ${title}` : ""}`;
}

function value(v) {
  return el("code", {}, typeof v === "string" ? v : JSON.stringify(v));
}

function showNotice(kind, heading, table, footer) {
  injectStyle();
  document.getElementById("tenancy-notice")?.remove();
  const close = el("button", { class: "tenancy-close", title: "Dismiss", "aria-label": "Dismiss",
    onclick: () => notice.remove() }, "×");
  const notice = el("div", { id: "tenancy-notice", role: "alert", "data-kind": kind }, close, el("h3", {}, heading),
    table, footer ? el("p", { style: { margin: "8px 0 0", color: "#bbb" } }, footer) : null);
  document.body.append(notice);
  return notice;
}

function showRewrites(rewrites) {
  const rows = rewrites.map((r) => el("tr", {},
    el("td", {}, nodeLabel(r.node)), el("td", {}, r.input), el("td", {}, value(r.before)), el("td", {}, "→ ", value(r.after)),
    el("td", {}, REASONS[r.reason] ?? r.reason)));
  const table = el("table", {}, el("tr", {}, ["node", "input", "sent", "used", "why"].map((h) => el("th", {}, h))), rows);
  showNotice("rewrites", "Your workflow was queued with changes", table, "Your plan decides these settings.");
}

function showRefusal(answer) {
  const error = answer?.error ?? {};
  const rows = [];
  for (const [id, entry] of Object.entries(answer?.node_errors ?? {})) {
    for (const e of entry.errors ?? []) {
      rows.push(el("tr", {}, el("td", {}, nodeLabel(id, entry.class_type)), el("td", {}, e.extra_info?.input_name ?? ""),
        el("td", {}, e.message)));
    }
  }
  const table = rows.length ? el("table", {}, el("tr", {}, ["node", "input", "reason"].map((h) => el("th", {}, h))), rows)
    : el("p", { style: { margin: 0 } }, error.message ?? "The server refused this workflow.");
  const code = error.type ? `(${error.type})` : "";
  showNotice("refusal", `The server refused this workflow ${code}`.trim(), table,
    rows.length ? "The node is outlined in red in the graph." : null);
}

function wrapQueuePrompt() {
  const original = api.queuePrompt.bind(api);
  api.queuePrompt = async (...args) => {
    let answer;
    try {
      answer = await original(...args);
    } catch (error) {
      if (error?.response?.error) showRefusal(error.response);
      statusSoon();
      throw error;
    }
    if (answer?.tenancy?.rewrites?.length) showRewrites(answer.tenancy.rewrites);
    else document.getElementById("tenancy-notice")?.remove();
    statusSoon();
    return answer;
  };
}

// -- registration -----------------------------------------------------------------------------------------
app.registerExtension({
  name: "comfyui-tenancy.session",
  commands: [{ id: "Tenancy.Logout", label: "Log out", icon: "pi pi-sign-out", function: logout }],
  menuCommands: [{ path: ["Account"], commands: ["Tenancy.Logout"] }],
  async setup() {
    wrapFetchApi();
    wrapQueuePrompt();
    quietOperatorOnlyLogs();
    for (const type of ["status", "execution_start", "execution_success", "execution_error", "execution_interrupted"]) {
      api.addEventListener(type, statusSoon);
    }
    api.addEventListener("reconnected", statusSoon);
    setInterval(loadStatus, FALLBACK_REFRESH_MS);
    await loadStatus();
  },
});

// For tests and other extensions: the current state, read-only.
window.comfyTenancy = { get state() { return { me: state.me, queue: state.queue, updates: state.updates }; },
  refreshSession, loadStatus };
