"""Request and response schemas (pydantic), apart from the ORM rows they are built from."""
from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app import models
from app.errors import InvalidRequest
from app.safe_input import check_json, check_text

T = TypeVar("T")


class ListOf(BaseModel, Generic[T]):
    object: Literal["list"] = "list"
    data: list[T]
    has_more: bool = False


# ---- descriptions and tags (models, versions, and jobs for the version they register) ----------

MAX_DESCRIPTION_CHARS = 2000
MAX_TAGS = 32
MAX_TAG_CHARS = 64
Description = Annotated[str, Field(max_length=MAX_DESCRIPTION_CHARS)]
Tags = Annotated[list[Annotated[str, Field(min_length=1, max_length=MAX_TAG_CHARS)]], Field(max_length=MAX_TAGS)]


def check_tags(tags: list[str] | None) -> list[str] | None:
    """Storable text, each tag once (a repeated tag is a mistake worth naming, not a set to fold)."""
    if tags is None:
        return None
    for i, tag in enumerate(tags):
        check_text(tag, f"tags.{i}")
        if tag in tags[:i]:
            raise InvalidRequest(f"tags.{i}: {tag!r} is given twice", param=f"tags.{i}", code="duplicate_tag")
    return tags


class Annotations(BaseModel):
    """`description` (up to 2,000 characters) and `tags` (up to 32 distinct strings of 1-64 characters)."""
    model_config = ConfigDict(extra="forbid")
    description: Description | None = None
    tags: Tags | None = None

    _description = field_validator("description")(lambda v: v if v is None else check_text(v, "description"))
    _tags = field_validator("tags")(check_tags)


# ---- datasets -------------------------------------------------------------------------------

class DatasetOut(BaseModel):
    id: str
    object: Literal["dataset"] = "dataset"
    created_at: int
    name: str
    kind: str
    format: str
    filename: str
    bytes: int
    sha256: str
    num_pairs: int
    dim_in: int | None
    dim_out: int | None
    teacher: str | None
    status: str
    error: str | None
    metadata: dict[str, Any] | None = None
    target_teacher: str | None = None  # translation: texts also encoded by this teacher, as targets

    @classmethod
    def of(cls, d: models.Dataset) -> "DatasetOut":
        return cls(id=d.id, created_at=int(d.created_at), name=d.name, kind=d.kind, format=d.format, filename=d.filename,
                   bytes=d.bytes, sha256=d.sha256, num_pairs=d.num_pairs, dim_in=d.dim_in, dim_out=d.dim_out,
                   teacher=d.teacher, status=d.status, error=d.error, metadata=d.metadata_,
                   target_teacher=d.target_teacher)


# ---- training jobs --------------------------------------------------------------------------

# The settings a job may give, named in the published schema. Kept in step with cube.config's
# TrainConfig and CubeConfig by a test (importing cube here would load torch in every API process).
HYPERPARAMETERS_DOC = (
    "Training settings, each a value or \"auto\" (the same as leaving it out: the default; but learning_rate \"auto\" is searched, docs/sweeps.md): n_epochs, batch_size, learning_rate, "
    "weight_decay, loss (infonce|triplet|cosine|mse), temperature, grad_clip, early_stopping_patience, "
    "monitor (mrr|recall_at_10|loss), seed, device, amp, warmup_steps, tuning_budget (learning rates every "
    "trained method tries, docs/quality.md), source_weights; learning methods (docs/learning.md): "
    "triplet_margin, hard_negatives, negative_max_cosine, curriculum (none|linear), curriculum_start, "
    "curriculum_epochs, input_noise, spread_penalty (collapse guard); multi-teacher datasets "
    "(docs/multi-teacher.md): head_weighting (fixed|adaptive), head_weights."
)
CUBE_ARCHITECTURE_DOC = (
    "`kind` plus the architecture's own fields. Cube: grid, channels, steps, neighbourhood (6|26), "
    "boundary (zero|periodic), perception (learned|fixed), cell (mlp|gated), hidden, fire_rate, "
    "global_channel, read_in (linear|lowrank|reshape), read_in_rank, read_out (volume|face), "
    "skip (linear|identity|none); regularisers (docs/learning.md): dropout, steps_jitter, state_penalty, "
    "io_weight_decay. "
    "mlp: hidden, input_norm. resmlp: hidden. d_in and d_out come from the dataset."
)


