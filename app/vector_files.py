"""Vectors (or texts) in and out of files for `cube transform --url`: .npy, .npz and .jsonl.

In: .npy holds one [N, D] array; .npz the array named by `key` (default `input`, or its only
array); .jsonl one record per line: a list of numbers, a string, or an object whose `input` is
either (strings make a text request). Out: .npy, .npz (array `embedding`), or .jsonl lines
`{"index": i, "embedding": [...]}`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SUFFIXES = (".npy", ".npz", ".jsonl")


class VectorFileError(Exception):
    """A file that cannot be read or written as vectors: a usage error (exit status 2)."""


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise VectorFileError(f"{path}: expected one of {', '.join(SUFFIXES)}")
    return suffix


def read_inputs(path: str, key: str | None = None) -> np.ndarray | list[str]:
    p = Path(path)
    suffix = _suffix(p)
    if not p.is_file():
        raise VectorFileError(f"{path}: no such file")
    try:
        if suffix == ".npy":
            return np.load(p, allow_pickle=False)
        if suffix == ".npz":
            with np.load(p, allow_pickle=False) as archive:
                names = list(archive.files)
                name = key or ("input" if "input" in names else names[0] if len(names) == 1 else None)
                if name not in names:
                    raise VectorFileError(f"{path}: holds {', '.join(names) or 'no arrays'}; name one with --key")
                return archive[name]
        return _read_jsonl(p)
    except (OSError, ValueError, EOFError) as exc:
        raise VectorFileError(f"{path}: {exc}") from None


def _read_jsonl(p: Path) -> np.ndarray | list[str]:
    rows = []
    for number, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise VectorFileError(f"{p}: line {number} is not JSON") from None
        rows.append(record.get("input") if isinstance(record, dict) else record)
    if not rows:
        raise VectorFileError(f"{p}: no records")
    if all(isinstance(r, str) for r in rows):
        return rows
    if all(isinstance(r, list) for r in rows):
        try:
            return np.asarray(rows, dtype=np.float32)
        except ValueError:
            raise VectorFileError(f"{p}: the vectors do not all have the same length") from None
    raise VectorFileError(f"{p}: every line must be a vector (list of numbers) or a text, not a mix")


def write_outputs(path: str, y: np.ndarray) -> None:
    p = Path(path)
    suffix = _suffix(p)
    try:
        if suffix == ".npy":
            with open(p, "wb") as f:  # np.save(path) would append .npy to any other name
                np.save(f, y)
        elif suffix == ".npz":
            with open(p, "wb") as f:
                np.savez(f, embedding=y)
        else:
            with open(p, "w", encoding="utf-8") as f:
                for i, row in enumerate(y):
                    f.write(json.dumps({"index": i, "embedding": row.tolist()}) + "\n")
    except OSError as exc:
        raise VectorFileError(f"cannot write {path}: {exc.strerror or exc}") from None
