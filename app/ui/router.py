"""Serves the dashboard: the HTML shell at /ui and its static files under /ui/static.

The shell is the same for every page (the browser routes on the URL's #fragment), holds no data and
no secret, and is kept out of the OpenAPI document: it is not part of the API.
"""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"
# The shell may only load this origin's own files: an injected <script> or inline handler is refused.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")

router = APIRouter(include_in_schema=False)


@router.get("/ui")
def shell() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"})


@router.get("/ui/")
def shell_slash() -> RedirectResponse:
    return RedirectResponse("/ui")


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
