// Models: the list; a model's versions, aliases (moved with a confirmation) and version comparison;
// one version with its held-out table.

import {api, query} from "../api.js";
import {el, fill, table, row, errorBox} from "../dom.js";
import {evaluationTable, bestBy, SCORES} from "../evaluation.js";
import {num, when} from "../format.js";

const enc = encodeURIComponent;
const versionLink = (name, v) => el("a", {href: `#/models/${enc(name)}/versions/${v}`}, `v${v}`);

export async function modelsPage(main, params, signal) {
  const body = el("div", {}, el("p", {class: "muted"}, "Loading…"));
  fill(main, el("h1", {}, "Models"), body);
  const models = [];
  let after = null;
  do {  // every model, a page at a time (names sort, so the list is stable while paging)
    const page = await api(`v1/models${query({limit: 100, after})}`, {signal});
    models.push(...page.data);
    after = page.has_more ? page.data[page.data.length - 1].id : null;
  } while (after);
  fill(body, models.length ? table(["model", "latest", "aliases", "created"], models.map((m) => row([
    el("a", {href: `#/models/${enc(m.id)}`}, m.id),
    m.latest_version ? versionLink(m.id, m.latest_version) : "—",
    Object.entries(m.aliases).map(([a, v]) => `${a} → v${v}`).join(", ") || "—",
    when(m.created_at),
  ]))) : el("p", {class: "muted"}, "No models yet: a succeeded training job registers one."));
}

/** The main method's MRR and the best baseline's, from a version's held-out report. */
function headline(version) {
  const ev = version.evaluation || {};
  const methods = ev.methods || {};
  const baselines = Object.fromEntries(Object.entries(methods).filter(([name]) => name !== ev.main));
  const best = bestBy(baselines, "mrr");
  return [num((methods[ev.main] || {}).mrr), best ? `${best} ${num(baselines[best].mrr)}` : "—"];
}

export async function modelPage(main, params, signal) {
  const name = params.get("name");
  // The datasets (for the comparison form) load beside the model, not after it.
  const [model, datasets] = await Promise.all([api(`v1/models/${enc(name)}`, {signal}), api("v1/datasets?limit=100", {signal})]);
  const versions = [...(model.versions || [])].reverse();  // newest first
  const picks = new Map(versions.map((v) => [v.version, el("input", {type: "checkbox", value: v.version, "aria-label": `compare v${v.version}`})]));
  fill(main,
    el("p", {class: "crumbs"}, el("a", {href: "#/models"}, "Models"), " / ", name),
    el("h1", {}, model.id),
    model.description ? el("p", {}, model.description) : null,
    el("section", {}, el("h2", {}, "Aliases"), aliasEditor(model, versions, () => modelPage(main, params, signal))),
    el("section", {}, el("h2", {}, "Versions"),
      table(["compare", "version", "status", "arch", "main MRR", "best baseline MRR", "aliases", "created"],
        versions.map((v) => row([picks.get(v.version), versionLink(name, v.version), v.status, v.arch,
          ...headline(v), v.aliases.join(", ") || "—", when(v.created_at)], {"data-version": v.version})))),
    el("section", {}, el("h2", {}, "Compare versions"), compareForm(name, picks, datasets.data)));
}

/** Each alias with a version picker; moving one asks first (traffic that uses the alias follows it). */
function aliasEditor(model, versions, reload) {
  const options = (current) => versions.map((v) => el("option", {value: v.version, selected: v.version === current}, `v${v.version}`));
  const error = errorBox(null);
  const move = async (alias, target, from) => {
    error.textContent = "";
    const what = from ? `Move alias "${alias}" of ${model.id} from v${from} to v${target}?` : `Point new alias "${alias}" of ${model.id} at v${target}?`;
    if (!confirm(what)) return;
    try {
      await api(`v1/models/${enc(model.id)}/aliases/${enc(alias)}`, {method: "PUT", json: {version: Number(target)}});
      await reload();
    } catch (err) {
      error.textContent = err.message;
    }
  };
  const rows = Object.entries(model.aliases).map(([alias, version]) => {
    const pick = el("select", {"aria-label": `version for ${alias}`}, options(version));
    return row([alias, `v${version}`, el("span", {class: "inline"}, pick,
      el("button", {type: "button", onclick: () => move(alias, pick.value, version)}, "Move"))], {"data-alias": alias});
  });
  const newName = el("input", {placeholder: "new alias", name: "alias", required: true, maxlength: 100});
  const newPick = el("select", {"aria-label": "version for the new alias"}, options(versions[0]?.version));
  const add = el("form", {class: "inline", id: "new-alias", onsubmit: (e) => { e.preventDefault(); move(newName.value.trim(), newPick.value, null); }},
    newName, newPick, el("button", {type: "submit"}, "Set"));
  return el("div", {id: "aliases"},
    rows.length ? table(["alias", "points at", "move to"], rows) : el("p", {class: "muted"}, "No aliases."),
    versions.length ? add : null, error);
}

