"""Turns an operation's `Call`s into HTTP attempts with retries, still as a generator: what is left
for a client to perform is `Send` (one HTTP attempt) and `Sleep`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generator

from cube_client._protocol import Call, Operation, RetryPolicy, Sleep, connection_error, decode
from cube_client.errors import CubeError


@dataclass
class Send:
    """One attempt. The client answers with (status, headers, content), or the transport exception."""
    call: Call


Steps = Generator["Send | Sleep", Any, Any]


def with_retries(call: Call, policy: RetryPolicy) -> Steps:
    attempt = 0
    while True:
        outcome = yield Send(call)
        if isinstance(outcome, Exception):
            delay = policy.delay_for_connection_error(call, attempt)
            if delay is None:
                raise connection_error(call, outcome) from outcome
        else:
            status, headers, content = outcome
            delay = policy.delay_for_status(status, headers, attempt)
            if delay is None:
                return decode(call, status, headers, content)
        yield Sleep(delay)
        attempt += 1


def flatten(op: Operation, policy: RetryPolicy) -> Steps:
    """`op` with each of its `Call`s replaced by its attempts; an error is raised inside `op` (so an
    operation may handle it) and out of here if it does not."""
    try:
        step = next(op)
        while True:
            if isinstance(step, Call):
                try:
                    result = yield from with_retries(step, policy)
                except CubeError as exc:
                    step = op.throw(exc)
                    continue
            else:
                result = yield step
            step = op.send(result)
    except StopIteration as done:
        return done.value
