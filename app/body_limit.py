"""Request body limits as pure ASGI middleware: 413 before the body is read when Content-Length is
over the limit, and 413 as soon as the streamed bytes pass it (chunked bodies, lying headers), so
no handler ever holds more than the limit in memory.

The limit depends on the path: uploads (multipart) get `max_upload_bytes` plus room for the
multipart envelope; every other body (JSON) gets `max_request_bytes`.
"""
from __future__ import annotations

import json
from typing import Callable

from app.errors import error_body


class BodyTooLarge(Exception):
    pass


def limit_message(limit: int, what: str = "request body", code: str = "too_large", param: str | None = None) -> bytes:
    return json.dumps(error_body(413, f"{what} is larger than the limit of {limit} bytes", code=code, param=param)).encode()


class BodyLimitMiddleware:
    """`limit_for(path)` -> (bytes allowed, the 413 body to answer with)."""

    def __init__(self, app, limit_for: Callable[[str], tuple[int, bytes]]):
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        limit, refusal = self.limit_for(scope["path"])
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > limit:
            return await self.refuse(send, refusal)
        received = 0
        exceeded = False
        started = False

        async def limited_receive():
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge()
            return message

        async def guarded_send(message):
            # Once the body ran over, whatever the app answers (frameworks turn a failed read into a
            # 400) is replaced by the 413 that names the limit.
            nonlocal started
            if exceeded:
                if not started:
                    started = True
                    await self.refuse(send, refusal)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            if not started:
                started = True
                await self.refuse(send, refusal)

    @staticmethod
    async def refuse(send, body: bytes) -> None:
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
