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
