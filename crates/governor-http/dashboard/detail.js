// One request, as the person deciding it needs it: what, how much, to
// whom, why it needs them, and what each button does.

import { $, el, put, field, pretty } from "./dom.js";
import { api } from "./api.js";
import { state } from "./state.js";
import {
  argumentRows, countdown, local, needsText, progressText, statusBadge, statusLabel, titleNodes, triggerNodes,
} from "./format.js";
import { decide } from "./pending.js";
import { registeredActions, showExecution } from "./views.js";
import { schemaErrors } from "./schema.js";

/** Shows the detail panel (a full-screen sheet on phones). */
export function openPanel() {
  const panel = $("detail");
  panel.hidden = false;
  document.body.classList.add("sheet-open");
  return panel;
}

export function closeDetail() {
  state.selected = null;
  $("detail").hidden = true;
  document.body.classList.remove("sheet-open");
  for (const row of document.querySelectorAll(".row.selected")) row.classList.remove("selected");
}

export const closeButton = () => el("button", { type: "button", class: "close", "aria-label": "close", onclick: closeDetail }, "×");

/** What approving does, in the action's words when it declares them. */
function effect(view, display) {
  const stage = view.stage;
  const last = !stage || stage.index + 1 >= stage.of;
  if (stage && stage.approvals + 1 < stage.quorum) {
    return `Your approval is ${stage.approvals + 1} of the ${stage.quorum} this stage needs; nothing runs yet.`;
  }
  if (!last) return `Approving passes stage ${stage.index + 1} of ${stage.of}; the next stage's approvers decide before anything runs.`;
  return (display && display.on_approve) || `Approving lets ${view.action} run at once with the arguments shown.`;
}

function stagesList(view) {
  const request = view.approval || { stages: [] };
  const current = view.stage ? view.stage.index : request.stages.length;
  return el("ol", { class: "stages" }, request.stages.map((s, i) =>
    el("li", { class: i < current ? "done" : i === current ? "current" : "" },
      el("span", {}, needsText({ approvers: s.spec.approvers, quorum: s.spec.quorum })),
      el("span", { class: "muted" }, ` (rule ${s.spec.policy})`),
      el("ul", {}, (s.decisions || []).map((d) =>
        el("li", { class: d.superseded ? "superseded" : "" },
          `${d.approved ? "Approved" : "Rejected"} by ${d.approver}, ${local(d.at)}${d.reason ? `: “${d.reason}”` : ""}`,
          d.superseded ? " (for arguments since edited: asked again)" : ""))))));
}

function changesTable(view) {
  if (!view.edited) return null;
  return [
    el("h3", {}, "Changed from the request"),
    el("table", { class: "changes", id: "changes" },
      el("tr", {}, el("th", {}, "argument"), el("th", {}, "asked"), el("th", {}, "will run")),
      (view.changes || []).map((c) =>
        el("tr", {},
          el("td", {}, c.argument),
          el("td", { class: "before" }, "asked" in c ? JSON.stringify(c.asked) : "(not given)"),
          el("td", { class: "after" }, "will_run" in c ? JSON.stringify(c.will_run) : "(removed)")))),
  ];
}

function decisionBox(id, view, display, focus) {
  const required = view.stage && view.stage.require_reason;
  const reason = el("textarea", { id: "reason", rows: 2, placeholder: required ? "required" : "optional", "aria-required": required ? "true" : null });
  const edits = el("textarea", { id: "edits", rows: 6, spellcheck: "false", "aria-label": "edited arguments (JSON)" }, pretty(view.will_run || view.inputs));
  // A standing grant lets the requester repeat exactly this call without
  // asking; only a decision that completes a stage alone may give one.
  const grantable = view.stage && view.stage.quorum <= 1 && view.stage.approvals === 0;
  const grant = grantable
    ? el("select", { id: "grant", "aria-describedby": "grant-help" },
        el("option", { value: "" }, "only this request"),
        el("option", { value: "3600" }, "and identical requests for 1 hour"),
        el("option", { value: "86400" }, "and identical requests for 1 day"))
    : null;
  const error = el("p", { id: "decision-error", class: "error", role: "alert" });
  const body = () => {
    const b = {};
    if (reason.value.trim()) b.reason = reason.value.trim();
    if (view.digest) b.expected_digest = view.digest;
    return b;
  };
  const needReason = (verb) => {
    if (reason.value.trim()) return false;
    error.textContent = `Give a reason to ${verb}.`;
    reason.focus();
    return true;
  };
  const approve = () => {
    if (required && needReason("approve")) return;
    const b = body();
    if (grant && grant.value) {
      const hours = Number(grant.value) / 3600;
      const ok = confirm(`Approve, and let ${view.requester} run ${view.action} with exactly these arguments again for ${hours} hour${hours === 1 ? "" : "s"} without asking anyone? You can revoke it under Grants.`);
      if (!ok) return;
      b.grant = { window_seconds: Number(grant.value), same_arguments: true };
    }
    decide(id, "approve", b);
  };
  const box = el("div", { class: "decide" },
    el("p", { class: "effect", id: "effect" }, effect(view, display)),
    el("label", { for: "reason" }, required ? "Reason (required for this decision)" : "Reason (optional; recorded in the audit log)"),
    reason,
    grant
      ? el("div", { class: "grant" },
          el("label", { for: "grant" }, "Approve"), grant,
          el("p", { id: "grant-help", class: "muted small" }, `A standing grant lets ${view.requester} repeat exactly this request without asking anyone until it lapses; you will be asked to confirm, and it can be revoked under Grants.`))
      : null,
    el("div", { class: "buttons sticky" },
      el("button", { type: "button", id: "approve", class: "approve", onclick: approve }, "Approve"),
      el("button", { type: "button", id: "reject", class: "danger", onclick: () => !needReason("reject") && decide(id, "reject", body()) }, "Reject")),
    error,
    el("details", {},
      el("summary", {}, "Approve with changed arguments"),
      edits,
      el("button", { type: "button", id: "approve-edits", onclick: () => (!required || !needReason("approve")) && approveWithEdits(id, view.action, edits.value, body()) }, "Approve with these arguments")));
  if (focus && (focus === "reject" || required)) setTimeout(() => reason.focus(), 0);
  return box;
}

