"""Plain configuration dataclasses for the cube library (no settings, no environment).

`CubeConfig` describes the model, `TrainConfig` the optimisation. Both round-trip through
`to_dict` / `from_dict` so a checkpoint or artifact can rebuild itself from JSON.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range."""


def _from_dict(cls: type[T], data: dict[str, Any]) -> T:
    names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}; known: {', '.join(names)}")
    values = dict(data)
    for key in ("grid",):
        if key in values and isinstance(values[key], list):
            values[key] = tuple(values[key])
    obj = cls(**values)
    obj.validate()  # type: ignore[attr-defined]
    return obj


def _count(name: str, value: Any, low: int, high: int) -> None:
    """An integer (not a bool) in [low, high]."""
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{name} must be an integer from {low} to {high}, got {value!r}")


def _choice(name: str, value: Any, allowed: tuple[Any, ...]) -> None:
    if value not in allowed or type(value) not in {type(a) for a in allowed}:  # 6.0 and True are not 6 or 1
        raise ConfigError(f"{name} must be one of {allowed}, got {value!r}")


def _positive(name: str, value: Any, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} number, got {value!r}")


def _fraction(name: str, value: Any, *, low_open: bool = True) -> None:
    """A number in (0, 1] (or [0, 1] when low_open is False)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value > 1 or value < 0 or (low_open and value == 0):
        raise ConfigError(f"{name} must be in {'(0' if low_open else '[0'}, 1], got {value!r}")


@dataclass
class CubeConfig:
    """The neural cellular automaton on a 3D grid (see README, "The cube")."""

    d_in: int = 384
    d_out: int = 384
    grid: tuple[int, int, int] = (4, 4, 6)
    channels: int = 16                    # C: state channels per cell
    steps: int = 4                        # T: propagation steps of the shared cell rule
    neighbourhood: Literal[6, 26] = 26    # faces only, or the full 3x3x3 block
    boundary: Literal["zero", "periodic"] = "zero"
    perception: Literal["learned", "fixed"] = "learned"  # fixed: the NCA identity/gradient/Laplacian bank
    cell: Literal["mlp", "gated"] = "mlp"
    hidden: int = 32                      # hidden width of the per-cell network
    fire_rate: float = 0.5                # chance a cell updates at a step, in training
    global_channel: bool = True           # feed the mean state of all cells back to every cell
    read_in: Literal["linear", "lowrank", "reshape"] = "linear"  # lowrank: D_in -> read_in_rank -> cells
    read_in_rank: int = 32                # rank of the low-rank read-in
    read_out: Literal["volume", "face"] = "volume"
    skip: Literal["linear", "identity", "none"] = "linear"
    # Regularisers (training only; see docs/learning.md). All off by default.
    dropout: float = 0.0                  # dropout on the read-in's output and the read-out's input
    steps_jitter: int = 0                 # training batches run steps +- up to this many steps
    state_penalty: float = 0.0            # weight of the penalty on cell states outside [-1, 1]
    io_weight_decay: float | None = None  # weight decay of read-in and read-out; None: the training weight_decay

    @property
    def n_cells(self) -> int:
        x, y, z = self.grid
        return x * y * z

    def validate(self) -> "CubeConfig":
        if len(self.grid) != 3:
            raise ConfigError(f"grid must have three sizes (X, Y, Z), got {self.grid!r}")
        for i, g in enumerate(self.grid):
            _count(f"grid[{i}]", g, 1, 1024)
        for name in ("d_in", "d_out", "channels", "hidden"):
            _count(name, getattr(self, name), 1, 1 << 20)
        _count("steps", self.steps, 0, 1024)
        _choice("neighbourhood", self.neighbourhood, (6, 26))
        _choice("boundary", self.boundary, ("zero", "periodic"))
        _choice("perception", self.perception, ("learned", "fixed"))
        _choice("cell", self.cell, ("mlp", "gated"))
        _choice("read_in", self.read_in, ("linear", "lowrank", "reshape"))
        _count("read_in_rank", self.read_in_rank, 1, 1 << 16)
        ok = isinstance(self.dropout, (int, float)) and not isinstance(self.dropout, bool) and 0.0 <= self.dropout < 1.0
        if not ok:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        _count("steps_jitter", self.steps_jitter, 0, self.steps)
        _positive("state_penalty", self.state_penalty, allow_zero=True)
        if self.io_weight_decay is not None:
            _positive("io_weight_decay", self.io_weight_decay, allow_zero=True)
        _choice("read_out", self.read_out, ("volume", "face"))
        _choice("skip", self.skip, ("linear", "identity", "none"))
        if isinstance(self.fire_rate, bool) or not isinstance(self.fire_rate, (int, float)) or not 0.0 < self.fire_rate <= 1.0:
            raise ConfigError(f"fire_rate must be in (0, 1], got {self.fire_rate!r}")
        if self.read_in == "reshape" and self.d_in != self.n_cells:
            raise ConfigError(f"read_in='reshape' needs d_in == X*Y*Z ({self.n_cells}), got {self.d_in}")
        if self.skip == "identity" and self.d_in != self.d_out:
            raise ConfigError(f"skip='identity' needs d_in == d_out, got {self.d_in} and {self.d_out}")
        return self

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["grid"] = list(self.grid)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CubeConfig":
        return _from_dict(cls, data)


@dataclass
class TrainConfig:
    """How a model is optimised. The trainer knows nothing else about the model."""

    n_epochs: int = 30
    batch_size: int = 256
    learning_rate: float = 5e-4
    weight_decay: float = 1e-4
    loss: Literal["infonce", "triplet", "cosine", "mse"] = "infonce"
    temperature: float = 0.05             # InfoNCE softmax temperature
    triplet_margin: float = 0.2           # triplet: cos(pred, target) must beat cos(pred, negative) by this
    hard_negatives: int = 0               # k negatives per pair mined each epoch among the training targets; 0 = off
    negative_max_cosine: float = 0.95     # false-negative guard: never mine a target this close to the pair's own
    curriculum: Literal["none", "linear"] = "none"  # linear: epochs draw from the easiest pairs, a growing share
    curriculum_start: float = 0.25        # share of the (easiest) pairs the first epoch draws from
    curriculum_epochs: int = 5            # epoch from which every pair is drawn
    input_noise: float = 0.0              # Gaussian noise on training inputs, of about this norm (unit inputs)
    spread_penalty: float = 0.0           # collapse guard: weight of the per-dimension spread hinge
    grad_clip: float = 1.0                # max global gradient norm; 0 disables
    early_stopping_patience: int = 5      # epochs without validation improvement; 0 disables
    monitor: Literal["mrr", "recall_at_10", "loss"] = "mrr"
    seed: int = 0
    device: str = "auto"                  # "auto" picks CUDA when present
    amp: bool = True                      # bf16 autocast on CUDA; ignored on CPU
    warmup_steps: int = 50
    # Learning rates tried per trained method, chosen on validation (see cube.tuning): learning_rate
    # itself, then learning_rate / 4, x 4, / 16, x 16, ... Every method in a report gets this budget.
    tuning_budget: int = 3
    # Sampling weight of a pair from each --data file, in order (empty: all 1): a pair of weight 2
    # is drawn twice as often as one of weight 1.
    source_weights: list[float] = field(default_factory=list)
    # Multi-teacher distillation (cube/multiteacher.py): the loss weight of each teacher's head, fixed
    # (head_weights, in head order; empty: equal) or adapted each epoch from validation.
    head_weighting: Literal["fixed", "adaptive"] = "fixed"
    head_weights: list[float] = field(default_factory=list)

    def validate(self) -> "TrainConfig":
        _count("n_epochs", self.n_epochs, 1, 10_000)
        _count("batch_size", self.batch_size, 1, 1 << 20)
        _positive("learning_rate", self.learning_rate)
        _positive("weight_decay", self.weight_decay, allow_zero=True)
        _positive("temperature", self.temperature)
        _positive("grad_clip", self.grad_clip, allow_zero=True)
        _count("early_stopping_patience", self.early_stopping_patience, 0, 10_000)
        _count("warmup_steps", self.warmup_steps, 0, 10_000_000)
        _count("tuning_budget", self.tuning_budget, 1, 9)
        if not isinstance(self.source_weights, (list, tuple)) or len(self.source_weights) > 1000:
            raise ConfigError(f"source_weights must be a list of numbers, one per data file, got {self.source_weights!r}")
        for i, w in enumerate(self.source_weights):
            _positive(f"source_weights[{i}]", w, allow_zero=True)
        if self.source_weights and not any(self.source_weights):
            raise ConfigError("source_weights must give at least one source a positive weight")
        _choice("head_weighting", self.head_weighting, ("fixed", "adaptive"))
        if not isinstance(self.head_weights, (list, tuple)) or len(self.head_weights) > 64:
            raise ConfigError(f"head_weights must be a list of numbers, one per target teacher, got {self.head_weights!r}")
        for i, w in enumerate(self.head_weights):
            _positive(f"head_weights[{i}]", w)
        if self.head_weights and self.head_weighting == "adaptive":
            raise ConfigError("head_weights are for head_weighting 'fixed'; adaptive weights start equal")
        if not isinstance(self.amp, bool):
            raise ConfigError(f"amp must be true or false, got {self.amp!r}")
        _choice("loss", self.loss, ("infonce", "triplet", "cosine", "mse"))
        _positive("triplet_margin", self.triplet_margin, allow_zero=True)
        _count("hard_negatives", self.hard_negatives, 0, 4096)
        if self.hard_negatives and self.loss not in ("infonce", "triplet"):
            raise ConfigError(f"hard_negatives needs loss 'infonce' or 'triplet', got {self.loss!r}")
        _fraction("negative_max_cosine", self.negative_max_cosine)
        _choice("curriculum", self.curriculum, ("none", "linear"))
        _fraction("curriculum_start", self.curriculum_start)
        _count("curriculum_epochs", self.curriculum_epochs, 1, 10_000)
        _positive("input_noise", self.input_noise, allow_zero=True)
        _positive("spread_penalty", self.spread_penalty, allow_zero=True)
        _choice("monitor", self.monitor, ("mrr", "recall_at_10", "loss"))
        _count("seed", self.seed, 0, 2**31 - 1)
        if not (self.device in ("auto", "cpu") or str(self.device).startswith("cuda")):
            raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        return _from_dict(cls, data)


@dataclass
class SplitConfig:
    """Held-out fractions; the test split is never seen by training or model selection."""

    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    # "question": validation and test score only rows marked question (the split is drawn over them);
    # training still uses every pair of the training groups.
    eval_filter: Literal["all", "question"] = "all"

    def validate(self) -> "SplitConfig":
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 < value < 0.5:
                raise ConfigError(f"{name} must be in (0, 0.5), got {value!r}")
        _choice("eval_filter", self.eval_filter, ("all", "question"))
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SplitConfig":
        return _from_dict(cls, data)


@dataclass
class RunConfig:
    """Everything `cube train` needs besides the data: the mode, the model, training and split sections.

    `mode` says what the pairs mean: dialogue (an input and the reply it should find), autoencoder
    (a vector and itself, through a bottleneck), translation (one item in two teachers' spaces)."""

    arch: Literal["cube", "linear", "mlp", "resmlp"] = "cube"
    mode: Literal["dialogue", "autoencoder", "translation"] = "dialogue"
    model: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    split: SplitConfig = field(default_factory=SplitConfig)


MODES = ("dialogue", "autoencoder", "translation")


def check_mode(mode: str) -> str:
    _choice("mode", mode, MODES)
    return mode


def check_code_size(mode: str, code_size: Any, dim: int | None = None) -> int | None:
    """The code size a run asks for, or ConfigError naming `code_size` for a bad combination:
    an autoencoder needs one, below the vectors' dimension (when known); other modes take none."""
    if mode != "autoencoder":
        if code_size is not None:
            raise ConfigError(f"code_size applies to mode 'autoencoder' only, not {mode!r}")
        return None
    if code_size is None:
        raise ConfigError("mode 'autoencoder' needs code_size (the number of values in the code, below the "
                          "vectors' dimension), e.g. --set code_size=32")
    if not isinstance(code_size, int) or isinstance(code_size, bool) or code_size < 1:
        raise ConfigError(f"code_size must be a positive integer, got {code_size!r}")
    if dim is not None and code_size >= dim:
        raise ConfigError(f"code_size must be below the vectors' dimension {dim} (else the identity reconstructs "
                          f"perfectly and nothing is learned), got {code_size}")
    return code_size
