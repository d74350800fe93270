// The other views: executions and their timelines, flows, standing
// grants, the kill switch and the audit log.

import { $, el, put, field, pretty } from "./dom.js";
import { api, may } from "./api.js";
import { state } from "./state.js";
import { ago, eventText, local, statusBadge, summaryNodes, argumentRows } from "./format.js";
import { closeButton, openPanel } from "./detail.js";

const PAGE = 100;

export async function registeredActions() {
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

const display = (action) => state.actions && state.actions.get(action)?.display;

// ---- executions ----------------------------------------------------------

export async function loadExecutions(reset) {
  if (reset) state.execCursor = null;
  const q = new URLSearchParams({ limit: String(PAGE) });
  for (const [key, input] of [["status", "exec-status"], ["action", "exec-action"], ["principal", "exec-principal"]]) {
    const v = $(input).value.trim();
    if (v) q.set(key, v);
  }
  if (state.execCursor) q.set("cursor", state.execCursor);
  $("exec-state").textContent = "Loading…";
  try {
    await registeredActions();
    const page = await api(`/govern/executions?${q}`);
    const rows = page.items.map((e) =>
      el("div", { class: "row", role: "listitem", dataset: { id: e.id }, onclick: () => (location.hash = `#/executions/${e.id}`) },
        statusBadge(e.status),
        el("span", { class: "what" },
          el("span", { class: "title" }, summaryNodes(display(e.action), e.inputs)),
          el("span", { class: "sub" }, el("span", { class: "action" }, e.action), ` · by ${e.principal.id} · ${local(e.created_at)}`)),
        e.failure ? el("span", { class: "muted" }, e.failure.message) : null));
    if (reset) put($("exec-list"), rows);
    else $("exec-list").append(...rows);
    state.execCursor = page.next_cursor;
    $("exec-more").hidden = !page.next_cursor;
    $("exec-state").textContent = $("exec-list").children.length
      ? ""
      : may("governor:read") ? "No executions match." : "No executions you asked for or were asked to decide match.";
  } catch (e) {
    $("exec-state").textContent = `Could not load executions: ${e.message}`;
  }
}

export async function showExecution(id) {
  state.selected = id;
  const panel = openPanel();
  put(panel, el("p", { class: "state" }, "Loading…"));
  let d;
  let sent;
  try {
    [d, sent] = await Promise.all([
      api(`/govern/executions/${id}`),
      api(`/govern/notifications?execution_id=${encodeURIComponent(id)}&limit=200`).catch(() => null),
      registeredActions(),
    ]);
  } catch (e) {
    put(panel, el("p", { class: "error" }, e.message));
    return;
  }
  if (state.selected !== id) return;
  const e = d.execution;
  const start = new Date(e.created_at).getTime();
  const timeline = [
    ...d.events.map((ev) => ({ at: ev.time, type: ev.type, data: ev.data })),
    ...d.snapshots.map((s) => ({ at: s.captured_at, type: `snapshot: ${s.checkpoint}`, data: s.state })),
  ].sort((a, b) => (a.at < b.at ? -1 : 1));
  put(panel,
    el("div", { class: "sheet-head" },
      closeButton(),
      el("h2", {}, summaryNodes(display(e.action), e.inputs)),
      el("p", { class: "muted" }, `${e.action} · by ${e.principal.id}`),
      el("p", {}, statusBadge(e.status, "execution-status"))),
    field("started", local(e.created_at)),
    field("finished", local(e.finished_at)),
    e.failure ? field("reason", el("span", { id: "execution-failure" }, e.failure.message)) : null,
    field("id", el("code", {}, e.id)),
    el("h3", {}, "Arguments"),
    el("dl", { class: "args" }, argumentRows(display(e.action), e.inputs).map(([label, node]) => el("div", {}, el("dt", {}, label), el("dd", {}, node)))),
    e.output !== undefined && e.output !== null ? [el("h3", {}, "Result"), el("pre", { class: "json" }, pretty(e.output))] : null,
    sent ? [el("h3", {}, "Notifications"), deliveries(sent.items, id)] : null,
    el("h3", {}, "Timeline"),
    el("ol", { class: "timeline" }, timeline.map((t) =>
      el("li", { dataset: { type: t.type } },
        el("span", { class: "when" }, `+${Math.max(0, new Date(t.at).getTime() - start)} ms`),
        el("span", { class: "what" }, eventText(t.type, t.data)),
        el("span", { class: "muted" }, local(t.at)),
        t.data && Object.keys(t.data).length
          ? el("details", { class: "raw" }, el("summary", {}, "details"), el("pre", { class: "json small" }, pretty(t.data)))
          : null))),
  );
}

const DELIVERY = { pending: "Pending", delivered: "Delivered", dead: "Failed for good" };
const NOTICE = {
  requested: "request",
  stage_advanced: "next stage",
  decided: "decision",
  expired: "expiry",
  escalated: "escalation",
  reminder: "reminder",
};

/** Who was told what about an execution, and how it went. */
function deliveries(items, executionId) {
  if (!items.length) return el("p", { class: "muted", id: "deliveries" }, "Nobody was notified about this execution.");
  return el("ul", { class: "deliveries", id: "deliveries" }, items.map((n) =>
    el("li", { dataset: { state: n.state, target: n.target } },
      el("span", { class: `status ${n.state === "delivered" ? "completed" : n.state === "dead" ? "failed" : "awaiting_approval"}`, title: n.state }, DELIVERY[n.state] || n.state),
      ` ${NOTICE[n.kind] || n.kind} → ${n.target}${n.recipient ? ` (${n.recipient})` : ""}`,
      el("span", { class: "muted" }, n.attempts ? ` · ${n.attempts} attempt${n.attempts === 1 ? "" : "s"}` : ""),
      n.last_error && n.state !== "delivered" ? el("span", { class: "muted" }, ` · ${n.last_error}`) : null,
      n.state === "dead" && may("governor:resume")
        ? el("button", { type: "button", class: "retry", onclick: async (ev) => {
            ev.target.disabled = true;
            try {
              await api(`/govern/notifications/${n.id}/retry`, { method: "POST", body: {} });
              showExecution(executionId);
            } catch (e) {
              ev.target.replaceWith(el("span", { class: "error" }, ` ${e.message}`));
            }
          } }, "Send again")
        : null)));
}

// ---- flows ----------------------------------------------------------

export function scheduleFlows() {
  if (state.flowsTimer) return;
  state.flowsTimer = setTimeout(() => {
    state.flowsTimer = null;
    loadFlows();
  }, 300);
}

export async function loadFlows() {
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

export async function loadGrants() {
  try {
    const grants = await api("/govern/grants?limit=1000");
    $("grant-count").hidden = grants.length === 0;
    $("grant-count").textContent = String(grants.length);
    $("grants-state").textContent = grants.length ? "" : "No standing grant is in force.";
    put($("grants-list"), grants.map((g) =>
      el("div", { class: "row", role: "listitem", dataset: { id: g.id } },
        el("span", { class: "action" }, g.action),
        el("span", {}, `${g.principal} may skip ${g.policy}`),
        el("span", { class: "summary" }, g.arguments ? ["only ", summaryNodes(display(g.action), g.arguments)] : "any arguments"),
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

export async function loadPauses() {
  $("pause-form").hidden = !may("governor:pause");
  try {
    const pauses = await api("/govern/pauses");
    $("pause-count").hidden = pauses.length === 0;
    $("pause-count").textContent = String(pauses.length);
    $("pauses-state").textContent = pauses.length ? "" : "Nothing is paused.";
    put($("pauses-list"), pauses.map((p) =>
      el("div", { class: "row", role: "listitem", dataset: { action: p.action ?? "*" } },
        el("span", { class: "status failed" }, p.mode === "hold" ? "holding new calls" : "denying new calls"),
        el("span", { class: "action" }, p.action ?? "every action"),
        el("span", { class: "muted" }, `by ${p.by} ${ago(p.since)}: ${p.reason}`),
        may("governor:pause")
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

export async function loadAudit(reset) {
  if (reset) state.auditAfter = 0;
  $("audit-state").textContent = "Loading…";
  try {
    const page = await api(`/govern/audit?after=${state.auditAfter}&limit=200`);
    const rows = page.items.map((entry) => {
      const r = entry.record;
      const decisions = (r.decisions || []).map((d) => `${d.policy}: ${d.outcome}${d.shadow ? " (shadow)" : ""}`).join(", ");
      return el("div", { class: "row", role: "listitem", dataset: { seq: String(entry.seq) }, onclick: () => (location.hash = `#/executions/${r.execution_id}`) },
        el("span", { class: "seq" }, `#${entry.seq}`),
        statusBadge(r.status),
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

export function setUpViews() {
  $("exec-more").addEventListener("click", () => loadExecutions(false));
  $("exec-refresh").addEventListener("click", () => loadExecutions(true));
  $("pause-form").addEventListener("submit", pauseNow);
  $("audit-verify").addEventListener("click", verifyAudit);
  $("audit-more").addEventListener("click", () => loadAudit(false));
  for (const id of ["exec-status", "exec-action", "exec-principal"]) $(id).addEventListener("change", () => loadExecutions(true));
}
