"""Training jobs from the API's side: create (resolve "auto", validate, commit, then enqueue), list,
read, cancel, and the job's events, metrics and checkpoints."""
from __future__ import annotations

import time
from dataclasses import fields
from typing import Any, Callable

from sqlalchemy import String, cast, select
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidContent, InvalidRequest, NotFound, NotReady
from app.ids import PREFIXES, is_id, new_id
from app.jobs import lifecycle, states
from app.jobs.states import DatasetStatus
from app.models import Dataset, JobCheckpoint, JobEvent, JobMetric, TrainingJob, teacher_names
from app.schemas import TrainingJobCreate
from app.services.access import EVERYONE, Access
from app.settings import Settings
from app.services.datasets import get_dataset
from app.services.registry import check_model_name

Enqueue = Callable[..., None]


def resolve_hyperparameters(given: dict[str, Any], num_pairs: int) -> dict[str, Any]:
    """Every TrainConfig field with "auto" (or absent) replaced by a value; refuses unknown keys."""
    from cube.config import ConfigError, TrainConfig

    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise InvalidRequest(f"unknown hyperparameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}",
                             param=f"hyperparameters.{unknown[0]}")
    defaults = TrainConfig().to_dict()
    train_pairs = max(1, int(num_pairs * 0.8))
    auto = {
        # A batch of at most a quarter of the training pairs keeps several steps per epoch on small sets.
        "batch_size": min(defaults["batch_size"], 1 << (max(8, train_pairs // 4).bit_length() - 1)),
        "warmup_steps": defaults["warmup_steps"],
    }
    resolved = {}
    for key in sorted(known):
        value = given.get(key, "auto")
        resolved[key] = auto.get(key, defaults[key]) if value == "auto" else value
    try:
        TrainConfig.from_dict(resolved)
    except (ConfigError, TypeError) as exc:
        raise InvalidContent(str(exc), param="hyperparameters", code="invalid_hyperparameters") from None
    return resolved


def resolve_split(body: TrainingJobCreate) -> dict[str, Any]:
    from cube.config import ConfigError, SplitConfig

    fraction = body.validation.fraction
    test = body.validation.test_fraction if body.validation.test_fraction is not None else fraction
    split = {"val_fraction": fraction, "test_fraction": test, "seed": body.seed, "eval_filter": body.validation.eval_filter}
    try:
        SplitConfig.from_dict(split)
    except ConfigError as exc:
        raise InvalidContent(str(exc), param="validation.fraction", code="invalid_validation") from None
    return {**split, "split_by": body.validation.split_by}


# A job may not ask for a model that cannot fit a worker: the check runs before anything is queued.
MAX_MODEL_PARAMETERS = 200_000_000
MAX_STATE_VALUES = 1 << 20  # cells x channels per sample: the default cube has 6,144
MAX_ACTIVATION_BYTES = 16 << 30  # activations kept for one training batch: the default cube needs about 0.25 GiB


def dataset_dims(dataset: Dataset) -> tuple[int, int] | None:
    """(d_in, d_out) of the dataset's vectors; None for text of a teacher this process does not know."""
    if dataset.dim_in is not None:
        return dataset.dim_in, dataset.dim_out
    from cube.teachers import configured_registry  # text not encoded yet: its teachers give the dims

    registry = configured_registry()
    spec = registry.get(dataset.teacher)
    # translation: the target's space; multi-teacher: every target teacher's, side by side
    targets = [registry.get(name) for name in teacher_names(dataset.target_teacher) or [dataset.teacher]]
    return None if spec is None or None in targets else (spec.dim, sum(t.dim for t in targets))


def with_code_size(body: TrainingJobCreate, dataset: Dataset, shape: dict[str, Any]) -> dict[str, Any]:
    """The model config with the job's bottleneck (`code_size`, autoencoders only; the worker builds it
    from there), or a 4xx naming `code_size` for a bad combination."""
    from cube.config import ConfigError, check_code_size

    if "code_size" in shape:
        raise InvalidRequest("give code_size at the top level of the job, not in architecture",
                             param="architecture.code_size")
    dims = dataset_dims(dataset)
    try:
        k = check_code_size(body.mode, body.code_size, dims[0] if dims else None)
    except ConfigError as exc:
        raise InvalidContent(str(exc), param="code_size", code="invalid_code_size") from None
    return shape if k is None else {**shape, "code_size": k}


def check_architecture(arch: str, shape: dict[str, Any], dataset: Dataset, mode: str, batch_size: int = 1) -> None:
    from cube.config import ConfigError
    from cube.models import check_model_config

    check_mode_fits(dataset, mode)
    for key in ("d_in", "d_out"):
        if key in shape:
            raise InvalidRequest(f"architecture.{key} comes from the dataset; leave it out", param=f"architecture.{key}")
    dims = dataset_dims(dataset)
    if dims is None:  # uploads accept registered teachers only: nothing to measure against
        return
    d_in, d_out = dims
    if mode == "autoencoder":
        d_out = d_in
    try:
        check_model_config(arch, {"d_in": d_in, "d_out": d_out, **shape},
                           max_parameters=MAX_MODEL_PARAMETERS, max_state_values=MAX_STATE_VALUES,
                           max_activation_bytes=MAX_ACTIVATION_BYTES, batch_size=batch_size)
    except (ConfigError, TypeError) as exc:
        raise InvalidContent(str(exc), param="architecture", code="invalid_architecture") from None


def check_mode_fits(dataset: Dataset, mode: str) -> None:
    """Texts become translation items only with a target teacher, and a dataset of translation items
    (each text in two spaces) trains translation only; text pairs with several target teachers train
    dialogue (a head per teacher) only."""
    if dataset.kind != "text_pairs":
        return
    if len(teacher_names(dataset.target_teacher)) > 1:
        if mode != "dialogue":
            raise InvalidContent(f"dataset {dataset.id} holds targets by several teachers ({dataset.target_teacher}): it "
                                 f"trains mode dialogue with a head per teacher, not {mode}", param="mode",
                                 code="mode_mismatch")
        return
    if mode == "translation" and not dataset.target_teacher:
        raise InvalidContent(f"dataset {dataset.id} holds texts encoded by one teacher; a translation job needs a "
                             "text dataset uploaded with a target_teacher (the teacher whose space the model maps into)",
                             param="target_teacher", code="target_teacher_missing")
    if dataset.target_teacher and mode != "translation":
        raise InvalidContent(f"dataset {dataset.id} pairs each text's {dataset.teacher} vector with its "
                             f"{dataset.target_teacher} vector: it trains mode translation, not {mode}",
                             param="mode", code="mode_mismatch")


def within_caps(dataset: Dataset, mode: str, base_kind: str, shape: dict[str, Any]) -> Callable[[str, dict[str, Any], int], None]:
    """check(arch, settings, batch) for a search's largest model: raises ConfigError past the caps."""
    from cube.config import ConfigError

    def check(arch: str, settings: dict[str, Any], batch: int) -> None:
        try:
            kept = shape if arch == base_kind else {k: v for k, v in shape.items() if k == "code_size"}  # as cube.sweep does
            check_architecture(arch, {**kept, **settings}, dataset, mode, batch_size=batch)
        except InvalidContent as exc:
            raise ConfigError(exc.message) from None

    return check


def create_job(session: Session, settings: Settings, enqueue: Enqueue, body: TrainingJobCreate,
               access: Access = EVERYONE) -> TrainingJob:
    # Locked: the encoder updates this row and then releases the jobs waiting on it, so a job
    # created meanwhile is either seen by the encoder or sees the dataset ready (PostgreSQL).
    dataset = get_dataset(session, body.dataset_id, for_update=True, access=access)
    if dataset.status not in (DatasetStatus.READY, DatasetStatus.VALIDATING):
        raise Conflict(f"dataset {dataset.id} is {dataset.status}: {dataset.error or 'not usable'}", param="dataset_id",
                       code="dataset_not_ready")
    from app.services.auto_search import auto_space, check_space

    kind, shape = body.architecture.kind, with_code_size(body, dataset, body.architecture.model_extra or {})
    search = auto_space(kind, shape, body.hyperparameters)
    if search and len(teacher_names(dataset.target_teacher)) > 1:
        raise InvalidContent(f"dataset {dataset.id} has several target teachers: its multi-head model trains with the "
                             "values given, not \"auto\" (give them, or search on one teacher's dataset)",
                             param="hyperparameters", code="auto_not_supported")
    if search:  # the job's own checks run on the defaults; the search's largest model is checked below
        kind = "cube" if kind == "auto" else kind
        shape = {k: v for k, v in shape.items() if v != "auto"}
    if "seed" in body.hyperparameters and body.hyperparameters["seed"] not in ("auto", body.seed):
        raise InvalidRequest("give the seed at the top level of the job, not in hyperparameters",
                             param="hyperparameters.seed")
    if body.hyperparameters.get("device", "auto") not in ("auto", body.device):
        raise InvalidRequest("give the device at the top level of the job (\"device\": \"cpu\" or \"cuda\"), "
                             "not in hyperparameters", param="hyperparameters.device")
    hyper = resolve_hyperparameters(body.hyperparameters, dataset.num_pairs)
    check_architecture(kind, shape, dataset, body.mode, batch_size=hyper["batch_size"])
    if search:
        check_space(search, within_caps(dataset, body.mode, kind, shape), hyper["batch_size"])
    hyper["seed"], hyper["device"] = body.seed, body.device
    model_name = check_model_name(session, body.model or default_model_name(dataset), access)
    job = TrainingJob(
        id=new_id("job"), dataset_id=dataset.id, model_name=model_name, mode=body.mode,
        arch=kind, model_config_=shape, auto_search=search, hyperparameters=hyper, split=resolve_split(body),
        seed=body.seed, device=body.device, status=states.QUEUED if dataset.status == DatasetStatus.READY else states.VALIDATING_FILES,
        attempt=0, epoch=0, n_epochs=hyper["n_epochs"], step=0, metadata_=body.metadata, description=body.description,
        tags=body.tags, created_at=time.time(), promotion=body.promotion.model_dump(),
        owner_key_id=access.key_id,
    )
    session.add(job)
    session.flush()  # the event's foreign key needs the job row first (no ORM relationship orders them)
    lifecycle.add_event(session, job.id, f"job created ({job.status})" + (
        f"; \"auto\" searches {', '.join(search)} before training" if search else ""))
    session.commit()  # before enqueueing: the worker must find the row
    if job.status == states.QUEUED:
        lifecycle.send(session, enqueue, job.id, job.device)
    else:  # a second look after the commit, in case the encoder finished meanwhile
        lifecycle.release_waiting(session, enqueue, dataset.id)
    session.refresh(job)
    if job.error_code == "broker_unavailable":
        raise NotReady("the job queue is unreachable; the job was not started", code="broker_unavailable")
    lifecycle.note_if_unserved(session, settings, job)
    return job


def default_model_name(dataset: Dataset) -> str:
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in dataset.name).strip("-._")
    return safe[:200] or dataset.id


def get_job(session: Session, job_id: str, access: Access = EVERYONE) -> TrainingJob:
    """The job, or 404 if it does not exist or belongs to another key."""
    job = session.get(TrainingJob, job_id)
    if job is None or not access.can_see(job.owner_key_id):
        raise NotFound(f"no training job {job_id!r}", param="job_id")
    return job


def list_jobs(session: Session, after: str | None, limit: int, status: str | None, access: Access = EVERYONE, *,
              model: str | None = None, dataset_id: str | None = None,
              metadata: dict[str, str] | None = None) -> tuple[list[TrainingJob], bool]:
    """Newest first; every filter given must hold. `metadata` maps a key to the text its value must
    have (a string value itself; a number or boolean as its JSON text)."""
    filters = [metadata_text(key) == value for key, value in (metadata or {}).items()]
    if model is not None:
        filters.append(TrainingJob.model_name == model)
    if dataset_id is not None:
        filters.append(TrainingJob.dataset_id == dataset_id)
    return newest_first(session, TrainingJob, "job", after, limit, access, status, states.STATES, *filters)


def newest_first(session: Session, table: type, kind: str, after: str | None, limit: int, access: Access,
                 status: str | None, statuses: tuple[str, ...], *filters: Any) -> tuple[list, bool]:
    """A page of an owned table's rows (jobs, transform jobs, sweeps), newest first, after the cursor
    `after` (an id of that `kind`), with the given status if any and every filter; and whether more follow."""
    if status is not None and status not in statuses:
        raise InvalidRequest(f"status must be one of {', '.join(statuses)}", param="status")
    check_cursor(after, kind)
    query = select(table).where(access.where(table.owner_key_id), *filters).order_by(table.id.desc()).limit(limit + 1)
    if after:
        query = query.where(table.id < after)
    if status:
        query = query.where(table.status == status)
    rows = list(session.scalars(query))
    return rows[:limit], len(rows) > limit


def metadata_text(key: str):
    """A job's metadata[key] as text in SQL: PostgreSQL's ->> gives text for any JSON value, SQLite's
    json_extract a typed value, which the cast turns into the same text for strings and numbers."""
    return cast(TrainingJob.metadata_[key].as_string(), String)


def check_cursor(after: str | None, kind: str) -> None:
    if after is not None and not is_id(after, kind):
        raise InvalidRequest(f"after must be an id from this list ({PREFIXES[kind]}...), got {after!r}", param="after",
                             code="invalid_cursor")


def cancel_job(session: Session, job: Any, what: str = "job") -> Any:
    """Cancel a training or transform job (the lifecycle serves both kinds); 409 once it has ended."""
    try:
        return lifecycle.cancel(session, job)
    except states.IllegalTransition:
        raise Conflict(f"{what} {job.id} already {job.status}", code="illegal_state", param="job_id") from None


def list_events(session: Session, job: Any, after: str | None, limit: int, event_model: type = JobEvent,
                owner: Any = None) -> tuple[list, bool]:
    """A page of a job's events, oldest first (`event_model`: the kind's event table; `owner`: its
    column naming the job, `job_id` unless given, e.g. a sweep's)."""
    check_cursor(after, "event")
    column = event_model.job_id if owner is None else owner
    query = select(event_model).where(column == job.id).order_by(event_model.id).limit(limit + 1)
    if after:
        query = query.where(event_model.id > after)
    rows = list(session.scalars(query))
    return rows[:limit], len(rows) > limit


def list_metrics(session: Session, job: TrainingJob, key: str | None) -> list[JobMetric]:
    query = select(JobMetric).where(JobMetric.job_id == job.id).order_by(JobMetric.id)
    if key:
        query = query.where(JobMetric.key == key)
    return list(session.scalars(query))


def list_checkpoints(session: Session, job: TrainingJob) -> list[JobCheckpoint]:
    return list(session.scalars(select(JobCheckpoint).where(JobCheckpoint.job_id == job.id).order_by(JobCheckpoint.epoch)))
