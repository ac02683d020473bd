"""Local storage: every key is a file or directory under one root (a disk, or a volume shared by
the machines that use it). Reading and working need no copies: `stage` and `workdir` return the
key's own place, and temp files live inside the root so that storing one is a rename."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

from app.storage.base import Storage, StorageError, check_key


class LocalStorage(Storage):
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.scratch = self.root

    def local_path(self, key: str) -> Path:
        """The file or directory for `key`; keys never leave the root."""
        path = (self.root / check_key(key)).resolve()
        if path != self.root and self.root not in path.parents:
            raise StorageError(f"storage key {key!r} escapes the storage root")
        return path

    def put_file(self, source: Path, key: str) -> None:
        """Move a finished file into place atomically (same filesystem: a rename)."""
        dest = self.local_path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), dest)

    def put_tree(self, source: Path, key: str) -> None:
        dest = self.local_path(key)
        if Path(source).resolve() != dest:  # built in place (workdir) is already stored
            shutil.copytree(source, dest, dirs_exist_ok=True)

    def delete(self, key: str) -> None:
        path = self.local_path(key)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()

    def stage(self, key: str, workspace: Path | None = None) -> Path:
        path = self.local_path(key)
        if not path.is_file():
            raise FileNotFoundError(f"{key} is not stored")
        return path

    def stage_tree(self, key: str, workspace: Path | None = None) -> Path:
        path = self.local_path(key)
        if not path.is_dir():
            raise FileNotFoundError(f"nothing is stored under {key}")
        return path

    def size(self, key: str) -> int | None:
        path = self.local_path(key)
        return path.stat().st_size if path.is_file() else None

    def exists(self, key: str) -> bool:
        return self.local_path(key).exists()

    def local_file(self, key: str) -> Path | None:
        path = self.local_path(key)
        return path if path.is_file() else None

    def read_chunks(self, key: str, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
        with self.local_path(key).open("rb") as f:
            while chunk := f.read(chunk_bytes):
                yield chunk

    def workdir(self, key: str, workspace: Path) -> Path:
        return self.local_path(key)

    def writable(self) -> bool:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, probe = self.new_temp_file("probe")
            with open(fd, "wb") as f:
                f.write(b"ok")
            probe.unlink()
            return True
        except OSError:
            return False