class Architecture(BaseModel):
    """`kind` plus the architecture's own fields (for the cube: grid, channels, steps, ...)."""
    model_config = ConfigDict(extra="allow", json_schema_extra={"description": CUBE_ARCHITECTURE_DOC})
    kind: Literal["cube", "linear", "mlp", "resmlp", "auto"] = Field(
        "cube", description="\"auto\": a built-in search picks the family (docs/sweeps.md, \"auto\")")

    @model_validator(mode="after")
    def storable(self) -> "Architecture":
        check_json(self.model_extra or {}, "architecture")
        return self


class Validation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fraction: float = 0.1
    test_fraction: float | None = None
    split_by: Literal["group"] = "group"
    # "question": validation and test score only the dataset's rows marked question (see docs/text.md)
    eval_filter: Literal["all", "question"] = "all"


class PromotionPolicy(BaseModel):
    """When the job's version takes the model's `default` alias (docs/service.md, "Promotion")."""
    model_config = ConfigDict(extra="forbid")
    mode: Literal["gate", "always", "manual"] = Field(
        "gate", description="gate: move `default` only if the version passes; always: move it regardless; "
                            "manual: never (PUT /v1/models/{name}/aliases/default does)")
    metric: Literal["mrr", "recall_at_10", "recall_at_1"] = Field(
        "mrr", description="the held-out metric the gate compares")
    max_loss_to_baseline: float = Field(
        0.01, ge=0, le=1, allow_inf_nan=False,
        description="how far below the best baseline's held-out score the version may be and still pass")
    min_score: float | None = Field(
        None, ge=0, le=1, allow_inf_nan=False, description="a floor on the version's held-out score, when given")


class TrainingJobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset_id: str
    mode: Literal["dialogue", "autoencoder", "translation"] = "dialogue"
    code_size: int | None = Field(None, ge=1, lt=2**31, description=(
        "mode autoencoder only, and required there: the number of values in the code, below the vectors' "
        "dimension (docs/autoencoder.md)"))
    architecture: Architecture = Field(default_factory=Architecture)
    hyperparameters: dict[str, Any] = Field(default_factory=dict, description=HYPERPARAMETERS_DOC)
    validation: Validation = Field(default_factory=Validation)
    seed: int = Field(0, ge=0, lt=2**31)
    device: Literal["cpu", "cuda"] = "cpu"  # the queue it goes to: only workers of this kind take it
    model: str | None = Field(None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    metadata: dict[str, Any] | None = None
    promotion: PromotionPolicy = Field(default_factory=PromotionPolicy)
    description: Description | None = Field(None, description="Given to the model version this job registers")
    tags: Tags | None = Field(None, description="Given to the model version this job registers")

    # These raise the service's own 400/413 (not pydantic's), so the caller learns which limit.
    _dataset_id = field_validator("dataset_id")(lambda v: check_text(v, "dataset_id"))
    # NaN here is left to TrainConfig, which names the field (422); only valid values are stored.
    _hyperparameters = field_validator("hyperparameters")(lambda v: check_json(v, "hyperparameters", finite=False))
    _metadata = field_validator("metadata")(lambda v: v if v is None else check_json(v, "metadata"))
    _description = field_validator("description")(lambda v: v if v is None else check_text(v, "description"))
    _tags = field_validator("tags")(check_tags)


class Progress(BaseModel):
    epoch: int
    n_epochs: int
    step: int
    total_steps: int | None
    fraction: float


class JobError(BaseModel):
    code: str
    message: str


class TrainingJobOut(BaseModel):
    id: str
    object: Literal["training_job"] = "training_job"
    created_at: int
    dataset_id: str
    model: str
    mode: str
    code_size: int | None = Field(None, description="an autoencoder's code size")
    architecture: dict[str, Any]
    hyperparameters: dict[str, Any]
    validation: dict[str, Any]
    seed: int
    device: str
    status: str
    progress: Progress
    estimated_finish: int | None
    metrics: dict[str, Any] | None
    attempt: int
    error: JobError | None
    cancel_requested_at: int | None
    started_at: int | None
    finished_at: int | None
    model_version_id: str | None
    metadata: dict[str, Any] | None
    promotion: dict[str, Any] | None
    description: str | None = None
    tags: list[str] = []
    sweep: "JobSweep | None" = None
    auto_search: dict[str, Any] | None = Field(None, description="the settings its \"auto\" values search (docs/sweeps.md)")

    @classmethod
    def of(cls, j: models.TrainingJob) -> "TrainingJobOut":
        fraction = 1.0 if j.status == "succeeded" else (j.epoch / j.n_epochs if j.n_epochs else 0.0)
        as_int = lambda t: None if t is None else int(t)  # noqa: E731
        return cls(
            id=j.id, created_at=int(j.created_at), dataset_id=j.dataset_id, model=j.model_name, mode=j.mode,
            code_size=j.model_config_.get("code_size"),
            architecture={"kind": j.arch, **{k: v for k, v in j.model_config_.items() if k != "code_size"}},
            hyperparameters=j.hyperparameters, validation=j.split,
            seed=j.seed, device=j.device, status=j.status,
            progress=Progress(epoch=j.epoch, n_epochs=j.n_epochs, step=j.step, total_steps=j.total_steps,
                              fraction=round(fraction, 4)),
            estimated_finish=as_int(j.estimated_finish), metrics=j.metrics, attempt=j.attempt,
            error=JobError(code=j.error_code, message=j.error_message or "") if j.error_code else None,
            cancel_requested_at=as_int(j.cancel_requested_at), started_at=as_int(j.started_at),
            finished_at=as_int(j.finished_at), model_version_id=j.model_version_id, metadata=j.metadata_,
            promotion=j.promotion, description=j.description, tags=j.tags or [],
            sweep=JobSweep(id=j.sweep_id, role=j.sweep_role, trial=j.trial_number) if j.sweep_id else None,
            auto_search=j.auto_search,
        )


class JobSweep(BaseModel):
    """The sweep a job belongs to: one of its trials (trial: the Optuna trial number) or its final job."""
    id: str
    role: Literal["trial", "final"]
    trial: int | None


TrainingJobOut.model_rebuild()


class EventOut(BaseModel):
    id: str
    object: Literal["training_job.event"] = "training_job.event"
    created_at: int
    level: str
    type: str
    message: str
    data: dict[str, Any] | None

    @classmethod
    def of(cls, e: models.JobEvent) -> "EventOut":
        return cls(id=e.id, created_at=int(e.created_at), level=e.level, type=e.type, message=e.message, data=e.data)


class MetricOut(BaseModel):
    key: str
    value: float
    step: int
    epoch: int
    timestamp: float


class CheckpointOut(BaseModel):
    id: str
    object: Literal["training_job.checkpoint"] = "training_job.checkpoint"
    created_at: int
    job_id: str
    epoch: int
    step: int
    metrics: dict[str, Any] | None

    @classmethod
    def of(cls, c: models.JobCheckpoint) -> "CheckpointOut":
        return cls(id=c.id, created_at=int(c.created_at), job_id=c.job_id, epoch=c.epoch, step=c.step, metrics=c.metrics)


# ---- models ---------------------------------------------------------------------------------

class ModelVersionOut(BaseModel):
    id: str
    object: Literal["model.version"] = "model.version"
    created_at: int
    model: str
    version: int
    status: str
    source_job_id: str
    arch: str
    dim_in: int
    dim_out: int
    teacher: str | None
    parameters: int
    evaluation: dict[str, Any]
    # The promotion gate's inputs and outcome (app.services.promotion); None: registered before gates.
    promotion: dict[str, Any] | None
    aliases: list[str]
    description: str | None = None
    tags: list[str] = []
    # Translation: the teacher whose space the output is in (text input is encoded by `teacher`).
    target_teacher: str | None = None

    @classmethod
    def of(cls, v: models.ModelVersion, aliases: list[str]) -> "ModelVersionOut":
        return cls(id=v.id, created_at=int(v.created_at), model=v.model_name, version=v.version, status=v.status,
                   source_job_id=v.source_job_id, arch=v.arch, dim_in=v.dim_in, dim_out=v.dim_out, teacher=v.teacher,
                   parameters=v.parameters, evaluation=v.evaluation, promotion=v.promotion, aliases=sorted(aliases),
                   description=v.description, tags=v.tags or [], target_teacher=v.target_teacher)


class ModelOut(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created_at: int
    latest_version: int | None
    aliases: dict[str, int]
    description: str | None = None
    tags: list[str] = []
    versions: list[ModelVersionOut] | None = None


MAX_INT = 2**31 - 1  # SQL INTEGER: larger numbers would be a database error, not a 4xx


class AliasUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1, le=MAX_INT)


class AliasOut(BaseModel):
    object: Literal["model.alias"] = "model.alias"
    model: str
    alias: str
    version: int


# ---- evaluations ----------------------------------------------------------------------------

class EvaluationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset_id: str = Field(description="the held-out set: every pair of this dataset is scored")

    _dataset_id = field_validator("dataset_id")(lambda v: check_text(v, "dataset_id"))


class EvaluationOut(BaseModel):
    id: str
    object: Literal["model.evaluation"] = "model.evaluation"
    created_at: int
    model: str
    version: int
    dataset_id: str
    status: str                       # queued | running | succeeded | failed
    attempt: int
    started_at: int | None
    finished_at: int | None
    error: JobError | None
    result: dict[str, Any] | None     # the training report's shape: main, methods, n; plus not_shown

    @classmethod
    def of(cls, e: models.ModelEvaluation, version: int) -> "EvaluationOut":
        as_int = lambda t: None if t is None else int(t)  # noqa: E731
        return cls(id=e.id, created_at=int(e.created_at), model=e.model_name, version=version, dataset_id=e.dataset_id,
                   status=e.status, attempt=e.attempt, started_at=as_int(e.started_at), finished_at=as_int(e.finished_at),
                   error=JobError(code=e.error_code, message=e.error_message or "") if e.error_code else None,
                   result=e.result)


class ComparedVersion(BaseModel):
    version: int
    evaluation_id: str
    status: str                       # the version's promotion status
    arch: str
    metrics: dict[str, Any]           # the version's own scores on the dataset
    methods: dict[str, Any]           # ... and the baselines it was shown beside


class ComparisonOut(BaseModel):
    object: Literal["model.comparison"] = "model.comparison"
    model: str
    dataset_id: str
    n: int
    versions: list[ComparedVersion]
    best: dict[str, int]              # metric -> the version that leads on it


# ---- transform ------------------------------------------------------------------------------

class TransformRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    version: int | None = Field(None, ge=1, le=MAX_INT)
    alias: str | None = Field(None, min_length=1, max_length=100)
    input: list[list[float]] | list[str] | str
    dim: int | None = Field(None, ge=1, le=MAX_INT)  # base64 input: values per vector (checked against the model)
    encoding_format: Literal["float", "base64"] = Field("float", description=(
        "How vectors travel, both ways. 'base64': a string `input` is base64 of little-endian float32 (see `dim`) "
        "and the answer's embeddings are base64 too. Unsaid, a string `input` is text for a model trained on text "
        "and base64 for a model trained on vectors; 'float' with a string `input` means text."))
    normalize: bool = False
    output: Literal["reconstruction", "code"] = Field("reconstruction", description=(
        "Autoencoders only: the reconstruction (dim_out values) or the code (code_size values)"))
    input_kind: Literal["original", "code"] = Field("original", description=(
        "Autoencoders only: 'code' decodes `input`, vectors of code_size values, into reconstructions"))
    target_space: str | None = Field(None, min_length=1, max_length=200, description=(
        "Multi-teacher models: the teacher whose space to answer in (default: the first of the version's "
        "target_teacher); any other model takes only its own output space's name"))
    truncate: bool = Field(True, description=(
        "Text input: cut a text longer than the teacher's max_length tokens (default, as TEI), or refuse it "
        "(422 naming it) when false"))

    _model = field_validator("model")(lambda v: check_text(v, "model"))
    _alias = field_validator("alias")(lambda v: v if v is None else check_text(v, "alias"))
    _target_space = field_validator("target_space")(lambda v: v if v is None else check_text(v, "target_space"))


class EmbeddingOut(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class TransformResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingOut]
    model: str
    version: int
    dim: int
    usage: dict[str, int]


# ---- embeddings (OpenAI's request and response) ----------------------------------------------

MODEL_REF_DOC = "`name` (its `default` alias), `name@alias` or `name:version`"


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, max_length=320, description=MODEL_REF_DOC)
    input: str | list[str] | list[list[float]] = Field(description=(
        "A text or a list of texts (models trained on text), or a list of vectors (any model)"))
    encoding_format: Literal["float", "base64"] = Field("float", description=(
        "The answer's embeddings as numbers, or base64 of little-endian float32"))
    dimensions: int | None = Field(None, ge=1, le=MAX_INT, description=(
        "Output dimensions; only the model's own `dim_out` (no model here is trained to be shortened)"))
    user: str | None = Field(None, max_length=256, description="Accepted for OpenAI clients; not stored")
    truncate: bool = Field(True, description=(
        "Not in OpenAI's API: cut a text longer than the teacher's max_length tokens (default), or refuse it "
        "(422 naming it) when false"))

    _model = field_validator("model")(lambda v: check_text(v, "model"))


class EmbeddingsUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingOut]
    model: str = Field(description="The version that answered, as `name:version`")
    usage: EmbeddingsUsage


# ---- webhooks -------------------------------------------------------------------------------------

class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=2000, description="http(s) URL that receives the events (POST, JSON)")
    events: list[str] | None = Field(None, max_length=10, description="event types to receive; default all: "
                                     "job.succeeded, job.failed, job.cancelled, model.version.created, model.alias.moved")
    description: str | None = Field(None, max_length=500)


class WebhookOut(BaseModel):
    id: str
    object: Literal["webhook"] = "webhook"
    url: str
    events: list[str]
    description: str | None
    created_at: int
    secret: str | None = Field(None, description="the signing secret: only in the response that registers the webhook")

    @classmethod
    def of(cls, hook: models.Webhook, secret: str | None = None) -> "WebhookOut":
        return cls(id=hook.id, url=hook.url, events=hook.events, description=hook.description,
                   created_at=int(hook.created_at), secret=secret)


class WebhookAttemptOut(BaseModel):
    number: int
    status_code: int | None
    error: str | None
    duration_ms: float
    at: float


class WebhookDeliveryOut(BaseModel):
    id: str = Field(description="the webhook-id header of every try")
    object: Literal["webhook.delivery"] = "webhook.delivery"
    type: str
    status: Literal["pending", "delivered", "failed"]
    created_at: float
    finished_at: float | None
    next_attempt_at: float | None
    payload: dict[str, Any]
    attempts: list[WebhookAttemptOut]

    @classmethod
    def of(cls, d: models.WebhookDelivery, tries: list[models.WebhookAttempt]) -> "WebhookDeliveryOut":
        return cls(id=d.id, type=d.type, status=d.status, created_at=d.created_at, finished_at=d.finished_at,
                   next_attempt_at=d.next_attempt_at if d.status == "pending" else None, payload=d.payload,
                   attempts=[WebhookAttemptOut(number=t.number, status_code=t.status_code, error=t.error,
                                               duration_ms=t.duration_ms, at=t.at) for t in tries])


