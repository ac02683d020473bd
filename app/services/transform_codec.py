"""The /v1/transform and /v1/embeddings wire formats without per-element pydantic work.

Request: the raw body is parsed with orjson; float input (a list of lists) goes straight into a
float32 numpy matrix, and pydantic validates only the small fields around it. Anything unusual
(ragged rows, non-numbers, text, base64) takes pydantic's full path, so every error reads exactly as
the declared request schema would report it. Response: numpy rows are serialised by orjson
(`OPT_SERIALIZE_NUMPY`) into the documented `TransformResponse` or `EmbeddingsResponse` shape.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import numpy as np
import orjson
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from pydantic import BaseModel

from app.schemas import TransformRequest


@dataclass
class ParsedRequest:
    req: BaseModel               # the route's request schema, with `input` emptied when `x` holds the float rows
    x: np.ndarray | None         # (N, D) float32, the fast path's input


def _invalid(exc: ValidationError) -> RequestValidationError:
    return RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)])


def _loads(body: bytes):
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:  # orjson refuses NaN literals and huge integers, which the stdlib accepts (and we refuse as content, 422)
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        pos = getattr(exc, "pos", 0)
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body", pos), "msg": "JSON decode error",
                                       "input": {}}]) from None


def parse_request(body: bytes, schema: type[BaseModel] = TransformRequest) -> ParsedRequest:
    """The request body as a validated `schema` (400 on schema errors, like any other route)."""
    data = _loads(body)
    inp = data.get("input") if isinstance(data, dict) else None
    if type(inp) is list and inp and type(inp[0]) is list:
        try:
            with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused later as non-finite (422)
                x = np.asarray(inp, dtype=np.float32)
        except (ValueError, TypeError, OverflowError):  # ragged or not numbers: the full path names the problem
            x = None
        if x is not None and x.ndim == 2:
            try:
                return ParsedRequest(schema.model_validate({**data, "input": []}), x)
            except ValidationError as exc:
                raise _invalid(exc) from None
    try:
        return ParsedRequest(schema.model_validate(data), None)
    except ValidationError as exc:
        raise _invalid(exc) from None


def _embeddings(y: np.ndarray, encoding_format: str) -> list[dict]:
    """Rows as OpenAI's embedding objects: float numbers, or base64 of little-endian float32."""
    if encoding_format == "base64":
        return [{"object": "embedding", "index": i, "embedding": base64.b64encode(row.astype("<f4").tobytes()).decode()}
                for i, row in enumerate(y)]
    return [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(y)]


def render_response(y: np.ndarray, *, model: str, version: int, encoding_format: str, tokens: int | None = None) -> bytes:
    """`TransformResponse` as JSON bytes; usage counts the teacher's tokens too when the input was text."""
    y = np.ascontiguousarray(y, dtype=np.float32)  # (N, dim_out)
    usage = {"vectors": int(y.shape[0])} | ({} if tokens is None else {"tokens": tokens})
    out = {"object": "list", "data": _embeddings(y, encoding_format), "model": model, "version": version,
           "dim": int(y.shape[1]), "usage": usage}
    return orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY)


def render_embeddings(y: np.ndarray, *, model: str, encoding_format: str, tokens: int) -> bytes:
    """`EmbeddingsResponse` (OpenAI's shape) as JSON bytes."""
    y = np.ascontiguousarray(y, dtype=np.float32)
    out = {"object": "list", "data": _embeddings(y, encoding_format), "model": model,
           "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    return orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY)
