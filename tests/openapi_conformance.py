"""Real responses checked against the app's own /openapi.json: the status must be one the operation
lists, and a JSON body must match the schema listed for that status (jsonschema-rs; OpenAPI 3.1
schemas are JSON Schema 2020-12). `watch(client, app)` checks every response a test client gets, so
every API test doubles as a check that the published schema tells the truth."""
from __future__ import annotations

import re

import httpx
import jsonschema_rs

# Statuses left to other checks: 500 is a bug (the fuzz test hunts those), not a schema to document.
UNCHECKED_STATUSES = {500}


class SchemaDrift(AssertionError):
    """A response the published schema does not describe."""


class Conformance:
    def __init__(self, schema: dict):
        self.schema = schema
        self._validators: dict[tuple, jsonschema_rs.Validator] = {}
        self.seen: set[tuple[str, str, int]] = set()  # (METHOD, path template, status) of the responses checked
        # Templates with more literal segments first, so /v1/x/items beats /v1/x/{id}.
        templates = sorted(schema["paths"], key=lambda t: -sum(1 for s in t.split("/") if s and "{" not in s))
        self._paths = [(re.compile("^" + re.sub(r"\{[^/}]+\}", "[^/]+", t) + "$"), t) for t in templates]

    def operation(self, method: str, path: str) -> tuple[str, dict] | None:
        for pattern, template in self._paths:
            if pattern.match(path):
                op = self.schema["paths"][template].get(method.lower())
                return (template, op) if op is not None else None
        return None

    def problem(self, method: str, path: str, status: int, content_type: str, body: bytes) -> str | None:
        """Why this response breaks the schema, or None (also for paths the schema does not list)."""
        found = self.operation(method, path)
        if found is None or status in UNCHECKED_STATUSES:
            return None
        template, op = found
        self.seen.add((method.upper(), template, status))
        declared = op["responses"].get(str(status)) or op["responses"].get("default")
        if declared is None:
            return (f"{method} {template} answered {status}, which /openapi.json does not list (it lists "
                    f"{sorted(op['responses'])}); declare it on the route with responses=errors({status}) from app/openapi.py")
        schema = declared.get("content", {}).get("application/json", {}).get("schema")
        if schema is None or not content_type.startswith("application/json"):
            return None
        key = (template, method, status)
        if key not in self._validators:
            self._validators[key] = jsonschema_rs.validator_for({**schema, "components": self.schema.get("components", {})})
        try:
            self._validators[key].validate(httpx.Response(status, content=body).json())
        except jsonschema_rs.ValidationError as exc:
            where = "/".join(map(str, exc.instance_path)) or "the body"
            return f"{method} {template} {status}: {where} does not match /openapi.json: {exc.message}; body {body[:300]!r}"
        return None

    def check(self, response: httpx.Response) -> None:
        content_type = response.headers.get("content-type", "")
        # Only JSON bodies are read here: a stream (Server-Sent Events) is the test's to read, at its pace.
        body = response.read() if content_type.startswith("application/json") else b""
        problem = self.problem(response.request.method, response.request.url.path, response.status_code,
                               content_type, body)
        if problem:
            raise SchemaDrift(problem)


def watch(client: httpx.Client, app) -> Conformance:
    """Check every response `client` receives against `app`'s schema (a mismatch raises SchemaDrift)."""
    conformance = Conformance(app.openapi())
    client.event_hooks["response"] = [*client.event_hooks["response"], conformance.check]
    return conformance
