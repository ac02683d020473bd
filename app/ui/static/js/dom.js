// Building DOM nodes. Every value from the API goes in as a text node (never as HTML), so a dataset
// or model name can hold any characters without becoming markup.

/** el("a", {href: "#/x", class: "c"}, "text", child) -> the element. `on*` attributes become listeners. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace everything inside `node` with `children`. */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/** A table from a header row and rows of cells (strings, numbers or nodes). */
export function table(headers, rows, attrs = {}) {
  return el("div", {class: "scroll"},
    el("table", attrs,
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", {scope: "col"}, h)))),
      el("tbody", {}, rows)));
}

export function row(cells, attrs = {}) {
  const isCell = (c) => c instanceof Node && (c.tagName === "TD" || c.tagName === "TH");
  return el("tr", attrs, cells.map((c) => (isCell(c) ? c : el("td", {}, c))));
}

/** The shape every API error has, shown where the action was taken. */
export function errorBox(error) {
  return el("p", {class: "error", role: "alert"}, error ? error.message : "");
}
