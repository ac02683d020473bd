"""The live event stream's delivery rules, driven on the generator behind
`GET /v1/training-jobs/{id}/events?stream=true` (the HTTP stream itself, with a real worker, is in
tests/e2e/test_service_e2e.py)."""
from __future__ import annotations

import asyncio
import json
import time

from app.db import session_scope
from app.jobs import lifecycle
from app.models import JobEvent, TrainingJob
from app.services.event_stream import job_events
from tests.conftest import TINY_CUBE


def queued_job(client, pairs_npz) -> str:
    c, _ = client
    ds = c.post("/v1/datasets", files={"file": ("pairs.npz", pairs_npz.read_bytes())},
                data={"kind": "embedding_pairs", "name": "stream"}).json()["id"]
    r = c.post("/v1/training-jobs", json={"dataset_id": ds, "architecture": TINY_CUBE, "hyperparameters": {"n_epochs": 2}})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def write_event(database: str, job_id: str, message: str, made_seconds_ago: float = 0.0) -> str:
    """An event row whose id was made `made_seconds_ago` (a writer that commits late)."""
    micros = int((time.time() - made_seconds_ago) * 1_000_000)
    event_id = f"ev_{micros:013x}00beef"
    with session_scope(database) as session:
        session.add(JobEvent(id=event_id, job_id=job_id, level="info", type="message", message=message, created_at=time.time()))
    return event_id


def test_a_late_committed_event_is_delivered_once_and_the_stream_ends_with_the_job(settings, client, pairs_npz):
    job_id = queued_job(client, pairs_npz)
    existing = len(client[0].get(f"/v1/training-jobs/{job_id}/events").json()["data"])

    async def run() -> list[dict]:
        seen: list[dict] = []
        stream = job_events(settings.database, job_id, None, poll_seconds=0.05)
        for _ in range(existing):  # what the API wrote when it made the job
            seen.append(await asyncio.wait_for(anext(stream), 10))
        write_event(settings.database, job_id, "on time")
        seen.append(await asyncio.wait_for(anext(stream), 10))
        # Committed now, but its id is older than the one just sent: another writer was slower.
        write_event(settings.database, job_id, "late", made_seconds_ago=1.0)
        seen.append(await asyncio.wait_for(anext(stream), 10))
        with session_scope(settings.database) as session:
            lifecycle.cancel(session, session.get(TrainingJob, job_id))
        async for message in stream:
            seen.append(message)
        return seen

    seen = asyncio.run(run())
    messages = [json.loads(m["data"]).get("message") for m in seen]
    assert messages[existing:existing + 2] == ["on time", "late"]
    assert seen[-1] == {"event": "end", "data": '{"status": "cancelled"}'}
    ids = [m["id"] for m in seen if "id" in m]
    assert len(ids) == len(set(ids))  # nothing twice, although every poll looks back


def test_resuming_after_an_id_never_resends_it_or_anything_before(settings, client, pairs_npz):
    job_id = queued_job(client, pairs_npz)
    first = write_event(settings.database, job_id, "first")
    write_event(settings.database, job_id, "second")
    with session_scope(settings.database) as session:
        lifecycle.cancel(session, session.get(TrainingJob, job_id))

    async def run() -> list[dict]:
        return [m async for m in job_events(settings.database, job_id, first, poll_seconds=0.05)]

    seen = asyncio.run(run())
    assert all(m["id"] > first for m in seen if "id" in m)
    assert "second" in seen[0]["data"] and seen[-1]["event"] == "end"
