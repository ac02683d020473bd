"""Bounded everything: what a hostile or careless caller sends is refused with a 4xx naming the limit,
before it costs memory or reaches a database that would answer with a 500."""
from __future__ import annotations

import json
import random
import string
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from app.queue import TRAIN_TASK
from tests.conftest import TINY_CUBE

MB = 1 << 20


def zero_npz(path: Path, arrays: dict[str, tuple[tuple[int, ...], int]]) -> Path:
    """An NPZ of float32 zeros, name -> (shape its .npy header declares, bytes of zeros really stored).
    Zeros compress about 1000:1, so a small file can expand far."""
    chunk = bytes(MB)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, (shape, stored) in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": shape})
                for start in range(0, stored, MB):
                    f.write(chunk[: min(MB, stored - start)])
    return path


def upload(c, path: Path, **data):
    return c.post("/v1/datasets", files={"file": (path.name, path.read_bytes())},
                  data={"kind": "embedding_pairs", **data})


def assert_nothing_stored(c, settings):
    assert c.get("/v1/datasets").json()["data"] == []
    stored = settings.storage_root / "datasets"
    assert not stored.exists() or not any(stored.iterdir())


# ---- decoded sizes, from headers, before any array is read ---------------------------------------

def test_a_header_claiming_a_huge_shape_is_413_not_500(client, settings, tmp_path):
    c, _ = client
    path = zero_npz(tmp_path / "huge.npz", {"input": ((10**9, 10**9), 4096), "target": ((10**9, 10**9), 4096)})
    r = upload(c, path)
    assert r.status_code == 413, r.text
    error = r.json()["error"]
    assert error["code"] == "decoded_too_large" and error["param"] == "file" and error["field"] == "input"
    assert "[1000000000, 1000000000]" in error["message"] and f"{settings.max_dataset_bytes:,}" in error["message"]
    assert "max_dataset_bytes" in error["message"]
    assert_nothing_stored(c, settings)


def test_zip_entries_that_expand_past_the_limit_are_413(client_for, sqlite_settings, tmp_path):
    s = sqlite_settings.model_copy(update={"max_dataset_bytes": 2 * MB})
    c, _ = client_for(s)
    # Truthful headers, 2 x 1.5 MB of zeros: each fits, together they do not.
    rows = (3 * MB // 2) // (4 * 64)
    path = zero_npz(tmp_path / "wide.npz", {"input": ((rows, 64), rows * 256), "target": ((rows, 64), rows * 256)})
    assert path.stat().st_size < 50_000
    r = upload(c, path)
    assert r.status_code == 413 and "arrays together" in r.json()["error"]["message"], r.text
    # A header that understates what the zip entry decompresses to is caught by the entry size.
    path = zero_npz(tmp_path / "liar.npz", {"input": ((100, 4), 3 * MB), "target": ((100, 4), 1600)})
    r = upload(c, path)
    assert r.status_code == 413 and "zip entry of array 'input'" in r.json()["error"]["message"], r.text
    assert_nothing_stored(c, s)


def test_parquet_and_jsonl_past_the_limit_are_413(client_for, sqlite_settings, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    s = sqlite_settings.model_copy(update={"max_dataset_bytes": 64 * 1024})
    c, _ = client_for(s)
    vectors = np.zeros((300, 32)).tolist()  # 300 x 2 x 32 x 8 bytes = 150 KB decoded
    pq.write_table(pa.table({"input": vectors, "target": vectors}), tmp_path / "p.parquet")
    r = upload(c, tmp_path / "p.parquet")
    assert r.status_code == 413 and "row groups" in r.json()["error"]["message"], r.text
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"input": v, "target": v}) + "\n" for v in vectors))
    r = upload(c, tmp_path / "p.jsonl")
    assert r.status_code == 413 and "vectors up to line" in r.json()["error"]["message"], r.text
    assert_nothing_stored(c, s)
    # Under the limit the same files are fine.
    c2, _ = client_for(s.model_copy(update={"max_dataset_bytes": MB}))
    assert upload(c2, tmp_path / "p.parquet").status_code == 201
    assert upload(c2, tmp_path / "p.jsonl").status_code == 201


