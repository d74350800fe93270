// What the page holds between renders.

export const state = {
  view: "pending",
  pending: new Map(), // execution id -> approval view
  pendingCursor: null,
  /** The ids in the order the list shows them: kept while the pointer or
   * focus is on the list, so rows never move under a click. */
  shown: [],
  held: false,
  selected: null, // execution id shown in the detail
  checked: new Set(), // ids ticked for a batch decision
  execCursor: null,
  auditAfter: 0,
  socket: null,
  flowsTimer: null,
  actions: null, // name -> registered action (policies, stages, input schema, display)
  loads: 0, // the latest queue load; older answers are dropped
  arrived: new Map(), // id -> view (or null: gone) heard live while a load was in flight
};
