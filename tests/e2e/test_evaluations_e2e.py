"""Evaluations and comparisons on real `cube worker` processes: the embedded default (SQLite and the
SQL broker) and PostgreSQL + Redis. Two versions are trained, each is evaluated on a dataset neither
was trained on, and the comparison puts them side by side."""
from __future__ import annotations

import numpy as np
import pytest

from cube.pairs import PairData
from tests.app.test_promotion import LINEAR, TRAINED, UNTRAINED, X, Y
from tests.e2e.test_service_e2e import embedded_service, service, wait_for  # noqa: F401  (fixtures)

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("which", ["embedded", "postgresql+redis"])
def test_evaluate_two_versions_and_compare(which, request):
    service = request.getfixturevalue("embedded_service" if which == "embedded" else "service")
    service.start_worker()
    c = service.client
    train_ds = service.upload(PairData(X, Y))
    for hyper in (UNTRAINED, TRAINED):
        r = c.post("/v1/training-jobs", json={"dataset_id": train_ds, "model": "lin", "architecture": LINEAR,
                                               "hyperparameters": hyper})
        assert r.status_code == 202, r.text
        job = service.wait_status(r.json()["id"], {"succeeded", "failed"}, 120)
        assert job["status"] == "succeeded", job
    x = np.random.default_rng(7).standard_normal((120, 16)).astype(np.float32)
    foreign = service.upload(PairData(x, x @ np.linalg.lstsq(X, Y, rcond=None)[0]))
    started = []
    for version in (1, 2):
        r = c.post(f"/v1/models/lin/versions/{version}/evaluations", json={"dataset_id": foreign})
        assert r.status_code == 202, r.text
        started.append(r.json()["id"])
    for version, ev_id in zip((1, 2), started):
        path = f"/v1/models/lin/versions/{version}/evaluations/{ev_id}"
        try:
            done = wait_for(lambda: (e := c.get(path).json())["status"] in ("succeeded", "failed") and e, 120,
                            f"evaluation {ev_id}", interval=0.3)
        except AssertionError:
            print(service.logs())
            raise
        assert done["status"] == "succeeded", done
        assert {"linear", "identity", "ridge", "mean", "procrustes"} == set(done["result"]["methods"])
    r = c.get(f"/v1/models/lin/compare?versions=1,2&dataset_id={foreign}")
    assert r.status_code == 200, r.text
    comparison = r.json()
    assert [v["evaluation_id"] for v in comparison["versions"]] == started and comparison["n"] == 120
    assert comparison["best"]["mrr"] == 2 and comparison["versions"][1]["metrics"]["mrr"] > 0.9
