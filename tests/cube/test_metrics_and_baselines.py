import numpy as np
import pytest

from cube import Identity, MeanTarget, Procrustes, Ridge, evaluate_predictions, retrieval_metrics
from cube.metrics import target_ranks


def test_perfect_prediction_ranks_first():
    t = np.random.default_rng(0).standard_normal((50, 8))
    m = retrieval_metrics(t, t)
    assert m == {"recall_at_1": 1.0, "recall_at_10": 1.0, "mrr": 1.0}


def test_ties_are_not_rewarded():
    """A constant prediction ties every target: its average rank is the middle, not the top."""
    t = np.eye(20)
    ranks = target_ranks(np.ones((20, 20)), t)
    assert np.allclose(ranks, 9.5)


def test_known_rank():
    t = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    p = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 1.0]])  # row 0 prefers target 1, then 2, then 0
    assert target_ranks(p, t).tolist() == [2.0, 0.0, 0.0]


def test_constant_predictor_scores_high_mean_cosine_but_chance_recall():
    rng = np.random.default_rng(1)
    t = rng.standard_normal((300, 16)) + 3.0  # anisotropic: every target near one direction
    out = evaluate_predictions(np.tile(t.mean(0), (300, 1)), t, t.mean(0))
    assert out["mean_cosine"] > 0.9 and out["recall_at_10"] < 0.1
    assert out["output_spread"] == pytest.approx(0.0, abs=1e-9)
    assert out["constant_cosine"] == pytest.approx(out["mean_cosine"])


def test_ridge_and_procrustes_recover_an_orthogonal_map():
    rng = np.random.default_rng(2)
    q, _ = np.linalg.qr(rng.standard_normal((10, 10)))
    x = rng.standard_normal((400, 10))
    y = x @ q
    train, val = (x[:300], y[:300]), (x[300:], y[300:])
    for baseline in (Ridge(), Procrustes()):
        pred = baseline.fit(train, val).predict(x[300:])
        assert np.allclose(pred, y[300:], atol=1e-2), baseline.name
    assert Ridge().fit(train, val).chosen["lambda"] <= 1.0


def test_identity_and_mean():
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    assert np.array_equal(Identity().fit((x, x), (x, x)).predict(x), x)
    assert np.allclose(MeanTarget().fit((x, x), (x, x)).predict(x[:2]), x.mean(0))
    with pytest.raises(ValueError):
        Identity().fit((x, x[:, :2]), (x, x[:, :2]))


def test_a_nan_prediction_ranks_last_not_first():
    t = np.random.default_rng(3).standard_normal((30, 5))
    p = t.copy()
    p[0] = np.nan
    ranks = target_ranks(p, t)
    assert ranks[0] == 29 and (ranks[1:] == 0).all()
    assert retrieval_metrics(np.full_like(t, np.nan), t)["recall_at_1"] == 0.0
