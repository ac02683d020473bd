"""The storage interface: datasets, checkpoints, artifacts, reports and bulk-transform results under
server-generated keys (`datasets/<id>/pairs.npz`, `jobs/<id>/attempts/<n>/run/model`, ...).

A key names a file or a directory tree (a model, a checkpoint). Processes never assume another
process's disk: they read through `stage` (a local copy; local storage's own file) and write
through `put_file` / `put_tree`. Work that needs a directory to write into (training, a bulk
transform) asks `workdir` for one; with local storage that is the key's own place, so nothing is
copied, and with an object store it is a directory in the process's workspace, published at the end.

Every implementation keeps a local scratch directory for upload temp files and workspaces; files
a dead process left there are found by their name (`kind@pid@host@random`) and removed at start.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path, PurePosixPath
from typing import Iterator


class StorageError(Exception):
    pass


class StorageUnavailable(StorageError):
    """The store did not answer (down, unreachable, refusing the credentials, no such bucket): the
    API answers 503 `storage_unavailable`, as for a database that is down."""


def check_key(key: str) -> str:
    """Keys are relative POSIX paths without `..`: they never leave the storage root or prefix."""
    parts = PurePosixPath(key).parts
    if not key or key.startswith("/") or ".." in parts or "\\" in key:
        raise StorageError(f"storage key {key!r} escapes the storage root")
    return key


class Storage(ABC):
    #: Local directory for temp files and job workspaces (never shared between hosts).
    scratch: Path

    # -- writing ---------------------------------------------------------------------------
    @abstractmethod
    def put_file(self, source: Path, key: str) -> None:
        """Store a finished local file under `key`; `source` is consumed (moved or uploaded, then removed)."""

    @abstractmethod
    def put_tree(self, source: Path, key: str) -> None:
        """Store a local directory tree under `key` (`source` stays; it may be `workdir(key)` itself)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove a file or a whole tree, and any local copy of it; missing is fine."""

    # -- reading ---------------------------------------------------------------------------
    @abstractmethod
    def stage(self, key: str, workspace: Path | None = None) -> Path:
        """A local path to read file `key` (FileNotFoundError if it is not stored). An object store
        downloads it into `workspace` (a job's, removed with it) or else into the process-shared cache."""

    @abstractmethod
    def stage_tree(self, key: str, workspace: Path | None = None) -> Path:
        """A local directory holding tree `key` (FileNotFoundError if nothing is stored under it)."""

    @abstractmethod
    def size(self, key: str) -> int | None:
        """The file's size in bytes, or None if it is not stored."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """A file or a non-empty tree is stored under `key`."""

    @abstractmethod
    def local_file(self, key: str) -> Path | None:
        """The file itself when it lies on this disk (served as it is), else None (stream `read_chunks`)."""

    @abstractmethod
    def read_chunks(self, key: str, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
        """The file's bytes as a stream (FileNotFoundError if it is not stored)."""

    @abstractmethod
    def writable(self) -> bool:
        """The readiness probe: a small object can be written and removed."""

    # -- local work ------------------------------------------------------------------------
    @abstractmethod
    def workdir(self, key: str, workspace: Path) -> Path:
        """Where to build what will be stored under `key` (then `put_tree(that, key)`)."""

    @contextlib.contextmanager
    def workspace(self, kind: str) -> Iterator[Path]:
        """A private local directory for one job's staged inputs and work; removed when the job ends."""
        path = Path(tempfile.mkdtemp(dir=self.temp_dir(), prefix=self._temp_prefix(kind)))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def temp_dir(self) -> Path:
        path = self.scratch / ".tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def new_temp_file(self, kind: str) -> tuple[int, Path]:
        """A fresh temp file (open fd, path) whose name records who writes it, `kind@pid@host@random`,
        so a file left by a process that died (kill -9, out of memory) can be told from one being written."""
        fd, name = tempfile.mkstemp(dir=self.temp_dir(), prefix=self._temp_prefix(kind))
        return fd, Path(name)

    def remove_abandoned_temp_files(self) -> list[Path]:
        """Delete the temp files and workspaces of processes of this host that no longer run (call at
        start). Those written on other hosts (a shared volume) are theirs to judge."""
        removed = []
        for path in self.temp_dir().iterdir():
            parts = path.name.split("@")
            if len(parts) == 4 and parts[1].isdigit() and parts[2] == socket.gethostname() and not _alive(int(parts[1])):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
        return removed

    @staticmethod
    def _temp_prefix(kind: str) -> str:
        return f"{kind}@{os.getpid()}@{socket.gethostname()}@"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True