# ---- bulk transform jobs --------------------------------------------------------------------

class TransformJobCreate(BaseModel):
    """A bulk transform of a stored dataset's inputs (a file is sent as multipart/form-data instead)."""
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, max_length=200)
    version: int | None = Field(None, ge=1, le=MAX_INT)
    alias: str | None = Field(None, min_length=1, max_length=100)
    dataset_id: str
    normalize: bool = False
    metadata: dict[str, Any] | None = None

    _model = field_validator("model")(lambda v: check_text(v, "model"))
    _alias = field_validator("alias")(lambda v: v if v is None else check_text(v, "alias"))
    _dataset_id = field_validator("dataset_id")(lambda v: check_text(v, "dataset_id"))
    _metadata = field_validator("metadata")(lambda v: v if v is None else check_json(v, "metadata"))


class TransformProgress(BaseModel):
    rows_done: int
    rows: int
    fraction: float


class TransformResultOut(BaseModel):
    format: Literal["npy"] = "npy"      # float32 [rows, dim], row i the image of input row i
    dtype: Literal["float32"] = "float32"
    shape: list[int]
    bytes: int


class TransformJobOut(BaseModel):
    id: str
    object: Literal["transform_job"] = "transform_job"
    created_at: int
    model: str
    version: int
    model_version_id: str
    dataset_id: str | None
    input: dict[str, Any]
    normalize: bool
    status: str
    progress: TransformProgress
    estimated_finish: int | None
    attempt: int
    error: JobError | None
    result: TransformResultOut | None
    cancel_requested_at: int | None
    started_at: int | None
    finished_at: int | None
    metadata: dict[str, Any] | None

    @classmethod
    def of(cls, j: models.TransformJob) -> "TransformJobOut":
        as_int = lambda t: None if t is None else int(t)  # noqa: E731
        result = None
        if j.status == "succeeded" and j.result_bytes is not None:
            result = TransformResultOut(shape=[j.num_rows, j.dim_out], bytes=j.result_bytes)
        return cls(
            id=j.id, created_at=int(j.created_at), model=j.model_name, version=j.version,
            model_version_id=j.model_version_id, dataset_id=j.dataset_id,
            input={"kind": j.input_kind, "format": j.input_format, "rows": j.num_rows, "dim": j.dim_in, "bytes": j.input_bytes},
            normalize=j.normalize, status=j.status,
            progress=TransformProgress(rows_done=j.rows_done, rows=j.num_rows, fraction=round(j.rows_done / j.num_rows, 4)),
            estimated_finish=as_int(j.estimated_finish), attempt=j.attempt,
            error=JobError(code=j.error_code, message=j.error_message or "") if j.error_code else None,
            result=result, cancel_requested_at=as_int(j.cancel_requested_at), started_at=as_int(j.started_at),
            finished_at=as_int(j.finished_at), metadata=j.metadata_,
        )


