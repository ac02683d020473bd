"""Serves the dashboard: the HTML shell at /ui and its static files under /ui/static/<digest>/.

The shell is the same for every page (the browser routes on the URL's #fragment), holds no data and
no secret, and is kept out of the OpenAPI document: it is not part of the API. The static files'
URLs carry a digest of their contents, so the browser may cache them for good (no request at all on
the next load) and an upgrade, which changes the digest, can never mix old modules with new ones.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"
# The shell may only load this origin's own files: an injected <script> or inline handler is refused.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


def static_digest() -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in STATIC.rglob("*") if p.is_file()):
        h.update(path.relative_to(STATIC).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


DIGEST = static_digest()
SHELL = (STATIC / "index.html").read_text().replace("ui/static/", f"ui/static/{DIGEST}/")

router = APIRouter(include_in_schema=False)


@router.get("/ui")
def shell() -> HTMLResponse:
    return HTMLResponse(SHELL, headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"})


@router.get("/ui/")
def shell_slash() -> RedirectResponse:
    return RedirectResponse("/ui")


class ImmutableFiles(StaticFiles):
    """Files under a digest of their contents: the same URL always means the same bytes."""

    def file_response(self, *args, **kwargs):
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount(f"/ui/static/{DIGEST}", ImmutableFiles(directory=STATIC), name="ui-static")
