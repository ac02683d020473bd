"""Safe promotion: real training runs (the pipeline called directly) judged by their job's gate; only
a version that passes takes the `default` alias, which unpinned callers are served."""
from __future__ import annotations

import io

import numpy as np
import pytest

from app.services import training
from app.services.promotion import judge, policy_of

# A map ridge and procrustes recover exactly (held-out MRR 1.0): a version far below it loses.
RNG = np.random.default_rng(0)
X = RNG.standard_normal((300, 16)).astype(np.float32)
Y = (X @ np.linalg.qr(RNG.standard_normal((16, 16)))[0] + 0.05 * RNG.standard_normal((300, 16))).astype(np.float32)
LINEAR = {"kind": "linear"}
UNTRAINED = {"n_epochs": 1, "learning_rate": 1e-6, "tuning_budget": 1, "early_stopping_patience": 0}
TRAINED = {"n_epochs": 10, "learning_rate": 0.03, "batch_size": 32, "tuning_budget": 1, "early_stopping_patience": 0}


@pytest.fixture
def train(client, settings):
    """train(hyperparameters, promotion=None) -> the job, after the pipeline ran it."""
    from cube.pairs import PairData, save_pairs_npz

    c, _ = client
    buf = io.BytesIO()
    save_pairs_npz(buf, PairData(X, Y))
    ds = c.post("/v1/datasets", files={"file": ("p.npz", buf.getvalue())}, data={"kind": "embedding_pairs"}).json()["id"]

    def run(hyperparameters, promotion=None):
        body = {"dataset_id": ds, "model": "gated", "architecture": LINEAR, "hyperparameters": hyperparameters}
        if promotion is not None:
            body["promotion"] = promotion
        r = c.post("/v1/training-jobs", json=body)
        assert r.status_code == 202, r.text
        training.run_job(settings, r.json()["id"], "w1")
        job = c.get(f"/v1/training-jobs/{r.json()['id']}").json()
        assert job["status"] == "succeeded", job
        return job
    return run


def served(c) -> int | dict:
    r = c.post("/v1/transform", json={"model": "gated", "input": X[:2].tolist()})
    return r.json()["version"] if r.status_code == 200 else r.json()["error"]


def gate_events(c, job) -> list[dict]:
    events = c.get(f"/v1/training-jobs/{job['id']}/events?limit=100").json()["data"]
    return [e for e in events if e["data"] and "promotion" in e["data"]]


def test_a_losing_version_takes_no_unpinned_traffic_and_says_why(client, train):
    c, _ = client
    job = train(UNTRAINED)
    assert job["promotion"] == {"mode": "gate", "metric": "mrr", "max_loss_to_baseline": 0.01, "min_score": None}
    v = c.get("/v1/models/gated/versions/1").json()
    record = v["promotion"]
    assert v["status"] == "rejected" and record["passed"] is False and record["promoted"] is False
    best = record["best_baseline"]
    assert best["method"] in ("ridge", "procrustes") and best["score"] > 0.9 and record["score"] < best["score"] - 0.01
    assert record["score"] == v["evaluation"]["methods"]["linear"]["mrr"] and record["identity"] is not None
    assert f"loses to the {best['method']} baseline" in record["reasons"][0]
    [event] = gate_events(c, job)
    assert event["level"] == "warning" and event["data"]["promotion"] == record and "failed its gate" in event["message"]
    assert v["aliases"] == []
    error = served(c)
    assert error["code"] == "no_default_version" and error["param"] == "model" and "aliases/default" in error["message"]
    # A pinned caller still gets it.
    r = c.post("/v1/transform", json={"model": "gated", "version": 1, "input": X[:2].tolist()})
    assert r.status_code == 200 and r.json()["version"] == 1


def test_a_passing_version_takes_default_and_a_hand_move_overrides(client, train):
    c, _ = client
    train(UNTRAINED)
    job = train(TRAINED, {"max_loss_to_baseline": 0.05})
    v2 = c.get("/v1/models/gated/versions/2").json()
    assert v2["status"] == "approved" and v2["promotion"]["promoted"] is True, v2["promotion"]
    assert v2["promotion"]["score"] >= v2["promotion"]["best_baseline"]["score"] - 0.05 and v2["aliases"] == ["default"]
    assert "passed its gate" in gate_events(c, job)[0]["message"]
    assert served(c) == 2
    # By hand: default goes back to version 1 (still rejected), and serving follows at once.
    assert c.put("/v1/models/gated/aliases/default", json={"version": 1}).status_code == 200
    v1 = c.get("/v1/models/gated/versions/1").json()
    assert served(c) == 1 and v1["status"] == "rejected" and v1["promotion"]["set_default_by_hand_at"] > 0
    assert v1["promotion"]["passed"] is False  # the gate's verdict stands beside the hand move
    # A version that fails its floor does not move it; one in manual mode passes but does not either.
    v3 = train(TRAINED, {"max_loss_to_baseline": 0.05, "min_score": 1.0})
    record = c.get("/v1/models/gated/versions/3").json()["promotion"]
    assert record["passed"] is False and "below the floor 1" in record["reasons"][-1] and record["previous_default"] == 1
    assert served(c) == 1 and gate_events(c, v3)[0]["level"] == "warning"
    train(TRAINED, {"mode": "manual", "max_loss_to_baseline": 0.05})
    v4 = c.get("/v1/models/gated/versions/4").json()
    assert v4["status"] == "approved" and v4["promotion"]["promoted"] is False and "manual" in v4["promotion"]["summary"]
    assert served(c) == 1