class TransformJobEventOut(EventOut):
    object: Literal["transform_job.event"] = "transform_job.event"  # type: ignore[assignment]


class PrunerSpec(BaseModel):
    """How a sweep stops poor trials early (cube.sweep.make_pruner checks the options)."""
    model_config = ConfigDict(extra="allow", json_schema_extra={"description": (
        "kind none | median (startup_trials: 3, warmup_epochs: 2) | halving (min_epochs: 1, reduction_factor: 3)")})
    kind: Literal["none", "median", "halving"] = "halving"


class SweepCreate(TrainingJobCreate):
    """A hyperparameter search over `search_space`. Its base settings are a training job's (the
    space overrides them); the final job, with the chosen settings, registers the version."""
    search_space: dict[str, Any] = Field(description=(
        "setting -> a list of choices, a range {low, high[, log][, step]}, or one value; e.g. "
        '{"channels": [8, 16], "steps": {"low": 2, "high": 8, "step": 2}, '
        '"learning_rate": {"low": 1e-4, "high": 1e-2, "log": true}, "arch": ["cube", "mlp"]} (docs/sweeps.md)'))
    objective: Literal["val_mrr", "val_recall_at_10"] = "val_mrr"
    n_trials: int = Field(10, ge=1, le=500)
    max_parallel: int = Field(2, ge=1, le=64)
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    time_budget_seconds: float | None = Field(None, gt=0, le=30 * 86400, allow_inf_nan=False,
                                              description="no trial starts after this many seconds")

    _search_space = field_validator("search_space")(lambda v: check_json(v, "search_space", finite=False))

    @property
    def pruner_settings(self) -> dict[str, Any]:
        return {"kind": self.pruner.kind, **(self.pruner.model_extra or {})}


