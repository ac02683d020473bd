"""Serving: resolve a model version, keep loaded models in a small per-process cache, map vectors.

`prepare` (SQL, parsing, loading) runs in the thread pool; `transform` hands the vectors to the
model's DynamicBatcher, which runs forward passes in its own thread, so the event loop never runs a
model. Versions are resolved from SQL on every request: moving an alias takes effect at once.
"""
from __future__ import annotations

import base64
import binascii
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from sqlalchemy.orm import Session

from app.batching import DynamicBatcher, Overloaded
from app.errors import InvalidContent, InvalidRequest, NotReady, PayloadTooLarge, TooManyRequests
from app.models import ModelVersion, teacher_names
from app.schemas import TransformRequest
from app.services import registry
from app.settings import Settings
from app.storage import Storage, StorageError
from app.telemetry import Telemetry


FORWARD = "forward"  # the model's own pass; an autoencoder also has "encode" and "decode"
SPACE = "space:"     # + a teacher: one head of a multi-head model (its first is also FORWARD)


@dataclass
class LoadedModel:
    model: Any
    batcher: DynamicBatcher   # concurrent requests for this version share forward passes
    label: str                # "name:vN", the metrics label
    # An autoencoder's "encode" and "decode", a multi-head model's heads, each batched apart.
    sides: dict[str, DynamicBatcher] = field(default_factory=dict)

    def batcher_for(self, operation: str) -> DynamicBatcher:
        return self.batcher if operation == FORWARD else self.sides[operation]

    def batchers(self) -> list[DynamicBatcher]:
        return [self.batcher, *self.sides.values()]



class ModelCache:
    """LRU of loaded models (each with its batcher) by version id. A version's artifact never
    changes, so entries never go stale; aliases are resolved before the cache is consulted, so
    moving an alias only changes which entry the next request uses.

    A version is loaded once: concurrent first requests for it wait on that version's load lock
    (other versions keep serving) and then share the one loaded model."""

    def __init__(self, settings: Settings, telemetry: Telemetry | None = None):
        self.size = settings.model_cache_size
        self.settings = settings
        self.telemetry = telemetry or Telemetry()
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()                   # guards the dicts, never held while loading
        self._loading: dict[str, threading.Lock] = {}   # version id -> its load lock
        # (model, version, alias) -> (when, ModelVersion): resolving from SQL was the largest cost of
        # a small request. Alias moves through this process clear it at once; another process's
        # moves (or new versions) are seen within `resolve_ttl` seconds.
        self.resolve_ttl = settings.transform_resolve_cache_seconds
        self._resolved: dict[tuple, tuple[float, ModelVersion]] = {}

    def resolve(self, session: Session, name: str, version: int | None, alias: str | None) -> ModelVersion:
        resolved = self.fresh_resolution(name, version, alias)
        if resolved is None:
            resolved = registry.resolve(session, name, version, alias)
            with self._lock:
                self._resolved[(name, version, alias)] = (time.monotonic(), resolved)
        return resolved

    def fresh_resolution(self, name: str, version: int | None, alias: str | None) -> ModelVersion | None:
        """What `resolve` gave for these arguments less than `resolve_ttl` seconds ago, else None."""
        hit = self._resolved.get((name, version, alias))
        return hit[1] if hit is not None and time.monotonic() - hit[0] < self.resolve_ttl else None

    def forget_resolutions(self) -> None:
        with self._lock:
            self._resolved.clear()

    def peek(self, version_id: str) -> LoadedModel | None:
        """The version's model if this process has it loaded (most recently used from now on), else None."""
        with self._lock:
            loaded = self._models.get(version_id)
            if loaded is not None:
                self._models.move_to_end(version_id)
            return loaded

    def get(self, version: ModelVersion, storage: Storage) -> LoadedModel:
        loaded = self.peek(version.id)
        if loaded is not None:
            return loaded
        with self._lock:
            load_lock = self._loading.setdefault(version.id, threading.Lock())
        with load_lock:
            loaded = self.peek(version.id)  # loaded by the thread we waited for
            if loaded is None:
                loaded = self._load(version, storage)
                with self._lock:
                    self._models[version.id] = loaded
                    while len(self._models) > self.size:
                        _, evicted = self._models.popitem(last=False)
                        for batcher in evicted.batchers():
                            batcher.close_soon()  # after serving whatever it still has queued
        with self._lock:
            self._loading.pop(version.id, None)
        return loaded

    def _load(self, version: ModelVersion, storage: Storage) -> LoadedModel:
        from cube.artifacts import ArtifactError, load_model
        from cube.autoencoder import Autoencoder, Half
        from cube.fast_inference import accelerate
        from cube.multiteacher import served
        from cube.trainer import predict

        try:
            # Staged once per host (the storage's cache), loaded once per process (this cache).
            model, desc = load_model(storage.stage_tree(version.artifact_key), device=self.settings.transform_device)
        except (ArtifactError, OSError, StorageError) as exc:
            raise NotReady(f"model version {version.id} cannot be loaded: {exc}", code="model_unavailable") from None
        model = accelerate(model)  # each cube's eval-only fast path (eager where it does not apply)
        s, t = self.settings, self.telemetry
        label = f"{version.model_name}:v{version.version}"

        def on_batch(rows: int, seconds: float) -> None:
            t.batch_rows.labels(label).observe(rows)
            t.batch_seconds.labels(label).observe(seconds)

        def batched(module) -> DynamicBatcher:
            return DynamicBatcher(lambda x: predict(module, x), max_batch_rows=s.transform_max_batch_rows,
                                  max_wait_s=s.transform_max_wait_ms / 1000, max_queue_rows=s.transform_max_queue_rows,
                                  on_batch=on_batch)

        sides = {side: batched(Half(model, side)) for side in ("encode", "decode")} if isinstance(model, Autoencoder) else {}
        metadata = desc.get("metadata") or {}
        for name in metadata.get("heads") or {}:  # a multi-head model: each teacher's head batched on its own
            sides[SPACE + name] = batched(served(model, metadata, name))
        return LoadedModel(model, batched(served(model, metadata)), label, sides)

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._models)

    def queue_depths(self) -> dict[str, int]:
        """Vectors waiting per loaded model (label -> rows), for the queue-depth gauge."""
        with self._lock:
            return {m.label: sum(b.queued_rows for b in m.batchers()) for m in self._models.values()}


