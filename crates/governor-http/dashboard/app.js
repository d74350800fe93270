// The governor approval console. Plain ES module, no build step: every
// action goes through the authenticated HTTP API, data is only ever put
// into the page as text (never as HTML), and the token lives in this
// tab's sessionStorage and travels in the Authorization header.

const TOKEN_KEY = "governor.token";
const PAGE = 100;

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  me: null,
  view: "pending",
  pending: new Map(), // execution id -> approval view
  pendingCursor: null,
  selected: null, // execution id shown in the detail panel
  checked: new Set(), // ids ticked for a batch decision
  execCursor: null,
  auditAfter: 0,
  socket: null,
  flowsTimer: null,
  actions: null, // name -> registered action (policies, stages, input schema)
  loads: 0, // the latest queue load; older answers are dropped
  arrived: new Map(), // id -> view (or null: gone) heard live while a load was in flight
};

const $ = (id) => document.getElementById(id);

/** Builds an element; string children become text nodes, never HTML. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/** Replaces `node`'s children, skipping empty ones and flattening lists. */
function put(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  const text = await response.text();
  const body = text ? JSON.parse(text) : null;
  if (!response.ok) {
    if (response.status === 401 && state.me) signOut("Your session ended: sign in again.");
    throw new ApiError(response.status, body || {});
  }
  return body;
}

// ---- time ---------------------------------------------------------------

const local = (t) => (t ? new Date(t).toLocaleString() : "—");

