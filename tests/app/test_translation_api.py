"""Translation datasets over the API: the target teacher on the upload, and the 4xx that name it."""
from __future__ import annotations

import json

import pytest

from tests.conftest import TINY_CUBE


@pytest.fixture(scope="module", autouse=True)
def mpnet_installed():
    from cube.teachers import mpnet_dir

    if not (mpnet_dir() / "config.json").is_file():  # only its absence skips; a broken loader fails
        pytest.skip(f"the optional mpnet teacher is not installed here (no {mpnet_dir()}; `make install-mpnet`)")


def texts(n=30) -> bytes:
    return "".join(json.dumps({"text": f"sentence number {i}"}) + "\n" for i in range(n)).encode()


def pairs(n=25) -> bytes:
    return "".join(json.dumps({"input": f"question {i}?", "target": f"answer {i}"}) + "\n" for i in range(n)).encode()


def upload(c, content: bytes, **form):
    return c.post("/v1/datasets", files={"file": ("texts.jsonl", content)}, data={"kind": "text_pairs", **form})


def job(c, dataset_id: str, mode: str):
    return c.post("/v1/training-jobs", json={"dataset_id": dataset_id, "architecture": TINY_CUBE, "mode": mode,
                                             "hyperparameters": {"n_epochs": 1}})


def test_upload_with_a_target_teacher_counts_distinct_texts_and_queues_encoding(client):
    c, sent = client
    r = upload(c, texts(), teacher="minilm", target_teacher="mpnet")
    assert r.status_code == 201, r.text
    d = r.json()
    assert (d["teacher"], d["target_teacher"], d["num_pairs"], d["status"]) == ("minilm", "mpnet", 30, "validating")
    assert sent.sent == [("cube.encode_dataset", (d["id"],))]
    # Pairs are texts too: each distinct text is one item.
    assert upload(c, pairs(), target_teacher="mpnet").json()["num_pairs"] == 50
    # A translation job is accepted (it waits for the encoding); any other mode is refused naming mode.
    assert job(c, d["id"], "translation").status_code == 202
    r = job(c, d["id"], "dialogue")
    assert r.status_code == 422 and r.json()["error"]["param"] == "mode"


def test_translation_of_texts_without_a_target_teacher_is_a_4xx_naming_it(client):
    c, _ = client
    ds = upload(c, pairs(), teacher="minilm").json()["id"]
    r = job(c, ds, "translation")
    assert r.status_code == 422, r.text
    assert r.json()["error"]["param"] == "target_teacher" and "target_teacher" in r.json()["error"]["message"]
    # Single texts without a target teacher are not text pairs: refused at the upload, naming the field.
    r = upload(c, texts())
    assert r.status_code == 422 and r.json()["error"]["field"] == "input"


@pytest.mark.parametrize("form, param", [({"target_teacher": "nosuch"}, "target_teacher"),
                                          ({"teacher": "nosuch", "target_teacher": "mpnet"}, "teacher"),
                                          ({"teacher": "mpnet", "target_teacher": "mpnet"}, "target_teacher")])
def test_unknown_or_same_teachers_are_4xx_naming_the_field(client, settings, form, param):
    c, sent = client
    r = upload(c, texts(), **form)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    assert sent.sent == [] and c.get("/v1/datasets").json()["data"] == []