@dataclass
class TransformResult:
    y: np.ndarray         # (N, dim_out) float32
    version: ModelVersion
    seconds: float        # the forward pass that served this request
    queue_seconds: float  # waiting for that forward pass


@dataclass
class Prepared:
    version: ModelVersion
    x: np.ndarray                 # (N, dim_in) float32, or (N, code_size) codes to decode
    loaded: LoadedModel
    operation: str = FORWARD      # FORWARD, or an autoencoder's "encode" or "decode"


def code_size_of(version: ModelVersion) -> int | None:
    """An autoencoder version's code size (its report holds the model config); None for other models."""
    return ((version.evaluation or {}).get("model") or {}).get("config", {}).get("code_size")


def operation(req: TransformRequest, version: ModelVersion) -> str:
    """What /v1/transform runs: the forward pass, an autoencoder's encode (output "code") or decode
    (input_kind "code"), or a multi-head model's head `target_space`; a 4xx naming the field for a
    combination that means nothing."""
    asked = [name for name in ("output", "input_kind") if name in req.model_fields_set]
    if asked and code_size_of(version) is None:
        raise InvalidContent(f"{asked[0]} applies to autoencoders only; model {version.model_name} v{version.version} "
                             f"is not one", param=asked[0], code="not_an_autoencoder")
    if req.target_space is not None and (space := space_operation(req.target_space, version)) != FORWARD:
        return space
    if req.input_kind == "code":
        if req.output == "code":
            raise InvalidContent("input_kind 'code' decodes codes into reconstructions; output 'code' would give them "
                                 "back unchanged", param="output", code="invalid_output")
        return "decode"
    return "encode" if req.output == "code" else FORWARD


def space_operation(target_space: str, version: ModelVersion) -> str:
    """The head that serves `target_space`: one of a multi-head version's teachers, or the one output
    space of any other version (its target teacher, else its teacher), else a 4xx naming the field."""
    heads = teacher_names(version.target_teacher)
    if len(heads) > 1:
        if target_space not in heads:
            raise InvalidContent(f"target_space {target_space!r} is not one of model {version.model_name} "
                                 f"v{version.version}'s heads: {', '.join(heads)}", param="target_space",
                                 code="unknown_target_space")
        return FORWARD if target_space == heads[0] else SPACE + target_space
    own = heads[0] if heads else version.teacher
    if target_space != own:
        raise InvalidContent(f"model {version.model_name} v{version.version} has one output space"
                             + (f" ({own})" if own else "") + f", not {target_space!r}; leave target_space out",
                             param="target_space", code="unknown_target_space")
    return FORWARD


