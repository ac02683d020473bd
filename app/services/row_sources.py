"""The rows a bulk transform reads, in batches with bounded memory, from the files it accepts:

    npy       one [N, D] float array                      memory-mapped
    npz       its `input` array (or its only array)       the member is copied out to a .npy, then memory-mapped
    parquet   its `input` column (lists of floats)        read a batch of rows at a time
    jsonl     a vector per line ([...] or {"input": [...]}), or a text per line ("..." or {"text": "..."})

`describe` reads only what it must to say what a file holds (array headers, Parquet metadata, one
pass over JSONL lines) and raises SourceError naming the row and field that are wrong; `batches`
yields float32 [<=size, D] arrays (or lists of texts) in row order.
"""
from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

VECTORS, TEXTS = "vectors", "texts"
FORMATS = ("npy", "npz", "parquet", "jsonl")
FIELD = "input"  # the array, column or key read from a file that has several (pair datasets name it so)
TEXT_KEYS = ("text", "input")


class SourceError(ValueError):
    def __init__(self, message: str, *, row: int | None = None, field: str | None = None):
        super().__init__(message)
        self.message, self.row, self.field = message, row, field


@dataclass
class Described:
    kind: str          # vectors | texts
    rows: int
    dim: int | None    # None for texts


def detect_format(path: Path, filename: str) -> str:
    with open(path, "rb") as f:
        head = f.read(6)
    if head.startswith(b"PK"):
        return "npz"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PAR1"):
        return "parquet"
    suffix = Path(filename).suffix.lower().lstrip(".")
    return suffix if suffix in FORMATS else "jsonl"


def _npy_header(f) -> tuple[tuple[int, ...], np.dtype, bool]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    raise SourceError(f".npy format {version} is not supported; save a plain float array", field=FIELD)


def _check_matrix(shape, dtype: np.dtype, what: str) -> tuple[int, int]:
    if dtype.kind != "f":
        raise SourceError(f"{what} must hold floats, got {dtype}", field=FIELD)
    if len(shape) != 2 or shape[0] == 0 or shape[1] == 0:
        raise SourceError(f"{what} must be a non-empty [N, D] matrix, got shape {list(shape)}", field=FIELD)
    return int(shape[0]), int(shape[1])


def _npz_member(zf: zipfile.ZipFile) -> zipfile.ZipInfo:
    arrays = {i.filename.removesuffix(".npy"): i for i in zf.infolist()}
    if FIELD in arrays:
        return arrays[FIELD]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    raise SourceError(f"the NPZ holds {', '.join(sorted(arrays)) or 'no arrays'}; name the one to transform '{FIELD}'",
                      field=FIELD)


def describe(path: Path, fmt: str, max_bytes: int) -> Described:
    """What the file holds, or SourceError. Arrays claiming more than `max_bytes` are refused from
    their headers; nothing is decoded whole."""
    try:
        if fmt == "npy":
            with open(path, "rb") as f:
                shape, _, dtype = _npy_header(f)
            return _vectors(shape, dtype, "the array", max_bytes)
        if fmt == "npz":
            with zipfile.ZipFile(path) as zf:
                member = _npz_member(zf)
                with zf.open(member) as f:
                    shape, _, dtype = _npy_header(f)
            return _vectors(shape, dtype, f"array '{member.filename.removesuffix('.npy')}'", max_bytes)
        if fmt == "parquet":
            return _describe_parquet(path, max_bytes)
        return _describe_jsonl(path)
    except SourceError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise SourceError(f"not a readable {fmt} file: {exc}", field="file") from None


def _vectors(shape, dtype, what: str, max_bytes: int) -> Described:
    rows, dim = _check_matrix(shape, dtype, what)
    if rows * dim * 4 > max_bytes:
        raise SourceError(f"{what} holds {rows} x {dim} values, over the limit of {max_bytes} bytes as float32",
                          field=FIELD)
    return Described(VECTORS, rows, dim)


