"""/v1/transform: map vectors through a model version (a plain def route: runs in the thread pool)."""
from __future__ import annotations

from fastapi import APIRouter, Response

from app.api.deps import ModelCacheDep, SessionDep, SettingsDep, StorageDep
from app.schemas import TransformRequest, TransformResponse
from app.services import inference

router = APIRouter(tags=["transform"])


@router.post("/v1/transform", response_model=TransformResponse)
def transform(body: TransformRequest, response: Response, session: SessionDep, settings: SettingsDep,
              storage: StorageDep, cache: ModelCacheDep) -> TransformResponse:
    """Map input embeddings to the target space with a model version or alias."""
    result = inference.transform(session, settings, storage, cache, body)
    response.headers["x-model-version"] = result.version.id
    response.headers["x-inference-time"] = f"{result.seconds:.6f}"
    return result.response