/** Opens request `id`; `focus` ("approve" or "reject") puts the cursor in
 * the reason box when the decision needs one. */
export async function showDetail(id, focus = null) {
  state.selected = id;
  const panel = openPanel();
  put(panel, el("p", { class: "state" }, "Loading…"));
  for (const row of document.querySelectorAll(".row")) row.classList.toggle("selected", row.dataset.id === id);
  let view;
  try {
    view = await api(`/govern/approvals/${id}`);
  } catch (e) {
    if (e.status === 404 || e.status === 409) return showExecution(id);
    put(panel, closeButton(), el("p", { class: "error" }, e.message));
    return;
  }
  if (state.selected !== id) return;
  const actions = await registeredActions();
  const display = view.display || actions.get(view.action)?.display;
  const args = view.will_run || view.inputs;
  const waiting = view.status === "awaiting_approval";
  const title = titleNodes(display, args);
  put(panel,
    el("div", { class: "sheet-head" },
      closeButton(),
      el("h2", { id: "detail-title" }, title || view.action),
      el("p", { class: "muted" }, title ? `${view.action} · ` : "", `asked by ${view.requester}${view.tenant ? ` (tenant ${view.tenant})` : ""}, ${local(view.requested_at)}`),
      el("p", {}, statusBadge(view.status), " ",
        waiting && view.stage ? el("span", { class: "expiry", dataset: { expires: view.stage.expires_at || "" } }, countdown(view.stage.expires_at)) : null)),
    waiting && view.stage
      ? el("section", { class: "why", id: "why" },
          el("h3", {}, "Why this needs you"),
          el("p", {}, "Rule ", el("strong", {}, view.stage.policy), ": ", triggerNodes(view.stage, display)),
          el("p", { class: "muted" }, `${needsText(view.stage)} · ${progressText(view.stage)}`))
      : null,
    el("h3", {}, view.edited ? ["What will run ", el("span", { class: "edited" }, "edited")] : "What is asked"),
    el("dl", { class: "args", id: "arguments" }, argumentRows(display, args).map(([label, node, name]) =>
      el("div", { dataset: { arg: name } }, el("dt", {}, label), el("dd", {}, node)))),
    changesTable(view),
    view.can_decide
      ? decisionBox(id, view, display, focus)
      : el("p", { class: "muted" }, waiting ? "You are not an approver of the waiting stage." : `This request is ${statusLabel(view.status).toLowerCase()}.`),
    el("h3", {}, "Approvals"),
    stagesList(view),
    el("details", { class: "raw" },
      el("summary", {}, "Raw arguments (JSON)"),
      el("pre", { class: "json", id: "will-run" }, pretty(args))),
    el("p", {}, el("a", { href: `#/executions/${id}` }, "Full timeline →")),
  );
  panel.scrollTop = 0;
  if (window.matchMedia("(max-width: 900px)").matches) panel.focus({ preventScroll: true });
}

async function approveWithEdits(id, action, text, body) {
  const error = $("decision-error");
  let edits;
  try {
    edits = JSON.parse(text);
  } catch (e) {
    error.textContent = `The edits are not JSON: ${e.message}`;
    return;
  }
  if (edits === null || typeof edits !== "object" || Array.isArray(edits)) {
    error.textContent = "The edits must be an object of arguments by name.";
    return;
  }
  const schema = (await registeredActions()).get(action)?.input_schema;
  const problems = schemaErrors(schema, edits);
  if (problems.length) {
    error.textContent = `The edits do not fit the action's schema: ${problems.join("; ")}`;
    return;
  }
  await decide(id, "approve", { ...body, edits });
}
