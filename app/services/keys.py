"""API keys: create (the secret is shown once), list, revoke, and authenticate a presented secret.

A key is `cube_` + 32 random bytes (urlsafe base64). Only its SHA-256 is stored: a key this random
needs no slow password hash, and a lookup by hash is one indexed query per request. `prefix` (the
first characters) is kept so that people can tell their keys apart in `cube keys list`.
"""
from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import InvalidRequest, NotFound
from app.ids import new_id
from app.models import ApiKey

SCOPES = ("train", "transform", "admin")
KEY_PREFIX = "cube_"
DISPLAY_CHARS = 12


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(session: Session, scope: str, name: str | None = None) -> tuple[ApiKey, str]:
    """Insert a key and return it with its secret (which is never stored)."""
    if scope not in SCOPES:
        raise InvalidRequest(f"scope must be one of {', '.join(SCOPES)}; got {scope!r}", param="scope")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(id=new_id("api_key"), name=name, prefix=secret[:DISPLAY_CHARS], key_hash=hash_key(secret), scope=scope,
                 created_at=time.time())
    session.add(key)
    session.commit()
    return key, secret


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def revoke_key(session: Session, key_id: str) -> ApiKey:
    """Revoke (idempotent): the row stays, so the list shows when it was revoked."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"no API key {key_id!r}", param="id")
    if key.revoked_at is None:
        key.revoked_at = time.time()
        session.commit()
    return key


def authenticate(session: Session, secret: str) -> ApiKey | None:
    """The live key with this secret, or None (unknown or revoked)."""
    if not secret.startswith(KEY_PREFIX) or len(secret) > 200:
        return None
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(secret)))
    return key if key is not None and key.revoked_at is None else None


class KeyCache:
    """What `authenticate` said about a secret, remembered for `ttl` seconds, for the hot path
    (/v1/transform): one SQL lookup per key per `ttl` instead of one per request. So a revoked key
    still transforms for at most `ttl` seconds in a process that saw it just before. Unknown secrets
    are remembered too (a flood of bad keys costs no queries), and at most `size` secrets are kept."""

    def __init__(self, ttl: float, size: int = 4096):
        self.ttl, self.size = ttl, size
        self._seen: OrderedDict[str, tuple[float, ApiKey | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, secret: str) -> tuple[bool, ApiKey | None]:
        """(found, key): found is False when the secret must be looked up."""
        digest = hash_key(secret)
        with self._lock:
            hit = self._seen.get(digest)
        if hit is None or time.monotonic() - hit[0] >= self.ttl:
            return False, None
        return True, hit[1]

    def put(self, secret: str, key: ApiKey | None) -> None:
        digest = hash_key(secret)
        with self._lock:
            self._seen[digest] = (time.monotonic(), key)
            self._seen.move_to_end(digest)
            while len(self._seen) > self.size:
                self._seen.popitem(last=False)
