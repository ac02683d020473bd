"""/metrics on the service (open, Prometheus text, jobs by status from SQL), the JSON request log,
and the request id on every answer, errors included."""
from __future__ import annotations

import json
import logging

from fastapi.testclient import TestClient

from app.main import create_app


def test_metrics_counts_requests_and_shows_jobs_by_status(client, pairs_npz):
    c, _ = client
    ds = c.post("/v1/datasets", files={"file": ("p.npz", pairs_npz.read_bytes())}, data={"kind": "embedding_pairs"}).json()["id"]
    c.post("/v1/training-jobs", json={"dataset_id": ds, "architecture": {"kind": "linear"}})
    c.get("/v1/models/nope")
    r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'cube_http_requests_total{method="POST",route="/v1/training-jobs",status="202"} 1.0' in text
    assert 'cube_http_requests_total{method="GET",route="/v1/models/{name}",status="404"} 1.0' in text
    assert 'cube_http_request_duration_seconds_count{method="POST",route="/v1/datasets"} 1.0' in text
    assert 'cube_training_jobs{status="queued"} 1.0' in text and 'cube_training_jobs{status="running"} 0.0' in text


def test_running_jobs_report_their_heartbeat_age(client, settings, pairs_npz):
    from app.jobs.lifecycle import claim

    c, _ = client
    ds = c.post("/v1/datasets", files={"file": ("p.npz", pairs_npz.read_bytes())}, data={"kind": "embedding_pairs"}).json()["id"]
    job = c.post("/v1/training-jobs", json={"dataset_id": ds, "architecture": {"kind": "linear"}}).json()["id"]
    got = claim(settings, job, "w1")
    assert (got.outcome, got.attempt) == ("claimed", 1)
    text = c.get("/metrics").text
    assert f'cube_worker_heartbeat_age_seconds{{job="{job}"}}' in text and 'cube_training_jobs{status="running"} 1.0' in text


def test_one_json_log_line_per_request_with_its_id(client, caplog):
    c, _ = client
    with caplog.at_level(logging.INFO, logger="cube.http"):
        r = c.get("/v1/datasets/ds_nope", headers={"x-request-id": "req-42"})
    assert r.status_code == 404 and r.headers["x-request-id"] == "req-42"
    (line,) = [json.loads(rec.getMessage()) for rec in caplog.records if rec.name == "cube.http"]
    assert line["request_id"] == "req-42" and line["status"] == 404 and line["route"] == "/v1/datasets/{dataset_id}"


def test_unexpected_errors_carry_the_request_id(sqlite_settings):
    app = create_app(sqlite_settings)

    @app.get("/boom")
    def boom():
        raise RuntimeError("bug")

    r = TestClient(app, raise_server_exceptions=False).get("/boom", headers={"x-request-id": "req-500"})
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
    assert r.headers["x-request-id"] == "req-500"


def test_log_config_writes_json_lines():
    from app.logging_config import JsonLineFormatter, log_config

    config = log_config("info")
    assert config["loggers"]["cube"]["level"] == "INFO"
    record = logging.LogRecord("cube.api", logging.WARNING, __file__, 1, "auth is %s", ("off",), None)
    assert json.loads(JsonLineFormatter().format(record))["message"] == "auth is off"
