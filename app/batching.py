"""Dynamic batching for /v1/transform: concurrent requests for one model share one forward pass.

    submit(x1) ─┐
    submit(x2) ─┼─► queue ─► collector task ─► concat ─► forward() in the model's own thread ─► split
    submit(x3) ─┘                (waits at most `max_wait_s` for company, up to `max_batch_rows`)

While a forward pass runs, new requests queue up and form the next batch, so under load batches grow
by themselves: with no wait (the default), a lone request goes at once and a crowd still shares
passes. The queue is bounded in rows: past `max_queue_rows` a request is refused at once with
`Overloaded` (the API answers 429 + Retry-After) instead of waiting without end. The event loop
never runs the model: it only moves numpy arrays and futures.
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np


class Overloaded(Exception):
    """The model's queue is full; retry after `retry_after` seconds."""

    def __init__(self, queued_rows: int, limit: int, retry_after: float):
        super().__init__(f"transform queue is full ({queued_rows} vectors waiting, limit {limit}); retry later")
        self.retry_after = retry_after


@dataclass
class BatchTiming:
    queue_s: float        # from submit to the start of the forward pass that served it
    inference_s: float    # the forward pass itself
    batch_rows: int       # rows in that forward pass (this request's and others')


@dataclass
class _Pending:
    x: np.ndarray
    future: asyncio.Future
    enqueued: float


class DynamicBatcher:
    def __init__(self, forward: Callable[[np.ndarray], np.ndarray], *, max_batch_rows: int = 256,
                 max_wait_s: float = 0.002, max_queue_rows: int = 8192,
                 on_batch: Callable[[int, float], None] | None = None):
        self.forward = forward
        self.max_batch_rows = max_batch_rows
        self.max_wait_s = max_wait_s
        self.max_queue_rows = max_queue_rows
        self.on_batch = on_batch  # metrics hook: (rows, seconds)
        self.queued_rows = 0
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._busy = False  # a forward pass is running
        self._last_batch_s = 0.005

    async def submit(self, x: np.ndarray) -> tuple[np.ndarray, BatchTiming]:
        """Queue `x` (n, d) and wait for its own n output rows."""
        self._ensure_started()
        rows = int(x.shape[0])
        if self.queued_rows + rows > self.max_queue_rows and self.queued_rows > 0:
            batches_ahead = self.queued_rows / self.max_batch_rows + 1
            raise Overloaded(self.queued_rows, self.max_queue_rows, retry_after=max(1.0, batches_ahead * self._last_batch_s))
        future = asyncio.get_running_loop().create_future()
        self.queued_rows += rows
        await self._queue.put(_Pending(x, future, time.perf_counter()))
        return await future

    def _ensure_started(self) -> None:
        if self._executor is None:
            # One thread per model: forward passes of one model never overlap (torch parallelises inside).
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="transform")
        if self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._collect_forever())

    async def _collect_forever(self) -> None:
        loop = asyncio.get_running_loop()
        carry: _Pending | None = None  # the request that did not fit into the previous batch
        while True:
            batch = [carry if carry is not None else await self._queue.get()]
            carry = None
            rows = batch[0].x.shape[0]
            deadline = loop.time() + self.max_wait_s
            while rows < self.max_batch_rows:
                if self._queue.empty():
                    # Take what is queued without waiting; then, once, sleep out the rest of the wait
                    # for company. (A wait_for per request would cost a task each: most of a small
                    # request's CPU.)
                    if loop.time() >= deadline:
                        break
                    await asyncio.sleep(deadline - loop.time())
                    deadline = loop.time()  # the wait is spent: take what came, then go
                    continue
                item = self._queue.get_nowait()
                if rows + item.x.shape[0] > self.max_batch_rows:
                    carry = item  # a batch never exceeds the limit unless one request alone does
                    break
                batch.append(item)
                rows += item.x.shape[0]
            await self._run(batch, rows)

    async def _run(self, batch: list[_Pending], rows: int) -> None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        self.queued_rows -= rows
        self._busy = True
        try:
            x = batch[0].x if len(batch) == 1 else np.concatenate([p.x for p in batch])
            y = await loop.run_in_executor(self._executor, self.forward, x)
        except Exception as exc:  # the model failed: every caller in the batch gets the error
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        finally:
            self._busy = False
        took = time.perf_counter() - started
        self._last_batch_s = took
        if self.on_batch:
            self.on_batch(rows, took)
        offset = 0
        for p in batch:
            n = p.x.shape[0]
            if not p.future.done():  # a caller that went away is simply skipped
                p.future.set_result((y[offset : offset + n], BatchTiming(started - p.enqueued, took, rows)))
            offset += n

    async def close(self) -> None:
        """Stop once every queued request has been served: nobody is left waiting on a future that
        will never be set. A later submit starts the batcher again."""
        while self.queued_rows > 0 or self._busy:
            await asyncio.sleep(0.005)
        if self._task is not None:
            self._task.cancel()  # idle: waiting on an empty queue
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    def close_soon(self) -> None:
        """close() from any thread (e.g. when a model cache evicts this model)."""
        task = self._task
        if task is None or task.done():
            if self._executor is not None:
                self._executor.shutdown(wait=False)
                self._executor = None
            return
        task.get_loop().call_soon_threadsafe(lambda: task.get_loop().create_task(self.close()))
