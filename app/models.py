"""SQL tables (SQLAlchemy 2 ORM): the source of truth for datasets, jobs, their events, metrics and
checkpoints, and the model registry. Times are Unix seconds (float) so every backend stores them alike."""
from __future__ import annotations

import time
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


def now() -> float:
    return time.time()


def teacher_names(target_teacher: str | None) -> list[str]:
    """The names in a `target_teacher` column: one (translation) or several, comma-separated
    (multi-teacher distillation: a read-out head per teacher, in this order, the first the default)."""
    return [name.strip() for name in target_teacher.split(",")] if target_teacher else []


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))                 # text_pairs | embedding_pairs
    format: Mapped[str] = mapped_column(String(16))               # npz | parquet | jsonl | csv
    filename: Mapped[str] = mapped_column(String(300))
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    num_pairs: Mapped[int] = mapped_column(Integer)
    dim_in: Mapped[int | None] = mapped_column(Integer)
    dim_out: Mapped[int | None] = mapped_column(Integer)
    teacher: Mapped[str | None] = mapped_column(String(200))
    target_teacher: Mapped[str | None] = mapped_column(String(200))  # the targets' teacher(s): teacher_names
    status: Mapped[str] = mapped_column(String(20))               # app.jobs.states.DatasetStatus
    error: Mapped[str | None] = mapped_column(Text)
    storage_key: Mapped[str] = mapped_column(String(300))         # the uploaded file
    pairs_key: Mapped[str | None] = mapped_column(String(300))    # embedding pairs the trainer reads
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    owner_key_id: Mapped[str | None] = mapped_column(String(40), index=True)  # the API key that uploaded it


class TrainingJob(Base):
    __tablename__ = "training_jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    model_name: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(20))
    arch: Mapped[str] = mapped_column(String(20))
    model_config_: Mapped[dict[str, Any]] = mapped_column("model_config", JSON)
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    split: Mapped[dict[str, Any]] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(20), index=True)  # app.jobs.states
    device: Mapped[str] = mapped_column(String(10), default="cpu", server_default="cpu")  # cpu | cuda: the queue it goes to
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200))       # the Celery node name of the attempt's worker
    sent_at: Mapped[float | None] = mapped_column(Float)          # last (re-)send by the lifecycle; None: at creation
    heartbeat_at: Mapped[float | None] = mapped_column(Float)
    epoch: Mapped[int] = mapped_column(Integer, default=0)
    n_epochs: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int | None] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    estimated_finish: Mapped[float | None] = mapped_column(Float)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    cancel_requested_at: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    model_version_id: Mapped[str | None] = mapped_column(String(40))
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    # The promotion gate its version must pass to take the `default` alias (app.services.promotion);
    # None for jobs created before gates existed (they get the default policy).
    promotion: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(Text)         # given to the version the job registers
    tags: Mapped[list[Any] | None] = mapped_column(JSON)          # given to the version the job registers
    created_at: Mapped[float] = mapped_column(Float, default=now)
    owner_key_id: Mapped[str | None] = mapped_column(String(40), index=True)  # the API key that created it
    # A job a sweep made (app.services.sweeps): a trial (trains on the training split only, scored on
    # validation, registers nothing) or the sweep's final job (the chosen settings, a version).
    # No foreign key: adding one would make SQLite rebuild this table, which the rows that point at
    # it (events, metrics) forbid; like model_version_id, the service keeps it consistent.
    sweep_id: Mapped[str | None] = mapped_column(String(40), index=True)
    sweep_role: Mapped[str | None] = mapped_column(String(10))    # trial | final
    trial_number: Mapped[int | None] = mapped_column(Integer)     # the Optuna trial's number
    # The built-in search its "auto" values ask for (app.services.auto_search), in search_space format.
    auto_search: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Sweep(Base):
    """A hyperparameter search: an Optuna study (named by the sweep's id, in the same database) whose
    trials are training jobs; the best trial's settings become the final job and its version."""
    __tablename__ = "sweeps"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id"), index=True)
    model_name: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(20))
    base: Mapped[dict[str, Any]] = mapped_column(JSON)            # arch, model config, hyperparameters, split, ...
    search_space: Mapped[dict[str, Any]] = mapped_column(JSON)
    objective: Mapped[str] = mapped_column(String(40))
    n_trials: Mapped[int] = mapped_column(Integer)
    max_parallel: Mapped[int] = mapped_column(Integer)
    pruner: Mapped[dict[str, Any]] = mapped_column(JSON)
    time_budget_seconds: Mapped[float | None] = mapped_column(Float)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    device: Mapped[str] = mapped_column(String(10), default="cpu")
    status: Mapped[str] = mapped_column(String(20), index=True)   # running | succeeded | failed | cancelled
    trials_created: Mapped[int] = mapped_column(Integer, default=0)
    advancing_until: Mapped[float | None] = mapped_column(Float)  # the lease of the process moving it on
    best: Mapped[dict[str, Any] | None] = mapped_column(JSON)     # number, params, value, job_id
    importance: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    final_job_id: Mapped[str | None] = mapped_column(String(40))
    model_version_id: Mapped[str | None] = mapped_column(String(40))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    finished_at: Mapped[float | None] = mapped_column(Float)
    owner_key_id: Mapped[str | None] = mapped_column(String(40), index=True)


