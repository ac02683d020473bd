"""The model registry: named models, their numbered versions (one per succeeded job) and aliases.
Callers that name no version or alias are served the `default` alias, which a new version takes only
by passing its promotion gate (app.services.promotion) or by hand."""
from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, object_session

from app.errors import Conflict, InvalidRequest, NotFound
from app.ids import new_id
from app.models import Dataset, ModelAlias, ModelEvaluation, ModelVersion, RegisteredModel, TrainingJob, teacher_names
from app.schemas import Annotations
from app.services.access import EVERYONE, Access
from app.services.promotion import DEFAULT_ALIAS, policy_of, promote
from app.storage import Storage
from app.webhooks import outbox


def target_teacher_of(session: Session, job: TrainingJob) -> str | None:
    """A translation job's output space: its dataset's target teacher (None for vectors given as such);
    a multi-teacher job's spaces: its dataset's target teachers, comma-separated, the default first."""
    dataset = session.get(Dataset, job.dataset_id)
    if dataset is None:
        return None
    multi = len(teacher_names(dataset.target_teacher)) > 1
    return dataset.target_teacher if job.mode == "translation" or multi else None


def register_version(session: Session, job: TrainingJob, *, arch: str, dim_in: int, dim_out: int, teacher: str | None,
                     parameters: int, evaluation: dict[str, Any], artifact_key: str) -> ModelVersion:
    """Insert the next version of the job's model and judge it by the job's promotion gate, inside the
    caller's transaction. The unique constraint on source_job_id makes a second registration for the
    same job fail (IntegrityError)."""
    model = session.get(RegisteredModel, job.model_name)
    if model is None:
        model = RegisteredModel(name=job.model_name, created_at=time.time(), owner_key_id=job.owner_key_id, highest_version=0)
        session.add(model)
        session.flush()
    latest = session.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.model_name == job.model_name)) or 0
    number = max(latest, model.highest_version or 0) + 1  # never a deleted version's number
    model.highest_version = number
    version = ModelVersion(id=new_id("model_version"), model_name=job.model_name, version=number, status="ready",
                           source_job_id=job.id, arch=arch, dim_in=dim_in, dim_out=dim_out, teacher=teacher,
                           target_teacher=target_teacher_of(session, job),
                           parameters=parameters, evaluation=evaluation, artifact_key=artifact_key,
                           description=job.description, tags=job.tags, created_at=time.time())
    session.add(version)
    session.flush()
    outbox.version_created(session, version.id)
    promote(session, version, policy_of(job.promotion))
    return version


def check_model_name(session: Session, name: str, access: Access) -> str:
    """`name` if a job of this caller may add versions to it: a new name, or a model the caller sees.
    Model names are one namespace, so a name taken by another key is a 409 (not a 404)."""
    model = session.get(RegisteredModel, name)
    if model is not None and not access.can_see(model.owner_key_id):
        raise Conflict(f"the model name {name!r} belongs to another API key; give the job another `model`",
                       param="model", code="model_name_taken")
    return name


def get_model(session: Session, name: str, access: Access = EVERYONE) -> RegisteredModel:
    """The model, or 404 if it does not exist or belongs to another key."""
    model = session.get(RegisteredModel, name)
    if model is None or not access.can_see(model.owner_key_id):
        raise NotFound(f"no model {name!r}", param="model")
    return model


def list_models(session: Session, after: str | None, limit: int, access: Access = EVERYONE) -> tuple[list[RegisteredModel], bool]:
    query = (select(RegisteredModel).where(access.where(RegisteredModel.owner_key_id)).order_by(RegisteredModel.name)
             .limit(limit + 1))
    if after:
        query = query.where(RegisteredModel.name > after)
    rows = list(session.scalars(query))
    return rows[:limit], len(rows) > limit


def versions_of(session: Session, name: str) -> list[ModelVersion]:
    return list(session.scalars(select(ModelVersion).where(ModelVersion.model_name == name).order_by(ModelVersion.version)))


def aliases_of(session: Session, name: str) -> dict[str, str]:
    """alias -> version id"""
    return {a.alias: a.version_id for a in session.scalars(select(ModelAlias).where(ModelAlias.model_name == name))}


def get_version(session: Session, name: str, number: int, access: Access = EVERYONE) -> ModelVersion:
    get_model(session, name, access)
    version = session.scalar(select(ModelVersion).where(ModelVersion.model_name == name, ModelVersion.version == number))
    if version is None:
        raise NotFound(f"model {name!r} has no version {number}", param="version")
    return version