/** Versions side by side on one dataset (GET /v1/models/{name}/compare): the server says which lack an evaluation. */
function compareForm(name, picks, datasets) {
  const dataset = el("select", {name: "dataset_id"}, datasets.map((d) => el("option", {value: d.id}, `${d.name} (${d.id})`)));
  const out = el("div", {id: "comparison"});
  const error = errorBox(null);
  error.id = "compare-error";
  const submit = async (event) => {
    event.preventDefault();
    error.textContent = "";
    const chosen = [...picks.values()].filter((box) => box.checked).map((box) => box.value);
    if (chosen.length < 2) { error.textContent = "Tick at least two versions above."; return; }
    try {
      const result = await api(`v1/models/${enc(name)}/compare${query({versions: chosen.join(","), dataset_id: dataset.value})}`);
      fill(out, comparisonTable(result));
    } catch (err) {
      fill(out);
      error.textContent = err.message;
    }
  };
  return el("div", {},
    el("p", {class: "muted"}, "Versions are compared on a dataset each has a succeeded evaluation on (POST …/evaluations)."),
    el("form", {class: "inline", id: "compare", onsubmit: submit}, el("label", {}, "Dataset ", dataset), el("button", {type: "submit"}, "Compare")),
    error, out);
}

function comparisonTable(result) {
  const keys = SCORES.filter(([key]) => result.versions.some((v) => key in v.metrics));
  return el("div", {},
    el("p", {class: "muted"}, `${result.n} pairs of dataset ${result.dataset_id}.`),
    table(["version", "status", "arch", ...keys.map(([, t]) => t)], result.versions.map((v) => row([
      versionLink(result.model, v.version), v.status, v.arch,
      ...keys.map(([key]) => el("td", {class: result.best[key] === v.version ? "best" : null}, num(v.metrics[key]))),
    ]))));
}

export async function versionPage(main, params, signal) {
  const name = params.get("name"), number = Number(params.get("version"));
  const v = await api(`v1/models/${enc(name)}/versions/${number}`, {signal});
  const aliasName = el("input", {placeholder: "alias", name: "alias", required: true, maxlength: 100});
  const error = errorBox(null);
  const point = async (event) => {
    event.preventDefault();
    const alias = aliasName.value.trim();
    if (!confirm(`Point alias "${alias}" of ${name} at v${number}? Requests by that alias go to this version from now on.`)) return;
    try {
      await api(`v1/models/${enc(name)}/aliases/${enc(alias)}`, {method: "PUT", json: {version: number}});
      await versionPage(main, params, signal);
    } catch (err) {
      error.textContent = err.message;
    }
  };
  const item = (term, ...value) => [el("dt", {}, term), el("dd", {}, ...value)];
  fill(main,
    el("p", {class: "crumbs"}, el("a", {href: "#/models"}, "Models"), " / ",
      el("a", {href: `#/models/${enc(name)}`}, name), " / ", `v${number}`),
    el("h1", {}, `${name} v${number}`),
    el("dl", {class: "summary"},
      item("Status", el("span", {class: `status status-${v.status}`}, v.status)),
      item("Architecture", `${v.arch}, ${v.dim_in} → ${v.dim_out}, ${v.parameters.toLocaleString()} parameters`),
      item("Teacher", v.target_teacher ? `${v.teacher} → ${v.target_teacher} (translation)` : (v.teacher || "—")),
      item("Aliases", v.aliases.join(", ") || "—"),
      item("Trained by", el("a", {href: `#/jobs/${enc(v.source_job_id)}`}, v.source_job_id)),
      item("Created", when(v.created_at)),
      item("Promotion", (v.promotion && v.promotion.summary) || "—")),
    el("section", {}, el("h2", {}, "Held-out evaluation"), evaluationTable(v.evaluation)),
    el("section", {}, el("h2", {}, "Point an alias here"),
      el("form", {class: "inline", id: "point-alias", onsubmit: point}, aliasName, el("button", {type: "submit"}, "Point")), error));
}
