"""Serving: resolve a model version, keep loaded models in a small per-process cache, map vectors.

Called from a plain `def` route, so it runs in FastAPI's thread pool and never blocks the event loop.
Versions are resolved from SQL on every request, so moving an alias takes effect at once.
"""
from __future__ import annotations

import base64
import binascii
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from app.errors import InvalidContent, InvalidRequest, NotReady, PayloadTooLarge
from app.models import ModelVersion
from app.schemas import EmbeddingOut, TransformRequest, TransformResponse
from app.services import registry
from app.services.datasets import optional_module
from app.settings import Settings
from app.storage import LocalStorage


class ModelCache:
    """LRU of loaded models by version id. A version's artifact never changes, so entries never go stale."""

    def __init__(self, size: int):
        self.size = size
        self._models: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, version: ModelVersion, storage: LocalStorage):
        with self._lock:
            if version.id in self._models:
                self._models.move_to_end(version.id)
                return self._models[version.id]
        from cube.artifacts import ArtifactError, load_model

        try:
            model, _ = load_model(storage.local_path(version.artifact_key))
        except (ArtifactError, OSError) as exc:
            raise NotReady(f"model version {version.id} cannot be loaded: {exc}", code="model_unavailable") from None
        with self._lock:
            self._models[version.id] = model
            while len(self._models) > self.size:
                self._models.popitem(last=False)
        return model

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._models)


@dataclass
class TransformResult:
    response: TransformResponse
    version: ModelVersion
    seconds: float


def parse_input(req: TransformRequest, version: ModelVersion, limit: int) -> np.ndarray:
    """The request's input as a float32 [N, dim_in] matrix, or a 4xx naming what is wrong."""
    d = version.dim_in
    if isinstance(req.input, str):
        try:
            raw = base64.b64decode(req.input, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("input is not valid base64", param="input") from None
        if len(raw) == 0 or len(raw) % (4 * d):
            raise InvalidContent(f"base64 input must hold N x {d} little-endian float32 values; got {len(raw)} bytes",
                                 param="input", code="dimension_mismatch")
        x = np.frombuffer(raw, dtype="<f4").reshape(-1, d).astype(np.float32)
    elif req.input and isinstance(req.input[0], str):
        x = encode_text(req.input, version, limit)
    else:
        if not req.input:
            raise InvalidContent("input is empty", param="input", code="empty_input")
        if len(req.input) > limit:
            raise PayloadTooLarge(f"at most {limit} vectors per request, got {len(req.input)}", param="input")
        for i, row in enumerate(req.input):
            if len(row) != d:
                raise InvalidContent(f"input[{i}] has {len(row)} values; model {version.model_name} v{version.version} "
                                     f"expects {d}", param=f"input[{i}]", code="dimension_mismatch")
        with np.errstate(over="ignore"):  # values beyond float32 become inf, refused just below
            x = np.asarray(req.input, dtype=np.float32)
    if len(x) > limit:
        raise PayloadTooLarge(f"at most {limit} vectors per request, got {len(x)}", param="input")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidContent(f"input[{i}] contains NaN or Inf (or overflows float32)", param=f"input[{i}]",
                             code="non_finite")
    return x


def encode_text(texts: list[str], version: ModelVersion, limit: int) -> np.ndarray:
    if version.teacher is None:
        raise InvalidContent(f"model {version.model_name} v{version.version} was trained on vectors; send vectors",
                             param="input", code="text_not_supported")
    if len(texts) > limit:
        raise PayloadTooLarge(f"at most {limit} texts per request, got {len(texts)}", param="input")
    teachers = optional_module("cube.teachers")
    if teachers is None:
        raise NotReady("text input needs cube.teachers, which this build does not have", code="teacher_unavailable")
    return np.asarray(teachers.get_teacher(version.teacher).encode(list(texts)), dtype=np.float32)


def transform(session: Session, settings: Settings, storage: LocalStorage, cache: ModelCache,
              req: TransformRequest) -> TransformResult:
    from cube.trainer import predict

    version = registry.resolve(session, req.model, req.version, req.alias)
    x = parse_input(req, version, settings.max_transform_vectors)
    model = cache.get(version, storage)
    started = time.perf_counter()
    y = predict(model, x)  # (N, dim_out)
    seconds = time.perf_counter() - started
    if req.normalize:
        y = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    if req.encoding_format == "base64":
        data = [EmbeddingOut(index=i, embedding=base64.b64encode(row.astype("<f4").tobytes()).decode()) for i, row in enumerate(y)]
    else:
        data = [EmbeddingOut(index=i, embedding=row.tolist()) for i, row in enumerate(y)]
    response = TransformResponse(data=data, model=version.model_name, version=version.version, dim=version.dim_out,
                                 usage={"vectors": len(y)})
    return TransformResult(response, version, seconds)
