"""Embedding-pair data: loading and validating pair files, and held-out splits.

A pair file holds `input` [N, D_in] and `target` [N, D_out] float arrays, optionally `group` [N]
(strings: conversation ids; pairs that share a group never straddle two splits), `difficulty` [N]
and `question` [N] (booleans: the rows `eval_filter=question` scores). Several files combine into
one PairData with `source` [N], each pair's file (`concat_pairs`). A translation set of texts may hold
`link` [M, 2] (integers: rows (question, answer) of one text pair, for the report's recovery ratio).
Every problem raises `PairFileError` naming the array (`field`) and, where it applies, the row.
"""
from __future__ import annotations

import array
import hashlib
import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cube.config import SplitConfig

MIN_PAIRS = 20
FLOAT_DTYPES = (np.float16, np.float32, np.float64)


class PairFileError(ValueError):
    """A pair file is unreadable or its content is invalid; says where: `field` (array or column),
    `row` (0-based row of an array) or `line` (1-based line of a text file)."""

    def __init__(self, message: str, *, field: str | None = None, row: int | None = None, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.row = row
        self.line = line


class PairFileTooLarge(PairFileError):
    """The arrays a file decodes to would pass the caller's byte limit: found from the file's headers
    and metadata, before any array is read."""


def _check_decoded(what: str, nbytes: int, max_bytes: int | None, field: str) -> None:
    if max_bytes is not None and nbytes > max_bytes:
        raise PairFileTooLarge(f"{what} decodes to {nbytes:,} bytes; the limit is {max_bytes:,} bytes", field=field)


@dataclass
class PairData:
    input: np.ndarray                      # (N, D_in) float32
    target: np.ndarray                     # (N, D_out) float32
    groups: np.ndarray | None = None       # (N,) str: conversation / question ids
    difficulty: np.ndarray | None = None   # (N,) float32 in [0, 1], higher = harder
    question: np.ndarray | None = None     # (N,) bool: a question turn (what eval_filter=question scores)
    source: np.ndarray | None = None       # (N,) int: which of several files the pair came from
    links: np.ndarray | None = None        # (M, 2) int: row pairs (question, answer) of translated texts

    def __len__(self) -> int:
        return int(self.input.shape[0])

    @property
    def dim_in(self) -> int:
        return int(self.input.shape[1])

    @property
    def dim_out(self) -> int:
        return int(self.target.shape[1])

    def subset(self, idx: np.ndarray) -> "PairData":
        return PairData(
            self.input[idx],
            self.target[idx],
            None if self.groups is None else self.groups[idx],
            None if self.difficulty is None else self.difficulty[idx],
            None if self.question is None else self.question[idx],
            None if self.source is None else self.source[idx],
            None if self.links is None else subset_links(self.links, len(self), idx),
        )


def subset_links(links: np.ndarray, n: int, idx: np.ndarray) -> np.ndarray:
    """The links whose two rows are both in `idx`, renumbered to positions in `idx`."""
    position = np.full(n, -1, dtype=np.int64)
    position[np.asarray(idx, dtype=np.int64)] = np.arange(len(idx))
    moved = position[links]
    return moved[(moved >= 0).all(axis=1)]


def check_matrix(name: str, a: np.ndarray) -> np.ndarray:
    """A 2-D finite float matrix, as float32; otherwise PairFileError naming `name` and the row."""
    if a.dtype.kind not in "f" or a.dtype.type not in FLOAT_DTYPES:
        raise PairFileError(f"'{name}' must be a float16/float32/float64 array, got dtype {a.dtype}", field=name)
    if a.ndim != 2:
        raise PairFileError(f"'{name}' must be 2-D [N, D], got shape {list(a.shape)}", field=name)
    if a.shape[1] < 1:
        raise PairFileError(f"'{name}' has zero columns", field=name)
    bad = ~np.isfinite(a).all(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        raise PairFileError(f"'{name}' row {row} contains NaN or Inf", field=name, row=row)
    a32 = a.astype(np.float32)
    if not np.isfinite(a32).all():  # float64 values beyond float32's range
        row = int(np.argmax(~np.isfinite(a32).all(axis=1)))
        raise PairFileError(f"'{name}' row {row} overflows float32", field=name, row=row)
    return a32


def validate_pairs(input: np.ndarray, target: np.ndarray, *, groups=None, difficulty=None, question=None,
                   links=None, min_pairs: int = MIN_PAIRS) -> PairData:
    x = check_matrix("input", np.asarray(input))
    y = check_matrix("target", np.asarray(target))
    if x.shape[0] != y.shape[0]:
        raise PairFileError(f"'input' has {x.shape[0]} rows but 'target' has {y.shape[0]}", field="target")
    if x.shape[0] < min_pairs:
        raise PairFileError(f"need at least {min_pairs} pairs, got {x.shape[0]}", field="input")
    g = None
    if groups is not None:
        g = np.asarray(groups)
        if g.shape != (x.shape[0],):
            raise PairFileError(f"'group' must have shape [{x.shape[0]}], got {list(g.shape)}", field="group")
        g = g.astype(str)
    d = None
    if difficulty is not None:
        d = np.asarray(difficulty)
        if d.shape != (x.shape[0],) or d.dtype.kind not in "fiu" or not np.isfinite(d).all():
            raise PairFileError(f"'difficulty' must be {x.shape[0]} finite numbers", field="difficulty")
        d = d.astype(np.float32)
    q = None
    if question is not None:
        q = np.asarray(question)
        if q.shape != (x.shape[0],) or q.dtype != np.bool_:
            raise PairFileError(f"'question' must be {x.shape[0]} booleans", field="question")
    k = None
    if links is not None:
        k = np.asarray(links)
        if k.ndim != 2 or k.shape[1] != 2 or k.dtype.kind not in "iu" or (k.size and (k.min() < 0 or k.max() >= len(x))):
            raise PairFileError(f"'link' must be [M, 2] row numbers below {x.shape[0]}", field="link")
        k = k.astype(np.int64)
    return PairData(x, y, g, d, q, links=k)


NPZ_ARRAYS = ("input", "target", "group", "difficulty", "question", "link")


def npz_headers(path: str | Path) -> dict[str, tuple[tuple[int, ...], np.dtype, int]]:
    """name -> (shape, dtype, uncompressed entry bytes) of the arrays in an NPZ, read from the zip
    directory and each .npy header alone: no array data is decompressed."""
    headers = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            name = info.filename.removesuffix(".npy")
            if name not in NPZ_ARRAYS:
                continue  # never read, so never decompressed
            with zf.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                else:  # 3.0 exists only for structured dtypes with unicode field names: never pair data
                    raise PairFileError(f"array '{name}' has .npy format {version}; save plain arrays (format 1.0 or 2.0)",
                                        field=name)
            headers[name] = (tuple(shape), dtype, info.file_size)
    return headers


def check_npz_size(path: str | Path, max_bytes: int) -> None:
    """PairFileTooLarge if the arrays would decode to more than `max_bytes` in all, judged from the
    headers and the zip's entry sizes (what a reader would allocate and what it would decompress)."""
    total = 0
    for name, (shape, dtype, entry_bytes) in npz_headers(path).items():
        claimed = math.prod(shape) * dtype.itemsize  # Python ints: a (1e9, 1e9) shape does not overflow
        _check_decoded(f"array '{name}' (shape {list(shape)}, {dtype})", claimed, max_bytes, name)
        _check_decoded(f"the zip entry of array '{name}'", entry_bytes, max_bytes, name)
        total += max(claimed, entry_bytes)
    _check_decoded("the file's arrays together", total, max_bytes, "file")


def load_pairs_npz(path: str | Path, *, min_pairs: int = MIN_PAIRS, max_bytes: int | None = None) -> PairData:
    """Read and validate an NPZ pair file. Never unpickles (object arrays are refused). With
    `max_bytes`, a file whose arrays would decode to more is refused before any is read."""
    try:
        if max_bytes is not None:
            check_npz_size(path, max_bytes)
        with np.load(path, allow_pickle=False) as npz:
            names = set(npz.files)
            for required in ("input", "target"):
                if required not in names:
                    raise PairFileError(
                        f"missing array '{required}' (found: {', '.join(sorted(names)) or 'none'})", field=required
                    )
            arrays = {k: _read_array(npz, k) for k in NPZ_ARRAYS if k in names}
    except PairFileError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError, RuntimeError) as exc:
        # NotImplementedError: an unsupported compression method; RuntimeError: an encrypted entry.
        raise PairFileError(f"not a readable NPZ file: {exc}", field="file") from None
    except ValueError as exc:
        raise PairFileError(f"not a readable NPZ file: {exc}", field="file") from None
    return validate_pairs(
        arrays["input"], arrays["target"], groups=arrays.get("group"), difficulty=arrays.get("difficulty"),
        question=arrays.get("question"), links=arrays.get("link"), min_pairs=min_pairs
    )


def _read_array(npz, name: str) -> np.ndarray:
    try:
        return npz[name]
    except ValueError as exc:  # object arrays need pickle, which we never allow
        raise PairFileError(f"array '{name}' cannot be read without pickle ({exc}); store plain numeric arrays", field=name) from None


def save_pairs_npz(path: str | Path, data: PairData) -> None:
    arrays = {"input": data.input, "target": data.target}
    if data.groups is not None:
        arrays["group"] = data.groups.astype(str)
    if data.difficulty is not None:
        arrays["difficulty"] = data.difficulty
    if data.question is not None:
        arrays["question"] = data.question
    if data.links is not None:
        arrays["link"] = data.links
    np.savez(path, **arrays)


def concat_pairs(parts: list[PairData]) -> PairData:
    """Several pair sets as one, each pair keeping its `source` (the index of its part). Groups are
    shared: the same group name in two files is one group, on one side of the split. A pair whose
    input and target both repeat a pair of an earlier file is dropped (the earlier source keeps it, marked
    `question` if any copy is), so a file of question turns and a file of all turns of the same
    chats can be combined. Rows of a part without `question` and without a marked copy elsewhere
    count as not question turns; `difficulty` is kept only if every part has it."""
    if len(parts) == 1:
        return parts[0]
    if len({p.dim_in for p in parts}) > 1 or len({p.dim_out for p in parts}) > 1:
        dims = ", ".join(f"{p.dim_in}->{p.dim_out}" for p in parts)
        raise PairFileError(f"the files have different dimensions ({dims}); all must match", field="input")
    x = np.concatenate([p.input for p in parts])
    y = np.concatenate([p.target for p in parts])
    source = np.concatenate([np.full(len(p), i, dtype=np.int64) for i, p in enumerate(parts)])
    groups = np.concatenate([group_keys(p) for p in parts])
    question = None
    if any(p.question is not None for p in parts):
        question = np.concatenate([p.question if p.question is not None else np.zeros(len(p), bool) for p in parts])
    difficulty = None
    if all(p.difficulty is not None for p in parts):
        difficulty = np.concatenate([p.difficulty for p in parts])
    links = None
    if any(p.links is not None for p in parts):  # each part's rows move by the rows before it
        offsets = np.cumsum([0] + [len(p) for p in parts])
        links = np.concatenate([p.links + offset for p, offset in zip(parts, offsets) if p.links is not None])
    keys = np.array([hashlib.blake2b(a.tobytes() + b.tobytes(), digest_size=16).digest() for a, b in zip(x, y)])
    keep = np.ones(len(x), bool)
    seen: set[bytes] = set()
    for i in range(len(parts)):  # a repeat inside one file stays (its loader already chose to keep it)
        rows = np.flatnonzero(source == i)
        keep[rows] = [k not in seen for k in keys[rows]]
        seen.update(keys[rows].tolist())
    if question is not None:  # a repeated pair is a question turn if any file marks it so
        _, inverse = np.unique(keys, return_inverse=True)
        marked = np.zeros(int(inverse.max()) + 1, bool)
        np.logical_or.at(marked, inverse, question)
        question = marked[inverse]
    return PairData(x, y, groups, difficulty, question, source, links).subset(np.flatnonzero(keep))


@dataclass
class Split:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def group_keys(data: PairData) -> np.ndarray:
    """The unit that must not straddle splits: the given group, else the input itself (so a
    repeated question with several answers stays on one side)."""
    if data.groups is not None:
        return data.groups
    return np.array([hashlib.blake2b(row.tobytes(), digest_size=8).hexdigest() for row in data.input])


def split_pairs(data: PairData, cfg: SplitConfig) -> Split:
    """Seeded split by group: whole groups go to test, then validation, the rest to training.

    With cfg.eval_filter == "question" the split is drawn over the question rows alone (so it is the
    same split as for a file of just those rows); validation and test keep only question rows, and
    training gets every row of the other groups, question or not."""
    cfg.validate()
    if cfg.eval_filter == "all":
        return _split_by_group(group_keys(data), len(data), cfg)
    if data.question is None or not data.question.any():
        raise PairFileError("eval_filter=question needs a boolean 'question' field marking some rows "
                            "(e.g. `cube data chitchat --pairs all`)", field="question")
    keys = group_keys(data)
    scored = np.flatnonzero(data.question)
    inner = _split_by_group(keys[scored], len(scored), cfg)
    held_out = set(keys[scored[inner.val]]) | set(keys[scored[inner.test]])
    train = np.flatnonzero(~np.isin(keys, list(held_out)))
    return Split(train, scored[inner.val], scored[inner.test])


def _split_by_group(keys: np.ndarray, n: int, cfg: SplitConfig) -> Split:
    uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    order = np.random.default_rng(cfg.seed).permutation(len(uniq))
    cum = np.cumsum(counts[order])  # pairs covered by the first k groups of the shuffled order

    def groups_for(target: int, before: int) -> int:
        """How many more groups (after `before` pairs) make up about `target` pairs, and at least 2."""
        about = int(np.searchsorted(cum, before + target, side="right"))
        at_least_two = int(np.searchsorted(cum, before + 2, side="left")) + 1
        return max(about, at_least_two)

    n_test = min(len(uniq), groups_for(round(cfg.test_fraction * n), 0))
    n_val = min(len(uniq), groups_for(round(cfg.val_fraction * n), int(cum[n_test - 1]))) - n_test
    which = np.zeros(len(uniq), dtype=np.int8)  # 0 train, 1 val, 2 test
    which[order[:n_test]] = 2
    which[order[n_test : n_test + n_val]] = 1
    pair_split = which[inverse]
    split = Split(*(np.flatnonzero(pair_split == k) for k in (0, 1, 2)))
    for name in ("train", "val", "test"):
        if len(getattr(split, name)) < 2:  # retrieval and spread need at least two rows
            raise PairFileError(
                f"too few pairs (or groups) for a {name} split of at least 2 pairs: {n} pairs in {len(uniq)} groups",
                field="group",
            )
    return split


# --- Embedding pairs in other formats: Parquet and JSONL -------------------------------------------------

PAIR_FORMATS = {".npz": "npz", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def load_pairs_file(path: str | Path, *, fmt: str | None = None, min_pairs: int = MIN_PAIRS,
                    max_bytes: int | None = None) -> PairData:
    """Embedding pairs from NPZ, Parquet (list columns `input`, `target`, optional `group`,
    `difficulty`) or JSONL (`{"input": [floats], "target": [floats], "group"?: str}` per line).
    The format comes from the suffix unless `fmt` names it. `max_bytes` bounds the decoded arrays
    (PairFileTooLarge): NPZ as its headers declare them, Parquet as its row groups' uncompressed
    size, JSONL at 8 bytes per number."""
    if fmt is None:
        suffix = Path(path).suffix.lower()
        if suffix not in PAIR_FORMATS:
            raise PairFileError(f"cannot tell the format of {Path(path).name!r} from its suffix; use one of "
                                f"{', '.join(sorted(PAIR_FORMATS))} or name the format", field="file")
        fmt = PAIR_FORMATS[suffix]
    if fmt == "npz":
        return load_pairs_npz(path, min_pairs=min_pairs, max_bytes=max_bytes)
    if fmt == "parquet":
        return load_pairs_parquet(path, min_pairs=min_pairs, max_bytes=max_bytes)
    if fmt == "jsonl":
        return load_pairs_jsonl(path, min_pairs=min_pairs, max_bytes=max_bytes)
    raise PairFileError(f"unknown pair format {fmt!r}; known: npz, parquet, jsonl", field="file")


def _vector_from_json(value, name: str, line: int, dim: int | None) -> list[float]:
    if not isinstance(value, list):
        raise PairFileError(f"line {line}: '{name}' must be a list of numbers, got {type(value).__name__}", field=name, line=line)
    if not value:
        raise PairFileError(f"line {line}: '{name}' is an empty list", field=name, line=line)
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise PairFileError(f"line {line}: '{name}' must hold only numbers, found {type(v).__name__}", field=name, line=line)
        try:
            finite = math.isfinite(v)  # json accepts NaN and Infinity tokens
        except OverflowError:  # an integer beyond any float
            finite = False
        if not finite:
            raise PairFileError(f"line {line}: '{name}' contains NaN or Inf, or a number beyond float range", field=name, line=line)
    if dim is not None and len(value) != dim:
        raise PairFileError(f"line {line}: '{name}' has {len(value)} numbers, earlier lines have {dim}", field=name, line=line)
    return value


def load_pairs_jsonl(path: str | Path, *, min_pairs: int = MIN_PAIRS, max_bytes: int | None = None) -> PairData:
    from cube.textpairs import decode_utf8, jsonl_objects

    try:
        text = decode_utf8(Path(path).read_bytes())
    except OSError as exc:
        raise PairFileError(f"cannot read {path}: {exc.strerror}", field="file") from None
    # Numbers go into flat float64 buffers (8 bytes each), not lists of Python floats (32 bytes each).
    vectors = {"input": array.array("d"), "target": array.array("d")}
    gs, ds = [], []
    dims: dict[str, int | None] = {"input": None, "target": None}
    has_group = has_difficulty = None
    for line, obj in jsonl_objects(text):
        for name in ("input", "target"):
            if name not in obj:
                raise PairFileError(f"line {line}: missing field '{name}'", field=name, line=line)
            vec = _vector_from_json(obj[name], name, line, dims[name])
            dims[name] = len(vec)
            vectors[name].extend(vec)
        _check_decoded(f"the vectors up to line {line}", 8 * (len(vectors["input"]) + len(vectors["target"])), max_bytes,
                       "file")
        for name, store in (("group", gs), ("difficulty", ds)):
            present = obj.get(name) is not None
            first = has_group if name == "group" else has_difficulty
            if first is None:
                first = present
                if name == "group":
                    has_group = present
                else:
                    has_difficulty = present
            if first != present:
                raise PairFileError(f"line {line}: '{name}' must be given on every line or on none", field=name, line=line)
            if not present:
                continue
            value = obj[name]
            if name == "group" and (isinstance(value, bool) or not isinstance(value, (str, int))):
                raise PairFileError(f"line {line}: 'group' must be a string, got {type(value).__name__}", field=name, line=line)
            if name == "difficulty" and (isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value)):
                raise PairFileError(f"line {line}: 'difficulty' must be a finite number", field=name, line=line)
            store.append(str(value) if name == "group" else float(value))
    if dims["input"] is None:
        raise PairFileError("the file holds no pairs", field="file")
    x, y = (np.frombuffer(vectors[k], dtype=np.float64).reshape(-1, dims[k]) for k in ("input", "target"))
    return validate_pairs(x, y,
                          groups=np.array(gs, dtype=str) if has_group else None,
                          difficulty=np.array(ds, dtype=np.float64) if has_difficulty else None, min_pairs=min_pairs)


def _parquet_matrix(table, name: str) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.column(name).combine_chunks()
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or pa.types.is_fixed_size_list(col.type)):
        raise PairFileError(f"column '{name}' must be a list of floats, got type {col.type}", field=name)
    if not (pa.types.is_floating(col.type.value_type) or pa.types.is_integer(col.type.value_type)):
        raise PairFileError(f"column '{name}' must hold floats, got {col.type.value_type}", field=name)
    if col.null_count:
        row = int(np.argmax(col.is_null().to_numpy(zero_copy_only=False)))
        raise PairFileError(f"column '{name}' row {row} is null", field=name, row=row)
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    if len(lengths) == 0:
        raise PairFileError("the file holds no pairs", field="file")
    if lengths[0] == 0 or (lengths != lengths[0]).any():
        row = int(np.argmax(lengths != lengths[0])) if lengths[0] else 0
        raise PairFileError(f"column '{name}' row {row} has {lengths[row]} numbers, row 0 has {lengths[0]}", field=name, row=row)
    values = col.flatten()
    if values.null_count:
        row = int(np.argmax(values.is_null().to_numpy(zero_copy_only=False))) // int(lengths[0])
        raise PairFileError(f"column '{name}' row {row} contains a null number", field=name, row=row)
    return values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False).reshape(len(col), int(lengths[0]))


