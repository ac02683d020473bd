"""The search-space format shared by `cube sweep` (a TOML or JSON file) and the service's sweeps
(the `search_space` field): each setting maps to a list of choices, a range, or one fixed value.

    arch = ["cube", "mlp"]                                  # a choice of architecture family
    grid = [[4, 4, 4], [4, 4, 6]]                           # choices may be lists (the grid)
    channels = [8, 16]
    steps = {low = 2, high = 8, step = 2}                   # an integer range
    learning_rate = {low = 1e-4, high = 1e-2, log = true}   # a float range on a log scale

Model settings apply to the architectures that have them (the cube's grid only to the cube, `hidden`
to the cube and the MLPs), so one space can compare families. Every value is checked against the
configuration classes up front, and the largest model the space allows against the size caps, so a
bad space fails before any trial runs, with an error that names the setting.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Callable

from cube.config import ConfigError, CubeConfig, TrainConfig
from cube.models import ARCHITECTURES

# Model settings each architecture takes (d_in and d_out come from the data).
CUBE_KEYS = tuple(f.name for f in dataclasses.fields(CubeConfig) if f.name not in ("d_in", "d_out"))
ARCH_KEYS: dict[str, tuple[str, ...]] = {"cube": CUBE_KEYS, "linear": (), "mlp": ("hidden",), "resmlp": ("hidden",)}
MODEL_KEYS = frozenset(CUBE_KEYS)
# Training settings a search may vary. The seed, device and tuning budget belong to the sweep itself;
# source weights depend on the data files.
TRAIN_KEYS = frozenset(f.name for f in dataclasses.fields(TrainConfig)) - {"seed", "device", "amp", "tuning_budget", "source_weights", "monitor"}
SEARCHABLE = frozenset({"arch"}) | MODEL_KEYS | TRAIN_KEYS


class SearchSpaceError(ValueError):
    """A search space that cannot be searched; `key` names the setting at fault."""

    def __init__(self, key: str, message: str):
        super().__init__(f"search_space.{key}: {message}" if key else message)
        self.key = key
        self.message = message


@dataclass(frozen=True)
class Dimension:
    key: str
    choices: tuple[Any, ...] = ()        # a choice (one entry: a fixed value)
    low: float | None = None             # a range: low..high, integer when `integer`
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False

    @property
    def is_range(self) -> bool:
        return self.low is not None


@dataclass(frozen=True)
class SearchSpace:
    dimensions: tuple[Dimension, ...]

    def __getitem__(self, key: str) -> Dimension | None:
        return next((d for d in self.dimensions if d.key == key), None)

    def archs(self, default: str = "cube") -> tuple[str, ...]:
        dim = self["arch"]
        return dim.choices if dim else (default,)

    def to_json(self) -> dict[str, Any]:
        """The space in its input format (what a sweep stores and shows)."""
        out: dict[str, Any] = {}
        for d in self.dimensions:
            if d.is_range:
                out[d.key] = {"low": d.low, "high": d.high, **({"log": True} if d.log else {}),
                              **({"step": d.step} if d.step is not None else {})}
            else:
                out[d.key] = list(d.choices) if len(d.choices) > 1 else d.choices[0]
        return out


def _default(key: str) -> Any:
    if key in MODEL_KEYS:
        return getattr(CubeConfig(), key)
    return getattr(TrainConfig(), key)


def _is_int_setting(key: str) -> bool:
    default = _default(key)
    return isinstance(default, int) and not isinstance(default, bool)


def check_value(key: str, value: Any) -> None:
    """Raise SearchSpaceError if `value` is not a valid value of setting `key` on its own."""
    try:
        if key == "arch":
            if value not in ARCHITECTURES:
                raise ConfigError(f"must be one of {', '.join(ARCHITECTURES)}, got {value!r}")
        elif key in MODEL_KEYS:
            CubeConfig.from_dict({key: value})
        else:
            TrainConfig.from_dict({key: value})
    except (ConfigError, TypeError) as exc:
        raise SearchSpaceError(key, str(exc)) from None


def _number(key: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SearchSpaceError(key, f"{name} must be a finite number, got {value!r}")
    return value


def _range(key: str, spec: dict[str, Any]) -> Dimension:
    default = _default(key)
    if key == "grid" or isinstance(default, (str, bool)):
        raise SearchSpaceError(key, f"{key} is not numeric: give a list of choices")
    extra = set(spec) - {"low", "high", "log", "step"}
    if extra or "low" not in spec or "high" not in spec:
        raise SearchSpaceError(key, "a range is {low, high[, log][, step]}"
                               + (f"; unknown field(s) {', '.join(sorted(extra))}" if extra else ""))
    low, high = _number(key, "low", spec["low"]), _number(key, "high", spec["high"])
    log, step = spec.get("log", False), spec.get("step")
    if not isinstance(log, bool):
        raise SearchSpaceError(key, f"log must be true or false, got {log!r}")
    if low > high:
        raise SearchSpaceError(key, f"empty range: low {low!r} is above high {high!r}")
    if log and low <= 0:
        raise SearchSpaceError(key, f"a log range needs low > 0, got {low!r}")
    integer = _is_int_setting(key)
    if integer and not (float(low).is_integer() and float(high).is_integer()):
        raise SearchSpaceError(key, f"{key} takes whole numbers; got low {low!r}, high {high!r}")
    if step is not None:
        step = _number(key, "step", step)
        if step <= 0 or (integer and not float(step).is_integer()):
            raise SearchSpaceError(key, f"step must be a positive {'whole ' if integer else ''}number, got {step!r}")
        if log:
            raise SearchSpaceError(key, "a range cannot have both log and step")
    for end in (low, high):
        check_value(key, int(end) if integer else float(end))
    if integer:
        low, high, step = int(low), int(high), None if step is None else int(step)
    return Dimension(key, low=low, high=high, log=log, step=step, integer=integer)


def parse_space(raw: Any) -> SearchSpace:
    """A search space from its JSON/TOML form; raises SearchSpaceError naming the bad setting."""
    if not isinstance(raw, dict) or not raw:
        raise SearchSpaceError("", "search_space must be a non-empty object mapping settings to choices or ranges")
    dims = []
    for key, spec in raw.items():
        if key not in SEARCHABLE:
            raise SearchSpaceError(key, f"unknown setting; searchable: {', '.join(sorted(SEARCHABLE))}")
        if isinstance(spec, dict):
            dims.append(_range(key, spec))
            continue
        choices = spec if isinstance(spec, list) and (key != "grid" or (spec and isinstance(spec[0], list))) else [spec]
        if not choices:
            raise SearchSpaceError(key, "empty list of choices")
        if len(choices) > 64:
            raise SearchSpaceError(key, f"at most 64 choices, got {len(choices)}")
        for value in choices:
            check_value(key, tuple(value) if key == "grid" and isinstance(value, list) else value)
        if len({json.dumps(c, sort_keys=True) for c in choices}) != len(choices):
            raise SearchSpaceError(key, "choices repeat")
        dims.append(Dimension(key, choices=tuple(choices)))
    return SearchSpace(tuple(dims))


def sample(space: SearchSpace, suggest: "Suggest") -> dict[str, Any]:
    """One point of the space: `suggest(dimension)` picks each value (an Optuna trial does, see
    cube.sweep). Model settings are drawn only for the chosen architecture (define-by-run)."""
    point: dict[str, Any] = {}
    arch_dim = space["arch"]
    arch = suggest(arch_dim) if arch_dim else "cube"
    if arch_dim:
        point["arch"] = arch
    for dim in space.dimensions:
        if dim.key == "arch" or (dim.key in MODEL_KEYS and dim.key not in ARCH_KEYS[arch]):
            continue
        point[dim.key] = suggest(dim)
    return point


Suggest = Callable[[Dimension], Any]


def split_point(point: dict[str, Any], default_arch: str = "cube") -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(arch, model settings, training settings) of a sampled point."""
    model = {k: v for k, v in point.items() if k in MODEL_KEYS}
    train = {k: v for k, v in point.items() if k in TRAIN_KEYS}
    return point.get("arch", default_arch), model, train