class SweepEvent(Base):
    __tablename__ = "sweep_events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    sweep_id: Mapped[str] = mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"), index=True)
    level: Mapped[str] = mapped_column(String(10))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class JobEvent(Base):
    __tablename__ = "job_events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("training_jobs.id", ondelete="CASCADE"), index=True)
    level: Mapped[str] = mapped_column(String(10))                # info | warning | error
    type: Mapped[str] = mapped_column(String(10))                 # message | metrics
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class JobMetric(Base):
    __tablename__ = "job_metrics"
    __table_args__ = (Index("ix_job_metrics_job_key", "job_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("training_jobs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    step: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(Integer)
    timestamp: Mapped[float] = mapped_column(Float, default=now)


class JobCheckpoint(Base):
    __tablename__ = "job_checkpoints"
    __table_args__ = (UniqueConstraint("job_id", "epoch", name="uq_job_checkpoints_job_epoch"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("training_jobs.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1, server_default="1")  # written by this attempt
    epoch: Mapped[int] = mapped_column(Integer)
    step: Mapped[int] = mapped_column(Integer)
    storage_key: Mapped[str] = mapped_column(String(300))
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class RegisteredModel(Base):
    __tablename__ = "models"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    owner_key_id: Mapped[str | None] = mapped_column(String(40), index=True)  # its first job's key; versions and aliases follow
    description: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[Any] | None] = mapped_column(JSON)
    # The highest version number ever given: a deleted version's number is never given again.
    highest_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("model_name", "version", name="uq_model_versions_name_version"),
        # A job registers at most one version, however often its message is delivered.
        UniqueConstraint("source_job_id", name="uq_model_versions_source_job_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    model_name: Mapped[str] = mapped_column(ForeignKey("models.name"))
    version: Mapped[int] = mapped_column(Integer)
    # The promotion gate's verdict: approved | rejected; `ready`: registered before gates existed.
    status: Mapped[str] = mapped_column(String(20), default="ready")
    source_job_id: Mapped[str] = mapped_column(ForeignKey("training_jobs.id"))
    arch: Mapped[str] = mapped_column(String(20))
    dim_in: Mapped[int] = mapped_column(Integer)
    dim_out: Mapped[int] = mapped_column(Integer)
    teacher: Mapped[str | None] = mapped_column(String(200))
    target_teacher: Mapped[str | None] = mapped_column(String(200))  # the output space's teacher(s): teacher_names
    parameters: Mapped[int] = mapped_column(BigInteger)
    evaluation: Mapped[dict[str, Any]] = mapped_column(JSON)
    artifact_key: Mapped[str] = mapped_column(String(300))
    promotion: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the gate's inputs and outcome
    description: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[Any] | None] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class ModelEvaluation(Base):
    """A version judged on a whole dataset (POST /v1/models/{name}/versions/{v}/evaluations), run on a worker."""
    __tablename__ = "model_evaluations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(200))
    version_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), index=True)
    dataset_id: Mapped[str] = mapped_column(String(40))          # no foreign key: the dataset may be deleted later
    status: Mapped[str] = mapped_column(String(20))               # queued | running | succeeded | failed
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)   # metrics per method, as in the training report
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    owner_key_id: Mapped[str | None] = mapped_column(String(40))  # the API key that asked for it


class ModelAlias(Base):
    __tablename__ = "model_aliases"

    model_name: Mapped[str] = mapped_column(ForeignKey("models.name"), primary_key=True)
    alias: Mapped[str] = mapped_column(String(100), primary_key=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id"))
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class TransformJob(Base):
    """A bulk transform: one model version over a whole input (a stored dataset's inputs or an uploaded
    file), run by a worker in batches; the result is one .npy file. Lifecycle columns as TrainingJob's."""
    __tablename__ = "transform_jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(200))
    model_version_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id"))  # resolved at creation: pinned
    version: Mapped[int] = mapped_column(Integer)
    dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id"), index=True)  # None: an uploaded file
    input_key: Mapped[str] = mapped_column(String(300))        # the file the worker reads
    input_format: Mapped[str] = mapped_column(String(16))      # npy | npz | parquet | jsonl
    input_kind: Mapped[str] = mapped_column(String(16))        # vectors | texts
    input_bytes: Mapped[int] = mapped_column(BigInteger)
    num_rows: Mapped[int] = mapped_column(Integer)
    dim_in: Mapped[int] = mapped_column(Integer)
    dim_out: Mapped[int] = mapped_column(Integer)
    normalize: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20), index=True)  # app.jobs.states
    device: Mapped[str] = mapped_column(String(10), default="cpu", server_default="cpu")
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200))
    sent_at: Mapped[float | None] = mapped_column(Float)
    heartbeat_at: Mapped[float | None] = mapped_column(Float)
    rows_done: Mapped[int] = mapped_column(Integer, default=0)
    estimated_finish: Mapped[float | None] = mapped_column(Float)
    result_key: Mapped[str | None] = mapped_column(String(300))
    result_bytes: Mapped[int | None] = mapped_column(BigInteger)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    cancel_requested_at: Mapped[float | None] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    owner_key_id: Mapped[str | None] = mapped_column(String(40), index=True)


