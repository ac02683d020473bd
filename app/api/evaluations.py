"""/v1/models/{name}/versions/{v}/evaluations (a version judged on a whole dataset, on a worker) and
/v1/models/{name}/compare (versions side by side on the same dataset)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from app.api.auth import TRAIN
from app.api.deps import EnqueueDep, SessionDep
from app.api.owners import AccessDep
from app.openapi import errors
from app.schemas import MAX_INT, ComparisonOut, EvaluationCreate, EvaluationOut, ListOf
from app.services import evaluations

router = APIRouter(prefix="/v1/models", tags=["evaluations"], dependencies=[TRAIN])
Version = Annotated[int, Path(ge=1, le=MAX_INT)]


@router.post("/{name}/versions/{version}/evaluations", status_code=202, response_model=EvaluationOut,
             responses=errors(409, 422))
def create_evaluation(name: str, version: Version, body: EvaluationCreate, session: SessionDep, enqueue: EnqueueDep,
                      access: AccessDep) -> EvaluationOut:
    """Judge the version on the dataset's every pair (its held-out set), beside the baselines; runs on a worker."""
    ev = evaluations.create(session, enqueue, name, version, body.dataset_id, access)
    return EvaluationOut.of(ev, version)


@router.get("/{name}/versions/{version}/evaluations", response_model=ListOf[EvaluationOut])
def list_evaluations(name: str, version: Version, session: SessionDep, access: AccessDep, after: str | None = None,
                     limit: Annotated[int, Query(ge=1, le=100)] = 20,
                     dataset_id: str | None = None) -> ListOf[EvaluationOut]:
    """The version's evaluations, newest first (optionally on one dataset)."""
    row, rows, more = evaluations.list_for(session, name, version, after, limit, dataset_id, access)
    return ListOf[EvaluationOut](data=[EvaluationOut.of(ev, row.version) for ev in rows], has_more=more)


@router.get("/{name}/versions/{version}/evaluations/{evaluation_id}", response_model=EvaluationOut)
def get_evaluation(name: str, version: Version, evaluation_id: str, session: SessionDep, access: AccessDep) -> EvaluationOut:
    """One evaluation: its status and, once succeeded, the metrics of the version and each baseline."""
    row, ev = evaluations.get(session, name, version, evaluation_id, access)
    return EvaluationOut.of(ev, row.version)


@router.get("/{name}/compare", response_model=ComparisonOut, responses=errors(409))
def compare(name: str, versions: str, dataset_id: str, session: SessionDep, access: AccessDep) -> ComparisonOut:
    """Versions side by side on one dataset, from their succeeded evaluations on it (409 naming any missing)."""
    return ComparisonOut(**evaluations.compare(session, name, versions, dataset_id, access))
