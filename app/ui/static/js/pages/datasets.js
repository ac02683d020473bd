// Datasets: the list (sizes, status) and the upload form. The server validates the file; its error
// is shown beside the form, on the field it names.

import {api, query} from "../api.js";
import {el, fill, table, row, errorBox} from "../dom.js";
import {bytes, when} from "../format.js";

const PAGE = 50;

function datasetRow(d) {
  return row([
    d.name, d.id, d.kind, String(d.num_pairs), d.dim_in ? `${d.dim_in} → ${d.dim_out}` : "—", bytes(d.bytes),
    el("span", {class: `status status-${d.status}`}, d.status), d.error || "", when(d.created_at),
    el("a", {href: `#/jobs${query({dataset_id: d.id})}`}, "jobs"),
  ], {"data-dataset": d.id});
}

export async function datasetsPage(main, params, signal) {
  const body = el("div", {id: "datasets-table"}, el("p", {class: "muted"}, "Loading…"));
  fill(main, el("h1", {}, "Datasets"), uploadForm(() => datasetsPage(main, params, signal)), body);
  await loadPage(body, null, signal);
}

async function loadPage(body, after, signal) {
  const page = await api(`v1/datasets${query({limit: PAGE, after})}`, {signal});
  const rows = page.data.map(datasetRow);
  if (!after) {
    fill(body, page.data.length
      ? table(["name", "id", "kind", "pairs", "dims", "size", "status", "error", "created", ""], rows)
      : el("p", {class: "muted"}, "No datasets yet."));
  } else {
    body.querySelector("tbody").append(...rows);
  }
  body.querySelector(".more")?.remove();
  if (page.has_more) {
    const last = page.data[page.data.length - 1].id;
    body.append(el("button", {type: "button", class: "more", onclick: () => loadPage(body, last, signal)}, "More"));
  }
}

function uploadForm(reload) {
  const fields = {
    file: el("input", {type: "file", name: "file", required: true, accept: ".npz,.parquet,.jsonl,.csv"}),
    kind: el("select", {name: "kind"}, el("option", {value: "embedding_pairs"}, "embedding pairs (.npz, .parquet)"),
      el("option", {value: "text_pairs"}, "text pairs (.jsonl, .csv)")),
    name: el("input", {name: "name", placeholder: "name (default: the file's)", maxlength: 200}),
    teacher: el("input", {name: "teacher", placeholder: "teacher (text pairs only)"}),
    target_teacher: el("input", {name: "target_teacher", placeholder: "target teacher (texts for translation)"}),
  };
  const error = errorBox(null);
  error.id = "upload-error";
  const button = el("button", {type: "submit"}, "Upload");
  const submit = async (event) => {
    event.preventDefault();
    error.textContent = "";
    for (const input of Object.values(fields)) input.removeAttribute("aria-invalid");
    const form = new FormData();
    form.set("file", fields.file.files[0]);
    form.set("kind", fields.kind.value);
    for (const key of ["name", "teacher", "target_teacher"]) if (fields[key].value.trim()) form.set(key, fields[key].value.trim());
    button.disabled = true;
    try {
      await api("v1/datasets", {method: "POST", form});
      await reload();
    } catch (err) {
      error.textContent = err.message;
      fields[err.param]?.setAttribute("aria-invalid", "true");  // the server names the field it refused
    } finally {
      button.disabled = false;
    }
  };
  return el("form", {class: "card stacked", id: "upload", onsubmit: submit},
    el("h2", {}, "Upload a dataset"),
    el("label", {}, "File ", fields.file), el("label", {}, "Kind ", fields.kind),
    el("label", {}, "Name ", fields.name), el("label", {}, "Teacher ", fields.teacher),
    el("label", {}, "Target teacher ", fields.target_teacher),
    error, button);
}
