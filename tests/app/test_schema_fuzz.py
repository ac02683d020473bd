"""Every operation of the OpenAPI schema, fuzzed on SQLite and on PostgreSQL with auth on: no 5xx and
every 4xx in the error shape. A bounded run; `make fuzz` runs thousands of requests on PostgreSQL."""
from __future__ import annotations

import os

from tests.app.fuzzing import error_shape_problem, fuzz, prepare

EXAMPLES = int(os.environ.get("CUBE_FUZZ_EXAMPLES", "6"))


def test_every_operation_answers_without_server_errors_in_the_error_shape(settings):
    app, keys, existing = prepare(settings)
    result = fuzz(app, keys, existing, examples=EXAMPLES)
    report = "\n".join(f"{f.operation}: {f.problem}\n  {f.request}" for f in result.findings)
    assert not result.findings, report
    assert result.server_errors == 0
    # The run reached the handlers, not only the auth check: successes and client errors of many kinds.
    assert {200, 400, 401, 403, 404} <= set(result.statuses), result.statuses


def test_the_checks_catch_what_they_are_for():
    assert error_shape_problem(200, b"{}") is None
    assert error_shape_problem(404, b'{"error": {"type": "t", "code": "c", "message": "m", "param": null}}') is None
    assert "server error" in error_shape_problem(503, b'{"error": {"type": "t", "code": "c", "message": "m", "param": null}}')
    assert "without the error shape" in error_shape_problem(422, b'{"detail": [{"loc": ["body"]}]}')
    assert "incomplete" in error_shape_problem(400, b'{"error": {"type": "t", "code": "c"}}')