def load_pairs_parquet(path: str | Path, *, min_pairs: int = MIN_PAIRS, max_bytes: int | None = None) -> PairData:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        meta = parquet.metadata
        _check_decoded("the file's row groups", sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)),
                       max_bytes, "file")
        groups, decoded = [], 0
        for i in range(meta.num_row_groups):  # one at a time, so metadata that understates is caught early
            groups.append(parquet.read_row_group(i))
            decoded += groups[-1].nbytes
            _check_decoded(f"the file's row groups up to number {i}", decoded, max_bytes, "file")
        table = pa.concat_tables(groups) if groups else parquet.schema_arrow.empty_table()
    except (OSError, pa.ArrowException) as exc:
        raise PairFileError(f"not a readable Parquet file: {exc}", field="file") from None
    names = set(table.column_names)
    for required in ("input", "target"):
        if required not in names:
            raise PairFileError(f"missing column '{required}' (found: {', '.join(sorted(names)) or 'none'})", field=required)
    if table.num_rows == 0:
        raise PairFileError("the file holds no pairs", field="file")
    x, y = _parquet_matrix(table, "input"), _parquet_matrix(table, "target")
    groups = difficulty = None
    if "group" in names:
        g = table.column("group")
        if g.null_count:
            row = int(np.argmax(g.is_null().to_numpy(zero_copy_only=False)))
            raise PairFileError(f"column 'group' row {row} is null", field="group", row=row)
        if not (pa.types.is_string(g.type) or pa.types.is_large_string(g.type) or pa.types.is_integer(g.type)):
            raise PairFileError(f"column 'group' must hold strings, got type {g.type}", field="group")
        groups = np.array([str(v) for v in g.to_pylist()])
    if "difficulty" in names:
        d = table.column("difficulty")
        if d.null_count or not (pa.types.is_floating(d.type) or pa.types.is_integer(d.type)):
            raise PairFileError("column 'difficulty' must hold numbers without nulls", field="difficulty")
        difficulty = d.to_numpy()
    return validate_pairs(x, y, groups=groups, difficulty=difficulty, min_pairs=min_pairs)
