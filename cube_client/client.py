"""`Client` and `AsyncClient`: the same resources and operations (cube_client.resources), performed
with blocking or asyncio httpx. See docs/client.md.

    from cube_client import Client
    client = Client("http://127.0.0.1:8000")           # api_key=... or $CUBE_API_KEY
    ds = client.datasets.upload("pairs.npz", kind="embedding_pairs", name="demo")
    job = client.jobs.create(dataset_id=ds.id, model="demo", hyperparameters={"n_epochs": 5})
    job = client.jobs.wait(job.id, on_progress=lambda j: print(j.status, j.progress.epoch))
    y = client.transform("demo", x)                     # numpy in, numpy out
"""
from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import httpx

from cube_client import operations
from cube_client._driver import Send, flatten
from cube_client._protocol import Call, Operation, RetryPolicy, Sleep, clean_params, one
from cube_client.resources import Datasets, Jobs, Models, Sweeps

DEFAULT_URL = "http://127.0.0.1:8000"
USER_AGENT = "cube-client/0.1"


class _ClientBase:
    def __init__(self, base_url: str | None = None, api_key: str | None = None, *, timeout: float = 120.0,
                 max_retries: int = 4):
        self.base_url = (base_url or os.environ.get("CUBE_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("CUBE_API_KEY") or None
        self.retry = RetryPolicy(max_retries=max_retries)
        self.timeout = timeout
        self.state = operations.ClientState()
        self.datasets = Datasets(self)
        self.jobs = Jobs(self)
        self.sweeps = Sweeps(self)
        self.models = Models(self)

    def _default_headers(self) -> dict[str, str]:
        headers = {"user-agent": USER_AGENT, "accept": "application/json"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        return headers

    def _run(self, op: Operation) -> Any:
        raise NotImplementedError

    def info(self):
        """GET /info: version, auth mode, limits, loaded models, workers."""
        return self._run(operations.info(self.state))

    def transform(self, model: str, inputs, *, version: int | None = None, alias: str | None = None,
                  normalize: bool = False, output: str | None = None, input_kind: str | None = None,
                  target_space: str | None = None):
        """Map `inputs` ([N, D] array-like of vectors, or a list of str for a text-trained model) through
        a served model: a float32 numpy array [N, D_out]. Sent as base64 float32 in as many requests as
        the server's per-request limits (read from /info) require; rows come back in order. For an
        autoencoder, output="code" gives the codes [N, code_size] and input_kind="code" decodes codes. For
        a multi-teacher model, target_space names the teacher whose head answers (default: its first)."""
        return self._run(operations.transform(self.state, model, inputs, version=version, alias=alias,
                                              normalize=normalize, output=output, input_kind=input_kind,
                                              target_space=target_space))


    def embeddings(self, model: str, input, *, encoding_format: str = "float", dimensions: int | None = None):
        """POST /v1/embeddings, OpenAI's shape: `model` as `name`, `name@alias` or `name:version`; `input` a
        text, a list of texts or a list of vectors. One request (no chunking): for arrays, use `transform`."""
        body = clean_params({"model": model, "input": input, "encoding_format": encoding_format,
                             "dimensions": dimensions})
        return self._run(one(Call("POST", "/v1/embeddings", json=body)))


class Client(_ClientBase):
    """Blocking client. Use as a context manager, or call `close()`."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, **kw: Any):
        super().__init__(base_url, api_key, **kw)
        self._http = httpx.Client(base_url=self.base_url, timeout=self.timeout, headers=self._default_headers())

    def _attempt(self, send: Send) -> Any:
        call = send.call
        try:
            with call.request_kwargs() as kw:
                r = self._http.request(call.method, call.path, params=call.params,
                                       headers={**call.headers, **kw.pop("headers", {})}, **kw)
        except httpx.TransportError as exc:
            return exc
        return r.status_code, r.headers, r.content

    def _run(self, op: Operation) -> Any:
        steps = flatten(op, self.retry)
        try:
            step = next(steps)
            while True:
                if isinstance(step, Sleep):
                    time.sleep(step.seconds)
                    step = steps.send(None)
                else:
                    step = steps.send(self._attempt(step))
        except StopIteration as done:
            return done.value

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncClient(_ClientBase):
    """asyncio client: the same methods as `Client`, each returning a coroutine."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, **kw: Any):
        super().__init__(base_url, api_key, **kw)
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout, headers=self._default_headers())

    async def _attempt(self, send: Send) -> Any:
        call = send.call
        try:
            with call.request_kwargs() as kw:
                r = await self._http.request(call.method, call.path, params=call.params,
                                             headers={**call.headers, **kw.pop("headers", {})}, **kw)
        except httpx.TransportError as exc:
            return exc
        return r.status_code, r.headers, r.content

    async def _run(self, op: Operation) -> Any:
        steps = flatten(op, self.retry)
        try:
            step = next(steps)
            while True:
                if isinstance(step, Sleep):
                    await asyncio.sleep(step.seconds)
                    step = steps.send(None)
                else:
                    step = steps.send(await self._attempt(step))
        except StopIteration as done:
            return done.value

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
