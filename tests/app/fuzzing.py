"""Schema fuzzing: Schemathesis generates requests for every operation of the app's OpenAPI schema
(valid ones, and ones that break the schema), sends them in process with a real API key of each
scope, no key or a bogus key, and checks what users are promised: no 5xx, every 4xx in the error
shape {"error": {"type", "code", "message", "param"}}, and every answer as /openapi.json describes it
(a status the operation lists, the content type and the body schema listed for it).

Used by tests/app/test_schema_fuzz.py (a bounded run in the suite) and by `make fuzz` (a long run on
PostgreSQL: `python -m tests.app.fuzzing --examples 300`)."""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import hypothesis
import schemathesis
from hypothesis import HealthCheck, Phase, strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

# The auth headers a request may carry: keys of every scope (admin most often, so that most requests
# get past auth to the handlers), none, and a key that does not exist.
SCOPES = ("admin", "train", "transform")
# Schemathesis's checks that the response is one the schema documents (status, content type, body).
CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance]


@dataclass
class Finding:
    operation: str
    problem: str
    request: str


@dataclass
class FuzzResult:
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


def error_shape_problem(status: int, body: bytes) -> str | None:
    """Why a response breaks the contract, or None."""
    if status >= 500:
        return f"server error {status}: {body[:300]!r}"
    if status < 400:
        return None
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return f"{status} without the error shape: {body[:300]!r}"
    if not isinstance(error, dict) or not all(isinstance(error.get(k), str) and error[k] for k in ("type", "code", "message")) \
            or "param" not in error:
        return f"{status} with an incomplete error object: {body[:300]!r}"
    return None


def prepare(settings):
    """The app on `settings` with auth on, a key of each scope, and one dataset, job and model version
    with an alias, so that lists and lookups have rows to render. Nothing is sent to a queue."""
    from fastapi.testclient import TestClient

    from app.api.deps import get_enqueue
    from app.db import get_sessionmaker
    from app.main import create_app
    from app.services.keys import create_key
    from cube.pairs import save_pairs_npz
    from cube.synthetic import nonlinear_pairs
    from tests.conftest import Recorder, make_version

    settings = settings.model_copy(update={"require_auth": True})
    with get_sessionmaker(settings.database)() as session:
        keys = {scope: create_key(session, scope, f"fuzz-{scope}")[1] for scope in SCOPES}
    app = create_app(settings)
    app.dependency_overrides[get_enqueue] = lambda: Recorder()
    with tempfile.TemporaryDirectory() as tmp, TestClient(app, headers={"Authorization": f"Bearer {keys['admin']}"}) as c:
        save_pairs_npz(Path(tmp) / "p.npz", nonlinear_pairs(n=60, d_in=8, d_out=8))
        r = c.post("/v1/datasets", files={"file": ("p.npz", (Path(tmp) / "p.npz").read_bytes())},
                   data={"kind": "embedding_pairs", "name": "fuzz"})
        assert r.status_code == 201, r.text
        version, _ = make_version(c, settings, r.json()["id"], model="m", architecture={"kind": "linear"})
        assert c.put("/v1/models/m/aliases/prod", json={"version": 1}).status_code == 200
    existing = {"dataset_id": r.json()["id"], "job_id": version["source_job_id"], "name": "m", "model": "m",
                "version": 1, "alias": "prod"}
    return app, keys, existing


def with_existing(case, existing: dict) -> None:
    """Point the case's ids and names (path, and the JSON body's top level) at rows that exist, so the
    request reaches the code behind the lookup."""
    for name in case.path_parameters or {}:
        if name in existing:
            case.path_parameters[name] = existing[name]
    if isinstance(case.body, dict):
        for name in ("dataset_id", "model"):
            if name in case.body:
                case.body[name] = existing[name]


def schema_drift(case, response, headers: dict) -> str | None:
    """Why the response is not what /openapi.json documents for the operation, or None."""
    try:
        case.validate_response(response, checks=CONFORMANCE, headers=headers)
    except (AssertionError, ExceptionGroup) as exc:
        return f"differs from /openapi.json: {str(exc)[:600]}"
    return None


