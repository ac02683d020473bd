"""/v1/sweeps: hyperparameter searches (create, list, get, trials, events, cancel)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import JSONResponse

from app.api.auth import TRAIN
from app.api.deps import EnqueueDep, SessionDep, SettingsDep
from app.api.owners import AccessDep
from app.models import Sweep
from app.openapi import errors
from app.schemas import ListOf, SweepCreate, SweepEventOut, SweepOut, TrialOut
from app.services import idempotency, sweeps

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"], dependencies=[TRAIN])
Limit = Annotated[int, Query(ge=1, le=100)]


def valid_sweep(sweep_id: str, session: SessionDep, access: AccessDep) -> Sweep:
    return sweeps.get_sweep(session, sweep_id, access)


SweepDep = Annotated[Sweep, Depends(valid_sweep)]


@router.post("", status_code=202, response_model=SweepOut, responses=errors(404, 409, 422))
def create_sweep(body: SweepCreate, session: SessionDep, settings: SettingsDep, enqueue: EnqueueDep, access: AccessDep,
                 idempotency_key: Annotated[str | None, Header()] = None) -> JSONResponse:
    """Start a search: its first trials are queued as training jobs at once (poll it, or its trials)."""
    status, out, replayed = idempotency.run_once(
        session, idempotency_key, "POST /v1/sweeps", idempotency.fingerprint(body.model_dump_json()),
        lambda: (202, SweepOut.of(sweeps.create_sweep(session, settings, enqueue, body, access)).model_dump(mode="json")),
        api_key_id=access.key_id, ttl_seconds=settings.idempotency_ttl_seconds)
    return JSONResponse(out, status_code=status, headers={"idempotent-replayed": "true"} if replayed else None)


@router.get("", response_model=ListOf[SweepOut])
def list_sweeps(session: SessionDep, access: AccessDep, after: str | None = None, limit: Limit = 20,
                status: str | None = None) -> ListOf[SweepOut]:
    """The caller's sweeps, newest first."""
    rows, more = sweeps.list_sweeps(session, after, limit, status, access)
    return ListOf[SweepOut](data=[SweepOut.of(s) for s in rows], has_more=more)


@router.get("/{sweep_id}", response_model=SweepOut)
def get_sweep(sweep: SweepDep) -> SweepOut:
    """One sweep: status, trials created, the best so far, the final job and version."""
    return SweepOut.of(sweep)


@router.get("/{sweep_id}/trials", response_model=ListOf[TrialOut])
def list_trials(sweep: SweepDep, session: SessionDep, settings: SettingsDep) -> ListOf[TrialOut]:
    """Every trial: settings, state, objective, the objective at each epoch, and its training job."""
    return ListOf[TrialOut](data=[TrialOut(**row) for row in sweeps.trials(settings, session, sweep)])


@router.get("/{sweep_id}/events", response_model=ListOf[SweepEventOut])
def list_events(sweep: SweepDep, session: SessionDep, after: str | None = None, limit: Limit = 100) -> ListOf[SweepEventOut]:
    """The sweep's events, oldest first (each trial queued or ended, the choice, the end)."""
    rows, more = sweeps.list_events(session, sweep, after, limit)
    return ListOf[SweepEventOut](data=[SweepEventOut.of(e) for e in rows], has_more=more)


@router.post("/{sweep_id}/cancel", response_model=SweepOut, responses=errors(409))
def cancel_sweep(sweep: SweepDep, session: SessionDep, settings: SettingsDep) -> SweepOut:
    """Cancel (idempotent): the sweep ends, queued trials are cancelled, running ones stop after their epoch."""
    return SweepOut.of(sweeps.cancel_sweep(session, settings, sweep))
