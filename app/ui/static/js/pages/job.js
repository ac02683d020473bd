// One job: status, progress, live curves, its events, checkpoints, cancel, and the held-out table
// once it has registered a version. Live updates come from the job's SSE stream.

import {api} from "../api.js";
import {LineChart} from "../chart.js";
import {el, fill, table, row, errorBox} from "../dom.js";
import {evaluationTable} from "../evaluation.js";
import {eta, num, when} from "../format.js";
import {follow} from "../sse.js";
import {progressBar, statusBadge} from "./jobs.js";

const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const MAX_EVENTS_SHOWN = 200;
const REFRESH_MS = 300;  // many events arrive in a burst: one job reload after the burst, not one each

export async function jobPage(main, params, signal) {
  const id = params.get("id");
  const path = `v1/training-jobs/${encodeURIComponent(id)}`;
  // Independent reads in parallel: the page is on screen after the slowest, not after their sum.
  const [job, history, checkpoints] = await Promise.all([
    api(path, {signal}), api(`${path}/metrics`, {signal}), api(`${path}/checkpoints`, {signal})]);
  const view = new JobView(main, job);
  view.addHistory(history.data);
  view.fillCheckpoints(checkpoints.data);
  // Not awaited: the stream runs until the job ends or the page is left (signal aborts it), while
  // the version's table loads beside it.
  follow(`${path}/events?stream=true`, (msg) => view.onEvent(msg, signal), signal)
    .then(() => view.refresh(signal, true))
    .catch((err) => { if (!signal.aborted) view.streamError(err); });
  await view.showVersionIfAny(signal);
}

class JobView {
  constructor(main, job) {
    this.job = job;
    this.loss = new LineChart("Training loss", [{key: "train_loss", name: "train loss"}]);
    this.val = new LineChart("Validation", [{key: "val_recall_at_10", name: "val R@10"}, {key: "val_mrr", name: "val MRR"}]);
    this.summary = el("dl", {class: "summary"});
    this.actions = el("div", {class: "actions"});
    this.events = el("ol", {class: "events", id: "events"});
    this.checkpoints = el("div", {id: "checkpoints"});
    this.version = el("div", {id: "version"});
    this.error = errorBox(null);
    fill(main,
      el("p", {class: "crumbs"}, el("a", {href: "#/jobs"}, "Jobs"), " / ", job.id),
      el("div", {class: "page-head"}, el("h1", {}, `Job ${job.id}`), this.actions),
      this.error, this.summary,
      el("div", {class: "charts"}, this.loss.node, this.val.node),
      el("section", {}, el("h2", {}, "Held-out evaluation"), this.version),
      el("section", {}, el("h2", {}, "Checkpoints"), this.checkpoints),
      el("section", {}, el("h2", {}, "Events"), this.events));
    this.render();
  }

  render() {
    const j = this.job;
    const item = (term, ...value) => [el("dt", {}, term), el("dd", {}, ...value)];
    fill(this.summary,
      item("Status", statusBadge(j.status), j.error ? ` ${j.error.code}: ${j.error.message}` : ""),
      item("Model", el("a", {href: `#/models/${encodeURIComponent(j.model)}`}, j.model)),
      item("Dataset", j.dataset_id),
      item("Architecture", j.architecture.kind || "—"),
      item("Progress", progressBar(j)),
      item("ETA", TERMINAL.has(j.status) ? "—" : eta(j.estimated_finish)),
      item("Attempt", String(j.attempt)),
      item("Created", when(j.created_at)),
      item("Finished", when(j.finished_at)));
    this.summary.dataset.status = j.status;
    fill(this.actions, TERMINAL.has(j.status) || j.cancel_requested_at ? null
      : el("button", {type: "button", class: "danger", id: "cancel", onclick: () => this.cancel()}, "Cancel job"));
  }

  addHistory(points) {
    // /metrics is one row per key per epoch; gather each epoch's keys into one point per chart.
    const byEpoch = new Map();
    for (const m of points) byEpoch.set(m.epoch, {...(byEpoch.get(m.epoch) || {}), [m.key]: m.value});
    for (const [epoch, values] of byEpoch) this.addPoint(epoch, values);
  }

  addPoint(epoch, values) {
    this.loss.add(epoch, values);
    this.val.add(epoch, values);
  }

  onEvent(msg, signal) {
    const e = msg.data;
    if (msg.event === "metrics" && e.data) this.addPoint(e.data.epoch, e.data);
    this.events.prepend(el("li", {class: `level-${e.level}`}, el("time", {}, when(e.created_at)), " ", e.message));
    while (this.events.children.length > MAX_EVENTS_SHOWN) this.events.lastChild.remove();
    clearTimeout(this.pending);
    this.pending = setTimeout(() => this.refresh(signal, false).catch((err) => {
      if (!signal.aborted) this.error.textContent = err.message;
    }), REFRESH_MS);
  }

  /** Reload the job (status, progress); once it has ended, its checkpoints and version too. */
  async refresh(signal, ended) {
    if (signal.aborted) return;
    this.job = await api(`v1/training-jobs/${encodeURIComponent(this.job.id)}`, {signal});
    this.render();
    if (ended || TERMINAL.has(this.job.status)) {
      await this.showCheckpoints(signal);
      await this.showVersionIfAny(signal);
    }
  }

  async showCheckpoints(signal) {
    const list = await api(`v1/training-jobs/${encodeURIComponent(this.job.id)}/checkpoints`, {signal});
    this.fillCheckpoints(list.data);
  }

  fillCheckpoints(checkpoints) {
    fill(this.checkpoints, checkpoints.length
      ? table(["epoch", "step", "val MRR", "saved"], checkpoints.map((c) => row([
        String(c.epoch), String(c.step), num((c.metrics || {}).val_mrr), when(c.created_at)])))
      : el("p", {class: "muted"}, "None kept yet."));
  }

  async showVersionIfAny(signal) {
    if (!this.job.model_version_id) {
      fill(this.version, el("p", {class: "muted"}, TERMINAL.has(this.job.status)
        ? "This job registered no version." : "Shown when the job has registered its version."));
      return;
    }
    const model = await api(`v1/models/${encodeURIComponent(this.job.model)}`, {signal});
    const version = (model.versions || []).find((v) => v.id === this.job.model_version_id);
    if (!version) return;
    fill(this.version,
      el("p", {}, el("a", {href: `#/models/${encodeURIComponent(version.model)}/versions/${version.version}`},
        `${version.model} version ${version.version}`), ` (${version.status})`),
      evaluationTable(version.evaluation));
  }

  async cancel() {
    if (!confirm(`Cancel job ${this.job.id}? A running job stops after its current epoch.`)) return;
    try {
      this.job = await api(`v1/training-jobs/${encodeURIComponent(this.job.id)}/cancel`, {method: "POST"});
      this.render();
    } catch (err) {
      this.error.textContent = err.message;
    }
  }

  streamError(err) {
    this.error.textContent = `Live updates stopped: ${err.message}`;
  }
}