PEAK_RSS_BOUND = 512 * MB


def test_validating_a_file_that_expands_to_600_mb_stays_under_512_mb(tmp_path):
    """The validation runs in a fresh process whose peak RSS is read from the kernel; the file really
    decompresses to 2 x 300 MB, so reading it (as before headers were checked) would pass the bound.
    The peak is the process's own (VmHWM): getrusage's ru_maxrss keeps the high-water mark of the
    forked copy of this test process across exec, so it grew with whatever ran here before."""
    path = zero_npz(tmp_path / "bomb.npz", {name: ((300 * MB // 1024, 256), 300 * MB) for name in ("input", "target")})
    assert path.stat().st_size < 1_000_000
    script = textwrap.dedent(f"""
        from pathlib import Path
        from app.errors import ServiceError
        from app.services.datasets import validate_file
        from app.settings import Settings
        try:
            validate_file(Path({str(path)!r}), "embedding_pairs", "npz", Settings(max_dataset_bytes={256 * MB}))
            print("accepted")
        except ServiceError as exc:
            print(exc.status)
        status = Path("/proc/self/status").read_text()
        print(int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) * 1024)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True).stdout
    status, peak = out.split()
    assert status == "413"
    assert int(peak) < PEAK_RSS_BOUND, f"peak RSS {int(peak) / MB:.0f} MB"


# ---- compute and activation memory of an architecture --------------------------------------------

@pytest.fixture
def dataset(client, pairs_npz):
    c, _ = client
    return upload(c, pairs_npz, name="bounds").json()["id"]


def test_an_architecture_whose_activations_cannot_fit_is_422_naming_the_limit(client, dataset):
    c, sent = client
    arch = {"kind": "cube", "grid": [64, 64, 32], "channels": 8, "steps": 1024, "hidden": 512}
    r = c.post("/v1/training-jobs", json={"dataset_id": dataset, "architecture": arch, "hyperparameters": {"batch_size": 1}})
    assert r.status_code == 422, r.text
    message = r.json()["error"]["message"]
    assert "GiB of activations" in message and "the limit is 16.0 GiB" in message and "steps x cells" in message
    assert sent.sent == []
    # The default cube and the small test cube pass.
    for arch in ({"kind": "cube"}, TINY_CUBE):
        assert c.post("/v1/training-jobs", json={"dataset_id": dataset, "architecture": arch}).status_code == 202


def test_a_job_on_a_text_dataset_is_checked_with_the_teachers_dimension(client):
    c, sent = client
    lines = "".join(f'{{"input": "question {i}?", "target": "the answer number {i}"}}\n' for i in range(30))
    ds = c.post("/v1/datasets", files={"file": ("t.jsonl", lines.encode())}, data={"kind": "text_pairs"}).json()
    assert ds["status"] == "validating" and ds["dim_in"] is None
    arch = {"kind": "cube", "grid": [32, 32, 32], "channels": 4, "steps": 1024, "hidden": 512}
    r = c.post("/v1/training-jobs", json={"dataset_id": ds["id"], "architecture": arch})
    assert r.status_code == 422 and "GiB of activations" in r.json()["error"]["message"], r.text
    # 384 (minilm) x 2,000,000 read-in weights are over the parameter limit whatever the dataset holds.
    r = c.post("/v1/training-jobs", json={"dataset_id": ds["id"], "architecture": {"kind": "mlp", "hidden": 300_000}})
    assert r.status_code == 422 and "parameters; the limit is" in r.json()["error"]["message"], r.text
    assert c.post("/v1/training-jobs", json={"dataset_id": ds["id"], "architecture": TINY_CUBE}).status_code == 202
    assert [task for task, _ in sent.sent if task == TRAIN_TASK] == []  # it waits for its dataset


def test_activation_estimate_grows_with_batch():
    from cube.config import ConfigError
    from cube.models import check_model_config

    shape = {"d_in": 16, "d_out": 16, "grid": [16, 16, 16], "steps": 32, "channels": 8, "hidden": 64}
    check_model_config("cube", shape, max_activation_bytes=1 << 30, batch_size=1)
    with pytest.raises(ConfigError, match="batch 256"):
        check_model_config("cube", shape, max_activation_bytes=1 << 30, batch_size=256)


# ---- JSON depth, metadata size, text every database can store ------------------------------------

def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def post_job(c, dataset, extra: str):
    body = '{"dataset_id": "%s", "architecture": {"kind": "linear"}, %s}' % (dataset, extra)
    return c.post("/v1/training-jobs", content=body, headers={"content-type": "application/json"})


@pytest.mark.parametrize("extra, status, param", [
    ('"metadata": ' + nested(40), 400, "metadata"),
    ('"metadata": ' + nested(900), 400, "metadata"),
    ('"metadata": ' + nested(100_000), 400, None),  # beyond the JSON parser itself: still a 400
    ('"metadata": {"k": "%s"}' % ("x" * 20_000), 413, "metadata"),
    ('"metadata": {"k": "a\\u0000b"}', 400, "metadata"),
    ('"metadata": {"k\\u0000": 1}', 400, "metadata"),
    ('"metadata": {"k": "\\ud800"}', 400, "metadata"),
    ('"metadata": {"k": NaN}', 400, "metadata"),
    ('"hyperparameters": {"loss": ' + nested(50) + "}", 400, "hyperparameters"),
])
def test_job_json_that_no_database_could_store_is_4xx(client, dataset, extra, status, param):
    c, sent = client
    r = post_job(c, dataset, extra)
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param and r.json()["error"]["message"]
    assert sent.sent == [] and c.get("/v1/training-jobs").json()["data"] == []


def test_metadata_within_the_limits_is_kept(client, dataset):
    c, _ = client
    meta = json.loads(nested(30)) | {"note": "é" * 1000}
    r = post_job(c, dataset, '"metadata": ' + json.dumps(meta))
    assert r.status_code == 202 and r.json()["metadata"] == meta


@pytest.mark.parametrize("data, param", [
    ({"name": "a\x00b"}, "name"),
    ({"teacher": "x\x00"}, "teacher"),
    ({"metadata": '{"k": "\\u0000"}'}, "metadata"),
    ({"metadata": '{"k": "\\udfff"}'}, "metadata"),
    ({"metadata": nested(900)}, "metadata"),
    ({"metadata": nested(100_000)}, "metadata"),
    ({"metadata": json.dumps({"k": "x" * 20_000})}, "metadata"),
])
def test_dataset_fields_no_database_could_store_are_4xx(client, settings, pairs_npz, data, param):
    c, _ = client
    r = upload(c, pairs_npz, **data)
    assert r.status_code in (400, 413), r.text
    assert r.json()["error"]["param"] == param
    assert_nothing_stored(c, settings)


def test_a_nul_in_the_filename_is_400(client, settings, pairs_npz):
    c, _ = client
    # Built by hand: HTTP clients percent-encode such a filename, a hostile caller need not.
    boundary = b"b0undary"
    body = b"".join([
        b"--%s\r\n" % boundary, b'Content-Disposition: form-data; name="kind"\r\n\r\nembedding_pairs\r\n',
        b"--%s\r\n" % boundary, b'Content-Disposition: form-data; name="file"; filename="p\x00.npz"\r\n',
        b"Content-Type: application/octet-stream\r\n\r\n", pairs_npz.read_bytes(), b"\r\n--%s--\r\n" % boundary,
    ])
    r = c.post("/v1/datasets", content=body, headers={"content-type": "multipart/form-data; boundary=b0undary"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "file", r.text
    assert_nothing_stored(c, settings)


@pytest.mark.parametrize("method, path, param", [
    ("get", "/v1/datasets/ds_%00", "dataset_id"),
    ("delete", "/v1/datasets/%00", "dataset_id"),
    ("get", "/v1/training-jobs/job_%00", "job_id"),
    ("post", "/v1/training-jobs/job_%00/cancel", "job_id"),
    ("get", "/v1/models/m%00", "name"),
    ("get", "/v1/models/m%00/versions/1", "name"),
    ("put", "/v1/models/m/aliases/a%00", "alias"),
    ("get", "/v1/models?after=m%00", "after"),
    ("get", "/v1/training-jobs?status=%00", "status"),
])
def test_a_nul_in_a_path_or_query_is_400(client, method, path, param):
    c, _ = client
    r = c.request(method.upper(), path, json={"version": 1} if method == "put" else None)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param and "NUL" in r.json()["error"]["message"]


def test_transform_names_with_a_nul_are_400(client):
    c, _ = client
    for body in ({"model": "m\x00", "input": [[0.1]]}, {"model": "m", "alias": "\x00", "input": [[0.1]]}):
        r = c.post("/v1/transform", json=body)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_text", r.text


# ---- cursors ------------------------------------------------------------------------------------

def test_invalid_cursors_are_400(client, dataset):
    c, _ = client
    job = c.post("/v1/training-jobs", json={"dataset_id": dataset, "architecture": TINY_CUBE}).json()["id"]
    for path in ("/v1/datasets", "/v1/training-jobs", f"/v1/training-jobs/{job}/events"):
        for bad in ("zz", "", "ds_x", "job_' OR 1=1", "ev_", dataset if "datasets" not in path else job):
            r = c.get(path, params={"after": bad})
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_cursor", (path, bad, r.text)
    # Well-formed cursors page as before.
    assert [d["id"] for d in c.get("/v1/datasets", params={"after": "ds_" + "f" * 19}).json()["data"]] == [dataset]
    assert c.get("/v1/training-jobs", params={"after": job}).json()["data"] == []
    events = c.get(f"/v1/training-jobs/{job}/events").json()["data"]
    assert c.get(f"/v1/training-jobs/{job}/events", params={"after": events[0]["id"]}).json()["data"] == events[1:]


# ---- Prometheus labels from a closed set ---------------------------------------------------------

def series(c) -> list[str]:
    return [line for line in c.get("/metrics").text.splitlines() if line.startswith("cube_http_")]


def test_random_method_names_do_not_grow_metrics(client_for, sqlite_settings):
    s = sqlite_settings.model_copy(update={"require_auth": True})  # counted before auth: no key needed to try
    c, _ = client_for(s)
    rng = random.Random(0)
    paths = ["/v1/datasets", "/v1/training-jobs", "/metrics", "/random"]
    for path in paths:  # one unknown method on each route makes its "other" series once
        for suffix in ("", "/0"):
            assert c.request("BREW", path + suffix).status_code in (404, 405)
    c.get("/metrics")
    before = series(c)
    for i in range(100):
        method = "".join(rng.choices(string.ascii_uppercase, k=rng.randint(3, 12)))
        path = rng.choice(paths) + ("" if i % 2 else f"/{i}")
        assert c.request(method, path).status_code in (401, 404, 405)
    after = series(c)
    labels = lambda lines: {line.split(" ")[0] for line in lines}  # noqa: E731
    assert labels(after) == labels(before)
    assert 'method="other"' in "\n".join(after) and "BREW" not in "\n".join(after)


def test_a_number_beyond_float_range_in_jsonl_is_422(client, settings):
    c, _ = client
    lines = "".join(json.dumps({"input": [0.5, 1.0], "target": [1.0, 0.5]}) + "\n" for _ in range(30))
    lines += '{"input": [1%s, 0], "target": [0, 1]}\n' % ("0" * 400)
    r = c.post("/v1/datasets", files={"file": ("big.jsonl", lines.encode())}, data={"kind": "embedding_pairs"})
    assert r.status_code == 422 and r.json()["error"]["line"] == 31, r.text
    assert_nothing_stored(c, settings)
