"""Dashboard load times with 1,000 jobs and 100 model versions in the database.

    .venv/bin/python bench/ui_load.py [--repeats 10] [--database-url URL] [--write]

Seeds a fresh PostgreSQL database (created here, dropped at the end; or --database-url, an empty,
migrated one) through the service's own code paths: datasets uploaded through the API, jobs created
by POST /v1/training-jobs, then moved as a worker moves them (claim, one record_epoch per epoch with
its metrics, events and checkpoint rows, then register with a full held-out report, or finish as
failed or cancelled). Then serves the app with uvicorn (auth on, an admin key) and opens each
dashboard page in headless Chromium `--repeats` times, each a fresh page load, timing from the
navigation until the page's data is on screen, plus the API calls the page made (the browser's
resource timings). Prints a table; --write puts it under "## Dashboard load" in bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import io
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.live_server import serve  # noqa: E402
from tests.ui.browser import browser, missing_reason  # noqa: E402

N_JOBS, N_DATASETS = 1000, 10
VERSIONS_PER_MODEL = {"support-bot": 50, "search": 25, "faq": 15, "triage": 10}  # 100 versions
# The jobs that did not register a version: how they ended (or that they have not yet).
OTHER_OUTCOMES = [("failed", 0.7), ("cancelled", 0.2), ("running", 0.06), ("queued", 0.04)]
METHODS = ["cube", "linear", "mlp", "resmlp", "ridge", "procrustes", "identity", "mean"]
SCORES = ["recall_at_1", "recall_at_10", "mrr", "mean_cosine", "centered_cosine", "output_spread"]
TARGET_MS = 300


class Seeder:
    def __init__(self, settings, client, rng: random.Random):
        self.settings, self.client, self.rng = settings, client, rng

    def dataset(self, i: int) -> str:
        from cube.pairs import save_pairs_npz
        from cube.synthetic import nonlinear_pairs

        buf = io.BytesIO()
        save_pairs_npz(buf, nonlinear_pairs(n=200 + 50 * i, d_in=16, d_out=16, seed=i))
        r = self.client.post("/v1/datasets", files={"file": (f"pairs-{i}.npz", buf.getvalue())},
                             data={"kind": "embedding_pairs", "name": f"chitchat slice {i}"})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def job(self, dataset_id: str, model: str, n_epochs: int) -> str:
        r = self.client.post("/v1/training-jobs", json={
            "dataset_id": dataset_id, "model": model, "architecture": {"kind": "cube", "grid": [2, 2, 2], "channels": 4},
            "hyperparameters": {"n_epochs": n_epochs}, "metadata": {"sweep": f"s{self.rng.randrange(20)}"}})
        assert r.status_code == 202, r.text
        return r.json()["id"]

    def run_epochs(self, job_id: str, epochs: int, n_epochs: int) -> int:
        """claim + record_epoch, as a worker does; returns the attempt."""
        from app.jobs import lifecycle

        attempt = lifecycle.claim(self.settings, job_id, "cube-cpu@bench").attempt
        loss, r10 = 11.5, 0.2
        for epoch in range(1, epochs + 1):
            loss -= self.rng.uniform(0, 0.15)
            r10 = min(1.0, r10 + self.rng.uniform(-0.01, 0.03))
            metrics = {"train_loss": loss, "val_recall_at_10": r10, "val_mrr": r10 / 3, "val_recall_at_1": r10 / 6}
            lifecycle.record_epoch(self.settings, job_id, attempt, lifecycle.EpochRecord(
                epoch=epoch, n_epochs=n_epochs, step=epoch * 5, total_steps=n_epochs * 5, metrics=metrics,
                message=f"epoch {epoch}/{n_epochs}: train loss {loss:.4f}, val mrr {r10 / 3:.4f}",
                estimated_finish=time.time() + 5 * (n_epochs - epoch), checkpoint_key=f"jobs/{job_id}/ckpt-{epoch}"))
        return attempt

    def report(self) -> dict:
        """A held-out report of the pipeline's shape: every method, 3 seeds with 95% intervals."""
        methods, intervals = {}, {}
        for name in METHODS:
            scores = {k: self.rng.uniform(0.05, 0.6) for k in SCORES}
            methods[name] = scores
            if name in ("cube", "linear", "mlp", "resmlp"):
                intervals[name] = {k: [v - 0.02, v + 0.02] for k, v in scores.items()}
        return {"n": {"train": 320, "val": 40, "test": 40}, "main": "cube", "seeds": 3, "methods": methods,
                "intervals": intervals, "collapse_alarm": {"threshold": 0.2, "methods": []}}

    def succeed(self, job_id: str, attempt: int, epochs: int) -> None:
        from app.jobs import lifecycle

        lifecycle.register(self.settings, job_id, attempt, arch="cube", dim_in=16, dim_out=16, teacher=None,
                           parameters=3220, evaluation=self.report(), artifact_key=f"jobs/{job_id}/run/model",
                           epochs_run=epochs)

    def end_other(self, job_id: str) -> None:
        from app.jobs import lifecycle, states

        outcome = self.rng.choices([o for o, _ in OTHER_OUTCOMES], [w for _, w in OTHER_OUTCOMES])[0]
        if outcome == "queued":
            return
        n_epochs = self.rng.randint(10, 30)
        attempt = self.run_epochs(job_id, self.rng.randint(1, n_epochs - 1), n_epochs)
        if outcome == "failed":
            lifecycle.finish(self.settings, job_id, attempt, states.FAILED, code="training_diverged",
                             message="the training loss became nan")
        elif outcome == "cancelled":
            lifecycle.finish(self.settings, job_id, attempt, states.CANCELLED, message="cancelled after epoch")


