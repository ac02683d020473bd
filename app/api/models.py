"""/v1/models: registered models, their versions (with the held-out evaluation) and aliases."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from app.api.auth import TRAIN
from app.api.deps import ModelCacheDep, SessionDep, StorageDep
from app.api.owners import AccessDep
from app.models import RegisteredModel
from app.openapi import errors
from app.schemas import MAX_INT, AliasOut, AliasUpdate, Annotations, ListOf, ModelOut, ModelVersionOut
from app.services import registry

router = APIRouter(prefix="/v1/models", tags=["models"], dependencies=[TRAIN])


def model_out(session, model: RegisteredModel, with_versions: bool) -> ModelOut:
    name = model.name
    versions = registry.versions_of(session, name)
    by_id = {v.id: v for v in versions}
    aliases = registry.aliases_of(session, name)
    alias_names: dict[str, list[str]] = {}
    for alias, vid in aliases.items():
        alias_names.setdefault(vid, []).append(alias)
    return ModelOut(id=name, created_at=int(model.created_at), latest_version=versions[-1].version if versions else None,
                    aliases={a: by_id[v].version for a, v in aliases.items() if v in by_id},
                    description=model.description, tags=model.tags or [],
                    versions=[ModelVersionOut.of(v, alias_names.get(v.id, [])) for v in versions] if with_versions else None)


@router.get("", response_model=ListOf[ModelOut], response_model_exclude={"data": {"__all__": {"versions"}}})
def list_models(session: SessionDep, access: AccessDep, after: str | None = None,
                limit: Annotated[int, Query(ge=1, le=100)] = 20) -> ListOf[ModelOut]:
    """List the caller's models (an admin key: everyone's) by name."""
    rows, more = registry.list_models(session, after, limit, access)
    return ListOf[ModelOut](data=[model_out(session, m, False) for m in rows], has_more=more)


@router.get("/{name}", response_model=ModelOut)
def get_model(name: str, session: SessionDep, access: AccessDep) -> ModelOut:
    """A model with all its versions and aliases."""
    model = registry.get_model(session, name, access)
    return model_out(session, model, True)


@router.patch("/{name}", response_model=ModelOut)
def update_model(name: str, body: Annotations, session: SessionDep, access: AccessDep) -> ModelOut:
    """Set the model's description and/or tags (null clears)."""
    model = registry.get_model(session, name, access)
    registry.annotate(model, body)
    return model_out(session, model, True)


VersionNumber = Annotated[int, Path(ge=1, le=MAX_INT)]


def version_out(session, row) -> ModelVersionOut:
    aliases = [a for a, vid in registry.aliases_of(session, row.model_name).items() if vid == row.id]
    return ModelVersionOut.of(row, aliases)


@router.get("/{name}/versions/{version}", response_model=ModelVersionOut)
def get_version(name: str, version: VersionNumber, session: SessionDep, access: AccessDep) -> ModelVersionOut:
    """One version with its held-out evaluation (the cube beside every baseline)."""
    return version_out(session, registry.get_version(session, name, version, access))


@router.patch("/{name}/versions/{version}", response_model=ModelVersionOut)
def update_version(name: str, version: VersionNumber, body: Annotations, session: SessionDep,
                   access: AccessDep) -> ModelVersionOut:
    """Set the version's description and/or tags (null clears)."""
    row = registry.get_version(session, name, version, access)
    registry.annotate(row, body)
    return version_out(session, row)


@router.delete("/{name}/versions/{version}", responses=errors(409))
def delete_version(name: str, version: VersionNumber, session: SessionDep, storage: StorageDep, cache: ModelCacheDep,
                   access: AccessDep) -> dict:
    """Delete a version and its files; 409 while an alias points at it. Its number is not reused."""
    version_id = registry.delete_version(session, storage, name, version, access)
    cache.forget_resolutions()
    return {"object": "model.version", "id": version_id, "model": name, "version": version, "deleted": True}


@router.put("/{name}/aliases/{alias}", response_model=AliasOut)
def set_alias(name: str, alias: str, body: AliasUpdate, session: SessionDep, cache: ModelCacheDep,
              access: AccessDep) -> AliasOut:
    """Point an alias at a version; serving follows at once."""
    version = registry.set_alias(session, name, alias, body.version, access)
    cache.forget_resolutions()
    return AliasOut(model=name, alias=alias, version=version.version)


@router.delete("/{name}/aliases/{alias}")
def delete_alias(name: str, alias: str, session: SessionDep, cache: ModelCacheDep, access: AccessDep) -> dict:
    """Drop an alias."""
    registry.delete_alias(session, name, alias, access)
    cache.forget_resolutions()
    return {"object": "model.alias", "model": name, "alias": alias, "deleted": True}
