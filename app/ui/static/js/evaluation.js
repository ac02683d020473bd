// A version's held-out table: the trained model beside every baseline, 95% intervals when the
// report has them (several seeds), the best value of each score and the best method highlighted.

import {el, table, row} from "./dom.js";
import {num} from "./format.js";

// Higher is better for each of these; "spread" is a diagnostic, not a score, so it is not ranked.
export const SCORES = [["recall_at_1", "R@1"], ["recall_at_10", "R@10"], ["mrr", "MRR"],
  ["mean_cosine", "mean cos"], ["centered_cosine", "centred cos"]];
const COLUMNS = [...SCORES, ["output_spread", "spread"]];
const ORDER = ["cube", "linear", "mlp", "resmlp", "ridge", "procrustes", "identity", "mean"];
const RANKED_BY = "mrr";  // the method "best" overall: the promotion gate's default metric

const rank = (name) => (ORDER.includes(name) ? ORDER.indexOf(name) : ORDER.length);

export function bestBy(methods, key) {
  let best = null;
  for (const [name, scores] of Object.entries(methods)) {
    const v = scores[key];
    if (typeof v === "number" && (best === null || v > methods[best][key])) best = name;
  }
  return best;
}

function cell(evaluation, method, key, best) {
  const value = evaluation.methods[method][key];
  const ci = ((evaluation.intervals || {})[method] || {})[key];
  const text = Array.isArray(ci) ? [num(value), el("span", {class: "ci"}, ` [${num(ci[0])}, ${num(ci[1])}]`)] : num(value);
  return el("td", {class: best ? "best" : null, title: best ? "best on this score" : null}, text);
}

/** The table, or a note when the version has no held-out scores. */
export function evaluationTable(evaluation) {
  const methods = (evaluation && evaluation.methods) || {};
  const names = Object.keys(methods).sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  if (!names.length) return el("p", {class: "muted"}, "No held-out evaluation recorded.");
  const bestPerScore = Object.fromEntries(SCORES.map(([key]) => [key, bestBy(methods, key)]));
  const bestMethod = bestPerScore[RANKED_BY];
  const rows = names.map((name) => row([
    el("th", {scope: "row"}, name, name === evaluation.main ? " (trained)" : ""),
    ...COLUMNS.map(([key]) => cell(evaluation, name, key, bestPerScore[key] === name)),
  ], {class: name === bestMethod ? "best-method" : null, "data-method": name}));
  const test = evaluation.n && typeof evaluation.n === "object" ? evaluation.n.test : evaluation.n;
  const seeds = evaluation.seeds > 1 ? `mean and 95% interval over ${evaluation.seeds} seeds` : "one seed";
  return el("div", {class: "evaluation"},
    table(["method", ...COLUMNS.map(([, title]) => title)], rows, {class: "eval-table"}),
    el("p", {class: "muted"}, `Held-out pairs: ${test ?? "—"}; ${seeds}. Highlighted row: best ${RANKED_BY.toUpperCase()}.`));
}
