"""Embedding-pair data: loading and validating pair files, and held-out splits.

A pair file holds `input` [N, D_in] and `target` [N, D_out] float arrays, optionally `group` [N]
(strings: conversation ids; pairs that share a group never straddle two splits) and `difficulty` [N].
Every problem raises `PairFileError` naming the array (`field`) and, where it applies, the row.
"""
from __future__ import annotations

import hashlib
import zipfile
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


@dataclass
class PairData:
    input: np.ndarray                      # (N, D_in) float32
    target: np.ndarray                     # (N, D_out) float32
    groups: np.ndarray | None = None       # (N,) str: conversation / question ids
    difficulty: np.ndarray | None = None   # (N,) float32 in [0, 1], higher = harder

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
        )


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


def validate_pairs(input: np.ndarray, target: np.ndarray, *, groups=None, difficulty=None, min_pairs: int = MIN_PAIRS) -> PairData:
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
    return PairData(x, y, g, d)


def load_pairs_npz(path: str | Path, *, min_pairs: int = MIN_PAIRS) -> PairData:
    """Read and validate an NPZ pair file. Never unpickles (object arrays are refused)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = set(npz.files)
            for required in ("input", "target"):
                if required not in names:
                    raise PairFileError(
                        f"missing array '{required}' (found: {', '.join(sorted(names)) or 'none'})", field=required
                    )
            arrays = {k: _read_array(npz, k) for k in ("input", "target", "group", "difficulty") if k in names}
    except PairFileError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise PairFileError(f"not a readable NPZ file: {exc}", field="file") from None
    except ValueError as exc:
        raise PairFileError(f"not a readable NPZ file: {exc}", field="file") from None
    return validate_pairs(
        arrays["input"], arrays["target"], groups=arrays.get("group"), difficulty=arrays.get("difficulty"), min_pairs=min_pairs
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
    np.savez(path, **arrays)


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
    """Seeded split by group: whole groups go to test, then validation, the rest to training."""
    cfg.validate()
    keys = group_keys(data)
    uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    order = np.random.default_rng(cfg.seed).permutation(len(uniq))
    cum = np.cumsum(counts[order])  # pairs covered by the first k groups of the shuffled order
    n = len(data)
    n_test = max(1, int(np.searchsorted(cum, round(cfg.test_fraction * n), side="right")))
    n_val = max(1, int(np.searchsorted(cum, cum[n_test - 1] + round(cfg.val_fraction * n), side="right")) - n_test)
    which = np.zeros(len(uniq), dtype=np.int8)  # 0 train, 1 val, 2 test
    which[order[:n_test]] = 2
    which[order[n_test : n_test + n_val]] = 1
    pair_split = which[inverse]
    split = Split(*(np.flatnonzero(pair_split == k) for k in (0, 1, 2)))
    for name in ("train", "val", "test"):
        if len(getattr(split, name)) == 0:
            raise PairFileError(
                f"too few pairs (or groups) for a non-empty {name} split: {n} pairs in {len(uniq)} groups", field="group"
            )
    return split
