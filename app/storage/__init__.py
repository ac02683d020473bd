"""Where the service keeps its files: `CUBE_STORAGE_URL` picks the implementation (docs/storage.md).

    file:///srv/cube/storage   local storage under that directory (the default: <data_dir>/storage)
    s3://bucket/prefix         an S3-compatible store; endpoint and credentials from the AWS variables
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from urllib.parse import urlparse

from app.storage.base import Storage, StorageError, StorageUnavailable
from app.storage.local import LocalStorage

__all__ = ["LocalStorage", "Storage", "StorageError", "StorageUnavailable", "get_storage", "check_storage_url"]

_clients: dict[tuple, Storage] = {}
_clients_lock = threading.Lock()


def check_storage_url(url: str) -> None:
    """Refuse a URL no implementation serves (at settings time, not on the first upload)."""
    parsed = urlparse(url)
    if parsed.scheme == "file" and (parsed.netloc or parsed.path):
        return
    if parsed.scheme == "s3" and parsed.netloc:
        return
    raise ValueError(f"storage_url must be file:///a/directory or s3://bucket[/prefix], not {url!r}")


def get_storage(settings) -> Storage:
    """The storage the settings name. An object store's client is made once per process (it is
    thread-safe, and keeps its connection pool); a forked child makes its own."""
    url = settings.storage_url
    if url is None or url.startswith("file:"):
        return LocalStorage(settings.storage_root)
    parsed = urlparse(url)
    identity = (url, str(settings.storage_cache), os.getpid())
    with _clients_lock:
        storage = _clients.get(identity)
        if storage is None:
            from app.storage.s3 import S3Storage

            storage = _clients[identity] = S3Storage(parsed.netloc, parsed.path, Path(settings.storage_cache))
        return storage
