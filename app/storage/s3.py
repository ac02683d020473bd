"""S3-compatible object storage (AWS S3, MinIO, Ceph, ...) through boto3.

boto3 directly, not fsspec/s3fs: the service needs a handful of calls (multipart upload from a
file, download to a file, a streamed GET, list and batch delete), and boto3's transfer manager
does the multipart and parallel parts itself; an fsspec layer would add a dependency tree and an
async event loop per process for no feature used here. Endpoint, region and credentials come from
the usual AWS variables (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_DEFAULT_REGION`, or a profile / instance role).

Files are never held in memory: uploads go from a local file in parts, downloads go to a temp file
that is renamed into place, and `read_chunks` streams a GET. A key that names a tree (a model, a
checkpoint) is the set of objects under `<key>/`.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from botocore.exceptions import BotoCoreError, ClientError

from app.storage.base import Storage, StorageUnavailable, check_key

DELETE_BATCH = 1000  # the most keys one DeleteObjects call takes


def _missing(exc: Exception) -> bool:
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")


@contextlib.contextmanager
def _answered(key: str) -> Iterator[None]:
    """A missing object as FileNotFoundError; any other failure of the store as StorageUnavailable."""
    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        if _missing(exc):
            raise FileNotFoundError(f"{key} is not stored") from None
        raise StorageUnavailable(f"the object store failed on {key}: {exc}") from exc


class S3Storage(Storage):
    def __init__(self, bucket: str, prefix: str, cache_dir: str | Path):
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.bucket, self.prefix = bucket, prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.scratch = Path(cache_dir).resolve()
        self.client = boto3.client("s3", config=Config(retries={"max_attempts": 5, "mode": "standard"}))
        # Parts of 8 MiB, 4 at a time: one transfer holds at most ~32 MiB in memory, whatever the file size.
        self.transfer = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20, max_concurrency=4)

    def __repr__(self) -> str:
        return f"S3Storage(s3://{self.bucket}/{self.prefix})"

    def _object(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _cached(self, key: str) -> Path:
        """The process-shared copy of `key` (objects are written once under fresh keys, so a copy never goes stale)."""
        return self.scratch / "objects" / check_key(key)

    # -- writing ---------------------------------------------------------------------------
    def put_file(self, source: Path, key: str) -> None:
        with _answered(key):
            self.client.upload_file(str(source), self.bucket, self._object(key), Config=self.transfer)
        Path(source).unlink(missing_ok=True)

    def put_tree(self, source: Path, key: str) -> None:
        source = Path(source)
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            rel = path.relative_to(source).as_posix()
            with _answered(key):
                self.client.upload_file(str(path), self.bucket, self._object(f"{key}/{rel}"), Config=self.transfer)

    def delete(self, key: str) -> None:
        names = [self._object(key)] + [o["Key"] for o in self._list(key)]
        for i in range(0, len(names), DELETE_BATCH):
            with _answered(key):
                self.client.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": n} for n in names[i:i + DELETE_BATCH]], "Quiet": True})
        cached = self._cached(key)
        if cached.is_dir():
            shutil.rmtree(cached, ignore_errors=True)
        else:
            cached.unlink(missing_ok=True)

    # -- reading ---------------------------------------------------------------------------
    def stage(self, key: str, workspace: Path | None = None) -> Path:
        dest = (Path(workspace) / check_key(key)) if workspace is not None else self._cached(key)
        if dest.is_file():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.temp_dir(), prefix=self._temp_prefix("download"))
        os.close(fd)
        try:
            with _answered(key):
                self.client.download_file(self.bucket, self._object(key), tmp, Config=self.transfer)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        os.replace(tmp, dest)  # whole or absent, whoever else stages the same key
        return dest

    def stage_tree(self, key: str, workspace: Path | None = None) -> Path:
        dest = (Path(workspace) / check_key(key)) if workspace is not None else self._cached(key)
        if dest.is_dir():
            return dest
        objects = list(self._list(key))
        if not objects:
            raise FileNotFoundError(f"nothing is stored under {key}")
        tmp = Path(tempfile.mkdtemp(dir=self.temp_dir(), prefix=self._temp_prefix("download")))
        try:
            for obj in objects:
                path = tmp / obj["Key"][len(self._object(key)) + 1:]
                path.parent.mkdir(parents=True, exist_ok=True)
                with _answered(key):
                    self.client.download_file(self.bucket, obj["Key"], str(path), Config=self.transfer)
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(tmp, dest)  # atomic: a reader sees the whole tree or none
            except OSError:  # another process staged it first: use theirs
                if not dest.is_dir():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return dest

    def size(self, key: str) -> int | None:
        try:
            with _answered(key):
                return int(self.client.head_object(Bucket=self.bucket, Key=self._object(key))["ContentLength"])
        except FileNotFoundError:
            return None

    def exists(self, key: str) -> bool:
        return self.size(key) is not None or next(iter(self._list(key, limit=1)), None) is not None

    def local_file(self, key: str) -> Path | None:
        return None

    def read_chunks(self, key: str, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
        with _answered(key):
            body = self.client.get_object(Bucket=self.bucket, Key=self._object(key))["Body"]
        try:
            yield from body.iter_chunks(chunk_bytes)
        finally:
            body.close()

    def writable(self) -> bool:
        probe = self._object(f".probe/{os.getpid()}")
        try:
            self.client.put_object(Bucket=self.bucket, Key=probe, Body=b"ok")
            self.client.delete_object(Bucket=self.bucket, Key=probe)
            return True
        except (BotoCoreError, ClientError):  # any failure (network, credentials, bucket) means not ready
            return False

    def workdir(self, key: str, workspace: Path) -> Path:
        path = Path(workspace) / check_key(key)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _list(self, key: str, limit: int | None = None) -> Iterator[dict]:
        """The objects of tree `key` (everything under `<key>/`)."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._object(key) + "/",
            PaginationConfig={"MaxItems": limit} if limit else {})
        with _answered(key):
            for page in pages:
                yield from page.get("Contents", [])
