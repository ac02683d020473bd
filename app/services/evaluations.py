"""Evaluations from the API's side: judge a version on a whole dataset (checked here, run on a worker
by app.services.evaluation_run), list and read them, and compare versions on the same dataset."""
from __future__ import annotations

import time
from typing import Any, Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidContent, InvalidRequest, NotFound, NotReady
from app.ids import new_id
from app.jobs.states import DatasetStatus
from app.models import Dataset, ModelEvaluation, ModelVersion, TrainingJob, teacher_names
from app.queue import EVALUATE_TASK
from app.services import registry
from app.services.access import EVERYONE, Access
from app.services.datasets import get_dataset
from app.services.evaluation_run import FAILED, QUEUED, RUNNING, SUCCEEDED
from app.services.jobs import check_cursor

Enqueue = Callable[..., None]
MAX_COMPARED = 10
COMPARED_METRICS = ("recall_at_1", "recall_at_10", "mrr")


def check_fit(version: ModelVersion, mode: str, dataset: Dataset) -> None:
    """A 4xx naming dataset_id unless the dataset can be the version's held-out set (an autoencoder
    version's targets are its inputs, so only their size matters)."""
    if dataset.status != DatasetStatus.READY:
        raise Conflict(f"dataset {dataset.id} is {dataset.status}: {dataset.error or 'not ready yet'}",
                       param="dataset_id", code="dataset_not_ready")
    if version.teacher and dataset.teacher and dataset.teacher != version.teacher:
        raise InvalidContent(f"dataset {dataset.id}'s texts were encoded by teacher {dataset.teacher!r}, but model "
                             f"{version.model_name} v{version.version} reads teacher {version.teacher!r} vectors",
                             param="dataset_id", code="teacher_mismatch")
    where = f"model {version.model_name} v{version.version}"
    if len(teacher_names(version.target_teacher)) > 1:  # its baselines would need every head's targets
        raise InvalidContent(f"{where} has a head per teacher ({version.target_teacher}); its held-out report is per "
                             "space already, and evaluating it on another dataset is not supported",
                             param="dataset_id", code="multi_teacher_version")
    if dataset.dim_in != version.dim_in:
        raise InvalidContent(f"dataset {dataset.id} has {dataset.dim_in}-value inputs; {where} takes {version.dim_in}",
                             param="dataset_id", code="dimension_mismatch")
    if mode != "autoencoder" and dataset.dim_out != version.dim_out:
        raise InvalidContent(f"dataset {dataset.id} has {dataset.dim_out}-value targets; {where} makes {version.dim_out}",
                             param="dataset_id", code="dimension_mismatch")


def create(session: Session, enqueue: Enqueue, name: str, number: int, dataset_id: str,
           access: Access = EVERYONE) -> ModelEvaluation:
    version = registry.get_version(session, name, number, access)
    dataset = get_dataset(session, dataset_id, access=access)
    check_fit(version, session.get(TrainingJob, version.source_job_id).mode, dataset)
    ev = ModelEvaluation(id=new_id("evaluation"), model_name=name, version_id=version.id, dataset_id=dataset.id,
                         status=QUEUED, attempt=0, created_at=time.time(), owner_key_id=access.key_id)
    session.add(ev)
    session.commit()  # before enqueueing: the worker must find the row
    try:
        enqueue(EVALUATE_TASK, ev.id, device="cpu")
    except Exception as exc:  # kombu raises many kinds; all mean "not enqueued"
        ev.status, ev.finished_at = FAILED, time.time()
        ev.error_code, ev.error_message = "broker_unavailable", f"could not enqueue the evaluation: {exc}"
        session.commit()
        raise NotReady("the job queue is unreachable; the evaluation was not started", code="broker_unavailable") from None
    return ev


def get(session: Session, name: str, number: int, evaluation_id: str, access: Access = EVERYONE) -> tuple[ModelVersion, ModelEvaluation]:
    version = registry.get_version(session, name, number, access)
    ev = session.get(ModelEvaluation, evaluation_id)
    if ev is None or ev.version_id != version.id:
        raise NotFound(f"model {name!r} version {number} has no evaluation {evaluation_id!r}", param="evaluation_id")
    return version, ev


def list_for(session: Session, name: str, number: int, after: str | None, limit: int, dataset_id: str | None,
             access: Access = EVERYONE) -> tuple[ModelVersion, list[ModelEvaluation], bool]:
    """The version's evaluations, newest first, optionally on one dataset."""
    version = registry.get_version(session, name, number, access)
    check_cursor(after, "evaluation")
    query = select(ModelEvaluation).where(ModelEvaluation.version_id == version.id).order_by(ModelEvaluation.id.desc())
    if after:
        query = query.where(ModelEvaluation.id < after)
    if dataset_id:
        query = query.where(ModelEvaluation.dataset_id == dataset_id)
    rows = list(session.scalars(query.limit(limit + 1)))
    return version, rows[:limit], len(rows) > limit


def parse_versions(text: str) -> list[int]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not all(p.isdigit() and 1 <= len(p) <= 9 for p in parts):
        raise InvalidRequest(f"versions is a comma-separated list of version numbers, e.g. 1,2; got {text!r}",
                             param="versions")
    numbers = list(dict.fromkeys(int(p) for p in parts))
    if not 2 <= len(numbers) <= MAX_COMPARED:
        raise InvalidRequest(f"compare 2 to {MAX_COMPARED} different versions; got {len(numbers)}", param="versions")
    return numbers


def compare(session: Session, name: str, versions: str, dataset_id: str, access: Access = EVERYONE) -> dict[str, Any]:
    """Versions side by side on one dataset, from each one's newest succeeded evaluation on it. A
    version without one is a 409 naming it (and what to POST); nothing is started on a GET."""
    rows = [registry.get_version(session, name, n, access) for n in parse_versions(versions)]
    get_dataset(session, dataset_id, access=access)
    found, missing = [], []
    for version in rows:
        ev = session.scalar(select(ModelEvaluation).where(
            ModelEvaluation.version_id == version.id, ModelEvaluation.dataset_id == dataset_id,
            ModelEvaluation.status == SUCCEEDED).order_by(ModelEvaluation.id.desc()).limit(1))
        (found if ev is not None else missing).append((version, ev))
    if missing:
        pending = {v.version: session.scalar(select(ModelEvaluation.status).where(
            ModelEvaluation.version_id == v.id, ModelEvaluation.dataset_id == dataset_id,
            ModelEvaluation.status.in_((QUEUED, RUNNING))).limit(1)) for v, _ in missing}
        what = "; ".join(f"version {n}: " + (f"its evaluation is {s}" if s else
                                             f"POST /v1/models/{name}/versions/{n}/evaluations {{\"dataset_id\": \"{dataset_id}\"}}")
                         for n, s in pending.items())
        raise Conflict(f"no finished evaluation on dataset {dataset_id} for version(s) "
                       f"{', '.join(str(n) for n in pending)} ({what})", param="versions", code="evaluation_missing",
                       missing_versions=sorted(pending))
    side_by_side = [{"version": v.version, "evaluation_id": ev.id, "status": v.status, "arch": v.arch,
                     "metrics": ev.result["methods"][ev.result["main"]], "methods": ev.result["methods"]}
                    for v, ev in found]
    best = {m: max(side_by_side, key=lambda row: row["metrics"].get(m) or 0.0)["version"] for m in COMPARED_METRICS}
    return {"object": "model.comparison", "model": name, "dataset_id": dataset_id,
            "n": found[0][1].result["n"]["test"], "versions": side_by_side, "best": best}