def _describe_parquet(path: Path, max_bytes: int) -> Described:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except pa.ArrowException as exc:
        raise SourceError(f"not a readable Parquet file: {exc}", field="file") from None
    schema = parquet.schema_arrow
    if FIELD not in schema.names:
        raise SourceError(f"missing column '{FIELD}' (found: {', '.join(schema.names) or 'none'})", field=FIELD)
    kind = schema.field(FIELD).type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)) \
            or not pa.types.is_floating(kind.value_type):
        raise SourceError(f"column '{FIELD}' must be a list of floats, got type {kind}", field=FIELD)
    rows = parquet.metadata.num_rows
    if rows == 0:
        raise SourceError("the file holds no rows", field="file")
    first = next(parquet.iter_batches(batch_size=1, columns=[FIELD])).column(0)[0].as_py()
    if not first:
        raise SourceError(f"column '{FIELD}' row 0 is empty", field=FIELD, row=0)
    return _vectors((rows, len(first)), np.dtype("float32"), f"column '{FIELD}'", max_bytes)


def _jsonl_row(line: bytes, row: int):
    """A vector (list of numbers) or a text (str) from one JSONL line."""
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        raise SourceError(f"line {row + 1} is not valid JSON", row=row, field="file") from None
    if isinstance(value, dict):
        key = next((k for k in (FIELD, *TEXT_KEYS) if k in value), None)
        if key is None:
            raise SourceError(f"line {row + 1}: an object needs '{FIELD}' (a vector) or 'text'", row=row, field=FIELD)
        value = value[key]
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return value
    raise SourceError(f"line {row + 1}: expected a list of numbers or a text", row=row, field=FIELD)


def _jsonl_lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        for raw in f:
            if raw.strip():
                yield raw


def _describe_jsonl(path: Path) -> Described:
    rows, kind, dim = 0, None, None
    for row, line in enumerate(_jsonl_lines(path)):
        value = _jsonl_row(line, row)
        this = TEXTS if isinstance(value, str) else VECTORS
        if kind is None:
            kind, dim = this, (len(value) if this == VECTORS else None)
        elif this != kind:
            raise SourceError(f"line {row + 1} is {'a text' if this == TEXTS else 'a vector'}; line 1 was not",
                              row=row, field=FIELD)
        elif kind == VECTORS and len(value) != dim:
            raise SourceError(f"line {row + 1} has {len(value)} numbers, line 1 has {dim}", row=row, field=FIELD)
        rows += 1
    if rows == 0:
        raise SourceError("the file holds no rows", field="file")
    return Described(kind, rows, dim)


def batches(path: Path, fmt: str, size: int, workdir: Path) -> Iterator[np.ndarray | list[str]]:
    """The file's rows in order, `size` at a time: float32 arrays, or lists of texts. `workdir`
    holds what an NPZ member is copied out to."""
    if fmt in ("npy", "npz"):
        array = np.load(_npy_file(path, fmt, workdir), mmap_mode="r", allow_pickle=False)
        for start in range(0, len(array), size):
            yield np.array(array[start:start + size], dtype=np.float32)  # a writable copy of one batch
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=size, columns=[FIELD]):
            column = batch.column(0)
            values = column.flatten().to_numpy(zero_copy_only=False)
            if len(values) % len(column):
                raise SourceError(f"column '{FIELD}' has rows of different lengths", field=FIELD)
            yield values.astype(np.float32, copy=False).reshape(len(column), -1)
    else:
        chunk: list = []
        for row, line in enumerate(_jsonl_lines(path)):
            chunk.append(_jsonl_row(line, row))
            if len(chunk) == size:
                yield _as_batch(chunk)
                chunk = []
        if chunk:
            yield _as_batch(chunk)


def _as_batch(rows: list) -> np.ndarray | list[str]:
    if isinstance(rows[0], str):
        return rows
    with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused by the caller as non-finite
        return np.asarray(rows, dtype=np.float32)


def _npy_file(path: Path, fmt: str, workdir: Path) -> Path:
    """An .npy file to memory-map: the file itself, or the NPZ member copied out in chunks (a
    compressed member cannot be mapped)."""
    if fmt == "npy":
        return path
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "input.npy"
    with zipfile.ZipFile(path) as zf, zf.open(_npz_member(zf)) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, length=1 << 20)
    return out
