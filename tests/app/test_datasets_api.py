"""Dataset uploads: good files are stored and described; every bad file gets a 4xx naming the line
or row and the field, and leaves no row and no file behind."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest

from tests.conftest import stored_keys



def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def upload(client, content: bytes, filename="pairs.npz", kind="embedding_pairs", **form):
    return client.post("/v1/datasets", files={"file": (filename, content)}, data={"kind": kind, **form})


def stored_files(settings) -> list:
    return stored_keys(settings)


def assert_nothing_left(client, settings):
    assert client.get("/v1/datasets").json()["data"] == []
    assert stored_files(settings) == []


def test_upload_npz_is_ready_at_once(client, settings, pairs_npz):
    c, sent = client
    r = upload(c, pairs_npz.read_bytes(), name="demo", metadata='{"source": "synthetic"}')
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["id"].startswith("ds_") and d["object"] == "dataset"
    assert (d["status"], d["num_pairs"], d["dim_in"], d["dim_out"], d["format"]) == ("ready", 400, 16, 16, "npz")
    assert d["name"] == "demo" and d["metadata"] == {"source": "synthetic"} and len(d["sha256"]) == 64
    assert c.get(f"/v1/datasets/{d['id']}").json() == d
    assert sent.sent == []  # nothing to encode
    assert len(stored_files(settings)) == 1


def test_list_paginates_newest_first(client, pairs_npz):
    c, _ = client
    ids = [upload(c, pairs_npz.read_bytes()).json()["id"] for _ in range(3)]
    page = c.get("/v1/datasets?limit=2").json()
    assert page["object"] == "list" and page["has_more"] is True
    assert [d["id"] for d in page["data"]] == ids[::-1][:2]
    rest = c.get(f"/v1/datasets?limit=2&after={page['data'][-1]['id']}").json()
    assert [d["id"] for d in rest["data"]] == [ids[0]] and rest["has_more"] is False


@pytest.mark.parametrize("storage_kind", ["local", "s3"])
def test_delete_removes_row_and_file(client, settings, pairs_npz):
    c, _ = client
    ds = upload(c, pairs_npz.read_bytes()).json()["id"]
    assert stored_files(settings) == [f"datasets/{ds}/data.npz"]
    assert c.delete(f"/v1/datasets/{ds}").status_code == 200
    assert c.get(f"/v1/datasets/{ds}").status_code == 404
    assert_nothing_left(c, settings)


rng = np.random.default_rng(0)
X = rng.standard_normal((40, 8)).astype(np.float32)
NAN = X.copy()
NAN[7, 3] = np.nan

BAD_NPZ = {
    "not_a_zip": (b"this is not an npz file at all", 422, "file", None),
    "missing_target": (npz_bytes(input=X), 422, "target", None),
    "nan_row": (npz_bytes(input=NAN, target=X), 422, "input", 7),
    "mismatched_rows": (npz_bytes(input=X, target=X[:30]), 422, "target", None),
    "one_dimensional": (npz_bytes(input=X[:, 0], target=X), 422, "input", None),
    "ragged_object_array": (npz_bytes(input=np.array([[1.0], [1.0, 2.0]], dtype=object), target=X), 422, "input", None),
    "integer_dtype": (npz_bytes(input=X.astype(np.int32), target=X), 422, "input", None),
    "too_few_pairs": (npz_bytes(input=X[:5], target=X[:5]), 422, "input", None),
}


@pytest.mark.parametrize("case", sorted(BAD_NPZ))
def test_bad_npz_names_the_field_and_leaves_nothing(client, settings, case):
    c, _ = client
    content, status, field, row = BAD_NPZ[case]
    r = upload(c, content)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["field"] == field and err["message"]
    assert set(err) >= {"type", "code", "message", "param"}
    if row is not None:
        assert err["row"] == row
    assert_nothing_left(c, settings)


def test_empty_file(client, settings):
    c, _ = client
    r = upload(c, b"")
    assert r.status_code == 422 and "empty" in r.json()["error"]["message"]
    assert_nothing_left(c, settings)


def test_unknown_kind_is_400(client, settings, pairs_npz):
    c, _ = client
    r = upload(c, pairs_npz.read_bytes(), kind="images")
    assert r.status_code == 400 and r.json()["error"]["param"] == "kind"
    assert_nothing_left(c, settings)


def test_npz_sent_as_text_pairs_is_the_wrong_kind(client, settings, pairs_npz):
    c, _ = client
    r = upload(c, pairs_npz.read_bytes(), kind="text_pairs")
    assert r.status_code in (400, 422) and r.json()["error"]["param"] in ("kind", "teacher")
    assert_nothing_left(c, settings)


def test_bad_metadata_is_400(client, settings, pairs_npz):
    c, _ = client
    r = upload(c, pairs_npz.read_bytes(), metadata="{not json")
    assert r.status_code == 400 and r.json()["error"]["param"] == "metadata"
    assert_nothing_left(c, settings)


def test_over_the_size_limit_is_413(client_for, sqlite_settings, pairs_npz):
    small = sqlite_settings.model_copy(update={"max_upload_bytes": 1000})
    c, _ = client_for(small)
    r = upload(c, pairs_npz.read_bytes())  # ~50 kB, refused by Content-Length before parsing
    assert r.status_code == 413 and r.json()["error"]["code"] == "file_too_large"
    limit = sqlite_settings.model_copy(update={"max_upload_bytes": 40_000})
    c, _ = client_for(limit)
    r = upload(c, pairs_npz.read_bytes())  # within the header allowance: refused while copying
    assert r.status_code == 413
    assert_nothing_left(c, limit)


def test_missing_file_field_is_400(client):
    c, _ = client
    r = c.post("/v1/datasets", data={"kind": "embedding_pairs"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "file"


# ---- JSONL (text pairs, and embedding pairs as JSON lines): the text-support loaders ----------

def text_lines(n=25) -> list[str]:
    return [json.dumps({"input": f"question {i}?", "target": f"answer number {i}", "group": f"g{i % 7}"}) for i in range(n)]


BAD_TEXT = {
    "not_utf8": (("\n".join(text_lines()) + "\n").encode() + b'{"input": "caf\xe9", "target": "x"}\n', 26),
    "bad_json_line_3": (("\n".join(text_lines()[:2] + ['{"input": "a", "target": ', *text_lines()[2:]])).encode(), 3),
    "missing_target_line_5": (("\n".join(text_lines()[:4] + ['{"input": "only input"}', *text_lines()[4:]])).encode(), 5),
    "empty_input_line_2": (("\n".join(text_lines()[:1] + ['{"input": "", "target": "t"}', *text_lines()[1:]])).encode(), 2),
}


@pytest.mark.parametrize("case", sorted(BAD_TEXT))
def test_bad_text_pairs_name_the_line(client, settings, case):
    c, sent = client
    content, line = BAD_TEXT[case]
    r = upload(c, content, filename="pairs.jsonl", kind="text_pairs")
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["line"] == line and err["field"], err
    assert sent.sent == []
    assert_nothing_left(c, settings)


def test_text_pairs_wait_for_the_worker(client, settings):
    c, sent = client
    r = upload(c, ("\n".join(text_lines()) + "\n").encode(), filename="pairs.jsonl", kind="text_pairs")
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["status"] == "validating" and d["num_pairs"] == 25 and d["teacher"]
    assert sent.sent == [("cube.encode_dataset", (d["id"],))]


def test_embedding_pairs_jsonl_errors_name_line_and_field(client, settings):
    c, _ = client
    good = [json.dumps({"input": [0.1, 0.2], "target": [0.3, 0.4]}) for _ in range(30)]
    ragged = good[:9] + [json.dumps({"input": [0.1], "target": [0.3, 0.4]})] + good[9:]
    r = upload(c, "\n".join(ragged).encode(), filename="pairs.jsonl")
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert (err["line"], err["field"]) == (10, "input")
    nan = good[:3] + ['{"input": [NaN, 0.2], "target": [0.3, 0.4]}'] + good[3:]
    err = upload(c, "\n".join(nan).encode(), filename="pairs.jsonl").json()["error"]
    assert (err["line"], err["field"]) == (4, "input")
    assert_nothing_left(c, settings)


def test_overlong_name_is_400_not_a_database_error(client, settings, pairs_npz):
    c, _ = client
    r = upload(c, pairs_npz.read_bytes(), name="n" * 201)
    assert r.status_code == 400 and r.json()["error"]["param"] == "name"
    r = upload(c, pairs_npz.read_bytes(), filename="../../" + "f" * 400 + ".npz")
    assert r.status_code == 201 and len(r.json()["filename"]) <= 300 and "/" not in r.json()["filename"]


def test_dataset_of_finished_jobs_is_deleted_but_the_jobs_keep_their_reference(client, settings, pairs_npz):
    c, _ = client
    ds = upload(c, pairs_npz.read_bytes()).json()["id"]
    job = c.post("/v1/training-jobs", json={"dataset_id": ds}).json()["id"]
    c.post(f"/v1/training-jobs/{job}/cancel")
    assert c.delete(f"/v1/datasets/{ds}").status_code == 200
    assert c.get(f"/v1/datasets/{ds}").status_code == 404
    assert c.get(f"/v1/training-jobs/{job}").json()["dataset_id"] == ds
    assert stored_files(settings) == []