def generation_modes(definition: dict) -> list[GenerationMode]:
    """Positive, and negative where a request can break the schema: a body, a query parameter or a
    typed path parameter (a plain string path parameter has no invalid value, and Hypothesis would
    spend seconds proving it)."""
    parameters = definition.get("parameters", [])
    breakable = "requestBody" in definition or any(
        p.get("in") == "query" or p.get("schema", {}).get("type", "string") != "string" for p in parameters)
    return [GenerationMode.POSITIVE, GenerationMode.NEGATIVE] if breakable else [GenerationMode.POSITIVE]


def fuzz(app, keys: dict[str, str], existing: dict, *, examples: int, seed: int = 0) -> FuzzResult:
    """Up to `examples` generated requests per operation and generation mode (positive and negative),
    plus Hypothesis's shrinking of any failure. Half the requests name existing rows (`existing`).
    Every failing operation is recorded, not raised."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    auths = [{"Authorization": f"Bearer {keys['admin']}"}] * 3 + [{"Authorization": f"Bearer {keys[s]}"} for s in SCOPES[1:]]
    auths += [{}, {"Authorization": "Bearer ck_not_a_key"}]
    result = FuzzResult()
    for operation in schema.get_all_operations():
        operation = operation.ok()
        for mode in generation_modes(operation.definition.raw):
            failing = {}

            @hypothesis.settings(max_examples=examples, deadline=None, database=None,
                                 suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink])
            @hypothesis.seed(seed)
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode), auth=st.sampled_from(auths),
                              use_existing=st.booleans())
            def send(case, auth, use_existing):
                if use_existing:
                    with_existing(case, existing)
                result.requests += 1
                try:
                    response = case.call(headers=auth)
                    status, problem = response.status_code, error_shape_problem(response.status_code, response.content)
                except Exception as exc:  # the test client re-raises what the app did not handle: a 500
                    status, problem = 500, f"server error 500: unhandled {type(exc).__name__}: {str(exc)[:300]}"
                else:
                    problem = problem or schema_drift(case, response, auth)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if problem is not None:
                    failing.update(problem=problem, request=case.as_curl_command(headers=auth))
                assert problem is None, problem

            try:
                send()
            except (AssertionError, ExceptionGroup):  # the minimal failing request is in `failing`
                result.findings.append(Finding(f"{operation.label} ({mode.value})", failing["problem"], failing["request"]))
    return result


@contextlib.contextmanager
def fresh_settings(database: str):
    """Settings on a new migrated database (PostgreSQL: created here and dropped after)."""
    from app.migrate import upgrade
    from app.settings import Settings
    from tests.conftest import PG_ADMIN, _pg_admin

    with tempfile.TemporaryDirectory() as tmp:
        if database == "sqlite":
            s = Settings(data_dir=Path(tmp) / "data", min_pairs=20)
            s.data_dir.mkdir(parents=True)
            upgrade(s.database)
            yield s
            return
        name = f"cube_fuzz_{uuid.uuid4().hex[:12]}"
        admin = _pg_admin()
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            s = Settings(data_dir=Path(tmp) / "data", database_url=PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", min_pairs=20)
            upgrade(s.database)
            yield s
        finally:
            from app.db import get_engine

            get_engine(s.database).dispose()
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fuzz every operation of the API from its OpenAPI schema.")
    parser.add_argument("--examples", type=int, default=150, help="generated requests per operation and mode")
    parser.add_argument("--database", default="postgresql", choices=["postgresql", "sqlite"])
    args = parser.parse_args(argv)
    started = time.monotonic()
    with fresh_settings(args.database) as settings:
        app, keys, existing = prepare(settings)
        result = fuzz(app, keys, existing, examples=args.examples)
    print(f"{result.requests} requests on {args.database} in {time.monotonic() - started:.0f} s; "
          f"statuses {dict(sorted(result.statuses.items()))}; {result.server_errors} server errors; "
          f"{len(result.findings)} failing operations")
    for f in result.findings:
        print(f"  {f.operation}: {f.problem}\n    {f.request}")
    return 1 if result.findings else 0


if __name__ == "__main__":
    sys.exit(main())