def largest_point(space: SearchSpace, arch: str) -> dict[str, Any]:
    """The point with every size-bearing setting at its largest (for the size caps)."""
    def biggest(dim: Dimension) -> Any:
        if dim.is_range:
            return dim.high
        if dim.key == "grid":
            return max(dim.choices, key=lambda g: math.prod(g))
        numeric = [c for c in dim.choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
        return max(numeric) if numeric else dim.choices[0]

    return {d.key: biggest(d) for d in space.dimensions if d.key in ARCH_KEYS[arch] or d.key == "batch_size"}


def check_size(space: SearchSpace, check: Callable[[str, dict[str, Any], int], None], default_batch: int) -> None:
    """Refuse a space whose largest model breaks a cap: `check(arch, model settings, batch size)`
    raises ConfigError. The error names the setting whose largest value is at fault (the first one
    that, taken at its smallest instead, makes the model fit)."""
    for arch in space.archs():
        point = largest_point(space, arch)
        batch = int(point.pop("batch_size", default_batch))
        try:
            check(arch, point, batch)
        except ConfigError as exc:
            raise SearchSpaceError(_culprit(space, arch, point, batch, check), f"the largest model this space allows "
                                   f"({arch}: {json.dumps(point)}, batch {batch}) is too big: {exc}") from None


def _culprit(space: SearchSpace, arch: str, point: dict[str, Any], batch: int, check) -> str:
    for key in point:
        dim = space[key]
        smallest = dim.low if dim.is_range else (min(dim.choices, key=lambda g: math.prod(g)) if key == "grid"
                                                  else min(dim.choices) if all(isinstance(c, (int, float)) for c in dim.choices)
                                                  else dim.choices[0])
        try:
            check(arch, {**point, key: smallest}, batch)
            return key
        except ConfigError:
            continue
    return next(iter(point), "arch")