def set_alias(session: Session, name: str, alias: str, number: int, access: Access = EVERYONE) -> ModelVersion:
    if not alias or len(alias) > 100 or alias.isdigit():
        raise InvalidRequest("an alias is 1-100 characters and not a number", param="alias")
    version = get_version(session, name, number, access)
    if alias == DEFAULT_ALIAS:  # the version record says why it serves unpinned callers: by hand, not by its gate
        version.promotion = {**(version.promotion or {}), "set_default_by_hand_at": time.time()}
    row = session.get(ModelAlias, (name, alias))
    if row is None:
        session.add(ModelAlias(model_name=name, alias=alias, version_id=version.id, updated_at=time.time()))
    else:
        row.version_id, row.updated_at = version.id, time.time()
    outbox.alias_moved(session, name, alias)
    try:
        session.commit()
    except IntegrityError:  # two PUTs racing to create the same alias: the other one won; apply ours on top
        session.rollback()
        row = session.get(ModelAlias, (name, alias))
        row.version_id, row.updated_at = version.id, time.time()
        outbox.alias_moved(session, name, alias)
        if alias == DEFAULT_ALIAS:
            version.promotion = {**(version.promotion or {}), "set_default_by_hand_at": time.time()}
        session.commit()
    return version


def delete_alias(session: Session, name: str, alias: str, access: Access = EVERYONE) -> None:
    get_model(session, name, access)
    row = session.get(ModelAlias, (name, alias))
    if row is None:
        raise NotFound(f"model {name!r} has no alias {alias!r}", param="alias")
    session.delete(row)
    session.commit()


def parse_model_ref(ref: str) -> tuple[str, int | None, str | None]:
    """`name`, `name@alias` or `name:version` as (name, version, alias). Model names hold neither
    '@' nor ':' (TrainingJobCreate's pattern), so the split is never ambiguous."""
    if "@" in ref:
        name, _, alias = ref.partition("@")
        if not name or not alias:
            raise InvalidRequest(f"model {ref!r}: write name@alias", param="model")
        return name, None, alias
    if ":" in ref:
        name, _, number = ref.partition(":")
        if not name or not number.isascii() or not number.isdigit() or not 1 <= int(number) <= 2**31 - 1:
            raise InvalidRequest(f"model {ref!r}: write name:version, the version a number from 1", param="model")
        return name, int(number), None
    return ref, None, None


def annotate(row: RegisteredModel | ModelVersion, update: Annotations) -> None:
    """Set the description and tags the update gives (null clears); commits."""
    given = update.model_fields_set
    if not given:
        raise InvalidRequest("give description, tags or both", param="description", code="empty_update")
    if "description" in given:
        row.description = update.description
    if "tags" in given:
        row.tags = update.tags
    session = object_session(row)
    session.commit()


UNFINISHED_EVALUATIONS = ("queued", "running")


def delete_version(session: Session, storage: Storage, name: str, number: int, access: Access = EVERYONE) -> str:
    """Delete a version, its stored evaluations and its files (the run directory its model lies in:
    weights, config, report, plot); 409 while an alias points at it or an evaluation of it runs.
    Returns its id. Its number is not given again (`highest_version`). The row goes first: a crash
    between the two leaves orphan files, never a version without its weights."""
    version = get_version(session, name, number, access)
    pointing = sorted(a for a, vid in aliases_of(session, name).items() if vid == version.id)
    if pointing:
        raise Conflict(f"model {name!r} version {number} is served by alias(es) {', '.join(pointing)}; move or delete "
                       f"them first", param="version", code="version_in_use")
    evaluations = list(session.scalars(select(ModelEvaluation).where(ModelEvaluation.version_id == version.id)))
    if any(e.status in UNFINISHED_EVALUATIONS for e in evaluations):
        raise Conflict(f"model {name!r} version {number} has an evaluation in progress; delete it once that has finished",
                       param="version", code="version_in_use")
    for evaluation in evaluations:  # results about this version only: they go with it
        session.delete(evaluation)
    session.flush()
    version_id, files = version.id, run_key(version.artifact_key)
    session.delete(version)
    session.commit()
    storage.delete(files)
    return version_id


def run_key(artifact_key: str) -> str:
    """The run directory of a model artifact (`.../run/model` -> `.../run`), which holds its report and plot."""
    parent, _, leaf = artifact_key.rpartition("/")
    return parent if leaf == "model" and parent else artifact_key


def resolve(session: Session, name: str, version: int | None, alias: str | None) -> ModelVersion:
    """By number, by alias, else the `default` alias."""
    get_model(session, name)
    if version is not None and alias is not None:
        raise InvalidRequest("give version or alias, not both", param="alias")
    if version is not None:
        return get_version(session, name, version)
    row = session.get(ModelAlias, (name, alias or DEFAULT_ALIAS))
    if row is not None:
        return session.get(ModelVersion, row.version_id)
    if alias is not None:
        raise NotFound(f"model {name!r} has no alias {alias!r}", param="alias")
    raise NotFound(no_default_message(session, name), param="model", code="no_default_version")


def no_default_message(session: Session, name: str) -> str:
    """Why a model serves no unpinned request, and what to do about it."""
    versions = versions_of(session, name)
    if not versions:
        return f"model {name!r} has no versions yet"
    return (f"model {name!r} has no default version: none of its {len(versions)} version(s) passed its promotion gate "
            f"(see each version's `promotion`); name a version or alias, or set one by hand with "
            f"PUT /v1/models/{name}/aliases/{DEFAULT_ALIAS}")
