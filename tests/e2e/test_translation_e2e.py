"""Translation through the service (embedded, and on PostgreSQL + Redis): texts uploaded with a target teacher are encoded by
MiniLM (384d) and mpnet (768d) in a real worker; a translation job trains; the version records both
teachers; /v1/transform takes MiniLM-side text and returns vectors in mpnet's space."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import _truncate
from tests.e2e.test_service_e2e import TINY_CUBE, Service

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["embedded", "postgresql+redis"])
def service(request, tmp_path):
    """The service on SQLite and the SQL broker, and on PostgreSQL and Redis."""
    from cube.teachers import mpnet_dir

    if not (mpnet_dir() / "config.json").is_file():  # only its absence skips; a broken loader fails
        pytest.skip(f"the optional mpnet teacher is not installed here (no {mpnet_dir()}; `make install-mpnet`)")
    data = tmp_path / "data"
    data.mkdir()
    if request.param == "embedded":
        from app.migrate import upgrade

        db, broker = f"sqlite:///{data / 'cube.db'}", f"sqla+sqlite:///{data / 'broker.db'}"
        upgrade(db)
    else:
        db, broker = request.getfixturevalue("pg_database_url"), request.getfixturevalue("redis_available")
        _truncate(db)
    svc = Service(db, broker, data)
    yield svc
    for proc, _ in svc.workers:  # not a test of shutdown: a worker holding two teachers need not stop gently
        svc.kill_worker(proc)
    svc.close()


def test_minilm_to_mpnet_through_the_service(service):
    service.start_worker()
    topics = ["the weather", "a football match", "cooking pasta", "a new phone", "learning French", "the train"]
    rows = [{"input": f"What do you think about {t}, part {i}?", "target": f"I think {t} number {i} is fine.",
             "group": f"chat-{i}"} for i in range(12) for t in topics]
    r = service.client.post("/v1/datasets", files={"file": ("chat.jsonl", "".join(json.dumps(x) + "\n" for x in rows))},
                            data={"kind": "text_pairs", "teacher": "minilm", "target_teacher": "mpnet", "name": "chat"})
    assert r.status_code == 201, r.text
    ds = r.json()["id"]
    r = service.client.post("/v1/training-jobs", json={
        "dataset_id": ds, "model": "upgrade", "mode": "translation", "architecture": TINY_CUBE,
        "hyperparameters": {"n_epochs": 2, "tuning_budget": 1}})
    assert r.status_code == 202, r.text
    job = service.wait_status(r.json()["id"], {"succeeded", "failed"}, 240)
    assert job["status"] == "succeeded", job
    dataset = service.client.get(f"/v1/datasets/{ds}").json()
    assert (dataset["status"], dataset["dim_in"], dataset["dim_out"], dataset["num_pairs"]) == ("ready", 384, 768, 144)

    version = service.client.get("/v1/models/upgrade/versions/1").json()
    assert (version["teacher"], version["target_teacher"], version["dim_in"], version["dim_out"]) == \
        ("minilm", "mpnet", 384, 768)
    report = version["evaluation"]
    assert report["mode"] == "translation" and report["translation"]["start"] == "procrustes"
    assert {"procrustes", "lowrank", "ridge", "resmlp"} <= set(report["methods"])
    assert "recovery_ratio" in report["methods"]["cube"]

    # Text goes in through the INPUT teacher (MiniLM); what comes out lives in mpnet's space: a
    # question about each topic comes out nearest mpnet's own vector of that question.
    from cube.teachers import get_teacher

    sample = [f"What do you think about {t}, part 0?" for t in topics]
    r = service.client.post("/v1/transform", json={"model": "upgrade", "input": sample})
    assert r.status_code == 200, r.text
    out = np.array([d["embedding"] for d in r.json()["data"]])
    assert out.shape == (6, 768)
    native = get_teacher("mpnet").encode(sample)
    sims = (out / np.linalg.norm(out, axis=1, keepdims=True)) @ native.T
    assert (sims.argmax(axis=1) == np.arange(6)).all(), sims
    # Vectors in MiniLM's space are accepted as well.
    r = service.client.post("/v1/transform", json={"model": "upgrade", "input": [[0.05] * 384]})
    assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 768