class TransformJobEvent(Base):
    __tablename__ = "transform_job_events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("transform_jobs.id", ondelete="CASCADE"), index=True)
    level: Mapped[str] = mapped_column(String(10))
    type: Mapped[str] = mapped_column(String(10))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class IdempotencyKey(Base):
    """A POST's Idempotency-Key: the same key and body replay the stored response; another body is refused."""

    __tablename__ = "idempotency_keys"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # The route and the caller's API key ("POST /v1/training-jobs key_..."): keys never share an
    # Idempotency-Key, so one key's retry can never receive another key's response.
    scope: Mapped[str] = mapped_column(String(100), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))                   # sha256 of the request body
    status_code: Mapped[int | None] = mapped_column(Integer)               # None while the first request runs
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float, default=now, index=True)  # expired rows are deleted


class ApiKey(Base):
    """An API key: only the SHA-256 of the secret is stored; `prefix` is a non-secret part for display."""
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(20))                # train | transform | admin
    created_at: Mapped[float] = mapped_column(Float, default=now)
    revoked_at: Mapped[float | None] = mapped_column(Float)


class Worker(Base):
    """A running worker, refreshed by its main process (app.jobs.workers)."""
    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)   # Celery node name, e.g. cube@host-1234
    device: Mapped[str] = mapped_column(String(10))                    # cpu | cuda
    queue: Mapped[str] = mapped_column(String(200))
    host: Mapped[str] = mapped_column(String(300))                     # hostname/pid-namespace (app.jobs.workers.host_id)
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[float] = mapped_column(Float, default=now)
    last_seen: Mapped[float] = mapped_column(Float, default=now, index=True)


class Webhook(Base):
    """An endpoint that is told when jobs end and models change (app/webhooks). It hears about what its
    key may see: the key's own resources, or everything for an admin key (and while auth is off)."""
    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(100))              # whsec_<base64>: signs every delivery
    events: Mapped[list[Any]] = mapped_column(JSON)               # event types it wants
    description: Mapped[str | None] = mapped_column(String(500))
    owner_key_id: Mapped[str | None] = mapped_column(String(40), index=True)
    sees_all: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class WebhookDelivery(Base):
    """One event for one endpoint (the outbox): written in the transaction that made the event true,
    sent by a worker until the endpoint answers 2xx or the attempts run out. `id` is the
    webhook-id header, the same on every retry, so a receiver can drop repeats."""
    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(12))               # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    finished_at: Mapped[float | None] = mapped_column(Float)


class WebhookAttempt(Base):
    """One try at sending a delivery: what the endpoint answered, or why it could not be reached."""
    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(500))
    duration_ms: Mapped[float] = mapped_column(Float)
    at: Mapped[float] = mapped_column(Float, default=now)
