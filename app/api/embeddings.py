"""/v1/embeddings: OpenAI's embeddings request and response over the same serving path as
/v1/transform (version resolution, model cache, batcher, text encoding), so the OpenAI SDK,
LangChain or LlamaIndex get the vectors /v1/transform gives for the same model and input.

`model` is `name`, `name@alias` or `name:version`; a string `input` is always text here (OpenAI's
meaning), and `encoding_format` says only how the answer is written."""
from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from app.api.auth import TRANSFORM
from app.api.deps import ModelCacheDep, SessionDep, SettingsDep, StorageDep, TelemetryDep
from app.errors import InvalidContent
from app.models import ModelVersion
from app.openapi import errors
from app.schemas import EmbeddingsRequest, EmbeddingsResponse
from app.services import inference, registry
from app.services.transform_codec import parse_request, render_embeddings

router = APIRouter(tags=["embeddings"], dependencies=[TRANSFORM])
REQUEST_SCHEMA = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": EmbeddingsRequest.model_json_schema(ref_template="#/components/schemas/{model}")}}}}
INLINE_RENDER_VALUES = 1 << 16  # larger answers are serialised in the thread pool


def texts_of(req: EmbeddingsRequest) -> list[str]:
    if isinstance(req.input, str):
        return [req.input]
    return req.input if req.input and isinstance(req.input[0], str) else []


def check_dimensions(dimensions: int | None, version: ModelVersion) -> None:
    """`dimensions` is honoured only as the model's own output size: no model here is trained so
    that a prefix of its output is itself an embedding (Matryoshka-style), so cutting would be wrong."""
    if dimensions is not None and dimensions != version.dim_out:
        raise InvalidContent(f"dimensions is {dimensions}, but model {version.model_name} v{version.version} outputs "
                             f"{version.dim_out} values and cannot be shortened; leave dimensions out",
                             param="dimensions", code="dimensions_not_supported")


@router.post("/v1/embeddings", response_model=EmbeddingsResponse, openapi_extra=REQUEST_SCHEMA,
             responses=errors(404, 422, 429))
async def embeddings(request: Request, session: SessionDep, settings: SettingsDep, storage: StorageDep,
                     cache: ModelCacheDep, telemetry: TelemetryDep) -> Response:
    """Embed texts (models trained on text) or map vectors, in OpenAI's request and response shape."""
    body = await request.body()  # bounded by the body-limit middleware (413 past max_request_bytes)

    def prepare():
        try:
            parsed = parse_request(body, EmbeddingsRequest)
            req, texts = parsed.req, texts_of(parsed.req)
            name, version, alias = registry.parse_model_ref(req.model)

            def read(resolved: ModelVersion, limit: int) -> np.ndarray:
                check_dimensions(req.dimensions, resolved)
                if parsed.x is not None:  # the JSON fast path parsed the vectors already
                    return inference.check_matrix(parsed.x, resolved, limit)
                return inference.vectors_or_texts(texts or req.input, resolved, limit, truncate=req.truncate)

            prepared = inference.prepare(session, settings, storage, cache, model=name, version=version, alias=alias,
                                         read=read)
            tokens = inference.count_tokens(prepared.version, texts) if texts else 0
            return req, prepared, tokens
        finally:
            session.close()  # before waiting on the batcher (see /v1/transform)

    req, prepared, tokens = await run_in_threadpool(prepare)
    result = await inference.transform(prepared, telemetry)
    version = result.version
    kwargs = {"model": f"{version.model_name}:{version.version}", "encoding_format": req.encoding_format,
              "tokens": tokens}
    content = render_embeddings(result.y, **kwargs) if result.y.size <= INLINE_RENDER_VALUES else \
        await run_in_threadpool(render_embeddings, result.y, **kwargs)
    return Response(content, media_type="application/json", headers={
        "x-model-version": version.id, "x-inference-time": f"{result.seconds:.6f}",
        "x-queue-time": f"{result.queue_seconds:.6f}"})
