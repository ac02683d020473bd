"""Text pairs -> embedding pairs through a teacher, with an on-disk cache.

The cache is one SQLite file per directory, `embeddings.sqlite`, a table of float32 blobs keyed by
(teacher name, sha256 of the text). A text any dataset has already encoded with that teacher is read
back, not recomputed; SQLite gives atomic, concurrent-safe writes and never unpickles anything.

Each encoded pair also gets its teacher cosine q = cos(input, target): `difficulty = 1 - q` clipped
to [0, 1] (the curriculum's order), and with `quality_threshold` the pairs with q below it are
dropped (the prototype's "relevance threshold", now a measured, reported filter).
"""
from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from cube.pairs import MIN_PAIRS, PairData, PairFileError, validate_pairs
from cube.textpairs import TextPairs

CACHE_FILE = "embeddings.sqlite"


class Encoder(Protocol):
    name: str
    dim: int
    cache_name: str  # the embedding cache's key for its vectors (a Teacher: name, plus a fingerprint if redefined)

    def encode(self, texts: list[str], batch_size: int = ...) -> np.ndarray: ...


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """(teacher, sha256(text)) -> float32 vector, in `cache_dir/embeddings.sqlite`."""

    def __init__(self, cache_dir: str | Path):
        self.path = Path(cache_dir).expanduser() / CACHE_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")  # readers do not block a writer in another process
        self.db.execute("CREATE TABLE IF NOT EXISTS embedding (teacher TEXT NOT NULL, text_sha256 TEXT NOT NULL, "
                        "dim INTEGER NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (teacher, text_sha256))")
        self.db.commit()

    def get_many(self, teacher: str, dim: int, keys: list[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), 500):  # stays under SQLite's bound-parameter limit
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, d, blob in self.db.execute(
                # Bandit B608: only "?" placeholders are formatted in; every value is a bound parameter.
                f"SELECT text_sha256, dim, vector FROM embedding WHERE teacher = ? AND text_sha256 IN ({marks})",  # nosec B608
                [teacher, *chunk],
            ):
                if d == dim and len(blob) == 4 * dim:  # a teacher redefined with another dim: recompute
                    found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, teacher: str, keys: list[str], vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO embedding (teacher, text_sha256, dim, vector) VALUES (?, ?, ?, ?)",
                [(teacher, k, vectors.shape[1], v.tobytes()) for k, v in zip(keys, vectors)],
            )

    def close(self) -> None:
        self.db.close()


@dataclass
class EncodeStats:
    texts: int = 0            # distinct texts asked for
    cache_hits: int = 0
    encoded: int = 0          # texts the teacher computed
    pairs_in: int = 0
    dropped_low_quality: int = 0
    pairs_out: int = 0


def encode_texts(texts: list[str], teacher: Encoder, cache: EmbeddingCache, *, batch_size: int = 64,
                 chunk: int = 2048, stats: EncodeStats | None = None,
                 progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Embeddings of `texts` (N, dim), computing only those the cache lacks, chunk by chunk (so an
    interrupted run keeps what it did)."""
    stats = stats if stats is not None else EncodeStats()
    keys = [text_key(t) for t in texts]
    unique = dict.fromkeys(keys)  # ordered, distinct
    first_text = {}
    for k, t in zip(keys, texts):
        first_text.setdefault(k, t)
    vectors = cache.get_many(teacher.cache_name, teacher.dim, list(unique))
    missing = [k for k in unique if k not in vectors]
    stats.texts += len(unique)
    stats.cache_hits += len(unique) - len(missing)
    for start in range(0, len(missing), chunk):
        part = missing[start : start + chunk]
        emb = np.asarray(teacher.encode([first_text[k] for k in part], batch_size=batch_size), dtype=np.float32)
        if emb.shape != (len(part), teacher.dim):
            raise ValueError(f"teacher {teacher.name!r} returned shape {emb.shape}, expected ({len(part)}, {teacher.dim})")
        cache.put_many(teacher.cache_name, part, emb)
        vectors.update(zip(part, emb))
        stats.encoded += len(part)
        if progress:
            progress(min(start + chunk, len(missing)), len(missing))
    if not keys:
        return np.zeros((0, teacher.dim), np.float32)
    return np.stack([vectors[k] for k in keys]).astype(np.float32)


def input_groups(inputs: list[str]) -> np.ndarray:
    """Without given groups, pairs that share an input text form a group (one question, several
    answers, all on one side of the split)."""
    return np.array(["q:" + text_key(t)[:16] for t in inputs])


def encode_text_pairs_with_stats(
    text_pairs: TextPairs, teacher: Encoder, cache_dir: str | Path, *, quality_threshold: float | None = None,
    batch_size: int = 64, min_pairs: int = MIN_PAIRS, progress: Callable[[int, int], None] | None = None,
) -> tuple[PairData, EncodeStats]:
    stats = EncodeStats(pairs_in=len(text_pairs))
    cache = EmbeddingCache(cache_dir)
    try:
        # One call for both sides: a text that is a reply here and a question there is encoded once.
        both = encode_texts(list(text_pairs.inputs) + list(text_pairs.targets), teacher, cache,
                            batch_size=batch_size, stats=stats, progress=progress)
    finally:
        cache.close()
    n = len(text_pairs)
    x, y = both[:n], both[n:]
    quality = np.sum(x * y, axis=1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1) + 1e-12)
    groups = np.array(text_pairs.groups, dtype=str) if text_pairs.groups is not None else input_groups(text_pairs.inputs)
    keep = np.ones(n, dtype=bool) if quality_threshold is None else quality >= quality_threshold
    stats.dropped_low_quality = int(n - keep.sum())
    stats.pairs_out = int(keep.sum())
    if stats.pairs_out < min_pairs:
        raise PairFileError(f"{stats.pairs_out} pairs left after the quality filter (teacher cosine >= "
                            f"{quality_threshold}); need at least {min_pairs}", field="target")
    difficulty = np.clip(1.0 - quality[keep], 0.0, 1.0).astype(np.float32)
    question = None if text_pairs.question is None else np.array(text_pairs.question, dtype=bool)[keep]
    data = validate_pairs(x[keep], y[keep], groups=groups[keep], difficulty=difficulty, question=question,
                          min_pairs=min_pairs)
    return data, stats


def encode_text_pairs(text_pairs: TextPairs, teacher: Encoder, cache_dir: str | Path, *,
                      quality_threshold: float | None = None, **kwargs) -> PairData:
    """Embedding pairs with groups and difficulty; see `encode_text_pairs_with_stats` for the counts."""
    return encode_text_pairs_with_stats(text_pairs, teacher, cache_dir, quality_threshold=quality_threshold, **kwargs)[0]