class SweepBest(BaseModel):
    number: int
    params: dict[str, Any]
    value: float
    job_id: str | None


class SweepOut(BaseModel):
    id: str
    object: Literal["sweep"] = "sweep"
    created_at: int
    dataset_id: str
    model: str
    mode: str
    code_size: int | None = Field(None, description="an autoencoder's code size")
    status: Literal["running", "succeeded", "failed", "cancelled"]
    objective: str
    search_space: dict[str, Any]
    n_trials: int
    max_parallel: int
    pruner: dict[str, Any]
    time_budget_seconds: float | None
    seed: int
    trials_created: int
    best: SweepBest | None
    importance: dict[str, float] | None
    final_job_id: str | None
    model_version_id: str | None
    error: JobError | None
    finished_at: int | None
    metadata: dict[str, Any] | None

    @classmethod
    def of(cls, s: models.Sweep) -> "SweepOut":
        return cls(
            id=s.id, created_at=int(s.created_at), dataset_id=s.dataset_id, model=s.model_name, mode=s.mode,
            code_size=s.base["model"].get("code_size"),
            status=s.status, objective=s.objective, search_space=s.search_space, n_trials=s.n_trials,
            max_parallel=s.max_parallel, pruner=s.pruner, time_budget_seconds=s.time_budget_seconds, seed=s.seed,
            trials_created=s.trials_created, best=SweepBest(**s.best) if s.best else None, importance=s.importance,
            final_job_id=s.final_job_id, model_version_id=s.model_version_id,
            error=JobError(code=s.error_code, message=s.error_message or "") if s.error_code else None,
            finished_at=None if s.finished_at is None else int(s.finished_at), metadata=s.metadata_)


class TrialOut(BaseModel):
    number: int
    object: Literal["sweep.trial"] = "sweep.trial"
    params: dict[str, Any]
    state: Literal["running", "waiting", "complete", "pruned", "fail"]
    value: float | None
    epochs: int
    intermediate: dict[str, float] = Field(description="epoch -> the objective on validation")
    job_id: str | None
    job_status: str | None
    started_at: float | None
    finished_at: float | None


class SweepEventOut(BaseModel):
    id: str
    object: Literal["sweep.event"] = "sweep.event"
    created_at: int
    level: str
    message: str
    data: dict[str, Any] | None

    @classmethod
    def of(cls, e: models.SweepEvent) -> "SweepEventOut":
        return cls(id=e.id, created_at=int(e.created_at), level=e.level, message=e.message, data=e.data)
