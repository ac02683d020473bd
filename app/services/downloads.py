"""A model version's files for download: its artifact (safetensors weights and the JSON that rebuilds
the model), the held-out report (JSON, Markdown), the training plot, and an ONNX export.

Stored files are streamed from the storage as they lie. `model.onnx` is built on its first download
(in the request's worker thread, from the artifact staged locally, checked against torch by
onnxruntime) and stored beside the artifact, so later downloads, from any API process on any host,
read the stored file; one build per version runs at a time in a process, and each build writes a
temp file that is stored whole, so a reader never sees half a file.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from app.errors import InvalidContent, NotFound
from app.models import ModelVersion
from app.storage import Storage

ONNX = "model.onnx"


@dataclass(frozen=True)
class FileKind:
    name: str
    media_type: str
    in_artifact: bool      # inside the model directory (else beside it, in the job's run directory)
    description: str


FILES = {f.name: f for f in (
    FileKind("model.safetensors", "application/octet-stream", True, "the weights (safetensors)"),
    FileKind("model.json", "application/json", True, "architecture and config that rebuild the model (cube.artifacts)"),
    FileKind(ONNX, "application/octet-stream", True, "ONNX graph, input `input` [batch, d_in] -> `output`; built on first download"),
    FileKind("report.json", "application/json", False, "held-out evaluation: the model beside every baseline"),
    FileKind("report.md", "text/markdown; charset=utf-8", False, "the same report as Markdown"),
    FileKind("training.png", "image/png", False, "training curves"),
)}

_build_locks: dict[str, threading.Lock] = {}
_build_locks_guard = threading.Lock()


def file_kind(name: str) -> FileKind:
    kind = FILES.get(name)
    if kind is None:
        raise NotFound(f"a version has no file {name!r}; its files are {', '.join(FILES)}", param="file")
    return kind


def stored_key(version: ModelVersion, kind: FileKind) -> str:
    artifact = version.artifact_key
    return f"{artifact if kind.in_artifact else artifact.rsplit('/', 1)[0]}/{kind.name}"


def download_key(storage: Storage, version: ModelVersion, name: str) -> tuple[str, FileKind]:
    """The stored file to stream for `name` (building the ONNX export if it is the first ask), or a
    404 naming what is missing."""
    kind = file_kind(name)
    key = stored_key(version, kind)
    if name == ONNX and not storage.exists(key):
        build_onnx(storage, version, key)
    if not storage.exists(key):
        raise NotFound(f"model {version.model_name} v{version.version} has no {name} (the job that made it did not write one)",
                       param="file", code="file_not_found")
    return key, kind


def build_onnx(storage: Storage, version: ModelVersion, key: str) -> None:
    from cube.artifacts import ArtifactError
    from cube.onnx_export import ExportError, export_model_dir

    with _build_locks_guard:
        lock = _build_locks.setdefault(version.id, threading.Lock())
    with lock:
        if storage.exists(key):  # built by the request we waited for
            return
        fd, tmp = storage.new_temp_file("onnx")
        os.close(fd)
        try:
            export_model_dir(storage.stage_tree(version.artifact_key), tmp)
            storage.put_file(tmp, key)
        except (ArtifactError, FileNotFoundError) as exc:
            raise NotFound(f"model {version.model_name} v{version.version}'s artifact is not readable: {exc}",
                           param="file", code="file_not_found") from None
        except ExportError as exc:
            raise InvalidContent(f"model {version.model_name} v{version.version} cannot be exported to ONNX: {exc}",
                                 param="file", code="export_failed") from None
        finally:
            tmp.unlink(missing_ok=True)


def listing(storage: Storage, version: ModelVersion) -> list[dict]:
    """Every file of the version: whether it can be downloaded now, and its size when stored."""
    out = []
    for kind in FILES.values():
        size = storage.size(stored_key(version, kind))
        out.append({"name": kind.name, "content_type": kind.media_type, "description": kind.description,
                    "bytes": size, "available": size is not None or kind.name == ONNX})
    return out


def download_name(version: ModelVersion, name: str) -> str:
    """What a browser saves it as: model-v3-model.onnx."""
    return f"{version.model_name}-v{version.version}-{name}"
