"""cube/ is a library a researcher can use alone: no web, database or queue imports."""
import ast
import pathlib

import cube

FORBIDDEN = {"fastapi", "starlette", "sqlalchemy", "celery", "redis", "kombu", "alembic", "app", "worker", "uvicorn", "pydantic_settings"}


def test_cube_imports_no_service_code():
    root = pathlib.Path(cube.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert not offenders


# The library's public names: adding or removing one is an interface change, made here on purpose.
PUBLIC = {
    "ARCHITECTURES", "ArtifactError", "ConfigError", "CubeConfig", "CubeModel", "EpochReport",
    "ExperimentCancelled", "ExperimentResult", "Identity", "LinearMap", "MLPMap", "MeanTarget", "PairData",
    "PairFileError", "Procrustes", "Ridge", "ResidualMLP", "RunConfig", "Split", "SplitConfig", "StopTraining",
    "TrainConfig", "TrainResult", "Tuned", "build_model", "cosine_loss", "evaluate_predictions",
    "fit", "info_nce_loss", "learning_rate_grid", "load_model", "load_pairs_npz", "mse_loss", "predict",
    "retrieval_metrics", "run_experiment", "save_model", "split_pairs", "tune", "validate_pairs",
}


def test_public_surface():
    assert len(cube.__all__) == len(set(cube.__all__)) and set(cube.__all__) == PUBLIC
    namespace = {}
    exec("from cube import *", namespace)  # what a star import really gives (fails on a name __all__ lists but the package lacks)
    assert set(namespace) - {"__builtins__"} == PUBLIC
