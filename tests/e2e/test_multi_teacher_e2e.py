"""Multi-teacher distillation through the service (embedded, and on PostgreSQL + Redis): question ->
reply texts uploaded with two target teachers are encoded by MiniLM and mpnet in a real worker, one
cube trains with a head per teacher, and the client's transform answers in either space."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.e2e.test_service_e2e import TINY_CUBE
from tests.live_server import serve
from tests.e2e.test_translation_e2e import service  # noqa: F401  (the fixture: both backends, mpnet or skip)

pytestmark = pytest.mark.e2e


def test_one_cube_with_a_minilm_head_and_an_mpnet_head(service):  # noqa: F811
    from cube_client import Client

    service.start_worker()
    topics = ["the weather", "a football match", "cooking pasta", "a new phone", "learning French", "the train"]
    rows = [{"input": f"What do you think about {t}, part {i}?", "target": f"I think {t} number {i} is fine.",
             "group": f"chat-{i}"} for i in range(8) for t in topics]
    r = service.client.post("/v1/datasets", files={"file": ("chat.jsonl", "".join(json.dumps(x) + "\n" for x in rows))},
                            data={"kind": "text_pairs", "teacher": "minilm", "target_teacher": "minilm,mpnet"})
    assert r.status_code == 201, r.text
    r = service.client.post("/v1/training-jobs", json={
        "dataset_id": r.json()["id"], "model": "two-heads", "architecture": TINY_CUBE,
        "hyperparameters": {"n_epochs": 2, "tuning_budget": 1, "head_weighting": "adaptive"}})
    assert r.status_code == 202, r.text
    job = service.wait_status(r.json()["id"], {"succeeded", "failed"}, 300)
    assert job["status"] == "succeeded", job
    version = service.client.get("/v1/models/two-heads/versions/1").json()
    assert (version["target_teacher"], version["dim_out"]) == ("minilm,mpnet", 384)
    assert set(version["evaluation"]["spaces"]) == {"minilm", "mpnet"}

    key = service.client.headers["authorization"].split()[1]
    with serve(service.client.app) as url, Client(url, api_key=key) as client:
        questions = [f"What do you think about {t}, part 0?" for t in topics]
        in_minilm = client.transform("two-heads", questions)
        in_mpnet = client.transform("two-heads", questions, target_space="mpnet")
    assert in_minilm.shape == (6, 384) and in_mpnet.shape == (6, 768)
    assert np.isfinite(in_mpnet).all() and not np.allclose(in_minilm, in_mpnet[:, :384])
