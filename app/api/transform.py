"""/v1/transform: map vectors through a model version, on the lean path every request of a busy
service takes.

The route asks FastAPI for nothing but the request: each dependency FastAPI solves costs it work
per request, and each `def` one a hop to the thread pool and back. It checks the key itself
(`auth.authorize`, with the key cache), and when the version was resolved within the resolve cache's
seconds and its model is loaded, a small numeric body is parsed and checked on the event loop (tens
of microseconds), so a single vector reaches the batcher without a thread hop. Anything else (a
first request, text to encode, a large body) is prepared in the thread pool, with its own database
session. The forward pass always runs in the model's batcher thread, never on the event loop.

The body is read raw and parsed by `transform_codec` (orjson into numpy), and the answer is written
by orjson: per-element pydantic work would cost more than the model. OpenAPI still documents the
declared `TransformRequest` and `TransformResponse` schemas, and errors are the same."""
from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from app.api.auth import authorize
from app.api.deps import storable_params
from app.db import get_sessionmaker
from app.openapi import errors
from app.schemas import TransformRequest, TransformResponse
from app.services import inference
from app.services.transform_codec import ParsedRequest, parse_request, render_response

router = APIRouter(tags=["transform"])
REQUEST_SCHEMA = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": TransformRequest.model_json_schema(ref_template="#/components/schemas/{model}")}}}}
INLINE_BODY_BYTES = 1 << 16      # larger bodies are parsed in the thread pool
INLINE_RENDER_VALUES = 1 << 16   # larger answers are serialised in the thread pool


@router.post("/v1/transform", response_model=TransformResponse, openapi_extra=REQUEST_SCHEMA,
             responses=errors(401, 403, 404, 422, 429, 503))
async def transform(request: Request) -> Response:
    """Map input embeddings (or texts, for text-trained models) to the target space."""
    await storable_params(request)
    await authorize(request, "transform")
    state = request.app.state
    body = await request.body()  # bounded by the body-limit middleware (413 past max_request_bytes)
    parsed = parse_request(body) if len(body) <= INLINE_BODY_BYTES else None
    prepared, tokens = None, None
    if parsed is not None and parsed.x is not None:  # numbers: nothing to encode
        prepared = inference.prepare_if_loaded(state.settings, state.model_cache, **sources(parsed))
    if prepared is None:
        parsed, prepared, tokens = await run_in_threadpool(prepare_in_pool, state, body, parsed)
    req = parsed.req
    result = await inference.transform(prepared, state.telemetry, normalize=req.normalize)
    version = result.version
    args = (result.y,)
    kwargs = {"model": version.model_name, "version": version.version, "encoding_format": req.encoding_format,
              "tokens": tokens}
    content = render_response(*args, **kwargs) if result.y.size <= INLINE_RENDER_VALUES else \
        await run_in_threadpool(render_response, *args, **kwargs)
    return Response(content, media_type="application/json", headers={
        "x-model-version": version.id, "x-inference-time": f"{result.seconds:.6f}",
        "x-queue-time": f"{result.queue_seconds:.6f}"})


TRANSFORM_ROUTE = router.routes[-1]  # served by app.hot_route.HotRoute, ahead of FastAPI's router


def sources(parsed: ParsedRequest) -> dict:
    """What `inference.prepare` needs to know of the request: the version asked for, how to read its
    input, and which pass serves it."""
    req = parsed.req
    return {"model": req.model, "version": req.version, "alias": req.alias,
            "read": partial(inference.transform_input, req, parsed.x), "operation": partial(inference.operation, req)}


def prepare_in_pool(state, body: bytes, parsed: ParsedRequest | None):
    """The blocking way (thread pool): parse, resolve the version in SQL, load the model, encode
    text; returns (parsed, prepared, tokens or None)."""
    parsed = parsed or parse_request(body)
    with get_sessionmaker(state.settings.database)() as session:
        # Closed before waiting on the batcher: held for the whole request, the pool's few
        # connections would cap how many requests can share a forward pass.
        prepared = inference.prepare(session, state.settings, state.storage, state.model_cache, **sources(parsed))
    texts = None if parsed.x is not None else inference.texts_of(parsed.req, prepared.version)
    return parsed, prepared, inference.count_tokens(prepared.version, texts) if texts else None
