"""A stored file as a download: served from disk as it lies with local storage (FileResponse: sizes,
ranges, sendfile), else streamed from the object store chunk by chunk, never held in memory."""
from __future__ import annotations

from urllib.parse import quote

from fastapi.responses import FileResponse, StreamingResponse
from starlette.concurrency import iterate_in_threadpool
from starlette.responses import Response

from app.errors import NotFound
from app.storage import Storage


def stored_file_response(storage: Storage, key: str, media_type: str, filename: str, *, missing: str,
                         param: str) -> Response:
    """`missing`, `param`: the 404's message and parameter when the file is not stored."""
    path = storage.local_file(key)
    if path is not None:
        return FileResponse(path, media_type=media_type, filename=filename)
    size = storage.size(key)
    if size is None:
        raise NotFound(missing, param=param, code="file_not_found")
    quoted = quote(filename)  # as FileResponse writes it
    disposition = f'attachment; filename="{filename}"' if quoted == filename else f"attachment; filename*=utf-8''{quoted}"
    headers = {"Content-Length": str(size), "Content-Disposition": disposition}
    return StreamingResponse(iterate_in_threadpool(storage.read_chunks(key)), media_type=media_type, headers=headers)
