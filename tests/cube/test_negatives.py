"""The hard-negative sampler: nearest wrong training target under the model, with the guard."""
import numpy as np
import pytest
import torch

from cube import TrainConfig, build_model, fit
from cube.negatives import HardNegativeSampler


def unit(rows):
    a = np.asarray(rows, dtype=np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


# pair:            0          1 (near-duplicate of t0)  2 (cos 0.8 to t0)  3          4          5
TARGETS = unit([[1, 0, 0], [0.99, 0.141, 0], [0.8, 0.6, 0], [0, 0, 1], [0, 1, 0], [0.9, 0.43, 0]])
INPUTS = unit(np.eye(6, 6) + 0.1)  # six distinct questions


def test_returns_the_nearest_wrong_targets_hardest_first_and_skips_near_duplicates():
    pred = TARGETS.copy()
    pred[0] = unit([[1, 0.05, 0]])[0]
    sampler = HardNegativeSampler(INPUTS, TARGETS, k=2, max_cosine=0.95)
    mined = sampler.mine(pred)
    assert mined.shape == (6, 2) and mined.dtype == torch.int64
    # nearest to pred 0: t0 (its own), t1 (cos 0.99 to t0: a near-duplicate), then t5, t2
    assert mined[0].tolist() == [5, 2]
    # with the guard off (threshold 1), the near-duplicate is the hardest negative
    assert HardNegativeSampler(INPUTS, TARGETS, k=1, max_cosine=1.0).mine(pred)[0].tolist() == [1]
    # a pair never gets its own target
    assert all(i not in row for i, row in enumerate(mined.tolist()))


def test_skips_the_targets_of_pairs_with_the_same_input():
    inputs = INPUTS.copy()
    inputs[5] = inputs[0]  # pair 5 answers the same question as pair 0: its target is no negative
    pred = TARGETS.copy()
    pred[0] = unit([[1, 0.05, 0]])[0]
    assert HardNegativeSampler(inputs, TARGETS, k=1).mine(pred)[0].tolist() == [2]


def test_exact_when_near_duplicates_outnumber_the_candidates():
    rng = np.random.default_rng(0)
    n_dup = 60  # more copies of t0 than the sampler's first candidate list (2k + 16)
    dups = unit(np.array([1, 0, 0, 0]) + 0.01 * rng.standard_normal((n_dup, 4)))
    others = unit(np.array([[0.6, 0.8, 0, 0], [0.5, 0, 0.866, 0], [0, 0, 0, 1]]))
    targets = np.vstack([dups, others])
    inputs = unit(rng.standard_normal((len(targets), 8)))
    mined = HardNegativeSampler(inputs, targets, k=2, max_cosine=0.95).mine(targets)
    # every copy of t0 gets the two nearest non-copies, hardest first (cos 0.6, then 0.5)
    assert (mined[:n_dup] == torch.tensor([n_dup, n_dup + 1])).all()


def test_matches_brute_force_on_random_data():
    rng = np.random.default_rng(1)
    targets, inputs = unit(rng.standard_normal((300, 8))), unit(rng.standard_normal((300, 8)))
    pred = unit(targets + 0.5 * rng.standard_normal(targets.shape))
    sampler = HardNegativeSampler(inputs, targets, k=3, max_cosine=0.9)
    sampler.chunk = 64  # several chunks
    mined = sampler.mine(pred).numpy()
    sims = pred @ targets.T
    sims[(targets @ targets.T) > 0.9] = -np.inf  # includes each pair's own target
    expected = np.argsort(-sims, axis=1, kind="stable")[:, :3]
    assert (mined == expected).all()


def linear_task(n=700, d=16, seed=0):
    """y = A x on unit vectors: a linear map learns it, the identity it starts from does not."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    return unit(x), unit(x @ rng.standard_normal((d, d)).astype(np.float32))


def test_training_with_mined_negatives_learns_and_is_deterministic():
    from cube.metrics import retrieval_metrics

    x, y = linear_task()
    train, val = (x[:600], y[:600]), (x[600:], y[600:])
    untrained = retrieval_metrics(*val)["mrr"]  # the linear map starts as the identity
    weights = []
    for loss in ("infonce", "triplet", "infonce"):
        torch.manual_seed(0)
        model = build_model("linear", {"d_in": 16, "d_out": 16})
        cfg = TrainConfig(n_epochs=1, batch_size=64, learning_rate=0.05, warmup_steps=0, loss=loss, hard_negatives=4,
                          early_stopping_patience=0)
        result = fit(model, train, val, cfg)
        assert result.best_score > untrained + 0.5, (loss, result.history)
        weights.append(model.linear.weight.detach().clone())
    assert torch.equal(weights[0], weights[2])
    assert not torch.equal(weights[0], weights[1])


def test_too_many_negatives_for_the_data_is_a_config_error(synthetic):
    from cube import ConfigError

    model = build_model("linear", {"d_in": 16, "d_out": 16})
    with pytest.raises(ConfigError, match="hard_negatives"):
        fit(model, (synthetic.input[:30], synthetic.target[:30]), (synthetic.input[30:40], synthetic.target[30:40]),
            TrainConfig(n_epochs=1, hard_negatives=30))