def seed(settings, client, rng: random.Random) -> dict:
    s = Seeder(settings, client, rng)
    datasets = [s.dataset(i) for i in range(N_DATASETS)]
    winners = [m for m, n in VERSIONS_PER_MODEL.items() for _ in range(n)]
    plan = winners + [None] * (N_JOBS - len(winners))
    rng.shuffle(plan)
    sample = {}
    for i, model in enumerate(plan):
        dataset_id = rng.choice(datasets)
        name = model or rng.choice(list(VERSIONS_PER_MODEL))
        n_epochs = rng.randint(10, 30)
        job_id = s.job(dataset_id, name, n_epochs)
        if model:
            s.succeed(job_id, s.run_epochs(job_id, n_epochs, n_epochs), n_epochs)
            sample["job"] = job_id
        else:
            s.end_other(job_id)
        if (i + 1) % 100 == 0:
            print(f"  seeded {i + 1} jobs", flush=True)
    return sample


def pages(sample: dict) -> list[tuple[str, str, list[str]]]:
    """(what, fragment, selectors that are on screen once its data is)."""
    biggest = max(VERSIONS_PER_MODEL, key=VERSIONS_PER_MODEL.get)
    return [
        ("shell only, no API call (reference)", "#/none", ["main h1"]),
        ("jobs list (50 of 1,000)", "#/jobs", ["#jobs-table tbody tr"]),
        ("jobs list, status=failed", "#/jobs?status=failed", ["#jobs-table tbody tr"]),
        ("job page (succeeded)", f"#/jobs/{sample['job']}", [".chart svg circle", "#version .eval-table", "#checkpoints table", "#events li"]),
        ("models list", "#/models", ["main table tbody tr"]),
        (f"model page ({VERSIONS_PER_MODEL[biggest]} versions)", f"#/models/{biggest}", ["tr[data-version]", "#comparison"]),
        ("version page", f"#/models/{biggest}/versions/1", ["main .eval-table tr.best-method"]),
        ("datasets list", "#/datasets", ["#datasets-table tbody tr"]),
    ]


