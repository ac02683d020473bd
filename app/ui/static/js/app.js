// The dashboard's entry point: routes on the URL fragment (#/jobs, #/jobs/{id}, #/models/{name},
// #/models/{name}/versions/{n}, #/datasets, #/sweeps, #/sweeps/{id}), asks for the API key when the API answers 401, and
// stops the previous page's live stream when the page changes.

import {forgetKey, getKey, setKey, whenUnauthorized} from "./api.js";
import {el, fill} from "./dom.js";
import {datasetsPage} from "./pages/datasets.js";
import {jobPage} from "./pages/job.js";
import {jobsPage} from "./pages/jobs.js";
import {modelPage, modelsPage, versionPage} from "./pages/models.js";
import {sweepPage, sweepsPage} from "./pages/sweeps.js";

// [pattern, section for the nav, page]. A new section is one line here plus its page module and nav link.
const ROUTES = [
  [/^\/jobs\/([^/]+)$/, ["id"], "jobs", jobPage],
  [/^\/jobs$/, [], "jobs", jobsPage],
  [/^\/models\/([^/]+)\/versions\/(\d+)$/, ["name", "version"], "models", versionPage],
  [/^\/models\/([^/]+)$/, ["name"], "models", modelPage],
  [/^\/models$/, [], "models", modelsPage],
  [/^\/datasets$/, [], "datasets", datasetsPage],
  [/^\/sweeps\/([^/]+)$/, ["id"], "sweeps", sweepPage],
  [/^\/sweeps$/, [], "sweeps", sweepsPage],
];

const main = document.getElementById("main");
let current = null;  // the AbortController of the page on screen

function resolve(hash) {
  const [path, search] = (hash.replace(/^#/, "") || "/jobs").split("?");
  for (const [pattern, names, section, page] of ROUTES) {
    const match = pattern.exec(path);
    if (!match) continue;
    const params = new URLSearchParams(search || "");
    names.forEach((name, i) => params.set(name, decodeURIComponent(match[i + 1])));
    return {section, page, params};
  }
  return null;
}

async function render() {
  current?.abort();
  current = new AbortController();
  const {signal} = current;
  const route = resolve(location.hash);
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", route !== null && link.dataset.section === route.section);
  }
  document.getElementById("forget-key").hidden = !getKey();
  if (!route) {
    fill(main, el("h1", {}, "Not found"), el("p", {}, el("a", {href: "#/jobs"}, "Back to the jobs")));
    return;
  }
  try {
    await route.page(main, route.params, signal);
  } catch (err) {
    if (signal.aborted) return;
    fill(main, el("p", {class: "error", role: "alert"}, err.message));
  }
}

function askForKey() {
  const dialog = document.getElementById("key-dialog");
  if (!dialog.open) dialog.showModal();
  document.getElementById("key-error").textContent = getKey() ? "That key was refused (unknown or revoked)." : "";
}

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("key-input");
  setKey(input.value.trim());
  input.value = "";
  document.getElementById("key-dialog").close();
  render();
});

document.getElementById("forget-key").addEventListener("click", () => {
  forgetKey();
  current?.abort();
  fill(main);
  askForKey();
});

whenUnauthorized(askForKey);
window.addEventListener("hashchange", render);
render();
