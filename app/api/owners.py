"""Ownership as route dependencies: the caller's `Access` (its key and whether it sees everything),
and the dataset or job named in the path, found only if the caller may see it (404 otherwise, as
for an unknown id, so a key learns nothing of other keys' resources)."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from app.api.auth import CallerDep
from app.api.deps import SessionDep
from app.models import Dataset, TrainingJob
from app.services import datasets, jobs
from app.services.access import EVERYONE, Access


def caller_access(caller: CallerDep) -> Access:
    if caller is None:  # auth off
        return EVERYONE
    return Access(key_id=caller.id, sees_all=caller.scope == "admin")


AccessDep = Annotated[Access, Depends(caller_access)]


def valid_dataset(dataset_id: str, session: SessionDep, access: AccessDep) -> Dataset:
    return datasets.get_dataset(session, dataset_id, access=access)


def valid_job(job_id: str, session: SessionDep, access: AccessDep) -> TrainingJob:
    return jobs.get_job(session, job_id, access)


DatasetDep = Annotated[Dataset, Depends(valid_dataset)]
JobDep = Annotated[TrainingJob, Depends(valid_job)]
