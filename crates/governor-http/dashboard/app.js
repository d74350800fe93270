// The governor approval console. Plain ES modules, no build step: every
// action goes through the authenticated HTTP API and data is only ever
// put into the page as text (never as HTML).

import { $ } from "./dom.js";
import { TOKEN_KEY, api, may, session } from "./api.js";
import { state } from "./state.js";
import { loadPending, refreshOne, renderPending, setUpPending, tickCountdowns } from "./pending.js";
import { closeDetail, showDetail } from "./detail.js";
import { loadAudit, loadExecutions, loadFlows, loadGrants, loadPauses, registeredActions, scheduleFlows, setUpViews, showExecution } from "./views.js";

const READ = "governor:read";

/** Which views a person may use: what their permissions let the API
 * answer. Everyone decides, sees their own and their decisions'
 * executions, and the grants they gave or hold. */
function allowedViews() {
  return {
    pending: true,
    executions: true,
    grants: true,
    flows: may(READ),
    pauses: may(READ) || may("governor:pause"),
    audit: may(READ),
  };
}

// ---- sign in --------------------------------------------------------------

async function signIn(token) {
  session.token = token;
  try {
    const me = await api("/govern/me");
    // Empty lists are left out of the principal's JSON.
    session.me = { ...me, roles: me.roles || [], permissions: me.permissions || [] };
  } catch (e) {
    session.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    throw e;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  document.body.classList.add("signed-in");
  $("sign-in").hidden = true;
  $("nav").hidden = false;
  $("sign-out").hidden = false;
  const allowed = allowedViews();
  for (const a of document.querySelectorAll("nav a")) a.hidden = !allowed[a.dataset.view];
  $("who").textContent = `${session.me.id}${session.me.roles.length ? ` (${session.me.roles.join(", ")})` : ""}`;
  await registeredActions();
  connect();
  route();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  session.token = null;
  session.me = null;
  state.actions = null;
  if (state.socket) state.socket.close();
  state.socket = null;
  state.pending.clear();
  document.body.classList.remove("signed-in");
  for (const id of ["nav", "sign-out", "view-pending", "view-executions", "view-flows", "view-grants", "view-pauses", "view-audit", "detail", "live", "notice"]) $(id).hidden = true;
  $("who").textContent = "";
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message || "";
}
session.ended = signOut;

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

/** The event stream needs the read permission: others poll (the page
 * never opens a socket the server would refuse). */
function connect() {
  if (!may(READ)) return poll();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const url = `${scheme}://${location.host}/govern/events?types=${LIVE_TYPES.join(",")}`;
  let socket;
  try {
    // Browsers cannot set headers on a WebSocket: the token travels as a
    // subprotocol (a header), never in the URL.
    socket = new WebSocket(url, ["governor", `bearer.${session.token}`]);
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
    if (state.socket === socket && session.me) {
      state.socket = null;
      setTimeout(() => session.me && connect(), 2000);
    }
  };
}

function poll() {
  if (!session.me || state.socket) return;
  if (state.view === "pending") loadPending(true);
  setTimeout(poll, 3000);
}

async function onEvent(e) {
  if (state.view === "flows" && e.type.startsWith("approval.")) scheduleFlows();
  if (e.type === "stream.lagged") return loadPending(true);
  const id = e.execution_id;
  if (e.type.startsWith("approval.")) {
    await refreshOne(id);
  } else {
    state.pending.delete(id);
    renderPending();
  }
  // Re-render what is open, with the view's own renderer: an execution's
  // timeline stays a timeline when its request's events arrive late.
  if (state.selected === id && !document.activeElement?.closest?.(".decide")) (state.view === "pending" ? showDetail : showExecution)(id);
}

// ---- navigation ----------------------------------------------------------

const VIEWS = ["pending", "executions", "flows", "grants", "pauses", "audit"];

function route() {
  if (!session.me) return;
  const [, view, id] = location.hash.split("/");
  const allowed = allowedViews();
  state.view = VIEWS.includes(view) && allowed[view] ? view : "pending";
  for (const v of VIEWS) $(`view-${v}`).hidden = state.view !== v;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.view === state.view);
  const load = { pending: () => loadPending(true), executions: () => loadExecutions(true), flows: loadFlows, grants: loadGrants, pauses: loadPauses, audit: () => loadAudit(true) };
  load[state.view]();
  if (id) (state.view === "pending" ? showDetail : showExecution)(decodeURIComponent(id));
  else closeDetail();
}

function onKey(e) {
  if (!session.me || ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName)) {
    if (e.key === "Escape") document.activeElement.blur();
    return;
  }
  const rows = [...document.querySelectorAll(`#${state.view === "pending" ? "pending-list" : "exec-list"} .row:not(.gone)`)];
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
  setUpPending();
  setUpViews();
  window.addEventListener("hashchange", route);
  document.addEventListener("keydown", onKey);
  setInterval(tickCountdowns, 1000);
  if (session.token) signIn(session.token).catch(() => signOut("Sign in again."));
  else signOut();
}



start();
