"""/v1/transform: map vectors through a model version. Blocking work (SQL, parsing, loading) runs in
the thread pool and the forward pass in the model's batcher thread, never on the event loop."""
from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool

from app.api.deps import ModelCacheDep, SessionDep, SettingsDep, StorageDep
from app.schemas import TransformRequest, TransformResponse
from app.services import inference

router = APIRouter(tags=["transform"])


@router.post("/v1/transform", response_model=TransformResponse)
async def transform(body: TransformRequest, response: Response, session: SessionDep, settings: SettingsDep,
                    storage: StorageDep, cache: ModelCacheDep) -> TransformResponse:
    """Map input embeddings (or texts, for text-trained models) to the target space."""
    prepared = await run_in_threadpool(inference.prepare, session, settings, storage, cache, body)
    result = await inference.transform(prepared, body)
    response.headers["x-model-version"] = result.version.id
    response.headers["x-inference-time"] = f"{result.seconds:.6f}"
    response.headers["x-queue-time"] = f"{result.queue_seconds:.6f}"
    return result.response
