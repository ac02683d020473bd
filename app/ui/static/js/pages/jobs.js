// The jobs list (filters, progress, ETA) and the form that starts a job.

import {api, query} from "../api.js";
import {el, fill, table, row, errorBox} from "../dom.js";
import {eta, percent, when} from "../format.js";

const STATUSES = ["", "validating_files", "queued", "running", "succeeded", "failed", "cancelled"];
const PAGE = 50;

export function statusBadge(status) {
  return el("span", {class: `status status-${status}`}, status);
}

export function progressBar(job) {
  const p = job.progress || {};
  return el("span", {class: "progress"},
    el("progress", {max: 1, value: p.fraction || 0}), ` ${p.epoch ?? 0}/${p.n_epochs ?? "?"} (${percent(p.fraction)})`);
}

function jobRow(job) {
  return row([
    el("a", {href: `#/jobs/${encodeURIComponent(job.id)}`}, job.id),
    statusBadge(job.status),
    el("a", {href: `#/models/${encodeURIComponent(job.model)}`}, job.model),
    job.dataset_id,
    progressBar(job),
    job.status === "running" || job.status === "queued" ? eta(job.estimated_finish) : "—",
    when(job.created_at),
  ], {"data-job": job.id});
}

export async function jobsPage(main, params) {
  const filters = {status: params.get("status") || "", model: params.get("model") || "", dataset_id: params.get("dataset_id") || ""};
  const body = el("div", {id: "jobs-table"}, el("p", {class: "muted"}, "Loading…"));
  fill(main,
    el("div", {class: "page-head"}, el("h1", {}, "Training jobs"), newJobToggle(main)),
    filterForm(filters),
    body);
  await loadPage(body, filters, null);
}

async function loadPage(body, filters, after) {
  const page = await api(`v1/training-jobs${query({...filters, limit: PAGE, after})}`);
  const rows = page.data.map(jobRow);
  if (!after) {
    fill(body, page.data.length
      ? table(["job", "status", "model", "dataset", "progress", "ETA", "created"], rows, {class: "jobs"})
      : el("p", {class: "muted"}, "No jobs match."));
  } else {
    body.querySelector("tbody").append(...rows);
  }
  body.querySelector(".more")?.remove();
  if (page.has_more) {
    const last = page.data[page.data.length - 1].id;
    body.append(el("button", {type: "button", class: "more", onclick: () => loadPage(body, filters, last)}, "More"));
  }
}

function filterForm(filters) {
  const status = el("select", {name: "status"}, STATUSES.map((s) => el("option", {value: s, selected: s === filters.status}, s || "any status")));
  const model = el("input", {name: "model", placeholder: "model", value: filters.model});
  const dataset = el("input", {name: "dataset_id", placeholder: "dataset id", value: filters.dataset_id});
  // Filters live in the URL's fragment so a filtered list can be bookmarked and reloaded.
  const apply = (event) => {
    event.preventDefault();
    location.hash = `#/jobs${query({status: status.value, model: model.value.trim(), dataset_id: dataset.value.trim()})}`;
  };
  return el("form", {class: "filters", onsubmit: apply}, status, model, dataset, el("button", {type: "submit"}, "Filter"));
}

function newJobToggle(main) {
  return el("button", {type: "button", onclick: async (event) => {
    event.target.disabled = true;
    main.querySelector(".page-head").after(await newJobForm());
  }}, "New job");
}

const DEFAULT_ARCHITECTURE = '{"kind": "cube"}';
const DEFAULT_HYPERPARAMETERS = '{"n_epochs": 20}';

/** Dataset, model name, and the architecture and hyperparameters as JSON (docs/api.md lists them). */
async function newJobForm() {
  const datasets = await api("v1/datasets?limit=100");
  // A job may start while its dataset is still being validated: it waits (status validating_files).
  const ready = datasets.data.filter((d) => d.status === "ready" || d.status === "validating");
  const dataset = el("select", {name: "dataset_id", required: true},
    ready.map((d) => el("option", {value: d.id}, `${d.name} (${d.id}, ${d.num_pairs} pairs)`)));
  const model = el("input", {name: "model", placeholder: "model name (default: the dataset's)"});
  const arch = el("textarea", {name: "architecture", rows: 3}, DEFAULT_ARCHITECTURE);
  const hyper = el("textarea", {name: "hyperparameters", rows: 3}, DEFAULT_HYPERPARAMETERS);
  const error = errorBox(null);
  const submit = async (event) => {
    event.preventDefault();
    error.textContent = "";
    let body;
    try {
      body = {dataset_id: dataset.value, architecture: JSON.parse(arch.value), hyperparameters: JSON.parse(hyper.value)};
    } catch (err) {
      error.textContent = `Not valid JSON: ${err.message}`;
      return;
    }
    if (model.value.trim()) body.model = model.value.trim();
    try {
      const job = await api("v1/training-jobs", {method: "POST", json: body});
      location.hash = `#/jobs/${encodeURIComponent(job.id)}`;
    } catch (err) {
      error.textContent = err.message;
    }
  };
  return el("form", {class: "card stacked", id: "new-job", onsubmit: submit},
    el("h2", {}, "New training job"),
    el("label", {}, "Dataset ", dataset),
    el("label", {}, "Model ", model),
    el("label", {}, "Architecture (JSON) ", arch),
    el("label", {}, "Hyperparameters (JSON) ", hyper),
    error,
    el("button", {type: "submit"}, "Start"));
}
