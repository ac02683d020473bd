"""The service's settings: one pydantic-settings object, the only reader of the environment.

Every variable has the prefix `CUBE_` (e.g. `CUBE_DATABASE_URL`). Unset URLs fall back to the
embedded default under `data_dir`: SQLite for metadata, kombu's SQLAlchemy transport over SQLite as
the broker, and local storage, so `cube up` needs no server.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CUBE_", extra="ignore")

    data_dir: Path = Path("runs/service")  # git-ignored; production sets CUBE_DATA_DIR
    database_url: str | None = None        # default: sqlite:///<data_dir>/cube.db
    broker_url: str | None = None          # default: sqla+sqlite:///<data_dir>/broker.db
    broker_key_prefix: str = ""            # Redis key prefix (lets several deployments share one Redis)
    # Where datasets, checkpoints, models and results live (docs/storage.md): file:///dir (the
    # default: storage_dir) or s3://bucket/prefix (endpoint and credentials: the AWS variables).
    storage_url: str | None = None
    storage_dir: Path | None = None        # local storage's directory; default: <data_dir>/storage
    storage_cache_dir: Path | None = None  # an object store's local copies and workspaces; default: <data_dir>/storage-cache
    training_queue: str = "training"      # jobs go to <training_queue>.<device>: training.cpu, training.cuda

    # API keys (`cube keys create`) are required unless this is turned off; only `cube up` on a
    # loopback host turns it off by itself (and says so), for the embedded quickstart.
    require_auth: bool = True

    max_upload_bytes: int = 512 * 1024 * 1024
    # The arrays an embedding-pair upload decodes to (checked from its headers before any is read):
    # a compressed file may be small and still expand without bound.
    max_dataset_bytes: int = 1024 * 1024 * 1024
    max_request_bytes: int = 64 * 1024 * 1024   # any other request body (JSON): 413 above it
    idempotency_ttl_seconds: float = 24 * 3600  # an Idempotency-Key is replayed for this long, then forgotten
    min_pairs: int = 20
    max_transform_vectors: int = 4096
    model_cache_size: int = 8
    transform_max_batch_rows: int = 256     # one forward pass serves several requests up to this many rows
    # How long a pass waits for company. 0: none; under load the requests that arrive during a pass
    # form the next one anyway, and a wait would only delay a lone request.
    transform_max_wait_ms: float = 0.0
    transform_max_queue_rows: int = 8192    # beyond this, 429 with Retry-After
    transform_resolve_cache_seconds: float = 1.0  # other processes' alias moves reach this one within this
    transform_job_batch_rows: int = 1024    # rows per forward pass of a bulk transform job (its memory bound)
    transform_device: Literal["cpu", "cuda"] = "cpu"  # where the API runs /v1/transform's models (CUDA_VISIBLE_DEVICES picks the GPU)

    # Delivery guarantees (see docs/service.md, "Jobs and workers").
    max_attempts: int = 3                  # claims of one job before it is failed for good
    heartbeat_seconds: float = 5.0         # a running job's heartbeat, a worker's registry row, and the recovery sweep
    job_lease_seconds: float = 30.0        # a running job whose heartbeat is older than this is presumed dead
    resend_after_seconds: float = 30.0     # a queued job nobody claimed this long, with an empty queue, is sent again
    visibility_timeout: int = 48 * 3600    # Redis: longer than the longest job, else it is redelivered while running
    auto_search_seconds: float = 1800.0     # the time budget of a job's built-in "auto" search (no trial starts after it)
    job_soft_time_limit: int = 24 * 3600
    job_time_limit_grace: int = 300
    broker_polling_interval: float = 0.2   # SQL broker: how often an idle worker looks for a job
    # Webhooks (docs/service.md, "Webhooks"): sent by the workers, retried after these waits.
    webhook_allow_private: bool = False     # let endpoints be on loopback / private networks (tests, one private network)
    webhook_timeout_seconds: float = 5.0
    webhook_max_attempts: int = 8
    webhook_retry_after_seconds: list[float] = Field(default=[5, 30, 120, 600, 1800, 3600, 3 * 3600, 6 * 3600])
    webhook_poll_seconds: float = 1.0       # how often each worker looks for due deliveries
    teacher_cache_dir: Path | None = None  # default: <data_dir>/teacher-cache
    # CPU threads per training process; 0 keeps torch's default (all cores). Several workers on one
    # machine should split the cores: oversubscribed threads make small models many times slower.
    torch_threads: int = 0
    # Test hook, never set in production: seconds a worker pauses inside the registration
    # transaction (version row written, not committed), so a test can kill it exactly there.
    test_hook_pause_before_register_commit: float = 0.0

    log_level: str = Field("info")

    @model_validator(mode="after")
    def _lease_outlasts_heartbeats(self) -> "Settings":
        if not 0 < 3 * self.heartbeat_seconds <= self.job_lease_seconds:
            raise ValueError(f"job_lease_seconds ({self.job_lease_seconds}) must be at least 3 heartbeats "
                             f"(heartbeat_seconds {self.heartbeat_seconds}), or a slow beat presumes a live job dead")
        return self

    @model_validator(mode="after")
    def _storage_url_known(self) -> "Settings":
        from app.storage import check_storage_url

        if self.storage_url is not None:
            check_storage_url(self.storage_url)
        return self

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'cube.db'}"

    @property
    def broker(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.data_dir.resolve() / 'broker.db'}"

    @property
    def storage_root(self) -> Path:
        """Local storage's directory: a file:// storage_url's, else storage_dir or <data_dir>/storage."""
        if self.storage_url and self.storage_url.startswith("file:"):
            parsed = urlparse(self.storage_url)
            return Path(parsed.netloc + parsed.path).resolve()
        return (self.storage_dir or self.data_dir / "storage").resolve()

    @property
    def storage_cache(self) -> Path:
        return (self.storage_cache_dir or self.data_dir / "storage-cache").resolve()

    @property
    def teacher_cache(self) -> Path:
        return (self.teacher_cache_dir or self.data_dir / "teacher-cache").resolve()

    @property
    def embedded(self) -> bool:
        return self.database.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