function ago(t) {
  const s = Math.max(0, Math.round((Date.now() - new Date(t).getTime()) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

function countdown(t) {
  if (!t) return "never expires";
  const s = Math.round((new Date(t).getTime() - Date.now()) / 1000);
  if (s <= 0) return "expired";
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return h > 0 ? `expires in ${h}h ${m}m` : `expires in ${m}m ${sec}s`;
}

// ---- sign in --------------------------------------------------------------

async function signIn(token) {
  state.token = token;
  try {
    const me = await api("/govern/me");
    // Empty lists are left out of the principal's JSON.
    state.me = { ...me, roles: me.roles || [], permissions: me.permissions || [] };
  } catch (e) {
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    throw e;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("sign-in").hidden = true;
  $("nav").hidden = false;
  $("sign-out").hidden = false;
  $("who").textContent = `${state.me.id}${state.me.roles.length ? ` (${state.me.roles.join(", ")})` : ""}`;
  connect();
  route();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.me = null;
  if (state.socket) state.socket.close();
  state.socket = null;
  state.pending.clear();
  for (const id of ["nav", "sign-out", "view-pending", "view-executions", "view-flows", "view-grants", "view-pauses", "view-audit", "detail", "live"]) $(id).hidden = true;
  $("who").textContent = "";
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message || "";
}

// ---- live events ----------------------------------------------------------

const LIVE_TYPES = [
  "approval.requested",
  "approval.granted",
  "approval.rejected",
  "approval.timeout",
  "execution.completed",
  "execution.failed",
  "execution.cancelled",
];

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.host}/govern/events?types=${LIVE_TYPES.join(",")}`;
  let socket;
  try {
    // Browsers cannot set headers on a WebSocket: the token travels as a
    // subprotocol (a header), never in the URL.
    socket = new WebSocket(url, ["governor", `bearer.${state.token}`]);
  } catch {
    return poll();
  }
  state.socket = socket;
  socket.onopen = () => {
    $("live").hidden = false;
    // Subscribed first, then read: a request made before the subscription
    // is in the list, one made after it is heard live (also after a
    // reconnect, which would otherwise lose what happened while away).
    if (state.view === "pending") loadPending(true);
    else if (state.view === "flows") scheduleFlows();
  };
  socket.onmessage = (m) => onEvent(JSON.parse(m.data));
  socket.onclose = () => {
    $("live").hidden = true;
    if (state.socket === socket && state.me) {
      state.socket = null;
      // Readers get the stream; others (or a dropped connection) poll.
      setTimeout(() => state.me && (state.me.permissions.includes("governor:read") ? connect() : poll()), 2000);
    }
  };
}

function poll() {
  if (!state.me || state.socket) return;
  if (state.view === "pending") loadPending(true);
  setTimeout(poll, 3000);
}

async function onEvent(e) {
  if (state.view === "flows" && e.type.startsWith("approval.")) scheduleFlows();
  if (e.type === "stream.lagged") return loadPending(true);
  const id = e.execution_id;
  if (e.type === "approval.requested" || e.type.startsWith("approval.")) {
    await refreshOne(id);
  } else {
    state.pending.delete(id);
    renderPending();
  }
  // Re-render what is open, with the view's own renderer: an execution's
  // timeline stays a timeline when its request's events arrive late.
  if (state.selected === id) (state.view === "pending" ? showDetail : showExecution)(id);
}

/** The latest read of each request, so that an older answer that arrives
 * last (reads may travel on different connections) is ignored. */
const reads = new Map();

/** Re-reads one request: it may have appeared, moved on a stage, or ended. */
async function refreshOne(id) {
  const read = (reads.get(id) || 0) + 1;
  reads.set(id, read);
  const loadAtStart = state.loads;
  try {
    const view = await api(`/govern/approvals/${id}`);
    if (reads.get(id) !== read) return; // a newer read is on its way
    const keep = view.status === "awaiting_approval" && matchesFilters(view);
    if (keep) state.pending.set(id, view);
    else state.pending.delete(id);
    // Only a read made during the current load is newer than its list.
    if (loadAtStart === state.loads) state.arrived.set(id, keep ? view : null);
  } catch (e) {
    if (reads.get(id) !== read) return;
    if (e.status === 404 || e.status === 403) {
      state.pending.delete(id);
      if (loadAtStart === state.loads) state.arrived.set(id, null);
    } else {
      // The row's state is unknown: read the whole queue again.
      return loadPending(true);
    }
  } finally {
    if (reads.get(id) === read) reads.delete(id);
  }
  renderPending();
}

// ---- pending queue ----------------------------------------------------------

function pendingQuery(cursor) {
  const q = new URLSearchParams({ limit: String(PAGE) });
  const action = $("filter-action").value.trim();
  const approver = $("filter-approver").value.trim();
  const age = $("filter-age").value;
  if (action) q.set("action", action);
  if (approver) q.set("approver", approver);
  if (age) q.set("older_than", age);
  if ($("filter-decidable").checked) q.set("decidable", "true");
  if (cursor) q.set("cursor", cursor);
  return q;
}

function matchesFilters(view) {
  const action = $("filter-action").value.trim();
  const approver = $("filter-approver").value.trim();
  if (action && view.action !== action) return false;
  if (approver && !(view.stage && view.stage.approvers.includes(approver))) return false;
  if ($("filter-decidable").checked && !view.can_decide) return false;
  return true;
}

async function loadPending(reset) {
  if (reset) state.pendingCursor = null;
  const load = ++state.loads;
  state.arrived = new Map();
  $("pending-state").textContent = reset && state.pending.size === 0 ? "Loading…" : "";
  try {
    const page = await api(`/govern/approvals/pending?${pendingQuery(state.pendingCursor)}`);
    if (load !== state.loads) return; // a newer load is on its way
    if (reset) state.pending.clear();
    for (const v of page.items) state.pending.set(v.execution_id, v);
    // What was heard live while this page was on its way is newer than it.
    for (const [id, v] of state.arrived) {
      if (v) state.pending.set(id, v);
      else state.pending.delete(id);
    }
    state.pendingCursor = page.next_cursor;
    $("pending-more").hidden = !page.next_cursor;
    $("pending-state").textContent = "";
  } catch (e) {
    $("pending-state").textContent = `Could not load the queue: ${e.message}`;
  }
  renderPending();
}

/** The arguments on one short line. */
function summary(inputs) {
  const text = Object.entries(inputs || {})
    .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join(" ");
  return text.length > 60 ? `${text.slice(0, 59)}…` : text;
}

function pendingRow(v) {
  const stage = v.stage;
  const checkbox = el("input", {
    type: "checkbox",
    "aria-label": `select ${v.execution_id}`,
    disabled: !v.can_decide,
    checked: state.checked.has(v.execution_id),
    onchange: (ev) => {
      if (ev.target.checked) state.checked.add(v.execution_id);
      else state.checked.delete(v.execution_id);
      updateBatch();
    },
  });
  return el(
    "div",
    {
      class: `row${state.selected === v.execution_id ? " selected" : ""}`,
      role: "listitem",
      dataset: { id: v.execution_id },
      onclick: (ev) => ev.target.tagName !== "INPUT" && ev.target.tagName !== "BUTTON" && showDetail(v.execution_id),
    },
    checkbox,
    el("span", { class: "action" }, v.action),
    el("span", { class: "muted" }, `by ${v.requester}`),
    el("span", { class: "summary" }, summary(v.will_run || v.inputs)),
    v.edited ? el("span", { class: "edited", title: "an approver changed the arguments" }, "edited") : null,
    el("span", { class: "muted" }, v.requested_at ? ago(v.requested_at) : ""),
    stage ? el("span", { class: "stage" }, `stage ${stage.index + 1}/${stage.of} · ${stage.approvals}/${stage.quorum}`) : null,
    el("span", { class: "expiry", dataset: { expires: stage && stage.expires_at ? stage.expires_at : "" } }, countdown(stage && stage.expires_at)),
    v.can_decide
      ? el("span", { class: "buttons" },
          el("button", { type: "button", class: "approve", onclick: () => decide(v.execution_id, "approve") }, "Approve"),
          el("button", { type: "button", class: "danger reject", onclick: () => showDetail(v.execution_id, true) }, "Reject"))
      : el("span", { class: "muted" }, "not yours to decide"),
  );
}

function renderPending() {
  const list = $("pending-list");
  const items = [...state.pending.values()].sort((a, b) => (a.requested_at < b.requested_at ? 1 : -1));
  put(list, items.map(pendingRow));
  $("pending-count").textContent = String(items.length) + (state.pendingCursor ? "+" : "");
  if (items.length === 0 && !$("pending-state").textContent) $("pending-state").textContent = "Nothing is waiting for a decision.";
  else if (items.length > 0 && $("pending-state").textContent === "Nothing is waiting for a decision.") $("pending-state").textContent = "";
  for (const id of [...state.checked]) if (!state.pending.has(id)) state.checked.delete(id);
  updateBatch();
}

function updateBatch() {
  $("batch-approve").disabled = state.checked.size === 0;
  $("batch-reject").disabled = state.checked.size === 0;
}

function tickCountdowns() {
  for (const cell of document.querySelectorAll("[data-expires]")) {
    cell.textContent = countdown(cell.dataset.expires || null);
  }
}

// ---- decisions ----------------------------------------------------------

async function decide(id, verdict, extra = {}) {
  const out = $("decision-error");
  // What the approver saw: a request edited since answers 409 instead of
  // applying this decision to arguments nobody showed them.
  const seen = state.pending.get(id)?.digest;
  const body = seen && !("expected_digest" in extra) ? { ...extra, expected_digest: seen } : extra;
  try {
    await api(`/govern/approvals/${id}/${verdict}`, { method: "POST", body });
    state.checked.delete(id);
    await refreshOne(id);
    if (state.selected === id) showDetail(id);
  } catch (e) {
    if (out && state.selected === id) out.textContent = e.message;
    else $("pending-state").textContent = `Decision on ${id} refused: ${e.message}`;
  }
}

async function batch(verdict) {
  const reason = verdict === "reject" ? prompt("Reason for rejecting the selected requests") : null;
  if (verdict === "reject" && !reason) return;
  for (const id of [...state.checked]) await decide(id, verdict, reason ? { reason } : {});
}

// ---- registered actions ------------------------------------------------

async function registeredActions() {
  if (!state.actions) {
    try {
      const list = await api("/govern/actions");
      state.actions = new Map(list.map((a) => [a.name, a]));
    } catch {
      state.actions = new Map();
    }
  }
  return state.actions;
}

/**
 * Checks `value` against the common JSON Schema keywords, so an edit with
 * a wrong field is caught before it is sent; the server validates fully.
 */
function schemaErrors(schema, value, path = "") {
  if (!schema || typeof schema !== "object") return [];
  const errors = [];
  const at = path || "/";
  const kind = (v) => (v === null ? "null" : Array.isArray(v) ? "array" : Number.isInteger(v) ? "integer" : typeof v);
  if (schema.type) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    const k = kind(value);
    const ok = types.some((t) => t === k || (t === "number" && k === "integer"));
    if (!ok) return [`${at}: expected ${types.join(" or ")}, got ${k}`];
  }
  if (schema.enum && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) errors.push(`${at}: not one of ${JSON.stringify(schema.enum)}`);
  if ("const" in schema && JSON.stringify(schema.const) !== JSON.stringify(value)) errors.push(`${at}: must be ${JSON.stringify(schema.const)}`);
  if (typeof value === "number") {
    if (schema.minimum !== undefined && value < schema.minimum) errors.push(`${at}: less than ${schema.minimum}`);
    if (schema.maximum !== undefined && value > schema.maximum) errors.push(`${at}: more than ${schema.maximum}`);
    if (schema.exclusiveMinimum !== undefined && value <= schema.exclusiveMinimum) errors.push(`${at}: must be more than ${schema.exclusiveMinimum}`);
    if (schema.exclusiveMaximum !== undefined && value >= schema.exclusiveMaximum) errors.push(`${at}: must be less than ${schema.exclusiveMaximum}`);
  }
  if (typeof value === "string") {
    if (schema.minLength !== undefined && value.length < schema.minLength) errors.push(`${at}: shorter than ${schema.minLength}`);
    if (schema.maxLength !== undefined && value.length > schema.maxLength) errors.push(`${at}: longer than ${schema.maxLength}`);
    if (schema.pattern) {
      try {
        if (!new RegExp(schema.pattern, "u").test(value)) errors.push(`${at}: does not match ${schema.pattern}`);
      } catch {
        // A pattern JavaScript cannot read is left to the server.
      }
    }
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) errors.push(`${at}: fewer than ${schema.minItems} items`);
    if (schema.maxItems !== undefined && value.length > schema.maxItems) errors.push(`${at}: more than ${schema.maxItems} items`);
    if (schema.items && typeof schema.items === "object") value.forEach((v, i) => errors.push(...schemaErrors(schema.items, v, `${path}/${i}`)));
  }
  if (kind(value) === "object") {
    for (const name of schema.required || []) if (!(name in value)) errors.push(`${path}/${name}: required`);
    const props = schema.properties || {};
    for (const [name, v] of Object.entries(value)) {
      if (props[name]) errors.push(...schemaErrors(props[name], v, `${path}/${name}`));
      else if (schema.additionalProperties === false) errors.push(`${path}/${name}: not allowed`);
      else if (typeof schema.additionalProperties === "object") errors.push(...schemaErrors(schema.additionalProperties, v, `${path}/${name}`));
    }
  }
  return errors;
}

// ---- detail ----------------------------------------------------------

const pretty = (text) => {
  try {
    return JSON.stringify(typeof text === "string" ? JSON.parse(text) : text, null, 2);
  } catch {
    return String(text);
  }
};

function field(label, ...value) {
  return el("div", { class: "field" }, el("span", { class: "label" }, label), el("span", {}, ...value));
}

async function showDetail(id, focusReject = false) {
  state.selected = id;
  const panel = $("detail");
  panel.hidden = false;
  put(panel, el("p", { class: "state" }, "Loading…"));
  for (const row of document.querySelectorAll(".row")) row.classList.toggle("selected", row.dataset.id === id);
  let view;
  try {
    view = await api(`/govern/approvals/${id}`);
  } catch (e) {
    if (e.status === 404 || e.status === 409) return showExecution(id);
    put(panel, el("p", { class: "error" }, e.message));
    return;
  }
  if (state.selected !== id) return;
  const request = view.approval || { stages: [] };
  const stages = request.stages.map((s, i) =>
    el("li", { class: (s.decisions || []).length && i < (view.stage ? view.stage.index : request.stages.length) ? "done" : "" },
      el("strong", {}, s.spec.policy),
      ` — ${s.spec.approvers.join(", ")}`,
      s.spec.quorum > 1 ? ` (quorum ${s.spec.quorum})` : "",
      el("ul", {}, (s.decisions || []).map((d) =>
        el("li", { class: d.superseded ? "superseded" : "" },
          `${d.approved ? "approved" : "rejected"} by ${d.approver} ${local(d.at)}${d.reason ? `: ${d.reason}` : ""}`,
          d.superseded ? " (for arguments since edited: asked again)" : "")))));
  const reason = el("textarea", { id: "reason", rows: 2, placeholder: view.stage && view.stage.require_reason ? "reason (required)" : "reason" });
  const edits = el("textarea", { id: "edits", rows: 6, spellcheck: "false", "aria-label": "edited arguments (JSON)" }, pretty(view.will_run || view.inputs));
  // A standing grant lets the requester repeat exactly this call without
  // asking; only a decision that completes a stage alone may give one.
  const grantable = view.stage && view.stage.quorum <= 1 && view.stage.approvals === 0;
  const grant = grantable
    ? el("select", { id: "grant", "aria-label": "standing grant", title: `Also let ${view.requester} repeat this exact call without asking, for a while` },
        el("option", { value: "" }, "just this once"),
        el("option", { value: "3600" }, "and the same call for 1 hour"),
        el("option", { value: "86400" }, "and the same call for 1 day"))
    : null;
  const body = () => {
    const b = {};
    if (reason.value.trim()) b.reason = reason.value.trim();
    if (view.digest) b.expected_digest = view.digest;
    return b;
  };
  const approveBody = () => {
    const b = body();
    if (grant && grant.value) {
      const hours = Number(grant.value) / 3600;
      const ok = confirm(`Approve, and let ${view.requester} run ${view.action} with exactly these arguments again for ${hours} hour${hours === 1 ? "" : "s"} without asking anyone? You can revoke it under Grants.`);
      if (!ok) return null;
      b.grant = { window_seconds: Number(grant.value), same_arguments: true };
    }
    return b;
  };
  const decision = view.can_decide
    ? el("div", { class: "decide" },
        reason,
        el("div", { class: "buttons" },
          el("button", { type: "button", id: "approve", class: "approve", onclick: () => { const b = approveBody(); if (b) decide(id, "approve", b); } }, "Approve"),
          el("button", { type: "button", id: "reject", class: "danger", onclick: () => (reason.value.trim() ? decide(id, "reject", body()) : ($("decision-error").textContent = "Give a reason to reject.")) }, "Reject"),
          grant),
        el("details", {},
          el("summary", {}, "Approve with edits"),
          edits,
          el("button", { type: "button", id: "approve-edits", onclick: () => approveWithEdits(id, view.action, edits.value, body()) }, "Approve with these arguments")),
        el("p", { id: "decision-error", class: "error", role: "alert" }))
    : el("p", { class: "muted" }, view.status === "awaiting_approval" ? "You are not an approver of the waiting stage." : `This request is ${view.status}.`);
  put(panel, 
    el("button", { type: "button", class: "close", "aria-label": "close", onclick: closeDetail }, "×"),
    el("h2", {}, view.action),
    field("status", view.status),
    field("requested by", view.requester, view.tenant ? ` (tenant ${view.tenant})` : ""),
    field("requested", local(view.requested_at)),
    view.stage ? field("asked by", `${view.stage.policy}: ${view.stage.reason}`) : null,
    view.stage ? field("expiry", el("span", { dataset: { expires: view.stage.expires_at || "" } }, countdown(view.stage.expires_at))) : null,
    view.edited
      ? el("h3", {}, "Arguments that will run ", el("span", { class: "edited" }, "edited"), " (sensitive fields redacted)")
      : el("h3", {}, "Arguments (sensitive fields redacted)"),
    el("pre", { class: "json", id: "will-run" }, pretty(view.will_run || view.inputs)),
    view.edited ? el("h3", {}, "Changed from the request") : null,
    view.edited
      ? el("table", { class: "changes", id: "changes" },
          el("tr", {}, el("th", {}, "argument"), el("th", {}, "asked"), el("th", {}, "will run")),
          (view.changes || []).map((c) =>
            el("tr", {},
              el("td", {}, c.argument),
              el("td", { class: "before" }, "asked" in c ? JSON.stringify(c.asked) : "(not given)"),
              el("td", { class: "after" }, "will_run" in c ? JSON.stringify(c.will_run) : "(removed)"))))
      : null,
    el("h3", {}, "Stages"),
    el("ol", { class: "stages" }, stages),
    decision,
    el("p", {}, el("a", { href: `#/executions/${id}` }, "Full timeline →")),
  );
  if (focusReject && view.can_decide) reason.focus();
}

async function approveWithEdits(id, action, text, body) {
  let edits;
  try {
    edits = JSON.parse(text);
  } catch (e) {
    $("decision-error").textContent = `The edits are not JSON: ${e.message}`;
    return;
  }
  if (edits === null || typeof edits !== "object" || Array.isArray(edits)) {
    $("decision-error").textContent = "The edits must be an object of arguments by name.";
    return;
  }
  const schema = (await registeredActions()).get(action)?.input_schema;
  const problems = schemaErrors(schema, edits);
  if (problems.length) {
    $("decision-error").textContent = `The edits do not fit the action's schema: ${problems.join("; ")}`;
    return;
  }
  await decide(id, "approve", { ...body, edits });
}

function closeDetail() {
  state.selected = null;
  $("detail").hidden = true;
  for (const row of document.querySelectorAll(".row.selected")) row.classList.remove("selected");
}

// ---- executions ----------------------------------------------------------

async function loadExecutions(reset) {
  if (reset) state.execCursor = null;
  const q = new URLSearchParams({ limit: String(PAGE) });
  for (const [key, input] of [["status", "exec-status"], ["action", "exec-action"], ["principal", "exec-principal"]]) {
    const v = $(input).value.trim();
    if (v) q.set(key, v);
  }
  if (state.execCursor) q.set("cursor", state.execCursor);
  $("exec-state").textContent = "Loading…";
  try {
    const page = await api(`/govern/executions?${q}`);
    const rows = page.items.map((e) =>
      el("div", { class: "row", role: "listitem", dataset: { id: e.id }, onclick: () => (location.hash = `#/executions/${e.id}`) },
        el("span", { class: `status ${e.status}` }, e.status),
        el("span", { class: "action" }, e.action),
        el("span", { class: "muted" }, `by ${e.principal.id}`),
        el("span", { class: "muted" }, local(e.created_at)),
        e.failure ? el("span", { class: "muted" }, e.failure.message) : null));
    if (reset) put($("exec-list"), rows);
    else $("exec-list").append(...rows);
    state.execCursor = page.next_cursor;
    $("exec-more").hidden = !page.next_cursor;
    $("exec-state").textContent = $("exec-list").children.length ? "" : "No executions match.";
  } catch (e) {
    $("exec-state").textContent = `Could not load executions: ${e.message}`;
  }
}

async function showExecution(id) {
  state.selected = id;
  const panel = $("detail");
  panel.hidden = false;
  put(panel, el("p", { class: "state" }, "Loading…"));
  let d;
  try {
    d = await api(`/govern/executions/${id}`);
  } catch (e) {
    put(panel, el("p", { class: "error" }, e.message));
    return;
  }
  const e = d.execution;
  const start = new Date(e.created_at).getTime();
  const timeline = [
    ...d.events.map((ev) => ({ at: ev.time, what: ev.type, data: ev.data })),
    ...d.snapshots.map((s) => ({ at: s.captured_at, what: `snapshot: ${s.checkpoint}`, data: s.state })),
  ].sort((a, b) => (a.at < b.at ? -1 : 1));
  put(panel, 
    el("button", { type: "button", class: "close", "aria-label": "close", onclick: closeDetail }, "×"),
    el("h2", {}, e.action),
    field("status", el("span", { class: `status ${e.status}`, id: "execution-status" }, e.status)),
    field("id", e.id),
    field("principal", e.principal.id),
    field("created", local(e.created_at)),
    field("finished", local(e.finished_at)),
    e.failure ? field("reason", el("span", { id: "execution-failure" }, e.failure.message)) : null,
    el("h3", {}, "Inputs (sensitive fields redacted)"),
    el("pre", { class: "json" }, pretty(e.inputs)),
    e.output !== undefined && e.output !== null ? [el("h3", {}, "Output"), el("pre", { class: "json" }, pretty(e.output))] : null,
    el("h3", {}, "Timeline"),
    el("ol", { class: "timeline" }, timeline.map((t) =>
      el("li", {},
        el("span", { class: "when" }, `+${Math.max(0, new Date(t.at).getTime() - start)} ms`),
        el("span", { class: "what" }, t.what),
        el("span", { class: "muted" }, local(t.at)),
        t.data && t.data !== null && Object.keys(t.data).length ? el("pre", { class: "json small" }, pretty(t.data)) : null))),
  );
}

// ---- flows ----------------------------------------------------------

function scheduleFlows() {
  if (state.flowsTimer) return;
  state.flowsTimer = setTimeout(() => {
    state.flowsTimer = null;
    loadFlows();
  }, 300);
}

async function loadFlows() {
  try {
    const [{ flows, truncated }, actions] = await Promise.all([api("/govern/flows"), registeredActions()]);
    const waiting = new Map(flows.map((f) => [f.action, f]));
    // Configured pipelines first (even with nothing waiting), then any
    // other action with waiting requests (made by another process).
    const shown = [...actions.values()]
      .filter((a) => a.stages.length)
      .map((a) => {
        const live = waiting.get(a.name);
        waiting.delete(a.name);
        return {
          action: a.name,
          waiting: live ? live.waiting : 0,
          stages: a.stages.map((st, index) => ({
            index,
            policy: st.policy,
            approvers: st.approvers,
            waiting: live ? live.stages.filter((x) => x.index === index && x.policy === st.policy).reduce((n, x) => n + x.waiting, 0) : 0,
          })),
        };
      })
      .concat([...waiting.values()]);
    $("flows-state").textContent = shown.length ? (truncated ? "Counting the first 10,000 waiting requests." : "") : "No approval pipeline is configured or waiting.";
    put($("flows-list"), shown.map((f) =>
      el("div", { class: "flow card", dataset: { action: f.action } },
        el("h3", {}, f.action, el("span", { class: "count" }, String(f.waiting))),
        el("ol", { class: "pipeline" }, f.stages.map((st) =>
          el("li", { class: st.waiting ? "busy" : "" },
            el("strong", {}, st.policy),
            el("span", { class: "muted" }, st.approvers.join(", ")),
            el("span", { class: "waiting", dataset: { stage: String(st.index) } }, `${st.waiting} waiting`)))))));
  } catch (e) {
    $("flows-state").textContent = `Could not load the flows: ${e.message}`;
  }
}

// ---- standing grants ------------------------------------------------------

async function loadGrants() {
  try {
    const grants = await api("/govern/grants?limit=1000");
    $("grant-count").hidden = grants.length === 0;
    $("grant-count").textContent = String(grants.length);
    $("grants-state").textContent = grants.length ? "" : "No standing grant is in force.";
    put($("grants-list"), grants.map((g) =>
      el("div", { class: "row", role: "listitem", dataset: { id: g.id } },
        el("span", { class: "action" }, g.action),
        el("span", {}, `${g.principal} may skip ${g.policy}`),
        el("span", { class: "summary" }, g.arguments ? `only ${summary(g.arguments)}` : "any arguments"),
        el("span", { class: "muted" }, `granted by ${g.granted_by}, until ${local(g.until)}`),
        el("span", { class: "buttons" }, el("button", { type: "button", class: "danger revoke", onclick: () => revokeGrant(g) }, "Revoke")))));
  } catch (e) {
    $("grants-state").textContent = `Could not load the grants: ${e.message}`;
  }
}

async function revokeGrant(g) {
  const reason = prompt(`Why revoke ${g.principal}'s grant for ${g.action}? Their next call asks again.`);
  if (!reason) return;
  try {
    await api(`/govern/grants/${g.id}?reason=${encodeURIComponent(reason)}`, { method: "DELETE" });
    loadGrants();
  } catch (e) {
    $("grants-state").textContent = `Not revoked: ${e.message}`;
  }
}

// ---- kill switch ----------------------------------------------------------

const mayPause = () => state.me && state.me.permissions.includes("governor:pause");

async function loadPauses() {
  $("pause-form").hidden = !mayPause();
  try {
    const pauses = await api("/govern/pauses");
    $("pause-count").hidden = pauses.length === 0;
    $("pause-count").textContent = String(pauses.length);
    $("pauses-state").textContent = pauses.length ? "" : "Nothing is paused.";
    put($("pauses-list"), pauses.map((p) =>
      el("div", { class: "row", role: "listitem", dataset: { action: p.action ?? "*" } },
        el("span", { class: "status failed" }, p.mode),
        el("span", { class: "action" }, p.action ?? "every action"),
        el("span", { class: "muted" }, `by ${p.by} ${ago(p.since)}: ${p.reason}`),
        mayPause()
          ? el("span", { class: "buttons" }, el("button", { type: "button", class: "lift", onclick: () => liftPause(p.action) }, "Lift"))
          : null)));
  } catch (e) {
    $("pauses-state").textContent = `Could not load the kill switch: ${e.message}`;
  }
}

async function pauseNow(ev) {
  ev.preventDefault();
  const action = $("pause-action").value.trim() || null;
  const reason = $("pause-reason").value.trim();
  if (!reason) return ($("pauses-state").textContent = "Give a reason.");
  if (!action && !confirm("Pause every action?")) return;
  try {
    await api("/govern/pauses", { method: "POST", body: { action, mode: $("pause-mode").value, reason } });
    $("pause-reason").value = "";
    loadPauses();
  } catch (e) {
    $("pauses-state").textContent = `Not paused: ${e.message}`;
  }
}

async function liftPause(action) {
  const reason = prompt(`Why lift the pause of ${action ?? "every action"}?`);
  if (!reason) return;
  try {
    await api("/govern/pauses/lift", { method: "POST", body: { action, reason } });
    loadPauses();
  } catch (e) {
    $("pauses-state").textContent = `Not lifted: ${e.message}`;
  }
}

// ---- audit ----------------------------------------------------------

async function loadAudit(reset) {
  if (reset) state.auditAfter = 0;
  $("audit-state").textContent = "Loading…";
  try {
    const page = await api(`/govern/audit?after=${state.auditAfter}&limit=200`);
    const rows = page.items.map((entry) => {
      const r = entry.record;
      const decisions = (r.decisions || []).map((d) => `${d.policy}: ${d.outcome}${d.shadow ? " (shadow)" : ""}`).join(", ");
      return el("div", { class: "row", role: "listitem", dataset: { seq: String(entry.seq) }, onclick: () => (location.hash = `#/executions/${r.execution_id}`) },
        el("span", { class: "seq" }, `#${entry.seq}`),
        el("span", { class: `status ${r.status}` }, r.status),
        el("span", { class: "action" }, r.action),
        el("span", { class: "muted" }, `by ${r.principal} ${local(r.at)}`),
        decisions ? el("span", { class: "summary" }, decisions) : null,
        (r.tags || []).length ? el("span", { class: "stage" }, r.tags.join(" ")) : null,
        el("span", { class: "hash", title: entry.hash }, entry.hash.slice(0, 12)));
    });
    if (reset) put($("audit-list"), rows);
    else $("audit-list").append(...rows);
    if (page.items.length) state.auditAfter = page.items[page.items.length - 1].seq;
    $("audit-more").hidden = page.next_after === null;
    $("audit-state").textContent = $("audit-list").children.length ? "" : "The audit log is empty.";
  } catch (e) {
    $("audit-state").textContent = `Could not load the audit log: ${e.message}`;
  }
}

async function verifyAudit() {
  $("audit-verified").textContent = "Verifying…";
  try {
    const v = await api("/govern/audit/verify");
    $("audit-verified").textContent = v.ok ? `Intact: ${v.entries} entries verified.` : `TAMPERED: ${v.error}`;
    $("audit-verified").className = v.ok ? "ok" : "error";
  } catch (e) {
    $("audit-verified").textContent = e.message;
  }
}

// ---- navigation ----------------------------------------------------------

const VIEWS = ["pending", "executions", "flows", "grants", "pauses", "audit"];

function route() {
  if (!state.me) return;
  const [, view, id] = location.hash.split("/");
  state.view = VIEWS.includes(view) ? view : "pending";
  for (const v of VIEWS) $(`view-${v}`).hidden = state.view !== v;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.view === state.view);
  const load = { pending: () => loadPending(true), executions: () => loadExecutions(true), flows: loadFlows, grants: loadGrants, pauses: loadPauses, audit: () => loadAudit(true) };
  load[state.view]();
  if (id) (state.view === "pending" ? showDetail : showExecution)(id);
  else closeDetail();
}

