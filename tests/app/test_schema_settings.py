"""The published job schema names every training and cube setting a job may give."""
import re
from dataclasses import fields

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
