"""/openapi.json as the service really answers: every error in the one error shape (app/errors.py),
and each operation listing the error statuses it can give.

FastAPI documents a 422 `{"detail": [...]}` on every operation with parameters, which the service
never sends (validation errors are 400 in the error shape, app/main.py). `install` replaces the
schema builder once for the whole app, so routes added later are documented the same way:

    400  every operation (any path or query parameter may be refused: app/api/deps.storable_params)
    401  every operation behind an API key; 403 where a scope is needed (app/api/auth.py)
    404  every operation with a path parameter (the named resource may not exist or not be yours)
    413  every operation with a request body (app/body_limit.py)
    503  every operation that reads the database (it may be unavailable: app/main.py)

Anything else a route can answer (409, 422, 429, ...) it declares itself with `responses=errors(...)`.
"""
from __future__ import annotations

from typing import Any

from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from app.api.auth import RequireScope
from app.api.deps import get_session


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"description": (
        "Dataset errors add `line` (text files), `row` (arrays) and `field`.")})
    type: str = Field(description="invalid_request_error | authentication_error | permission_error | server_error")
    code: str = Field(description="What went wrong, for programs: e.g. not_found, dimension_mismatch, overloaded")
    message: str
    param: str | None = Field(description="The parameter at fault, e.g. input[3] or tags.0")


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx answer."""
    error: ErrorDetail


STATUS_DESCRIPTIONS = {
    400: "Malformed request: a parameter or the body breaks the schema (`param` names it)",
    401: "No API key, or an unknown or revoked one (WWW-Authenticate: Bearer)",
    403: "The key's scope does not allow this",
    404: "No such resource (or it belongs to another key)",
    409: "Not possible in the resource's present state",
    413: "The request body, file or a value in it is over a limit",
    422: "Well-formed, but the content is invalid",
    429: "Overloaded; retry after the Retry-After header's seconds",
    503: "A dependency (database, broker, storage, teacher, model files) is unavailable; retry",
}
ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route decorator: the error statuses it gives beyond the automatic ones."""
    return {s: {"model": ErrorResponse, "description": STATUS_DESCRIPTIONS[s]} for s in statuses}


def _dependencies(dependant: Dependant):
    for dep in dependant.dependencies:
        yield dep
        yield from _dependencies(dep)


def automatic_statuses(route, operation: dict[str, Any]) -> set[int]:
    calls = [dep.call for dep in _dependencies(route.dependant)]
    statuses = {400}
    scopes = [call for call in calls if isinstance(call, RequireScope)]
    if scopes:
        statuses.add(401)
        if any(call.scope is not None for call in scopes):
            statuses.add(403)
    if "{" in route.path_format:
        statuses.add(404)
    if "requestBody" in operation:
        statuses.add(413)
    if get_session in calls:
        statuses.add(503)
    return statuses


def api_routes(routes) -> list[APIRoute]:
    """The app's API routes as included (router prefixes and dependencies applied). FastAPI from
    0.13x wraps included routers; `iter_route_contexts` gives their routes with what inclusion added."""
    contexts = getattr(routing, "iter_route_contexts", None)
    found = contexts(routes) if contexts else routes
    return [r for r in found if isinstance(getattr(r, "original_route", r), APIRoute)]


def document_errors(schema: dict[str, Any], routes) -> None:
    """Replace FastAPI's validation-error documentation with the service's error responses."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}").pop(
            "$defs", {}).items():
        components.setdefault(name, definition)
    components.setdefault("ErrorResponse", ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}"))
    for route in api_routes(routes):
        if not route.include_in_schema:
            continue
        for method in route.methods:
            operation = schema["paths"][route.path_format][method.lower()]
            responses = operation.setdefault("responses", {})
            if "HTTPValidationError" in str(responses.get("422")):  # FastAPI's, not ours: we answer 400
                del responses["422"]
            declared_errors = {int(s) for s in route.responses or () if str(s).isdigit() and int(s) >= 400}
            for status in automatic_statuses(route, operation) | declared_errors:
                declared = responses.setdefault(str(status), {"description": STATUS_DESCRIPTIONS.get(status, "Error")})
                declared.setdefault("content", {"application/json": {"schema": ERROR_REF}})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)


def install(app: FastAPI) -> None:
    """Build /openapi.json (once) with the service's error responses."""
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, openapi_version=app.openapi_version,
                                 description=app.description, routes=app.routes)
            document_errors(schema, app.routes)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
