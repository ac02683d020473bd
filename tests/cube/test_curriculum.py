"""The curriculum: epochs draw from the easiest pairs first, the pool growing on schedule."""
import numpy as np
import pytest
import torch
from torch import nn

from cube import ConfigError, TrainConfig, fit
from cube.curriculum import Curriculum, curriculum_fraction, pair_difficulty


def test_fraction_grows_linearly_to_all_pairs():
    cfg = TrainConfig(curriculum="linear", curriculum_start=0.25, curriculum_epochs=3)
    assert [curriculum_fraction(e, cfg) for e in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert curriculum_fraction(0, TrainConfig()) == 1.0  # off by default


def test_pools_are_the_easiest_pairs():
    difficulty = np.array([0.9, 0.1, 0.5, 0.3, 0.8, 0.2, 0.7, 0.4])  # easiest: 1, 5, 3, 7, 2, 6, 4, 0
    cur = Curriculum(difficulty, TrainConfig(curriculum="linear", curriculum_start=0.25, curriculum_epochs=3))
    assert [cur.pairs(e).tolist() for e in range(4)] == [[1, 5], [1, 5, 3, 7], [1, 5, 3, 7, 2, 6], [1, 5, 3, 7, 2, 6, 4, 0]]


class Recorder(nn.Module):
    """A linear map that notes which training pairs (ids in input column 0) each training step saw."""

    def __init__(self, d: int):
        super().__init__()
        self.linear = nn.Linear(d, d)
        self.seen: list[int] = []

    def forward(self, x):
        if self.training and torch.is_grad_enabled():
            self.seen += x[:, 0].round().long().tolist()
        return self.linear(x)


class EpochMarks:
    def __init__(self, model):
        self.model, self.marks = model, []

    def on_epoch_end(self, report):
        self.marks.append((len(self.model.seen), report.total_steps))


def test_training_draws_each_epoch_from_the_scheduled_pool():
    n, d = 40, 4
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d)).astype(np.float32)
    x[:, 0] = np.arange(n)  # pair ids
    y = rng.standard_normal((n, d)).astype(np.float32)
    difficulty = rng.permutation(n).astype(np.float32)
    cfg = TrainConfig(n_epochs=4, batch_size=8, curriculum="linear", curriculum_start=0.25, curriculum_epochs=2,
                      early_stopping_patience=0)
    model = Recorder(d)
    marks = EpochMarks(model)
    fit(model, (x, y), (x[:10], y[:10]), cfg, callbacks=[marks], difficulty=difficulty)
    easiest = np.argsort(difficulty, kind="stable")
    start = 0
    for epoch, expected in enumerate([10, 25, 40, 40]):  # 0.25, 0.625, 1, 1 of 40 pairs
        end = marks.marks[epoch][0]
        assert sorted(model.seen[start:end]) == sorted(easiest[:expected].tolist()), epoch  # each pool pair once
        start = end
    assert marks.marks[0][1] == 2 + 4 + 5 + 5  # the schedule's steps: ceil(pool / batch) per epoch


def test_difficulty_from_the_pairs_when_the_data_has_none():
    x = np.array([[1.0, 0.0], [1.0, 0.0]])
    y = np.array([[1.0, 0.0], [0.0, 3.0]])
    assert pair_difficulty(x, y, None).tolist() == pytest.approx([0.0, 1.0])
    assert pair_difficulty(x, y, np.array([0.5, 0.2])).tolist() == pytest.approx([0.5, 0.2])


def test_curriculum_without_difficulty_across_spaces_is_a_clear_config_error():
    x, y = np.ones((30, 4), np.float32), np.ones((30, 6), np.float32)
    cfg = TrainConfig(n_epochs=1, curriculum="linear")
    with pytest.raises(ConfigError, match="curriculum needs a per-pair difficulty.*4d.*6d"):
        fit(nn.Linear(4, 6), (x, y), (x, y), cfg)


@pytest.mark.parametrize("overrides", [{"curriculum": "exp"}, {"curriculum_start": 0.0}, {"curriculum_start": 1.5},
                                       {"curriculum_epochs": 0}])
def test_bad_curriculum_settings_are_refused(overrides):
    with pytest.raises(ConfigError):
        TrainConfig(**overrides).validate()
