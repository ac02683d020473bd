"""The storage interface on both implementations: local (a directory) and S3 (a real S3 server,
moto's, started by the tests). The same calls, the same answers; the S3 one streams files of any
size with bounded memory and keeps keys inside its prefix."""
from __future__ import annotations

import os
import tracemalloc

import pytest

from app.settings import Settings
from app.storage import LocalStorage, StorageError, get_storage


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    url = request.getfixturevalue("s3_store").new_url() if request.param == "s3" else None
    return get_storage(Settings(data_dir=tmp_path / "data", storage_url=url))


def temp_file(storage, data: bytes):
    fd, path = storage.new_temp_file("test")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def test_files_round_trip_and_go_with_delete(storage):
    source = temp_file(storage, b"hello")
    storage.put_file(source, "datasets/d1/data.npz")
    assert not source.exists()  # consumed
    assert storage.exists("datasets/d1/data.npz") and storage.exists("datasets/d1")
    assert storage.size("datasets/d1/data.npz") == 5 and storage.size("datasets/nope") is None
    assert storage.stage("datasets/d1/data.npz").read_bytes() == b"hello"
    assert b"".join(storage.read_chunks("datasets/d1/data.npz", 2)) == b"hello"
    storage.delete("datasets/d1")
    assert not storage.exists("datasets/d1/data.npz") and storage.size("datasets/d1/data.npz") is None
    with pytest.raises(FileNotFoundError):
        storage.stage("datasets/d1/data.npz", storage.scratch)
    storage.delete("datasets/d1")  # missing is fine


def test_trees_are_built_in_a_workspace_stored_and_staged_whole(storage):
    with storage.workspace("test") as workspace:
        built = storage.workdir("jobs/j1/run", workspace)
        (built / "model").mkdir(parents=True)
        (built / "model" / "model.json").write_text("{}")
        (built / "report.md").write_text("# report")
        storage.put_tree(built, "jobs/j1/run")
        staged = storage.stage_tree("jobs/j1/run/model", workspace)
        assert (staged / "model.json").read_text() == "{}"
    assert not workspace.exists()  # a job's workspace goes with it
    assert storage.stage_tree("jobs/j1/run")  # from the shared cache, after the workspace is gone
    assert storage.size("jobs/j1/run/report.md") == 8
    with pytest.raises(FileNotFoundError):
        storage.stage_tree("jobs/nope")
    storage.delete("jobs/j1")
    assert not storage.exists("jobs/j1/run/model/model.json")


@pytest.mark.parametrize("key", ["../outside", "/etc/passwd", "a/../../b", ""])
def test_keys_never_leave_the_root_or_prefix(storage, key):
    with pytest.raises(StorageError):
        storage.stage(key)
    with pytest.raises(StorageError):
        storage.delete(key)


def test_abandoned_workspaces_and_temp_files_are_removed_at_start(storage):
    dead = storage.temp_dir() / f"upload@999999@{os.uname().nodename}@x"
    dead.write_bytes(b"half")
    (storage.temp_dir() / f"job-1@999999@{os.uname().nodename}@y").mkdir()
    live = temp_file(storage, b"mine")
    removed = {p.name for p in storage.remove_abandoned_temp_files()}
    assert any(n.startswith("upload@999999") for n in removed) and any(n.startswith("job-1@999999") for n in removed)
    assert live.exists() and storage.writable()


def test_s3_streams_large_files_with_bounded_memory(s3_store, tmp_path):
    storage = get_storage(Settings(data_dir=tmp_path / "data", storage_url=s3_store.new_url()))
    size = 48 << 20
    source = tmp_path / "big.bin"
    with open(source, "wb") as f:
        for i in range(size >> 20):
            f.write(bytes([i]) * (1 << 20))
    tracemalloc.start()
    try:
        storage.put_file(source, "transform-jobs/t1/input.npy")  # a multipart upload from the file
        staged = storage.stage("transform-jobs/t1/input.npy", tmp_path / "ws")
        streamed = sum(len(chunk) for chunk in storage.read_chunks("transform-jobs/t1/input.npy"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert staged.stat().st_size == streamed == size
    assert peak < size // 2, f"peak {peak >> 20} MiB of Python memory for a {size >> 20} MiB file"


def test_storage_url_selects_the_implementation(tmp_path):
    local = get_storage(Settings(data_dir=tmp_path, storage_url=f"file://{tmp_path / 'elsewhere'}"))
    assert isinstance(local, LocalStorage) and local.root == (tmp_path / "elsewhere").resolve()
    assert isinstance(get_storage(Settings(data_dir=tmp_path)), LocalStorage)  # the default
    for bad in ("ftp://host/x", "s3://", "bucket/prefix"):
        with pytest.raises(ValueError, match="storage_url"):
            Settings(data_dir=tmp_path, storage_url=bad)


def test_readyz_says_when_the_store_is_unreachable(client_for, tmp_path, s3_store):
    from app.migrate import upgrade

    s = Settings(data_dir=tmp_path / "data", require_auth=False, storage_url="s3://no-such-bucket/x")
    s.data_dir.mkdir(parents=True)
    upgrade(s.database)
    c, _ = client_for(s)
    r = c.get("/readyz")
    assert r.status_code == 503 and r.json()["checks"]["storage"].startswith("error"), r.text


def test_a_store_that_fails_is_503_not_500(client_for, tmp_path, s3_store, pairs_npz):
    from app.migrate import upgrade

    s = Settings(data_dir=tmp_path / "data", require_auth=False, storage_url="s3://no-such-bucket/x")
    s.data_dir.mkdir(parents=True)
    upgrade(s.database)
    c, _ = client_for(s)
    r = c.post("/v1/datasets", files={"file": ("p.npz", pairs_npz.read_bytes())}, data={"kind": "embedding_pairs"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "storage_unavailable", r.text
    assert r.headers["retry-after"] and c.get("/v1/datasets").json()["data"] == []  # no row without its file
    assert list((s.storage_cache / ".tmp").iterdir()) == []  # nor a temp file
