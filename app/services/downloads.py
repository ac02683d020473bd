"""A model version's files for download: its artifact (safetensors weights and the JSON that rebuilds
the model), the held-out report (JSON, Markdown), the training plot, and an ONNX export.

Stored files are served as they lie in storage. `model.onnx` is built on its first download (in the
request's worker thread, checked against torch by onnxruntime) and kept beside the artifact, so later
downloads, from any API process, read the stored file; one build per version runs at a time in a
process, and concurrent processes write to temp names and rename, so a reader never sees half a file.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from app.errors import InvalidContent, NotFound
from app.models import ModelVersion
from app.storage import LocalStorage

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


def stored_path(storage: LocalStorage, version: ModelVersion, kind: FileKind) -> Path:
    artifact = storage.local_path(version.artifact_key)
    return (artifact if kind.in_artifact else artifact.parent) / kind.name


def download_path(storage: LocalStorage, version: ModelVersion, name: str) -> tuple[Path, FileKind]:
    """The file to stream for `name` (building the ONNX export if it is the first ask), or a 404
    naming what is missing."""
    kind = file_kind(name)
    path = stored_path(storage, version, kind)
    if name == ONNX and not path.is_file():
        build_onnx(storage, version, path)
    if not path.is_file():
        raise NotFound(f"model {version.model_name} v{version.version} has no {name} (the job that made it did not write one)",
                       param="file", code="file_not_found")
    return path, kind


def build_onnx(storage: LocalStorage, version: ModelVersion, path: Path) -> None:
    from cube.artifacts import ArtifactError
    from cube.onnx_export import ExportError, export_model_dir

    with _build_locks_guard:
        lock = _build_locks.setdefault(version.id, threading.Lock())
    with lock:
        if path.is_file():  # built by the request we waited for
            return
        try:
            export_model_dir(storage.local_path(version.artifact_key), path)
        except ArtifactError as exc:
            raise NotFound(f"model {version.model_name} v{version.version}'s artifact is not readable: {exc}",
                           param="file", code="file_not_found") from None
        except ExportError as exc:
            raise InvalidContent(f"model {version.model_name} v{version.version} cannot be exported to ONNX: {exc}",
                                 param="file", code="export_failed") from None


def listing(storage: LocalStorage, version: ModelVersion) -> list[dict]:
    """Every file of the version: whether it can be downloaded now, and its size when stored."""
    out = []
    for kind in FILES.values():
        path = stored_path(storage, version, kind)
        stored = path.is_file()
        out.append({"name": kind.name, "content_type": kind.media_type, "description": kind.description,
                    "bytes": path.stat().st_size if stored else None,
                    "available": stored or kind.name == ONNX})
    return out


def download_name(version: ModelVersion, name: str) -> str:
    """What a browser saves it as: model-v3-model.onnx."""
    return f"{version.model_name}-v{version.version}-{name}"
