"""Dynamic batching: concurrent callers share forward passes and each gets exactly its own rows."""
import asyncio
import threading
import time

import numpy as np
import pytest

from app.batching import DynamicBatcher, Overloaded


class SlowDouble:
    """A 'model' that records its batch sizes and takes a little time, like a real forward pass."""

    def __init__(self, delay=0.01):
        self.delay = delay
        self.batches = []
        self.threads = set()

    def __call__(self, x):
        self.batches.append(x.shape[0])
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        return x * 2.0


def run(coro):
    return asyncio.run(coro)


def test_each_caller_gets_its_own_rows_back():
    model = SlowDouble()

    async def main():
        batcher = DynamicBatcher(model, max_batch_rows=64, max_wait_s=0.005)
        rng = np.random.default_rng(0)
        inputs = [rng.standard_normal((int(rng.integers(1, 5)), 3)).astype(np.float32) for _ in range(50)]
        results = await asyncio.gather(*(batcher.submit(x) for x in inputs))
        await batcher.close()
        return inputs, results

    inputs, results = run(main())
    for x, (y, timing) in zip(inputs, results):
        np.testing.assert_array_equal(y, x * 2.0)
        assert timing.batch_rows >= x.shape[0]
    assert len(model.batches) < 50, "concurrent requests should have shared forward passes"
    assert sum(model.batches) == sum(x.shape[0] for x in inputs)
    assert all(not name.startswith("MainThread") for name in model.threads)


def test_without_a_wait_a_lone_request_goes_at_once_and_a_crowd_shares_the_next_pass():
    model = SlowDouble(delay=0.2)

    async def main():
        batcher = DynamicBatcher(model, max_batch_rows=64, max_wait_s=0.0)
        first = asyncio.create_task(batcher.submit(np.ones((1, 3), np.float32)))
        await asyncio.sleep(0.05)  # its pass is running: the next requests queue behind it
        crowd = [batcher.submit(np.full((1, 3), i, np.float32)) for i in range(10)]
        await asyncio.gather(first, *crowd)
        await batcher.close()

    run(main())
    assert model.batches == [1, 10]


def test_batches_respect_the_row_limit_except_for_one_big_request():
    model = SlowDouble(delay=0.02)

    async def main():
        batcher = DynamicBatcher(model, max_batch_rows=8, max_wait_s=0.01)
        xs = [np.ones((3, 2), np.float32)] * 10 + [np.ones((20, 2), np.float32)]
        await asyncio.gather(*(batcher.submit(x) for x in xs))
        await batcher.close()

    run(main())
    # a batch never exceeds 8 rows, except the one request that alone is larger
    assert all(b <= 8 or b == 20 for b in model.batches), model.batches
    assert 20 in model.batches


def test_full_queue_is_refused_with_retry_after():
    model = SlowDouble(delay=0.2)

    async def main():
        batcher = DynamicBatcher(model, max_batch_rows=4, max_wait_s=0.0, max_queue_rows=8)
        first = asyncio.ensure_future(batcher.submit(np.ones((4, 2), np.float32)))
        await asyncio.sleep(0.05)  # the first is now running; the queue is empty again
        waiting = [asyncio.ensure_future(batcher.submit(np.ones((4, 2), np.float32))) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded) as info:
            await batcher.submit(np.ones((4, 2), np.float32))
        assert info.value.retry_after >= 1.0
        await asyncio.gather(first, *waiting)
        await batcher.close()

    run(main())


def test_a_failing_model_fails_its_callers_not_the_batcher():
    calls = []

    def flaky(x):
        calls.append(x.shape[0])
        if len(calls) == 1:
            raise RuntimeError("boom")
        return x

    async def main():
        batcher = DynamicBatcher(flaky, max_wait_s=0.0)
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit(np.ones((1, 2), np.float32))
        y, _ = await batcher.submit(np.ones((1, 2), np.float32))
        await batcher.close()
        return y

    assert run(main()).shape == (1, 2)


def test_closing_serves_queued_requests_first_and_a_later_submit_restarts():
    """An evicted model's batcher must not strand callers that were already waiting on it."""
    model = SlowDouble(delay=0.05)

    async def main():
        batcher = DynamicBatcher(model, max_batch_rows=2, max_wait_s=0.0)
        waiting = [asyncio.ensure_future(batcher.submit(np.full((2, 2), i, np.float32))) for i in range(4)]
        await asyncio.sleep(0.01)  # one batch running, three queued
        batcher.close_soon()
        results = await asyncio.wait_for(asyncio.gather(*waiting), timeout=5)
        await asyncio.sleep(0.01)
        assert batcher._task is None  # closed once idle
        again, _ = await asyncio.wait_for(batcher.submit(np.ones((1, 2), np.float32)), timeout=5)
        await batcher.close()
        return results, again

    results, again = run(main())
    for i, (y, _) in enumerate(results):
        np.testing.assert_array_equal(y, np.full((2, 2), 2.0 * i))
    np.testing.assert_array_equal(again, np.full((1, 2), 2.0))
