// Building the page: data only ever goes in as text, never as HTML.

export const $ = (id) => document.getElementById(id);

/** Builds an element; string children become text nodes, never HTML. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/** Replaces `node`'s children, skipping empty ones and flattening lists. */
export function put(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

/** A label and its value, on one line. */
export function field(label, ...value) {
  return el("div", { class: "field" }, el("span", { class: "label" }, label), el("span", { class: "value" }, ...value));
}

/** JSON, indented, for the "raw" views. */
export function pretty(value) {
  try {
    return JSON.stringify(typeof value === "string" ? JSON.parse(value) : value, null, 2);
  } catch {
    return String(value);
  }
}

/** A notice that stays until it is dismissed or replaced (a refresh does
 * not wipe it). */
export function notify(text, kind = "error") {
  const box = $("notice");
  if (!text) {
    box.hidden = true;
    return;
  }
  put(box, el("span", { class: kind }, text), el("button", { type: "button", class: "close", "aria-label": "dismiss", onclick: () => (box.hidden = true) }, "×"));
  box.hidden = false;
}
