"""/v1/transform: map vectors through a model version. Blocking work (parsing, SQL, loading) runs in
the thread pool and the forward pass in the model's batcher thread, never on the event loop.

The body is read raw and parsed by `transform_codec` (orjson into numpy), and the answer is written
by orjson: per-element pydantic work would cost more than the model. OpenAPI still documents the
declared `TransformRequest` and `TransformResponse` schemas, and errors are the same."""
from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from app.api.auth import TRANSFORM
from app.api.deps import ModelCacheDep, SessionDep, SettingsDep, StorageDep, TelemetryDep
from app.openapi import errors
from app.schemas import TransformRequest, TransformResponse
from app.services import inference
from app.services.transform_codec import parse_request, render_response

router = APIRouter(tags=["transform"], dependencies=[TRANSFORM])
REQUEST_SCHEMA = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": TransformRequest.model_json_schema(ref_template="#/components/schemas/{model}")}}}}
INLINE_RENDER_VALUES = 1 << 16  # larger answers are serialised in the thread pool


@router.post("/v1/transform", response_model=TransformResponse, openapi_extra=REQUEST_SCHEMA,
             responses=errors(404, 422, 429))
async def transform(request: Request, session: SessionDep, settings: SettingsDep, storage: StorageDep,
                    cache: ModelCacheDep, telemetry: TelemetryDep) -> Response:
    """Map input embeddings (or texts, for text-trained models) to the target space."""
    body = await request.body()  # bounded by the body-limit middleware (413 past max_request_bytes)

    def prepare():
        try:
            parsed = parse_request(body)
            req = parsed.req
            prepared = inference.prepare(session, settings, storage, cache, model=req.model, version=req.version,
                                         alias=req.alias, read=partial(inference.transform_input, req, parsed.x),
                                         operation=partial(inference.operation, req))
            texts = None if parsed.x is not None else inference.texts_of(req, prepared.version)
            return req, prepared, inference.count_tokens(prepared.version, texts) if texts else None
        finally:
            # Hand the connection back before waiting on the batcher: held for the whole request, the
            # pool's few connections would cap how many requests can share a forward pass.
            session.close()

    req, prepared, tokens = await run_in_threadpool(prepare)
    result = await inference.transform(prepared, telemetry, normalize=req.normalize)
    version = result.version
    args = (result.y,)
    kwargs = {"model": version.model_name, "version": version.version, "encoding_format": req.encoding_format,
              "tokens": tokens}
    content = render_response(*args, **kwargs) if result.y.size <= INLINE_RENDER_VALUES else \
        await run_in_threadpool(render_response, *args, **kwargs)
    return Response(content, media_type="application/json", headers={
        "x-model-version": version.id, "x-inference-time": f"{result.seconds:.6f}",
        "x-queue-time": f"{result.queue_seconds:.6f}"})
