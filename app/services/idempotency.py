"""Idempotency-Key for POSTs that create something: the same key and body replay the original
response; the same key with another body is refused (422); a retry while the first request still
runs gets 409. A row is reserved before the work starts, so two racing requests never both create.

Keys are scoped per API key (another API key's retry with the same Idempotency-Key is a new request)
and expire after `idempotency_ttl_seconds` (24 h): after that the same key creates anew."""
from __future__ import annotations

import hashlib
import time
from typing import Any, Callable

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidContent, InvalidRequest
from app.models import IdempotencyKey
from app.safe_input import check_text


def fingerprint(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()


def run_once(session: Session, key: str | None, route: str, body_hash: str,
             create: Callable[[], tuple[int, dict[str, Any]]], *, api_key_id: str | None,
             ttl_seconds: float) -> tuple[int, dict[str, Any], bool]:
    """(status, body, replayed). Without a key, just `create()`. `api_key_id`: the caller's key (None
    with auth off)."""
    if key is None:
        return (*create(), False)
    if not 1 <= len(check_text(key, "Idempotency-Key")) <= 255:
        raise InvalidRequest("Idempotency-Key must be 1-255 characters", param="Idempotency-Key")
    scope = f"{route} {api_key_id}" if api_key_id else route
    now = time.time()
    session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < now - ttl_seconds))  # expired: forgotten
    session.add(IdempotencyKey(key=key, scope=scope, fingerprint=body_hash, created_at=now))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        row = session.get(IdempotencyKey, (key, scope))
        if row is None:  # the other request failed and freed the key a moment ago: a retry runs anew
            raise Conflict("a request with this Idempotency-Key is still in progress; retry shortly",
                           param="Idempotency-Key", code="idempotency_key_in_progress") from None
        if row.fingerprint != body_hash:
            raise InvalidContent("this Idempotency-Key was used with a different request body",
                                 param="Idempotency-Key", code="idempotency_key_reused") from None
        if row.status_code is None:
            raise Conflict("a request with this Idempotency-Key is still in progress; retry shortly",
                           param="Idempotency-Key", code="idempotency_key_in_progress") from None
        return row.status_code, row.response, True
    try:
        status, body = create()
    except BaseException:
        # The request failed: free the key so a corrected retry can use it.
        session.rollback()
        row = session.get(IdempotencyKey, (key, scope))
        if row is not None:
            session.delete(row)
            session.commit()
        raise
    row = session.get(IdempotencyKey, (key, scope))
    row.status_code, row.response = status, body
    session.commit()
    return status, body, False