function onKey(e) {
  if (!state.me || ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName)) {
    if (e.key === "Escape") document.activeElement.blur();
    return;
  }
  const rows = [...document.querySelectorAll(`#${state.view === "pending" ? "pending-list" : "exec-list"} .row`)];
  const at = rows.findIndex((r) => r.dataset.id === state.selected);
  if (e.key === "j" || e.key === "k") {
    const next = rows[Math.min(rows.length - 1, Math.max(0, at + (e.key === "j" ? 1 : -1)))];
    if (next) (state.view === "pending" ? showDetail : showExecution)(next.dataset.id);
  } else if (e.key === "a" && state.view === "pending" && $("approve")) {
    $("approve").click();
  } else if (e.key === "r" && state.view === "pending" && $("reason")) {
    e.preventDefault();
    $("reason").focus();
  } else if (e.key === "Escape") {
    closeDetail();
  }
}

function start() {
  $("sign-in-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("sign-in-error").textContent = "";
    try {
      await signIn($("token").value.trim());
      $("token").value = "";
    } catch (err) {
      $("sign-in-error").textContent = err.status === 401 ? "That token is not valid." : err.message;
    }
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("batch-approve").addEventListener("click", () => batch("approve"));
  $("batch-reject").addEventListener("click", () => batch("reject"));
  $("pending-more").addEventListener("click", () => loadPending(false));
  $("exec-more").addEventListener("click", () => loadExecutions(false));
  $("exec-refresh").addEventListener("click", () => loadExecutions(true));
  $("pause-form").addEventListener("submit", pauseNow);
  $("audit-verify").addEventListener("click", verifyAudit);
  $("audit-more").addEventListener("click", () => loadAudit(false));
  for (const id of ["filter-action", "filter-approver", "filter-age", "filter-decidable"]) $(id).addEventListener("change", () => loadPending(true));
  for (const id of ["exec-status", "exec-action", "exec-principal"]) $(id).addEventListener("change", () => loadExecutions(true));
  window.addEventListener("hashchange", route);
  document.addEventListener("keydown", onKey);
  setInterval(tickCountdowns, 1000);
  if (state.token) signIn(state.token).catch(() => signOut("Sign in again."));
  else signOut();
}

start();
