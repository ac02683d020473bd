"""API key checks as router dependencies: `APIRouter(dependencies=[TRAIN])` guards every route of a
router, so no handler repeats the check.

    no or unknown or revoked key -> 401 (WWW-Authenticate: Bearer)
    a live key of another scope   -> 403
    an `admin` key                -> everything

With `require_auth` off (the embedded quickstart on loopback) every check passes and the caller is None.
"""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from app.api.deps import SessionDep, SettingsDep
from app.db import get_sessionmaker
from app.errors import Forbidden, Unauthorized
from app.models import ApiKey
from app.services import keys


def bearer_secret(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("an API key is required: send Authorization: Bearer <key> (create one with `cube keys create`)",
                           code="missing_api_key")
    return secret.strip()


def current_key(request: Request, settings: SettingsDep, session: SessionDep) -> ApiKey | None:
    """The caller's live key; None when auth is off."""
    if not settings.require_auth:
        return None
    return accepted(request, keys.authenticate(session, bearer_secret(request)))


def accepted(request: Request, key: ApiKey | None) -> ApiKey:
    if key is None:
        raise Unauthorized("the API key is not valid (unknown or revoked)")
    request.state.api_key_id = key.id  # for logs
    return key


CallerDep = Annotated[ApiKey | None, Depends(current_key)]


class RequireScope:
    """A dependency that lets through keys of `scope` and admin keys (any live key when scope is None)."""

    def __init__(self, scope: str | None):
        self.scope = scope

    def __call__(self, caller: CallerDep) -> ApiKey | None:
        if caller is not None and self.scope is not None and caller.scope not in (self.scope, "admin"):
            raise Forbidden(f"this key has scope {caller.scope!r}; this endpoint needs {self.scope!r} (or 'admin')")
        return caller


TRAIN = Depends(RequireScope("train"))          # datasets, training jobs, models (reads and writes)
TRANSFORM = Depends(RequireScope("transform"))  # /v1/transform
ANY_KEY = Depends(RequireScope(None))           # /info


async def authorize(request: Request, scope: str) -> ApiKey | None:
    """`current_key` + `RequireScope(scope)` for a route that skips dependency injection to stay lean
    (/v1/transform), with the app's key cache (app.services.keys.KeyCache): no SQL for a key seen
    within the cache's seconds."""
    settings = request.app.state.settings
    if not settings.require_auth:
        return None
    secret, cache = bearer_secret(request), request.app.state.key_cache
    found, key = cache.get(secret)
    if not found:
        def lookup() -> ApiKey | None:
            with get_sessionmaker(settings.database)() as session:
                return keys.authenticate(session, secret)

        key = await run_in_threadpool(lookup)
        cache.put(secret, key)
    return RequireScope(scope)(accepted(request, key))
