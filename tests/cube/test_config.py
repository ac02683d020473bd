import pytest

from cube import ConfigError, CubeConfig, TrainConfig


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"grid": (2, 2)}, "grid must have three sizes"),
        ({"grid": (2, 0, 2)}, "grid[1]"),
        ({"neighbourhood": 8}, "neighbourhood"),
        ({"boundary": "mirror"}, "boundary"),
        ({"fire_rate": 0.0}, "fire_rate"),
        ({"read_in": "reshape", "d_in": 100}, "read_in='reshape'"),
        ({"skip": "identity", "d_out": 10}, "skip='identity'"),
        ({"steps": -1}, "steps"),
    ],
)
def test_bad_cube_config_names_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        CubeConfig(**overrides).validate()


def test_unknown_field_is_refused():
    with pytest.raises(ConfigError, match="unknown field"):
        CubeConfig.from_dict({"channel": 3})


def test_round_trip():
    cfg = CubeConfig(grid=(2, 3, 4), steps=2)
    assert CubeConfig.from_dict(cfg.to_dict()) == cfg
    t = TrainConfig(learning_rate=0.01)
    assert TrainConfig.from_dict(t.to_dict()) == t


@pytest.mark.parametrize("overrides", [{"n_epochs": 0}, {"learning_rate": -1}, {"loss": "hinge"}, {"device": "tpu"}])
def test_bad_train_config(overrides):
    with pytest.raises(ConfigError):
        TrainConfig(**overrides).validate()


@pytest.mark.parametrize("overrides", [
    {"learning_rate": float("nan")}, {"temperature": float("inf")}, {"weight_decay": float("nan")},
    {"n_epochs": 10**20}, {"batch_size": True}, {"amp": "no"}, {"early_stopping_patience": True}, {"seed": -1},
])
def test_non_finite_huge_or_mistyped_training_values_are_refused(overrides):
    with pytest.raises(ConfigError):
        TrainConfig(**overrides).validate()


@pytest.mark.parametrize("overrides", [{"neighbourhood": 6.0}, {"grid": (2, True, 2)}, {"fire_rate": True}, {"channels": 2.0}])
def test_mistyped_cube_values_are_refused(overrides):
    with pytest.raises(ConfigError):
        CubeConfig(**overrides).validate()


@pytest.mark.parametrize("overrides", [
    {"dropout": 1.0}, {"dropout": -0.1}, {"read_in": "sparse"}, {"read_in_rank": 0}, {"state_penalty": -1.0},
    {"io_weight_decay": -1.0}, {"io_weight_decay": "high"}, {"steps_jitter": True},
])
def test_bad_regulariser_settings_are_refused(overrides):
    with pytest.raises(ConfigError):
        CubeConfig(**overrides).validate()


@pytest.mark.parametrize("overrides", [
    {"triplet_margin": -0.1}, {"hard_negatives": -1}, {"negative_max_cosine": 0.0}, {"negative_max_cosine": 1.5},
    {"input_noise": float("nan")}, {"spread_penalty": -1.0}, {"hard_negatives": 4, "loss": "cosine"},
])
def test_bad_learning_method_settings_are_refused(overrides):
    with pytest.raises(ConfigError):
        TrainConfig(**overrides).validate()


def test_learning_methods_are_off_by_default():
    t, c = TrainConfig(), CubeConfig()
    assert (t.loss, t.hard_negatives, t.curriculum, t.input_noise, t.spread_penalty) == ("infonce", 0, "none", 0.0, 0.0)
    assert (c.read_in, c.dropout, c.steps_jitter, c.state_penalty, c.io_weight_decay) == ("linear", 0.0, 0, 0.0, None)
