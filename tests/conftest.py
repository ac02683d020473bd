"""Fixtures for the service tests (tests/app, tests/worker, tests/e2e): databases on SQLite and on a
fresh, uniquely named PostgreSQL database per run (dropped after), Redis settings with a unique key
prefix and queue, and small pair files. The cube library's tests need none of these."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

PG_ADMIN = os.environ.get("CUBE_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("CUBE_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _pg_admin():
    import psycopg

    return psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)


@pytest.fixture(scope="session")
def pg_database_url():
    """A fresh PostgreSQL database for this test run, migrated to head; dropped at the end."""
    try:
        admin = _pg_admin()
    except Exception as exc:
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN}: {exc}")
    name = f"cube_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    from app.migrate import upgrade

    upgrade(url)
    yield url
    from app.db import get_engine

    get_engine(url).dispose()
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(scope="session")
def redis_available():
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    return REDIS_URL


def _truncate(url: str) -> None:
    from sqlalchemy import text

    from app.db import get_engine
    from app.models import Base

    with get_engine(url).begin() as conn:
        # Every table the models define, so a new table never carries rows from one test into the next.
        conn.execute(text("TRUNCATE " + ", ".join(t.name for t in Base.metadata.sorted_tables) + " CASCADE"))


@pytest.fixture(scope="session")
def s3_store(tmp_path_factory):
    """A real S3-compatible server for this test run (moto's server mode on a free port) with one
    bucket; the AWS variables point boto3 at it. Yields a function giving a fresh s3:// URL (its own
    prefix) per caller."""
    from tests.s3_server import running_s3_server

    with running_s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture
def storage_kind() -> str:
    """Which storage `settings` uses. Tests that matter on both parametrize it:
    `@pytest.mark.parametrize("storage_kind", ["local", "s3"])`."""
    return "local"


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request, tmp_path, storage_kind):
    """Service settings on an empty, migrated database of each kind, with storage in tmp_path (or,
    for `storage_kind` "s3", under a fresh prefix of the test S3 server). Auth is off here on
    purpose: tests/app/test_auth.py covers keys and scopes."""
    from app.settings import Settings

    storage = {}
    if storage_kind == "s3":
        storage = {"storage_url": request.getfixturevalue("s3_store").new_url()}
    if request.param == "sqlite":
        from app.migrate import upgrade

        s = Settings(data_dir=tmp_path / "data", min_pairs=20, job_lease_seconds=5, heartbeat_seconds=1, require_auth=False,
                     **storage)
        s.data_dir.mkdir(parents=True)
        upgrade(s.database)
    else:
        url = request.getfixturevalue("pg_database_url")
        _truncate(url)
        s = Settings(data_dir=tmp_path / "data", database_url=url, min_pairs=20, job_lease_seconds=5, heartbeat_seconds=1,
                     require_auth=False, **storage)
    return s


@pytest.fixture
def sqlite_settings(tmp_path):
    from app.migrate import upgrade
    from app.settings import Settings

    s = Settings(data_dir=tmp_path / "data", job_lease_seconds=5, heartbeat_seconds=1, require_auth=False)
    s.data_dir.mkdir(parents=True)
    upgrade(s.database)
    return s


def stored_keys(settings) -> list[str]:
    """Every file the settings' storage holds (local: under its root, temp files included)."""
    if settings.storage_url and settings.storage_url.startswith("s3:"):
        from tests.s3_server import object_keys

        return object_keys(settings.storage_url)
    root = settings.storage_root
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []


class Recorder:
    """Test double for the queue boundary: records (task, args) instead of sending."""

    def __init__(self):
        self.sent: list[tuple[str, tuple]] = []
        self.devices: list[str] = []

    def __call__(self, task, *args, device="cpu"):
        self.sent.append((task, args))
        self.devices.append(device)


@pytest.fixture
def client_for():
    """client_for(settings) -> (TestClient, Recorder). Every response the client gets is checked
    against the app's /openapi.json (tests/openapi_conformance.py): a status or body the schema does
    not describe fails the test that received it."""
    from fastapi.testclient import TestClient

    from app.api.deps import get_enqueue
    from app.main import create_app
    from tests.openapi_conformance import watch

    clients = []

    def make(s):
        recorder = Recorder()
        app = create_app(s)
        app.dependency_overrides[get_enqueue] = lambda: recorder
        client = TestClient(app)
        watch(client, app)
        clients.append(client)
        return client, recorder

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def client(settings, client_for):
    return client_for(settings)


@pytest.fixture(scope="session")
def pairs_npz(tmp_path_factory) -> Path:
    """400 synthetic 16d -> 16d pairs with a known nonlinear map."""
    from cube.pairs import save_pairs_npz
    from cube.synthetic import nonlinear_pairs

    path = tmp_path_factory.mktemp("pairs") / "pairs.npz"
    save_pairs_npz(path, nonlinear_pairs(n=400, d_in=16, d_out=16))
    return path


# A cube small enough that a job takes about a second (plus the baselines).
TINY_CUBE = {"kind": "cube", "grid": [2, 2, 2], "channels": 4, "steps": 2, "hidden": 8}


def make_version(client, settings, dataset_id: str, *, model: str = "m", architecture: dict | None = None,
                 seed: int = 0, evaluation: dict | None = None, teacher: str | None = None, job: dict | None = None):
    """A version of `model` for tests about serving, made without training: the job comes from the
    API, its model is built from the job's architecture with random weights (seeded) and saved as the
    job's artifact, and the registry registers it as the pipeline does (`teacher`: a model trained on
    text, whose inputs that teacher encodes; `job`: more fields of the job's request). Returns (the
    version's JSON, the model as saved)."""
    import torch

    from app.jobs import states as job_states
    from app.db import session_scope
    from app.models import TrainingJob
    from app.services.registry import register_version
    from app.storage import get_storage
    from cube.artifacts import save_model
    from cube.models import build_model

    architecture = architecture or TINY_CUBE
    # Promotion mode "always": each new version takes unpinned traffic, whatever its (made-up) evaluation says.
    r = client.post("/v1/training-jobs", json={"dataset_id": dataset_id, "model": model, "architecture": architecture,
                                               "seed": seed, "hyperparameters": {"n_epochs": 1},
                                               "promotion": {"mode": "always"}, **(job or {})})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    dataset = client.get(f"/v1/datasets/{dataset_id}").json()
    config = {**{k: v for k, v in architecture.items() if k != "kind"}, "d_in": dataset["dim_in"], "d_out": dataset["dim_out"]}
    torch.manual_seed(seed)
    net = build_model(architecture["kind"], config)
    with torch.no_grad():  # the cube's cell rule starts at zero; random weights make its output depend on them
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    artifact_key = f"jobs/{job_id}/run/model"
    storage = get_storage(settings)
    with storage.workspace("test-version") as workspace:
        built = storage.workdir(artifact_key, workspace)
        save_model(net, built, architecture["kind"], config)
        storage.put_tree(built, artifact_key)
    with session_scope(settings.database) as session:
        job = session.get(TrainingJob, job_id)
        version = register_version(session, job, arch=architecture["kind"], dim_in=config["d_in"], dim_out=config["d_out"],
                                   teacher=teacher, parameters=sum(p.numel() for p in net.parameters()),
                                   evaluation=evaluation or {"main": architecture["kind"]}, artifact_key=artifact_key)
        job.status, job.model_version_id = job_states.SUCCEEDED, version.id
        number = version.version
    return client.get(f"/v1/models/{model}/versions/{number}").json(), net.eval()
