// Words and numbers as an approver reads them: titles from the action's
// display, amounts in the viewer's locale, masked values, human labels
// for statuses, stages, conditions and timeline entries.

import { el } from "./dom.js";

export const REDACTED = "***REDACTED***";

const STATUS = {
  pending: "Pending",
  running: "Running",
  awaiting_approval: "Waiting for approval",
  approved: "Approved, not yet run",
  rejected: "Rejected",
  expired: "Expired",
  completed: "Completed",
  failed: "Failed",
  denied: "Denied by policy",
  cancelled: "Cancelled",
};

export const statusLabel = (s) => STATUS[s] || String(s).replaceAll("_", " ");

/** A status badge: the human label, the raw name as its class and title. */
export const statusBadge = (s, id) => el("span", { class: `status ${s}`, title: s, id, dataset: { status: s } }, statusLabel(s));

// ---- time ---------------------------------------------------------------

export const local = (t) => (t ? new Date(t).toLocaleString() : "—");

export function ago(t) {
  const s = Math.max(0, Math.round((Date.now() - new Date(t).getTime()) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

export function countdown(t) {
  if (!t) return "never expires";
  const s = Math.round((new Date(t).getTime() - Date.now()) / 1000);
  if (s <= 0) return "expired";
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (h >= 24) return `expires in ${Math.floor(h / 24)}d ${h % 24}h`;
  return h > 0 ? `expires in ${h}h ${m}m` : `expires in ${m}m ${sec}s`;
}

// ---- values -----------------------------------------------------------

/** A redacted or masked value as shown: `•••• 3000` keeps what the
 * policy lets an approver check; null when `v` is not hidden. */
export function hidden(v) {
  if (typeof v !== "string" || !v.startsWith(REDACTED)) return null;
  const kept = v.slice(REDACTED.length);
  return kept ? { text: `•••• ${kept}`, masked: true } : { text: "hidden", masked: false };
}

const number = (n, options) => {
  try {
    return new Intl.NumberFormat(undefined, options).format(n);
  } catch {
    return new Intl.NumberFormat().format(n);
  }
};

/** One value as text, with its field's currency or unit. */
export function valueText(v, spec = {}) {
  const h = hidden(v);
  if (h) return h.text;
  if (typeof v === "number") {
    if (spec.currency) return number(v, { style: "currency", currency: spec.currency });
    const n = number(v, { maximumFractionDigits: 6 });
    return spec.unit ? `${n} ${spec.unit}` : n;
  }
  if (v === null || v === undefined) return "—";
  if (typeof v === "string") return v;
  if (typeof v === "boolean") return v ? "yes" : "no";
  return JSON.stringify(v);
}

/** A value as an element: masked ones say so. */
export function valueNode(v, spec = {}) {
  const h = hidden(v);
  if (h) return el("span", { class: "masked", title: h.masked ? "masked: only this part is shown" : "sensitive: hidden" }, h.text);
  return el("span", { class: typeof v === "number" ? "num" : "" }, valueText(v, spec));
}

export const lookup = (args, path) =>
  path.split(".").reduce((v, k) => (v !== null && typeof v === "object" ? v[k] : undefined), args);

// ---- titles and argument lists -------------------------------------------

/** The parts of a title template: text, and {name, format} placeholders. */
function parseTitle(title) {
  const parts = [];
  let text = "";
  for (let i = 0; i < title.length; i++) {
    const c = title[i];
    if ((c === "{" || c === "}") && title[i + 1] === c) {
      text += c;
      i++;
    } else if (c === "{") {
      const end = title.indexOf("}", i);
      if (end < 0) return null;
      if (text) parts.push(text);
      text = "";
      const [name, format] = title.slice(i + 1, end).split(":").map((s) => s.trim());
      parts.push({ name, format });
      i = end;
    } else {
      text += c;
    }
  }
  if (text) parts.push(text);
  return parts;
}

function specOf(display, name, format) {
  const declared = (display.fields || []).find((f) => f.name === name) || {};
  const m = /^(currency|unit)\((.+)\)$/.exec(format || "");
  if (m && m[1] === "currency") return { ...declared, currency: m[2].toUpperCase(), unit: undefined };
  if (m && m[1] === "unit") return { ...declared, unit: m[2], currency: undefined };
  return declared;
}

/** The title as elements (values in bold), or null without a display. */
export function titleNodes(display, args) {
  if (!display || !display.title) return null;
  const parts = parseTitle(display.title);
  if (!parts) return null;
  return parts.map((p) => (typeof p === "string" ? p : el("strong", {}, valueNode(lookup(args, p.name), specOf(display, p.name, p.format)))));
}

/** Every argument as [label, value node]: the declared ones first. */
export function argumentRows(display, args) {
  const rows = [];
  const seen = new Set();
  for (const f of (display && display.fields) || []) {
    const v = lookup(args || {}, f.name);
    if (v === undefined) continue;
    seen.add(f.name.split(".")[0]);
    rows.push([f.label || f.name, valueNode(v, f), f.name]);
  }
  for (const [k, v] of Object.entries(args || {})) {
    if (!seen.has(k)) rows.push([k, valueNode(v), k]);
  }
  return rows;
}

/** A short line for a row: the title, else `name: value · ...`. */
export function summaryNodes(display, args) {
  const title = titleNodes(display, args);
  if (title) return title;
  return argumentRows(display, args).flatMap(([label, node], i) => [i ? " · " : "", el("span", { class: "muted" }, `${label} `), node]);
}

// ---- why a request asks -----------------------------------------------------

const OPERATORS = [
  [">=", "≥"],
  ["<=", "≤"],
  ["!=", "≠"],
  ["==", "="],
  ["&&", "and"],
  ["||", "or"],
];

/** A CEL condition in plain words: `input.amount >= 10000` reads
 * `amount ≥ 10,000`. */
export function conditionText(source) {
  let text = source.replace(/\binput\./g, "");
  for (const [op, word] of OPERATORS) text = text.split(op).join(word);
  return text.replace(/\b\d{4,}(\.\d+)?\b/g, (n) => number(Number(n)));
}

/** Why the waiting stage asks, as a sentence of elements. */
export function triggerNodes(stage, display) {
  const t = stage && stage.trigger;
  if (!t) return [`Every ${stage && stage.policy ? "call of this action" : "call"} needs this approval.`];
  const values = Object.entries(t.values || {}).map(([k, v], i) => {
    const spec = ((display && display.fields) || []).find((f) => f.name === k) || {};
    return [i ? ", " : "", `${k} is `, el("strong", {}, valueNode(v, spec))];
  });
  const rule = el("code", { class: "condition", title: t.condition }, conditionText(t.condition));
  return t.unless
    ? ["It is approved without asking only when ", rule, "; here ", values, "."]
    : ["It asks when ", rule, "; here ", values, "."];
}

/** Who a stage needs: "needs 1 of: cfo@company.com". */
export function needsText(stage) {
  const who = stage.approvers.map((a) => (a.startsWith("role:") ? `anyone with role ${a.slice(5)}` : a)).join(", ");
  return `needs ${stage.quorum} of: ${who}`;
}

/** A stage's progress: "stage 1 of 2 · 0 of 1 approved". */
export function progressText(stage) {
  const where = stage.of > 1 ? `stage ${stage.index + 1} of ${stage.of} · ` : "";
  return `${where}${stage.approvals} of ${stage.quorum} approved`;
}

// ---- timeline -----------------------------------------------------------

const EVENTS = {
  "execution.started": "Call started",
  "execution.completed": "Completed",
  "execution.failed": "Failed",
  "execution.cancelled": "Cancelled",
  "execution.denied": "Denied by policy",
  "execution.resumed": "Resumed after approval",
  "policy.evaluated": "Policy checked",
  "policy.violated": "Policy refused it",
  "approval.requested": "Approval requested",
  "approval.granted": "Approved",
  "approval.rejected": "Rejected",
  "approval.timeout": "Approval expired",
  "approval.escalated": "Escalated",
  "grant.created": "Standing grant given",
  "grant.revoked": "Standing grant revoked",
};

/** A timeline entry in words. */
export function eventText(type, data) {
  const base = EVENTS[type] || type;
  const d = data || {};
  if (type === "policy.evaluated" && d.policy) return `${base}: ${d.policy} → ${d.outcome || d.decision || "done"}`;
  if ((type === "approval.granted" || type === "approval.rejected") && d.approver) return `${base} by ${d.approver}${d.reason ? `: ${d.reason}` : ""}`;
  const first = d.stages && d.stages[0] && d.stages[0].spec;
  if (type === "approval.requested" && first) return `${base} from ${first.approvers.join(", ")}`;
  if (type.startsWith("snapshot:")) return `State saved at ${type.slice(9).trim()}`;
  return base;
}