def transform_input(req: TransformRequest, x: np.ndarray | None, version: ModelVersion, limit: int) -> np.ndarray:
    """/v1/transform's input as a float32 [N, dim_in] matrix ([N, code_size] codes with input_kind
    "code"), or a 4xx naming what is wrong. `x` is float input already parsed by the JSON fast path
    (then `req.input` is empty)."""
    codes = operation(req, version) == "decode"
    d = code_size_of(version) if codes else version.dim_in
    if req.dim is not None and req.dim != d:
        raise InvalidContent(f"dim is {req.dim}, but model {version.model_name} v{version.version} takes {d} values per "
                             + ("code" if codes else "vector"), param="dim", code="dimension_mismatch")
    if x is not None:
        return check_matrix(x, version, limit, dim=d)
    if codes and isinstance(req.input, str):  # codes are never text: a string is base64
        return decode_base64(req.input, version, limit, explicit=True, dim=d)
    if codes and req.input and isinstance(req.input[0], str):
        raise InvalidContent("input_kind 'code' takes codes (vectors of code_size values, or base64), not text",
                             param="input", code="text_not_supported")
    if not isinstance(req.input, str):
        return vectors_or_texts(req.input, version, limit, truncate=req.truncate, dim=d)
    if string_is_text(req, version):
        return encode_text([req.input], version, limit, truncate=req.truncate)
    return decode_base64(req.input, version, limit, explicit="encoding_format" in req.model_fields_set, dim=d)


def texts_of(req: TransformRequest, version: ModelVersion) -> list[str] | None:
    """The texts a /v1/transform request sends (for its usage), or None when it sends vectors."""
    if req.input_kind == "code":
        return None
    if isinstance(req.input, list) and req.input and isinstance(req.input[0], str):
        return list(req.input)
    if isinstance(req.input, str) and string_is_text(req, version):
        return [req.input]
    return None


def string_is_text(req: TransformRequest, version: ModelVersion) -> bool:
    """A plain string is text for a model trained on text, unless the caller says base64. A model
    trained on vectors reads a string as base64 vectors (its only meaning), but not when the caller
    said encoding_format "float": then the request contradicts itself, and we say what was meant."""
    said = req.encoding_format if "encoding_format" in req.model_fields_set else None
    if said == "base64":
        return False
    if version.teacher is not None:
        return True
    if said == "float":
        raise InvalidRequest(f"input is a string but encoding_format is 'float', and model {version.model_name} "
                             f"v{version.version} takes vectors, not text: for base64 vectors say encoding_format "
                             f"'base64', else send a list of vectors", param="encoding_format", code="ambiguous_input")
    return False


def decode_base64(text: str, version: ModelVersion, limit: int, *, explicit: bool, dim: int | None = None) -> np.ndarray:
    d = dim or version.dim_in
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        hint = "" if explicit else (f" (model {version.model_name} v{version.version} takes vectors, not text, so a "
                                    "string input is read as base64; else send a list of vectors)")
        raise InvalidRequest(f"input is not valid base64{hint}", param="input") from None
    if len(raw) == 0 or len(raw) % (4 * d):
        raise InvalidContent(f"base64 input must hold N x {d} little-endian float32 values; got {len(raw)} bytes",
                             param="input", code="dimension_mismatch")
    x = np.frombuffer(raw, dtype="<f4").reshape(-1, d).astype(np.float32)
    if len(x) > limit:
        raise PayloadTooLarge(f"at most {limit} vectors per request, got {len(x)}", param="input")
    return check_finite(x)


def vectors_or_texts(items: list, version: ModelVersion, limit: int, *, truncate: bool = True,
                     dim: int | None = None) -> np.ndarray:
    """A list of texts (text models) or of vectors as a float32 [N, dim] matrix (dim: dim_in unless
    given), or a 4xx."""
    if not items:
        raise InvalidContent("input is empty", param="input", code="empty_input")
    if isinstance(items[0], str):
        return encode_text(items, version, limit, truncate=truncate)
    if len(items) > limit:
        raise PayloadTooLarge(f"at most {limit} vectors per request, got {len(items)}", param="input")
    d = dim or version.dim_in
    for i, row in enumerate(items):
        if len(row) != d:
            raise InvalidContent(f"input[{i}] has {len(row)} values; model {version.model_name} v{version.version} "
                                 f"expects {d}", param=f"input[{i}]", code="dimension_mismatch")
    with np.errstate(over="ignore"):  # values beyond float32 become inf, refused just below
        x = np.asarray(items, dtype=np.float32)
    return check_finite(x)


