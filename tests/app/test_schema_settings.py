"""The published job schema names every training and cube setting a job may give."""
import re
from dataclasses import fields

import pytest

from app.schemas import TrainingJobCreate
from cube.config import CubeConfig, TrainConfig


def named(description: str) -> set[str]:
    return set(re.findall(r"[a-z_0-9]+", description))


def test_hyperparameters_description_names_every_train_setting():
    schema = TrainingJobCreate.model_json_schema()
    described = named(schema["properties"]["hyperparameters"]["description"])
    missing = {f.name for f in fields(TrainConfig)} - described
    assert not missing, f"add {sorted(missing)} to app.schemas.HYPERPARAMETERS_DOC"


def test_architecture_description_names_every_cube_setting():
    schema = TrainingJobCreate.model_json_schema()
    described = named(schema["$defs"]["Architecture"]["description"])
    missing = {f.name for f in fields(CubeConfig)} - described
    assert not missing, f"add {sorted(missing)} to app.schemas.CUBE_ARCHITECTURE_DOC"


def test_a_job_may_switch_the_learning_methods_on_and_bad_values_are_refused():
    from app.errors import InvalidContent
    from app.services.jobs import resolve_hyperparameters

    given = {"loss": "triplet", "hard_negatives": 8, "curriculum": "linear", "spread_penalty": 0.5, "input_noise": "auto"}
    resolved = resolve_hyperparameters(given, num_pairs=1000)
    assert {k: resolved[k] for k in ("loss", "hard_negatives", "curriculum", "spread_penalty")} == {
        "loss": "triplet", "hard_negatives": 8, "curriculum": "linear", "spread_penalty": 0.5}
    assert resolved["input_noise"] == 0.0  # "auto": the default, methods off
    with pytest.raises(InvalidContent, match="curriculum"):
        resolve_hyperparameters({"curriculum": "cosine"}, num_pairs=1000)
    with pytest.raises(InvalidContent, match="hard_negatives needs loss"):
        resolve_hyperparameters({"hard_negatives": 4, "loss": "mse"}, num_pairs=1000)