@pytest.mark.parametrize("promotion, param", [
    ({"metric": "mean_cosine"}, "metric"), ({"max_loss_to_baseline": -0.1}, "max_loss_to_baseline"),
    ({"min_score": 2}, "min_score"), ({"mode": "sometimes"}, "mode"), ({"margin": 0.1}, "margin"),
])
def test_bad_policies_are_refused_naming_the_field(client, pairs_npz, promotion, param):
    c, _ = client
    ds = c.post("/v1/datasets", files={"file": ("p.npz", pairs_npz.read_bytes())}, data={"kind": "embedding_pairs"}).json()["id"]
    r = c.post("/v1/training-jobs", json={"dataset_id": ds, "promotion": promotion})
    assert r.status_code in (400, 422), r.text
    assert param in r.json()["error"]["param"], r.json()


def test_the_gate_without_baselines_or_scores():
    policy = policy_of(None)
    alone = judge({"main": "cube", "methods": {"cube": {"mrr": 0.4}}}, policy)
    assert alone["passed"] and alone["best_baseline"] is None and alone["identity"] is None
    floor = judge({"main": "cube", "methods": {"cube": {"mrr": 0.4}}}, {**policy, "min_score": 0.5})
    assert not floor["passed"] and floor["reasons"] == ["held-out mrr 0.4000 is below the floor 0.5"]
    edge = judge({"main": "cube", "methods": {"cube": {"mrr": 0.49}, "ridge": {"mrr": 0.5}}}, policy)
    assert edge["passed"]  # 0.01 below the best baseline is within the default margin


def test_existing_models_keep_serving_what_they_served(tmp_path):
    """The migration points `default` where unpinned callers went before: the `latest` alias, else the
    highest version."""
    import time

    from sqlalchemy import text

    from app.db import get_engine
    from app.migrate import upgrade
    from app.services import registry
    from sqlalchemy.orm import Session

    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0005")
    with get_engine(url).begin() as conn:
        conn.execute(text("INSERT INTO datasets (id, name, kind, format, filename, bytes, sha256, num_pairs, status, "
                          "storage_key, created_at) VALUES ('ds_1', 'd', 'embedding_pairs', 'npz', 'p.npz', 1, 'x', 1, "
                          "'ready', 'k', 0)"))
        for model, versions in (("plain", 3), ("pinned", 2)):
            conn.execute(text("INSERT INTO models (name, created_at) VALUES (:m, 0)"), {"m": model})
            for n in range(1, versions + 1):
                conn.execute(text(
                    "INSERT INTO training_jobs (id, dataset_id, model_name, mode, arch, model_config, hyperparameters, "
                    "split, seed, status, attempt, epoch, n_epochs, step, created_at) VALUES (:j, 'ds_1', :m, 'dialogue', "
                    "'cube', '{}', '{}', '{}', 0, 'succeeded', 1, 1, 1, 1, 0)"), {"j": f"job_{model}{n}", "m": model})
                conn.execute(text(
                    "INSERT INTO model_versions (id, model_name, version, status, source_job_id, arch, dim_in, dim_out, "
                    "parameters, evaluation, artifact_key, created_at) VALUES (:v, :m, :n, 'ready', :j, 'cube', 4, 4, 1, "
                    "'{}', 'k', 0)"), {"v": f"mv_{model}{n}", "m": model, "n": n, "j": f"job_{model}{n}"})
        conn.execute(text("INSERT INTO model_aliases (model_name, alias, version_id, updated_at) "
                          "VALUES ('pinned', 'latest', 'mv_pinned1', :t)"), {"t": time.time()})
    upgrade(url)
    with Session(get_engine(url)) as session:
        assert registry.resolve(session, "plain", None, None).version == 3
        assert registry.resolve(session, "pinned", None, None).version == 1
        assert registry.get_version(session, "plain", 3).status == "ready"
