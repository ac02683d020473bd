"""Artifact storage: uploaded files, checkpoints and models under server-generated keys.

`LocalStorage` keeps them in one directory (the default, and what a shared volume gives many
machines). An S3-compatible store would implement the same few methods; the trainer needs a local
path to work in, which `local_path` gives.
"""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path


class StorageError(Exception):
    pass


class LocalStorage:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def local_path(self, key: str) -> Path:
        """The file or directory for `key`; keys never leave the root."""
        path = (self.root / key).resolve()
        if path != self.root and self.root not in path.parents:
            raise StorageError(f"storage key {key!r} escapes the storage root")
        return path

    def key_for(self, path: str | Path) -> str:
        """The key of a file or directory under the root (the inverse of `local_path`)."""
        return Path(path).resolve().relative_to(self.root).as_posix()

    def put_file(self, source: Path, key: str) -> Path:
        """Move a finished file into place atomically (same filesystem: a rename)."""
        dest = self.local_path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), dest)
        return dest

    def exists(self, key: str) -> bool:
        return self.local_path(key).exists()

    def delete(self, key: str) -> None:
        """Remove a file or a directory tree; missing is fine."""
        path = self.local_path(key)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()

    def temp_dir(self) -> Path:
        """Where uploads are written before validation (inside the root, so the move is a rename)."""
        path = self.root / ".tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def new_temp_file(self, kind: str) -> tuple[int, Path]:
        """A fresh temp file (open fd, path) whose name records who writes it, `kind@pid@host@random`,
        so a file left by a process that died (kill -9, out of memory) can be told from one being written."""
        fd, name = tempfile.mkstemp(dir=self.temp_dir(), prefix=f"{kind}@{os.getpid()}@{socket.gethostname()}@")
        return fd, Path(name)

    def remove_abandoned_temp_files(self) -> list[Path]:
        """Delete the temp files of processes of this host that no longer run (call at start). Files
        written on other hosts (a shared volume) are theirs to judge."""
        removed = []
        for path in self.temp_dir().iterdir():
            parts = path.name.split("@")
            if len(parts) == 4 and parts[1].isdigit() and parts[2] == socket.gethostname() and not _alive(int(parts[1])):
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed

    def writable(self) -> bool:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.temp_dir() / f".probe-{os.getpid()}"
            probe.write_bytes(b"ok")
            probe.unlink()
            return True
        except OSError:
            return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True


def get_storage(settings) -> LocalStorage:
    return LocalStorage(settings.storage_root)