def measure(base: str, key: str, sample: dict, repeats: int) -> list[dict]:
    rows = []
    with browser() as b:
        context = b.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(f"{base}/ui#/jobs")
        page.evaluate(f"sessionStorage.setItem('cube.apiKey', {key!r})")
        for what, fragment, selectors in pages(sample):
            loads, api_totals, calls = [], [], 0
            for _ in range(repeats + 1):  # the first load warms the server's caches and is not counted
                page.goto("about:blank")
                page.goto(f"{base}/ui{fragment}", wait_until="commit")
                for selector in selectors:
                    page.wait_for_selector(selector, state="attached", timeout=30_000)
                rendered = page.evaluate("performance.now()")
                api = page.evaluate("performance.getEntriesByType('resource').filter(e => e.name.includes('/v1/'))"
                                    ".map(e => [e.name, e.responseEnd - e.startTime])")
                api = [(name, ms) for name, ms in api if "stream=true" not in name]  # open until the job ends
                loads.append(rendered)
                api_totals.append(max((ms for _, ms in api), default=0.0))
                calls = len(api)
            loads, api_totals = loads[1:], api_totals[1:]
            rows.append({"page": what, "median": statistics.median(loads), "max": max(loads),
                         "api_calls": calls, "slowest_api": statistics.median(api_totals)})
            print(f"  {what}: median {rows[-1]['median']:.0f} ms", flush=True)
        context.close()
    return rows


def table(rows: list[dict], repeats: int) -> str:
    lines = [f"| page | load to data rendered, median of {repeats} (ms) | max (ms) | API calls | slowest API call, median (ms) |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['page']} | {r['median']:.0f} | {r['max']:.0f} | {r['api_calls']} | {r['slowest_api']:.0f} |")
    worst = max(r["max"] for r in rows)
    verdict = "met" if max(r["median"] for r in rows) < TARGET_MS else "NOT met"
    lines.append("")
    lines.append(f"Target: every page's median under {TARGET_MS} ms: {verdict} (slowest single load {worst:.0f} ms).")
    return "\n".join(lines)


def write_results(text: str, command: str) -> None:
    path = ROOT / "bench" / "RESULTS.md"
    section = (f"## Dashboard load\n\n`{command}`, {time.strftime('%Y-%m-%d')}, PostgreSQL, one uvicorn worker, "
               f"headless Chromium on the same 2-core machine; {N_JOBS:,} jobs (10-30 epochs each, with their metrics, "
               f"events and checkpoint rows) and {sum(VERSIONS_PER_MODEL.values())} versions in "
               f"{len(VERSIONS_PER_MODEL)} models, seeded through the service's own code paths.\n\n{text}\n")
    old = path.read_text()
    start = old.find("## Dashboard load")
    if start >= 0:
        end = old.find("\n## ", start + 1)
        old = old[:start] + (old[end + 1:] if end >= 0 else "")
    path.write_text(old.rstrip("\n") + "\n\n" + section)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--database-url", help="an empty, migrated database (default: a fresh PostgreSQL one, dropped after)")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    if missing_reason():
        sys.exit(f"cannot run: {missing_reason()}")

    import psycopg
    from fastapi.testclient import TestClient

    from app.api.deps import get_enqueue
    from app.db import get_engine, get_sessionmaker
    from app.main import create_app
    from app.migrate import upgrade
    from app.services import keys
    from app.settings import Settings
    from tests.conftest import PG_ADMIN, Recorder

    url, created = args.database_url, None
    if url is None:
        created = f"cube_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{created}"')
        url = PG_ADMIN.rsplit("/", 1)[0] + f"/{created}"
        upgrade(url)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(database_url=url, data_dir=Path(tmp), require_auth=True)
            with get_sessionmaker(settings.database)() as session:
                _, secret = keys.create_key(session, "admin", "bench")
            app = create_app(settings)
            app.dependency_overrides[get_enqueue] = lambda: Recorder()  # no worker: the seeder moves the jobs
            with TestClient(app, headers={"Authorization": f"Bearer {secret}"}) as client:
                t0 = time.perf_counter()
                sample = seed(settings, client, random.Random(0))
                print(f"seeded in {time.perf_counter() - t0:.0f} s", flush=True)
            with serve(create_app(settings)) as base:
                rows = measure(base, secret, sample, args.repeats)
    finally:
        if created:
            get_engine(url).dispose()
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{created}" WITH (FORCE)')
    text = table(rows, args.repeats)
    print(text)
    if args.write:
        write_results(text, "python bench/ui_load.py" + (f" --repeats {args.repeats}" if args.repeats != 10 else "") + " --write")


if __name__ == "__main__":
    main()
