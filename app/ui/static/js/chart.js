// A small SVG line chart: per-epoch curves (or a scatter of points), redrawn whole on every new point (a few hundred points
// at most, so redrawing is cheaper to reason about than patching). No library, nothing to download.

const SVG = "http://www.w3.org/2000/svg";
const W = 560, H = 220, PAD = {left: 48, right: 12, top: 12, bottom: 28};
const COLORS = ["#2563eb", "#16a34a", "#d97706", "#db2777"];

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Round, readable tick labels: 3 significant digits. */
const label = (v) => (Math.abs(v) >= 1000 ? v.toExponential(1) : Number(v.toPrecision(3)).toString());

export class LineChart {
  /** series: [{key, name}] — the keys of the points this chart draws. `x` names the horizontal axis;
   *  `lines: false` draws the points alone (a scatter, e.g. one point per sweep trial). */
  constructor(title, series, {x = "epoch", lines = true} = {}) {
    this.x = x;
    this.lines = lines;
    this.series = series.map((s, i) => ({...s, color: COLORS[i % COLORS.length], points: new Map()}));
    this.node = document.createElement("figure");
    this.node.className = "chart";
    this.svg = svg("svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title});
    const caption = document.createElement("figcaption");
    caption.textContent = title;
    this.legend = document.createElement("span");
    this.legend.className = "legend";
    caption.append(" ", this.legend);
    this.node.append(caption, this.svg);
    this.draw();
  }

  /** Add (or replace) the point at `epoch` for every series key present in `values`. */
  add(epoch, values) {
    let changed = false;
    for (const s of this.series) {
      const v = values[s.key];
      if (typeof v === "number" && Number.isFinite(v)) { s.points.set(epoch, v); changed = true; }
    }
    if (changed) this.draw();
  }

  get pointCount() {
    return this.series.reduce((n, s) => n + s.points.size, 0);
  }

  draw() {
    const all = this.series.flatMap((s) => [...s.points].map(([x, y]) => ({x, y})));
    this.svg.replaceChildren();
    this.svg.dataset.points = String(all.length);
    this.legend.replaceChildren(...this.series.map((s) => {
      const item = document.createElement("span");
      item.style.color = s.color;
      item.textContent = `● ${s.name}`;
      return item;
    }));
    if (!all.length) {
      this.svg.append(svg("text", {x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty"}, "no points yet"));
      return;
    }
    const [x0, x1] = extent(all.map((p) => p.x), 1);
    const [y0, y1] = extent(all.map((p) => p.y), 1e-9);
    const sx = (x) => PAD.left + ((x - x0) / (x1 - x0)) * (W - PAD.left - PAD.right);
    const sy = (y) => H - PAD.bottom - ((y - y0) / (y1 - y0)) * (H - PAD.top - PAD.bottom);
    const xs = all.map((p) => p.x);
    this.axes(Math.min(...xs), Math.max(...xs), y0, y1, sx, sy);
    for (const s of this.series) {
      const pts = [...s.points].sort((a, b) => a[0] - b[0]);
      if (this.lines && pts.length > 1) {
        const d = pts.map(([x, y], i) => `${i ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join("");
        this.svg.append(svg("path", {d, fill: "none", stroke: s.color, "stroke-width": 2}));
      }
      for (const [x, y] of pts) {
        const dot = svg("circle", {cx: sx(x).toFixed(1), cy: sy(y).toFixed(1), r: 3, fill: s.color, class: "point"});
        dot.append(svg("title", {}, `${s.name}, ${this.x} ${x}: ${label(y)}`));
        this.svg.append(dot);
      }
    }
  }

  axes(x0, x1, y0, y1, sx, sy) {
    const base = H - PAD.bottom;
    this.svg.append(svg("line", {x1: PAD.left, y1: base, x2: W - PAD.right, y2: base, class: "axis"}));
    this.svg.append(svg("line", {x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: base, class: "axis"}));
    for (const y of [y0, (y0 + y1) / 2, y1]) {
      this.svg.append(svg("text", {x: PAD.left - 4, y: sy(y) + 4, "text-anchor": "end", class: "tick"}, label(y)));
    }
    // The first label starts at the axis and the last ends at the edge, so neither is cut off.
    this.svg.append(svg("text", {x: sx(x0), y: H - 8, "text-anchor": "start", class: "tick"}, `${this.x} ${x0}`));
    if (x1 !== x0) this.svg.append(svg("text", {x: sx(x1), y: H - 8, "text-anchor": "end", class: "tick"}, `${this.x} ${x1}`));
  }
}

/** [min, max] widened to at least `span` so a single point or a flat line still has a scale. */
function extent(values, span) {
  let lo = Math.min(...values), hi = Math.max(...values);
  if (hi - lo < span) { const mid = (lo + hi) / 2; lo = mid - span / 2; hi = mid + span / 2; }
  return [lo, hi];
}