def encode_text(texts: list[str], version: ModelVersion, limit: int, *, truncate: bool = True) -> np.ndarray:
    """The teacher's embeddings of `texts`. A text longer than the teacher reads is cut to its
    `max_length` tokens (as TEI does by default), or, with truncate=False, refused naming it."""
    if version.teacher is None:
        raise InvalidContent(f"model {version.model_name} v{version.version} was trained on vectors; send vectors",
                             param="input", code="text_not_supported")
    if len(texts) > limit:
        raise PayloadTooLarge(f"at most {limit} texts per request, got {len(texts)}", param="input")
    empty = next((i for i, t in enumerate(texts) if not t), None)
    if empty is not None:
        raise InvalidContent(f"input[{empty}] is an empty string", param=f"input[{empty}]", code="empty_input")
    encoder = teacher(version.teacher)
    if not truncate:
        longest = encoder.spec.max_length
        for i, n in enumerate(encoder.token_lengths(texts)):
            if n > longest:
                raise InvalidContent(f"input[{i}] is {n} tokens long; teacher {version.teacher!r} reads at most {longest} "
                                     f"(send truncate: true to cut it there)", param=f"input[{i}]", code="input_too_long")
    return np.asarray(encoder.encode(list(texts)), dtype=np.float32)


def count_tokens(version: ModelVersion, texts: list[str]) -> int:
    """Tokens the version's teacher reads for `texts` (the usage of a text request)."""
    return teacher(version.teacher).count_tokens(texts)


_teachers: dict[str, Any] = {}
_teachers_lock = threading.Lock()


def teacher(name: str):
    """One loaded teacher per name and process (its weights load once, on first use)."""
    with _teachers_lock:
        if name not in _teachers:
            from cube.teachers import get_teacher

            try:
                _teachers[name] = get_teacher(name)
            except ValueError as exc:  # not installed here
                raise NotReady(f"teacher {name!r} is not available: {exc}", code="teacher_unavailable") from None
        return _teachers[name]


def check_matrix(x: np.ndarray, version: ModelVersion, limit: int, *, dim: int | None = None) -> np.ndarray:
    """Limits and dimensions (dim: dim_in unless given) for float input already parsed into a (N, D)
    matrix (the JSON fast path), with the same errors as `vectors_or_texts`."""
    d = dim or version.dim_in
    if len(x) > limit:
        raise PayloadTooLarge(f"at most {limit} vectors per request, got {len(x)}", param="input")
    if x.shape[1] != d:
        raise InvalidContent(f"input[0] has {x.shape[1]} values; model {version.model_name} v{version.version} "
                             f"expects {d}", param="input[0]", code="dimension_mismatch")
    return check_finite(x)


def check_finite(x: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidContent(f"input[{i}] contains NaN or Inf (or overflows float32)", param=f"input[{i}]",
                             code="non_finite")
    return x


def prepare(session: Session, settings: Settings, storage: Storage, cache: ModelCache, *, model: str,
            version: int | None, alias: str | None, read: Callable[[ModelVersion, int], np.ndarray],
            operation: Callable[[ModelVersion], str] = lambda version: FORWARD) -> Prepared:
    """Resolve the version, read the input with `read(version, max vectors)` (each route has its own
    wire format), load the model: blocking work, run in the thread pool. `operation(version)` says
    which pass serves it (an autoencoder's encode or decode, else the forward pass)."""
    resolved = cache.resolve(session, model, version, alias)
    x = read(resolved, settings.max_transform_vectors)
    return Prepared(resolved, x, cache.get(resolved, storage), operation(resolved))


def prepare_if_loaded(settings: Settings, cache: ModelCache, *, model: str, version: int | None, alias: str | None,
                      read: Callable[[ModelVersion, int], np.ndarray],
                      operation: Callable[[ModelVersion], str] = lambda version: FORWARD) -> Prepared | None:
    """`prepare` when it needs neither SQL nor a model load (the version was resolved within the
    resolve cache's seconds and its model is loaded), so it can run on the event loop; else None."""
    resolved = cache.fresh_resolution(model, version, alias)
    loaded = cache.peek(resolved.id) if resolved is not None else None
    if loaded is None:
        return None
    return Prepared(resolved, read(resolved, settings.max_transform_vectors), loaded, operation(resolved))


async def transform(prepared: Prepared, telemetry: Telemetry, *, normalize: bool = False) -> TransformResult:
    """Run the prepared input through the model's batcher (the model runs in the batcher's thread)."""
    label = prepared.loaded.label
    try:
        y, timing = await prepared.loaded.batcher_for(prepared.operation).submit(prepared.x)  # (N, dim_out or code_size)
    except Overloaded as exc:
        telemetry.rejected.labels(label).inc()
        raise TooManyRequests(str(exc), retry_after=exc.retry_after) from None
    telemetry.queue_seconds.labels(label).observe(timing.queue_s)
    if normalize:
        y = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    return TransformResult(y, prepared.version, timing.inference_s, timing.queue_s)
