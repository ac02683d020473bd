"""The dashboard in headless Chromium against a real service: the API over HTTP (uvicorn), a real
Celery worker, PostgreSQL and Redis, auth on. Upload through the form (a bad file's server error shown
in place), start a job, watch its curves gain points without a reload, see the held-out table when it
ends, move an alias with its confirmation. CUBE_UI_SCREENSHOTS=docs/images also saves the screenshots
docs/dashboard.md shows."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import httpx
import pytest

from cube.synthetic import nonlinear_pairs
from tests.e2e.test_service_e2e import SLOWER_CUBE, Service, wait_for
from tests.live_server import serve
from tests.ui.browser import browser, missing_reason

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(missing_reason() is not None, reason=str(missing_reason()))]
# A name that is markup: it must show as text, never become an element.
DATASET_NAME = "<b>ui</b> pairs"
WAIT_S = 120
WAIT_MS = WAIT_S * 1000


@pytest.fixture
def live(pg_database_url, redis_available, tmp_path):
    from app.main import create_app
    from tests.conftest import _truncate

    _truncate(pg_database_url)
    svc = Service(pg_database_url, redis_available, tmp_path / "data")
    try:
        svc.start_worker()
        with serve(create_app(svc.settings)) as base:
            yield svc, base
    finally:
        svc.close()


@pytest.fixture
def page():
    with browser() as b:
        context = b.new_context(viewport={"width": 1280, "height": 900})
        yield context.new_page()
        context.close()


def pairs_npz() -> bytes:
    from cube.pairs import save_pairs_npz

    buf = io.BytesIO()
    save_pairs_npz(buf, nonlinear_pairs(n=400, d_in=16, d_out=16))
    return buf.getvalue()


def screenshot(page, name: str) -> None:
    folder = os.environ.get("CUBE_UI_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def points(page) -> int:
    return int(page.get_attribute(".chart svg", "data-points"))


def test_dashboard_upload_train_watch_and_move_an_alias(live, page):
    svc, base = live
    key = svc.client.headers["Authorization"].removeprefix("Bearer ")
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    dialogs: list[str] = []

    def accept(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    # The page's CSP forbids eval, so waits are polled from here (page.wait_for_function would eval).

    # The key is asked for once (the API answered 401) and kept in this tab's session storage.
    page.goto(f"{base}/ui#/datasets")
    page.wait_for_selector("#key-dialog[open]")
    assert key not in page.content()
    page.fill("#key-input", key)
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#upload")
    assert page.evaluate("sessionStorage.getItem('cube.apiKey')") == key

    # A file the server refuses: its own message, in place, on the form.
    bad = {"name": "bad.npz", "mimeType": "application/octet-stream", "buffer": b"this is not an npz file"}
    page.set_input_files("#upload input[type=file]", bad)
    page.click("#upload button[type=submit]")
    page.wait_for_selector("#upload-error:not(:empty)")
    refused = api.post("/v1/datasets", files={"file": ("bad.npz", bad["buffer"])}, data={"kind": "embedding_pairs"})
    assert refused.status_code in (400, 422)
    assert page.text_content("#upload-error") == refused.json()["error"]["message"]
    assert api.get("/v1/datasets").json()["data"] == []

    # A good one, named with markup that must stay text.
    page.set_input_files("#upload input[type=file]", {"name": "pairs.npz", "mimeType": "application/octet-stream",
                                                      "buffer": pairs_npz()})
    page.fill("#upload input[name=name]", DATASET_NAME)
    page.click("#upload button[type=submit]")
    page.wait_for_selector("#datasets-table tr[data-dataset]")
    assert page.text_content("#datasets-table tbody td") == DATASET_NAME
    assert page.query_selector("#datasets-table tbody b") is None
    assert page.text_content("#upload-error") == ""

    # Start a job through the form; the page moves to the job and its curves fill in live.
    page.goto(f"{base}/ui#/jobs")
    page.click("text=New job")
    page.wait_for_selector("#new-job select[name=dataset_id] option", state="attached")
    page.fill("#new-job input[name=model]", "ui")
    page.fill("#new-job textarea[name=architecture]", json.dumps(SLOWER_CUBE))
    page.fill("#new-job textarea[name=hyperparameters]",
              json.dumps({"n_epochs": 30, "early_stopping_patience": 0, "tuning_budget": 1}))
    page.click("#new-job button[type=submit]")
    page.wait_for_selector(".chart svg")
    job_id = page.url.rsplit("/", 1)[-1]
    assert job_id.startswith("job")
    page.evaluate("window.notReloaded = true")  # gone if the page reloads
    first = wait_for(lambda: points(page), WAIT_S, "the first point on the loss curve", interval=0.05)
    wait_for(lambda: points(page) > first, WAIT_S, "the loss curve to gain a point", interval=0.05)
    assert page.evaluate("window.notReloaded") is True

    # When it ends: status, every epoch on the curves, the held-out table with the best method marked.
    page.wait_for_selector(".summary[data-status=succeeded]", timeout=WAIT_MS)
    page.wait_for_selector("#version .eval-table tr[data-method=cube]", timeout=WAIT_MS)
    assert page.evaluate("window.notReloaded") is True
    job = api.get(f"/v1/training-jobs/{job_id}").json()
    assert points(page) == job["progress"]["epoch"] > first
    methods = [m.get_attribute("data-method") for m in page.query_selector_all("#version .eval-table tbody tr")]
    version = api.get("/v1/models/ui/versions/1").json()
    assert set(methods) == set(version["evaluation"]["methods"]) and len(methods) >= 4
    best = max(version["evaluation"]["methods"], key=lambda m: version["evaluation"]["methods"][m]["mrr"])
    assert page.get_attribute("#version tr.best-method", "data-method") == best
    # Every event of the job arrived through the stream, newest first.
    events = api.get(f"/v1/training-jobs/{job_id}/events", params={"limit": 100}).json()["data"]
    shown = [li.text_content() for li in page.query_selector_all("#events li")]
    assert len(shown) == len(events) and shown[-1].endswith(events[0]["message"]) and shown[0].endswith(events[-1]["message"])
    screenshot(page, "dashboard-job.png")
    assert page.query_selector("#cancel") is None  # nothing to cancel once it has ended

    # A second version (through the API), then an alias set and moved from the model page.
    second = api.post("/v1/training-jobs", json={"dataset_id": job["dataset_id"], "model": "ui", "architecture": SLOWER_CUBE,
                                                  "hyperparameters": {"n_epochs": 2, "tuning_budget": 1}}).json()["id"]
    svc.wait_status(second, {"succeeded", "failed"}, 120)
    page.goto(f"{base}/ui#/models/ui")
    page.wait_for_selector("tr[data-version='2']")
    page.fill("#new-alias input[name=alias]", "production")
    page.select_option("#new-alias select", "1")
    page.click("#new-alias button[type=submit]")
    page.wait_for_selector("tr[data-alias=production]")
    page.select_option("tr[data-alias=production] select", "2")
    page.click("tr[data-alias=production] button")
    wait_for(lambda: page.text_content("tr[data-alias=production] td:nth-child(2)") == "v2", 30, "the alias to move")
    assert dialogs[-2:] == ['Point new alias "production" of ui at v1?', 'Move alias "production" of ui from v1 to v2?']
    assert api.get("/v1/models/ui").json()["aliases"]["production"] == 2

    # Compare: the server's refusal in place while the versions have no evaluation on the dataset,
    # then the two side by side once they have.
    dataset_id = job["dataset_id"]
    page.check("input[aria-label='compare v1']")
    page.check("input[aria-label='compare v2']")
    page.select_option("#compare select", dataset_id)
    page.click("#compare button[type=submit]")
    page.wait_for_selector("#compare-error:not(:empty)")
    refused = api.get("/v1/models/ui/compare", params={"versions": "2,1", "dataset_id": dataset_id})
    assert refused.status_code == 409 and page.text_content("#compare-error") == refused.json()["error"]["message"]
    for number in (1, 2):
        ev = api.post(f"/v1/models/ui/versions/{number}/evaluations", json={"dataset_id": dataset_id}).json()
        path = f"/v1/models/ui/versions/{number}/evaluations/{ev['id']}"
        assert wait_for(lambda: (e := api.get(path).json())["status"] in ("succeeded", "failed") and e,
                        WAIT_S, f"evaluation {ev['id']}", interval=0.3)["status"] == "succeeded"
    page.click("#compare button[type=submit]")
    page.wait_for_selector("#comparison table")
    assert page.text_content("#compare-error") == ""
    comparison = api.get("/v1/models/ui/compare", params={"versions": "2,1", "dataset_id": dataset_id}).json()
    shown = [r.text_content() for r in page.query_selector_all("#comparison tbody td:first-child")]
    assert shown == [f"v{v['version']}" for v in comparison["versions"]]
    best_mrr = page.query_selector_all("#comparison tbody tr td:nth-child(6)")  # version, status, arch, R@1, R@10, MRR
    assert [td.get_attribute("class") == "best" for td in best_mrr] == [v["version"] == comparison["best"]["mrr"]
                                                                      for v in comparison["versions"]]

    page.goto(f"{base}/ui#/models/ui/versions/1")
    page.wait_for_selector("main .eval-table tr.best-method")
    screenshot(page, "dashboard-version.png")

    # A phone: one column, nothing wider than the screen but the tables, which scroll in their box.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{base}/ui#/jobs/{job_id}")
    page.wait_for_selector("#version .eval-table")
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")


def test_cancel_from_the_job_page_and_filter_the_list(live, page):
    svc, base = live
    key = svc.client.headers["Authorization"].removeprefix("Bearer ")
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))
    ds = svc.upload(nonlinear_pairs(n=400, d_in=16, d_out=16))
    slow = svc.submit(ds, arch=SLOWER_CUBE, n_epochs=500)
    quick = svc.submit(ds, n_epochs=1)

    page.goto(f"{base}/ui#/jobs/{slow}")
    page.wait_for_selector("#key-dialog[open]")
    page.fill("#key-input", key)
    page.click("#key-form button[type=submit]")
    wait_for(lambda: points(page) >= 1, WAIT_S, "the job to run an epoch", interval=0.1)
    page.click("#cancel")
    page.wait_for_selector(".summary[data-status=cancelled]", timeout=WAIT_MS)
    assert dialogs == [f"Cancel job {slow}? A running job stops after its current epoch."]
    assert svc.job(slow)["status"] == "cancelled"
    page.wait_for_selector("#version >> text=This job registered no version.")

    svc.wait_status(quick, {"succeeded", "failed"}, WAIT_S)
    page.goto(f"{base}/ui#/jobs")
    page.wait_for_selector(f"tr[data-job='{quick}']")
    page.select_option(".filters select[name=status]", "cancelled")
    page.click(".filters button[type=submit]")
    page.wait_for_selector(f"tr[data-job='{quick}']", state="detached")
    page.wait_for_selector(f"tr[data-job='{slow}']")
    assert [r.get_attribute("data-job") for r in page.query_selector_all("tr[data-job]")] == [slow]
    assert page.url.endswith("#/jobs?status=cancelled")


def test_a_sweep_page_shows_its_trials_and_their_scatter_as_it_runs(live, page):
    svc, base = live
    key = svc.client.headers["Authorization"].removeprefix("Bearer ")
    ds = svc.upload(nonlinear_pairs(n=400, d_in=16, d_out=16))
    r = svc.client.post("/v1/sweeps", json={
        "dataset_id": ds, "model": "swept", "architecture": {"kind": "cube", "grid": [2, 2, 2], "hidden": 8},
        "search_space": {"channels": [2, 4], "learning_rate": {"low": 3e-3, "high": 3e-2, "log": True}},
        "n_trials": 3, "max_parallel": 1, "pruner": {"kind": "none"},
        "hyperparameters": {"n_epochs": 3, "early_stopping_patience": 0, "tuning_budget": 1}})
    assert r.status_code == 202, r.text
    sweep_id = r.json()["id"]

    page.goto(f"{base}/ui#/sweeps")
    page.wait_for_selector("#key-dialog[open]")
    page.fill("#key-input", key)
    page.click("#key-form button[type=submit]")
    page.click(f"tr[data-sweep='{sweep_id}'] a")
    page.wait_for_selector(".summary[data-status=running]")
    # The page reloads itself while the sweep runs: trials and their points appear without a reload here.
    wait_for(lambda: points(page) >= 1, WAIT_S, "the first trial's point", interval=0.2)
    page.wait_for_selector(".summary[data-status=succeeded]", timeout=3 * WAIT_MS)
    assert points(page) == 3 and len(page.query_selector_all("tr[data-trial]")) == 3
    best = svc.client.get(f"/v1/sweeps/{sweep_id}").json()["best"]["number"]
    assert page.text_content(f"tr[data-trial='{best}'] td:first-child").endswith("★")
    assert page.query_selector("text=Final job") is not None
