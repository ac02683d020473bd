"""A job's events as they happen, for `GET /v1/training-jobs/{id}/events?stream=true` (Server-Sent
Events). The stream polls the database: events are written by whichever process moves the job (the
API, a worker on another host), so the table is the one place every event reaches.

Each SSE message carries the event's id (`id:`), its type (`event: message|metrics`) and the same
JSON as the list endpoint (`data:`). A client that reconnects with `Last-Event-ID` gets only what
came after. When the job has ended and every event is out, a last `event: end` (data: the job's
status) says so and the stream closes, so a browser's EventSource does not reconnect for nothing.
"""
from __future__ import annotations

import asyncio
import json
from typing import AsyncIterator

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from app.db import session_scope
from app.jobs.states import TERMINAL
from app.models import JobEvent, TrainingJob
from app.schemas import EventOut

POLL_SECONDS = 0.5
# Event ids are time-ordered when they are made, but two writers (the API cancelling, a worker
# ending an epoch) can commit out of that order. Each poll therefore looks this far back behind the
# newest event sent and skips what it already sent, so an event committed late is still delivered.
LATE_COMMIT_SECONDS = 2.0
BATCH = 500
_ID_DIGITS = 13  # hex digits of microseconds after the prefix (app/ids.py)


def _floor(event_id: str, seconds: float) -> str:
    """The smallest event id made `seconds` before `event_id` was."""
    prefix = event_id[:3]
    micros = int(event_id[3:3 + _ID_DIGITS], 16) - int(seconds * 1_000_000)
    return f"{prefix}{max(micros, 0):0{_ID_DIGITS}x}"


def _read(database: str, job_id: str, after: str | None) -> tuple[str, list[dict]]:
    """The job's status, then its events after `after` (status first: an event committed before the
    job ended is then always among the rows)."""
    with session_scope(database) as session:
        status = session.scalar(select(TrainingJob.status).where(TrainingJob.id == job_id))
        query = select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id).limit(BATCH)
        if after:
            query = query.where(JobEvent.id > after)
        rows = [(e.id, e.type, EventOut.of(e).model_dump(mode="json")) for e in session.scalars(query)]
    return status, rows


async def job_events(database: str, job_id: str, after: str | None,
                     poll_seconds: float = POLL_SECONDS) -> AsyncIterator[dict]:
    """SSE messages (dicts for sse-starlette) for the job's events after `after`, until it has ended."""
    sent: set[str] = set()
    newest, cursor = after, after
    while True:
        status, rows = await run_in_threadpool(_read, database, job_id, cursor)
        fresh = [r for r in rows if r[0] not in sent]
        for event_id, kind, payload in fresh:
            sent.add(event_id)
            newest = max(newest or event_id, event_id)
            yield {"id": event_id, "event": kind, "data": json.dumps(payload)}
        if len(rows) == BATCH:  # catching up on a backlog: read on from the last row at once
            cursor = rows[-1][0]
            continue
        if status in TERMINAL and not fresh:
            yield {"event": "end", "data": json.dumps({"status": status})}
            return
        if newest:
            cursor = max(_floor(newest, LATE_COMMIT_SECONDS), after or "")  # never resend what the client has
            sent = {i for i in sent if i > cursor}
        await asyncio.sleep(poll_seconds)
