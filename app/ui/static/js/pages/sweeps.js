// Sweeps: the list (status, trials, best so far) and one sweep's page: its trials as a table, a
// scatter of the objective by trial, the best settings, the final job and the version it registered.
// A running sweep's page reloads every few seconds (a sweep has no live stream of its own).

import {api, query} from "../api.js";
import {LineChart} from "../chart.js";
import {el, fill, table, row, errorBox} from "../dom.js";
import {num, when} from "../format.js";
import {statusBadge} from "./jobs.js";

const STATUSES = ["", "running", "succeeded", "failed", "cancelled"];
const RELOAD_MS = 3000;

const settings = (params) => Object.entries(params || {})
  .map(([k, v]) => `${k}=${typeof v === "number" && !Number.isInteger(v) ? v.toPrecision(3) : JSON.stringify(v)}`)
  .join(", ");
const jobLink = (id) => (id ? el("a", {href: `#/jobs/${encodeURIComponent(id)}`}, id) : "—");

export async function sweepsPage(main, params, signal) {
  const status = params.get("status") || "";
  const page = await api(`v1/sweeps${query({status, limit: 50})}`, {signal});
  const select = el("select", {name: "status"}, STATUSES.map((s) => el("option", {value: s, selected: s === status}, s || "any status")));
  const filter = el("form", {class: "filters", onsubmit: (event) => {
    event.preventDefault();
    location.hash = `#/sweeps${query({status: select.value})}`;
  }}, select, el("button", {type: "submit"}, "Filter"));
  fill(main,
    el("div", {class: "page-head"}, el("h1", {}, "Sweeps")),
    filter,
    page.data.length
      ? table(["sweep", "status", "model", "objective", "trials", "best", "created"], page.data.map((s) => row([
        el("a", {href: `#/sweeps/${encodeURIComponent(s.id)}`}, s.id), statusBadge(s.status),
        el("a", {href: `#/models/${encodeURIComponent(s.model)}`}, s.model), s.objective,
        `${s.trials_created}/${s.n_trials}`, s.best ? num(s.best.value, 4) : "—", when(s.created_at),
      ], {"data-sweep": s.id})), {class: "sweeps"})
      : el("p", {class: "muted"}, "No sweeps match. Start one with POST /v1/sweeps or `cube sweep` (docs/sweeps.md)."));
}

export async function sweepPage(main, params, signal) {
  const path = `v1/sweeps/${encodeURIComponent(params.get("id"))}`;
  for (;;) {
    const [sweep, trials] = await Promise.all([api(path, {signal}), api(`${path}/trials`, {signal})]);
    renderSweep(main, sweep, trials.data, signal);
    if (sweep.status !== "running") return;
    await new Promise((done) => setTimeout(done, RELOAD_MS));
    if (signal.aborted) return;
  }
}

function renderSweep(main, sweep, trials, signal) {
  const chart = new LineChart(`${sweep.objective} by trial (validation)`, [{key: "value", name: sweep.objective}],
    {x: "trial", lines: false});
  for (const t of trials) if (typeof t.value === "number") chart.add(t.number, {value: t.value});
  const error = errorBox(null);
  const cancel = sweep.status === "running" && el("button", {type: "button", class: "danger", onclick: async () => {
    if (!confirm(`Cancel sweep ${sweep.id}? Its queued trials are cancelled, running ones stop after their epoch.`)) return;
    try {
      await api(`v1/sweeps/${encodeURIComponent(sweep.id)}/cancel`, {method: "POST", signal});
      location.reload();
    } catch (err) { error.textContent = err.message; }
  }}, "Cancel sweep");
  const item = (term, ...value) => [el("dt", {}, term), el("dd", {}, ...value)];
  const best = sweep.best;
  const bestNumber = best ? best.number : null;
  fill(main,
    el("p", {class: "crumbs"}, el("a", {href: "#/sweeps"}, "Sweeps"), " / ", sweep.id),
    el("div", {class: "page-head"}, el("h1", {}, `Sweep ${sweep.id}`), el("div", {class: "actions"}, cancel)),
    error,
    el("dl", {class: "summary", "data-status": sweep.status},
      item("Status", statusBadge(sweep.status), sweep.error ? ` ${sweep.error.code}: ${sweep.error.message}` : ""),
      item("Model", el("a", {href: `#/models/${encodeURIComponent(sweep.model)}`}, sweep.model),
        sweep.model_version_id ? ` (version ${sweep.model_version_id})` : ""),
      item("Trials", `${sweep.trials_created} of ${sweep.n_trials}, at most ${sweep.max_parallel} at once; pruner ${sweep.pruner.kind}`),
      item("Best so far", best ? `trial ${best.number}: ${num(best.value, 4)} (${settings(best.params)})` : "—"),
      item("Importance", sweep.importance ? settings(sweep.importance) : "—"),
      item("Final job", jobLink(sweep.final_job_id)),
      item("Created", when(sweep.created_at))),
    el("div", {class: "charts"}, chart.node),
    el("section", {}, el("h2", {}, "Trials"),
      trials.length
        ? table(["trial", "state", sweep.objective, "epochs", "settings", "job"], trials.map((t) => row([
          t.number === bestNumber ? `${t.number} ★` : t.number, t.state, num(t.value, 4), t.epochs, settings(t.params),
          jobLink(t.job_id),
        ], {"data-trial": t.number, class: t.number === bestNumber ? "best" : null})), {class: "trials"})
        : el("p", {class: "muted"}, "No trials yet.")));
}
