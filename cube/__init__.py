"""cube: embedding -> embedding models, with a neural cellular automaton on a 3D grid.

A pure PyTorch + numpy library (no web, database or queue imports): the model, baselines, losses,
metrics, trainer, checkpoints, artifacts, pair files and the held-out evaluation.
"""
from cube.artifacts import ArtifactError, load_model, save_model
from cube.baselines import Identity, MeanTarget, Procrustes, Ridge
from cube.config import ConfigError, CubeConfig, RunConfig, SplitConfig, TrainConfig
from cube.experiment import ExperimentCancelled, ExperimentResult, run_experiment
from cube.lattice import CubeModel
from cube.losses import cosine_loss, info_nce_loss, mse_loss
from cube.metrics import evaluate_predictions, retrieval_metrics
from cube.models import ARCHITECTURES, LinearMap, MLPMap, ResidualMLP, build_model
from cube.pairs import PairData, PairFileError, Split, load_pairs_npz, split_pairs, validate_pairs
from cube.trainer import EpochReport, StopTraining, TrainResult, fit, predict
from cube.tuning import Tuned, learning_rate_grid, tune

__all__ = [
    "ARCHITECTURES", "ArtifactError", "ConfigError", "CubeConfig", "CubeModel", "EpochReport",
    "ExperimentCancelled", "ExperimentResult", "Identity", "LinearMap", "MLPMap", "MeanTarget", "ResidualMLP", "PairData",
    "PairFileError", "Procrustes", "Ridge", "RunConfig", "Split", "SplitConfig", "StopTraining",
    "TrainConfig", "TrainResult", "Tuned", "build_model", "cosine_loss", "evaluate_predictions",
    "fit", "info_nce_loss", "load_model", "load_pairs_npz", "mse_loss", "predict", "retrieval_metrics",
    "learning_rate_grid", "run_experiment", "save_model", "split_pairs", "tune", "validate_pairs",
]
