// The queue of requests waiting for a decision: live, filtered, and still
// while the approver's pointer or focus is on it.

import { $, el, put, notify } from "./dom.js";
import { api } from "./api.js";
import { state } from "./state.js";
import { ago, countdown, needsText, progressText, summaryNodes } from "./format.js";
import { showDetail } from "./detail.js";

const PAGE = 100;

function query(cursor) {
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

export async function loadPending(reset) {
  if (reset) state.pendingCursor = null;
  const load = ++state.loads;
  state.arrived = new Map();
  $("pending-state").textContent = reset && state.pending.size === 0 ? "Loading…" : "";
  try {
    const page = await api(`/govern/approvals/pending?${query(state.pendingCursor)}`);
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

/** The latest read of each request, so that an older answer that arrives
 * last (reads may travel on different connections) is ignored. */
const reads = new Map();

/** Re-reads one request: it may have appeared, moved on a stage, or ended. */
export async function refreshOne(id) {
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

const display = (v) => (state.actions && state.actions.get(v.action)?.display) || v.display;

function pendingRow(v) {
  const stage = v.stage;
  const id = v.execution_id;
  const checkbox = el("input", {
    type: "checkbox",
    "aria-label": `select ${v.title || v.action}`,
    disabled: !v.can_decide,
    checked: state.checked.has(id),
    onchange: (ev) => {
      if (ev.target.checked) state.checked.add(id);
      else state.checked.delete(id);
      updateBatch();
    },
  });
  const needsReason = stage && stage.require_reason;
  return el(
    "div",
    {
      class: `row${state.selected === id ? " selected" : ""}`,
      role: "listitem",
      dataset: { id },
      onclick: (ev) => ev.target.tagName !== "INPUT" && ev.target.tagName !== "BUTTON" && showDetail(id),
    },
    checkbox,
    el("span", { class: "what" },
      el("span", { class: "title" }, summaryNodes(display(v), v.will_run || v.inputs)),
      el("span", { class: "sub" },
        el("span", { class: "action" }, v.action),
        ` · asked by ${v.requester} `,
        el("span", { class: "age" }, v.requested_at ? ago(v.requested_at) : ""),
        v.edited ? el("span", { class: "edited", title: "an approver changed the arguments" }, "edited") : null)),
    stage ? el("span", { class: "stage", title: progressText(stage) }, needsText(stage)) : null,
    el("span", { class: "expiry", dataset: { expires: stage && stage.expires_at ? stage.expires_at : "" } }, countdown(stage && stage.expires_at)),
    v.can_decide
      ? el("span", { class: "buttons" },
          el("button", {
            type: "button",
            class: "approve",
            title: needsReason ? "opens the request: a reason is required" : "approve now",
            onclick: () => (needsReason ? showDetail(id, "approve") : decide(id, "approve")),
          }, needsReason ? "Approve…" : "Approve"),
          el("button", { type: "button", class: "danger reject", onclick: () => showDetail(id, "reject") }, "Reject…"))
      : el("span", { class: "muted" }, "not yours to decide"),
  );
}

function sorted() {
  return [...state.pending.values()].sort((a, b) => (a.requested_at < b.requested_at ? 1 : -1));
}

/** Renders the queue. While held (pointer or focus on the list) rows keep
 * their places: new requests wait behind the "N new" bar and decided
 * ones stay, greyed, until the hold ends. */
export function renderPending() {
  const list = $("pending-list");
  const items = sorted();
  // Nothing shown yet (the first load, under a pointer left where the
  // sign-in button was): there is nothing to keep still.
  if (!state.held || state.shown.length === 0) state.shown = items.map((v) => v.execution_id);
  const fresh = items.filter((v) => !state.shown.includes(v.execution_id));
  const rows = state.shown.map((id) => {
    const v = state.pending.get(id);
    if (v) return pendingRow(v);
    const gone = list.querySelector(`[data-id="${CSS.escape(id)}"]`);
    if (gone) {
      gone.classList.add("gone");
      for (const b of gone.querySelectorAll("button, input")) b.disabled = true;
    }
    return gone;
  });
  put(list, rows);
  $("new-bar").hidden = fresh.length === 0;
  $("new-bar").textContent = `${fresh.length} new request${fresh.length === 1 ? "" : "s"}: show`;
  $("pending-count").textContent = String(items.length) + (state.pendingCursor ? "+" : "");
  const empty = "Nothing is waiting for a decision.";
  if (items.length === 0 && !$("pending-state").textContent) $("pending-state").textContent = empty;
  else if (items.length > 0 && $("pending-state").textContent === empty) $("pending-state").textContent = "";
  for (const id of [...state.checked]) if (!state.pending.has(id)) state.checked.delete(id);
  updateBatch();
}

/** Holds the rows still while the pointer or focus is on the list. */
export function holdWhileUsed() {
  // The bar is part of the held area: reaching for it keeps rows still.
  const list = $("pending-area");
  const set = (held) => {
    if (state.held === held) return;
    state.held = held;
    if (!held) renderPending();
  };
  list.addEventListener("pointerenter", () => set(true));
  list.addEventListener("pointerleave", () => set(list.contains(document.activeElement)));
  list.addEventListener("focusin", () => set(true));
  list.addEventListener("focusout", (e) => set(list.contains(e.relatedTarget) || list.matches(":hover")));
  $("new-bar").addEventListener("click", () => {
    state.held = false;
    renderPending();
  });
}

function updateBatch() {
  $("batch-approve").disabled = state.checked.size === 0;
  $("batch-reject").disabled = state.checked.size === 0;
}

export function tickCountdowns() {
  for (const cell of document.querySelectorAll("[data-expires]")) {
    cell.textContent = countdown(cell.dataset.expires || null);
  }
}

/** Sends a decision; a refusal stays on screen until dismissed. */
export async function decide(id, verdict, extra = {}) {
  // What the approver saw: a request edited since answers 409 instead of
  // applying this decision to arguments nobody showed them.
  const seen = state.pending.get(id)?.digest;
  const body = seen && !("expected_digest" in extra) ? { ...extra, expected_digest: seen } : extra;
  try {
    await api(`/govern/approvals/${id}/${verdict}`, { method: "POST", body });
    state.checked.delete(id);
    await refreshOne(id);
    if (state.selected === id) showDetail(id);
    return true;
  } catch (e) {
    const out = $("decision-error");
    if (out && state.selected === id) out.textContent = e.message;
    else notify(`Not ${verdict === "approve" ? "approved" : "rejected"}: ${e.message}`);
    return false;
  }
}

export async function batch(verdict) {
  const ids = [...state.checked];
  const needReason = verdict === "reject" || ids.some((id) => state.pending.get(id)?.stage?.require_reason);
  const reason = needReason ? prompt(`Reason for ${verdict === "reject" ? "rejecting" : "approving"} the ${ids.length} selected requests`) : null;
  if (needReason && !reason) return;
  for (const id of ids) await decide(id, verdict, reason ? { reason } : {});
}

export function setUpPending() {
  holdWhileUsed();
  $("batch-approve").addEventListener("click", () => batch("approve"));
  $("batch-reject").addEventListener("click", () => batch("reject"));
  $("pending-more").addEventListener("click", () => loadPending(false));
  for (const id of ["filter-action", "filter-approver", "filter-age", "filter-decidable"]) $(id).addEventListener("change", () => loadPending(true));
  $("filters-toggle").addEventListener("click", () => $("filters").classList.toggle("open"));
}
