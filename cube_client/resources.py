"""The resources of a client: `client.datasets`, `client.jobs`, `client.sweeps`, `client.models`. Written once for
both clients: each method builds an operation and hands it to the client, which performs it
(blocking for `Client`, as a coroutine for `AsyncClient`)."""
from __future__ import annotations

import os
from typing import Any, Callable
from urllib.parse import quote

from cube_client import operations
from cube_client._protocol import Call, Record, clean_params, create_call, one


def _seg(value: Any) -> str:
    """One path segment, escaped (a model or alias name never becomes a path of its own)."""
    return quote(str(value), safe="")


class _Resource:
    def __init__(self, client: Any):
        self._client = client

    def _get(self, path: str, **params: Any):
        return self._client._run(one(Call("GET", path, params=clean_params(params) or None)))


class Datasets(_Resource):
    def upload(self, path: str | os.PathLike, *, kind: str | None = None, name: str | None = None,
               teacher: str | None = None, metadata: dict[str, Any] | None = None,
               on_progress: Callable[[int, int], None] | None = None, idempotency_key: str | None = None,
               target_teacher: str | None = None):
        """Upload a pair file (NPZ, Parquet, JSONL, CSV). `kind` (`embedding_pairs` or `text_pairs`) is
        guessed from the file when not given; `on_progress(bytes_sent, total_bytes)` as it streams.
        `target_teacher`: texts for a translation job, each encoded by `teacher` and by it."""
        return self._client._run(operations.upload(path, kind=kind, name=name, teacher=teacher, metadata=metadata,
                                                   on_progress=on_progress, idempotency_key=idempotency_key,
                                                   target_teacher=target_teacher))

    def list(self, *, after: str | None = None, limit: int | None = None):
        return self._get("/v1/datasets", after=after, limit=limit)

    def get(self, dataset_id: str):
        return self._get(f"/v1/datasets/{_seg(dataset_id)}")

    def delete(self, dataset_id: str):
        return self._client._run(one(Call("DELETE", f"/v1/datasets/{_seg(dataset_id)}")))


class Jobs(_Resource):
    def create(self, *, dataset_id: str, model: str | None = None, architecture: dict[str, Any] | None = None,
               hyperparameters: dict[str, Any] | None = None, idempotency_key: str | None = None, **fields: Any):
        """Queue a training job. Other body fields (`mode`, `code_size`, `validation`, `seed`, `device`, `metadata`)
        pass as keywords."""
        body = clean_params({"dataset_id": dataset_id, "model": model, "architecture": architecture,
                             "hyperparameters": hyperparameters, **fields})
        return self._client._run(one(create_call("/v1/training-jobs", body, idempotency_key)))

    def list(self, *, status: str | None = None, after: str | None = None, limit: int | None = None, **filters: Any):
        """One page of jobs, newest first; `filters` pass as query parameters (e.g. model, dataset_id)."""
        return self._get("/v1/training-jobs", status=status, after=after, limit=limit, **filters)

    def get(self, job_id: str):
        return self._get(f"/v1/training-jobs/{_seg(job_id)}")

    def cancel(self, job_id: str):
        """Cancel (idempotent): at once if not started, else after the current epoch."""
        return self._client._run(one(Call("POST", f"/v1/training-jobs/{_seg(job_id)}/cancel")))

    def events(self, job_id: str, *, after: str | None = None, limit: int | None = None):
        return self._get(f"/v1/training-jobs/{_seg(job_id)}/events", after=after, limit=limit)

    def metrics(self, job_id: str, *, key: str | None = None):
        return self._get(f"/v1/training-jobs/{_seg(job_id)}/metrics", key=key)

    def checkpoints(self, job_id: str):
        return self._get(f"/v1/training-jobs/{_seg(job_id)}/checkpoints")

    def wait(self, job_id: str, *, on_progress: Callable[[Record], None] | None = None, timeout: float | None = None,
             poll_interval: float = 1.0):
        """Poll until the job succeeds, fails or is cancelled and return it (check `status`);
        `on_progress(job)` on every change; `WaitTimeout` after `timeout` seconds."""
        return self._client._run(operations.wait(f"/v1/training-jobs/{_seg(job_id)}", f"job {job_id}",
                                                 on_progress=on_progress, timeout=timeout, poll_interval=poll_interval))


class Sweeps(_Resource):
    def create(self, *, dataset_id: str, search_space: dict[str, Any], model: str | None = None,
               n_trials: int | None = None, max_parallel: int | None = None, idempotency_key: str | None = None,
               **fields: Any):
        """Start a hyperparameter search (docs/sweeps.md). Other body fields (`objective`, `pruner`,
        `time_budget_seconds`, `architecture`, `hyperparameters`, `seed`, ...) pass as keywords."""
        body = clean_params({"dataset_id": dataset_id, "search_space": search_space, "model": model,
                             "n_trials": n_trials, "max_parallel": max_parallel, **fields})
        return self._client._run(one(create_call("/v1/sweeps", body, idempotency_key)))

    def list(self, *, status: str | None = None, after: str | None = None, limit: int | None = None):
        return self._get("/v1/sweeps", status=status, after=after, limit=limit)

    def get(self, sweep_id: str):
        return self._get(f"/v1/sweeps/{_seg(sweep_id)}")

    def trials(self, sweep_id: str):
        """Every trial: settings, state, value, the objective per epoch, its training job."""
        return self._get(f"/v1/sweeps/{_seg(sweep_id)}/trials")

    def events(self, sweep_id: str, *, after: str | None = None, limit: int | None = None):
        return self._get(f"/v1/sweeps/{_seg(sweep_id)}/events", after=after, limit=limit)

    def cancel(self, sweep_id: str):
        """Cancel (idempotent): queued trials at once, running ones after their epoch."""
        return self._client._run(one(Call("POST", f"/v1/sweeps/{_seg(sweep_id)}/cancel")))

    def wait(self, sweep_id: str, *, on_progress: Callable[[Record], None] | None = None,
             timeout: float | None = None, poll_interval: float = 2.0):
        """Poll until the sweep ends and return it; `on_progress(sweep)` when trials are created or
        the best changes; `WaitTimeout` after `timeout` seconds."""
        return self._client._run(operations.wait(f"/v1/sweeps/{_seg(sweep_id)}", f"sweep {sweep_id}",
                                                 on_progress=on_progress, timeout=timeout, poll_interval=poll_interval,
                                                 watch=("status", "trials_created", "best")))


class Models(_Resource):
    def list(self, *, after: str | None = None, limit: int | None = None):
        return self._get("/v1/models", after=after, limit=limit)

    def get(self, name: str):
        """A model with all its versions and aliases."""
        return self._get(f"/v1/models/{_seg(name)}")

    def version(self, name: str, version: int):
        """One version with its held-out evaluation."""
        return self._get(f"/v1/models/{_seg(name)}/versions/{int(version)}")

    def set_alias(self, name: str, alias: str, version: int):
        return self._client._run(one(Call("PUT", f"/v1/models/{_seg(name)}/aliases/{_seg(alias)}",
                                          json={"version": int(version)})))

    def delete_alias(self, name: str, alias: str):
        return self._client._run(one(Call("DELETE", f"/v1/models/{_seg(name)}/aliases/{_seg(alias)}")))
