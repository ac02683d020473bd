"""Translation between teachers: baselines across dimensions, text items and their links, the
Procrustes start, and the report's shape."""
import json

import numpy as np
import pytest
import torch

from cube.baselines import LowRankAffine, Procrustes
from cube.config import RunConfig, SplitConfig, TrainConfig
from cube.experiment import run_experiment
from cube.metrics import retrieval_metrics
from cube.models import build_model
from cube.pairs import PairData, PairFileError, load_pairs_npz, save_pairs_npz
from cube.trainer import predict
from cube.translation import load_translation_texts, start_at

TINY_CUBE = {"grid": [2, 2, 2], "channels": 4, "steps": 2, "hidden": 8}


def unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def planted(n=600, d_in=24, d_out=48, noise=0.0, seed=0):
    """y = rotation-and-embedding of x (a semi-orthogonal map) plus an offset: what Procrustes recovers."""
    rng = np.random.default_rng(seed)
    x = unit(rng.normal(size=(n, d_in)))
    q, _ = np.linalg.qr(rng.normal(size=(d_out, d_out)))
    w = q[:d_in] if d_in <= d_out else np.linalg.qr(rng.normal(size=(d_in, d_in)))[0][:, :d_out]
    y = x @ w + 0.3 + noise * rng.normal(size=(n, d_out))
    return x.astype(np.float32), y.astype(np.float32), w


@pytest.mark.parametrize("d_in,d_out", [(24, 48), (48, 24), (32, 32)])
def test_procrustes_between_sizes_is_semi_orthogonal(d_in, d_out):
    x, y, _ = planted(d_in=d_in, d_out=d_out, seed=d_in)
    p = Procrustes().fit((x, y), (x, y))
    small = min(d_in, d_out)
    gram = p.w @ p.w.T if d_in <= d_out else p.w.T @ p.w
    assert gram.shape == (small, small)
    np.testing.assert_allclose(gram, np.eye(small), atol=1e-10)


def test_procrustes_recovers_a_planted_rotation_and_embedding():
    x, y, w = planted(d_in=24, d_out=48, noise=0.01, seed=3)
    p = Procrustes().fit((x[:500], y[:500]), (x[500:], y[500:]))
    # The map itself (on the input's span) and the predictions.
    assert np.abs(p.w - w).max() < 0.05
    assert retrieval_metrics(p.predict(x[500:]), y[500:])["recall_at_1"] == 1.0
    with pytest.raises(AssertionError):  # a test that can fail: a wrong map is not accepted
        np.testing.assert_allclose(Procrustes().fit((x[:500], y[::-1][:500]), (x, y)).w, w, atol=0.05)


def test_lowrank_chooses_its_rank_on_validation():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(800, 40))
    w = rng.normal(size=(40, 4)) @ rng.normal(size=(4, 30))  # a rank-4 map
    y = x @ w + 0.05 * rng.normal(size=(800, 30))
    model = LowRankAffine(ranks=(2, 4, 8, 16)).fit((x[:600], y[:600]), (x[600:700], y[600:700]))
    assert model.rank in (4, 8, 16, 30) and model.chosen["rank"] == model.rank
    assert retrieval_metrics(model.predict(x[700:]), y[700:])["recall_at_1"] > 0.95
    # Rank 2 cannot hold a rank-4 map: validation must not choose it.
    assert model.rank != 2


@pytest.mark.parametrize("arch,config", [("cube", TINY_CUBE), ("linear", {}), ("mlp", {"hidden": 16}),
                                         ("resmlp", {"hidden": 16, "project": True})])
def test_every_linear_path_starts_exactly_at_procrustes(arch, config):
    x, y, _ = planted(d_in=16, d_out=16, noise=0.05, seed=5)
    p = Procrustes().fit((x, y), (x, y))
    torch.manual_seed(0)
    model = build_model(arch, {"d_in": 16, "d_out": 16, **config})
    assert start_at(model, p)
    np.testing.assert_allclose(predict(model, x), p.predict(x), atol=1e-5)
    # ... and from there every part of it can learn: the loss reaches the nonlinear part too.
    model.train()
    model(torch.from_numpy(x[:64])).pow(2).sum().backward()
    nonlinear = model.cell_rule if arch == "cube" else getattr(model, "out", None)  # the grid; the MLP branches
    if nonlinear is not None:
        assert any(q.grad is not None and q.grad.abs().sum() > 0 for q in nonlinear.parameters()), arch


def test_links_survive_subsets_and_npz(tmp_path):
    x = np.eye(30, dtype=np.float32)
    data = PairData(x, x, links=np.array([[0, 1], [2, 3], [5, 4]]))
    sub = data.subset(np.array([1, 0, 4, 5, 9]))
    assert sub.links.tolist() == [[1, 0], [3, 2]]  # (2, 3) lost a row; the rest renumbered
    save_pairs_npz(tmp_path / "p.npz", data)
    assert load_pairs_npz(tmp_path / "p.npz").links.tolist() == data.links.tolist()


def test_text_items_are_distinct_texts_in_their_first_rows_group(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [{"input": f"q{i}?", "target": f"a{i}", "group": f"c{i // 3}"} for i in range(30)]
    rows.append({"input": "a0", "target": "new reply", "group": "c99"})  # a0 is c0's: it stays there
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = load_translation_texts(path)
    assert len(items) == 61 and len(items.links) == 31
    group = dict(zip(items.texts, items.groups))
    assert group["q0?"] == group["a0"] == group["a2"] == "c0" and group["q3?"] == "c1"
    assert group["new reply"] == "c99"
    assert sum(items.groups[q] != items.groups[a] for q, a in items.links) == 1  # only the row that reused a0
    # Without groups, each row is its own group: its two texts together.
    path.write_text("".join(json.dumps({"input": f"q{i}", "target": f"a{i}"}) + "\n" for i in range(12)))
    items = load_translation_texts(path)
    assert all(items.groups[q] == items.groups[a] for q, a in items.links) and len(set(items.groups)) == 12


def test_single_texts_and_their_errors(tmp_path):
    path = tmp_path / "texts.jsonl"
    path.write_text("".join(json.dumps({"text": f"text {i}"}) + "\n" for i in range(25)) + '{"text": "text 3"}\n')
    items = load_translation_texts(path)
    assert len(items) == 25 and items.links == [] and len(set(items.groups)) == 25
    path.write_text('{"text": "one"}\n{"text": ""}\n')
    with pytest.raises(PairFileError) as err:
        load_translation_texts(path)
    assert err.value.field == "text" and err.value.line == 2


def tiny_translation_run(**train):
    train = {"n_epochs": 2, "batch_size": 64, "device": "cpu", "tuning_budget": 1, **train}
    return RunConfig(arch="cube", mode="translation", model=dict(TINY_CUBE), train=TrainConfig(**train),
                     split=SplitConfig())


def test_translation_report_between_sizes(tmp_path):
    x, y, _ = planted(n=400, d_in=16, d_out=24, noise=0.02, seed=7)
    # Links: item i is the question of item i + 200 (one group each, so both sides stay together).
    links = np.stack([np.arange(200), np.arange(200, 400)], axis=1)
    groups = np.array([f"g{i % 200}" for i in range(400)])
    result = run_experiment(PairData(x, y, groups=groups, links=links), tiny_translation_run(), tmp_path, seeds=2)
    report = result.report
    assert set(report["methods"]) == {"cube", "linear", "mlp", "resmlp", "ridge", "lowrank", "procrustes", "mean"}
    for metrics in report["methods"].values():
        assert {"recall_at_1", "recall_at_10", "qa_recall_at_10", "recovery_ratio"} <= set(metrics)
    assert "cube" in report["intervals"] and "recovery_ratio" in report["intervals"]["cube"]
    t = report["translation"]
    assert t["start"] == "procrustes" and set(t["started_at_procrustes"]) == {"cube", "linear", "mlp", "resmlp"}
    assert t["test_links"] > 2 and 0 < t["native_qa_recall_at_10"] <= 1
    assert report["info"]["lowrank"]["rank"] >= 1
    # A planted map: the Procrustes start is near perfect, and the epoch-0 candidate keeps it so.
    assert report["methods"]["procrustes"]["recall_at_1"] > 0.95
    assert report["methods"]["cube"]["recall_at_1"] > 0.9
    assert "recovery" in (tmp_path / "report.md").read_text()
    assert json.loads((tmp_path / "report.json").read_text())["translation"] == t


def test_cli_text_translation_without_a_target_teacher_exits_2_naming_it(tmp_path, cube):
    (tmp_path / "texts.jsonl").write_text("".join(json.dumps({"text": f"text {i}"}) + "\n" for i in range(30)))
    status, _, err = cube("train", "--data", "texts.jsonl", "--out", "run", "--mode", "translation")
    assert status == 2 and "target_teacher" in err and "--target-teacher" in err
    status, _, err = cube("train", "--data", "texts.jsonl", "--out", "run", "--target-teacher", "mpnet")
    assert status == 2 and "target_teacher" in err and "translation" in err
    status, _, err = cube("train", "--data", "texts.jsonl", "--out", "run", "--mode", "translation",
                          "--target-teacher", "nosuch")
    assert status == 2 and "nosuch" in err
    assert not (tmp_path / "run").exists()


def test_cli_translation_of_embedding_pairs_needs_no_teacher(tmp_path, cube):
    x, y, _ = planted(n=300, d_in=12, d_out=20, noise=0.02, seed=9)
    save_pairs_npz(tmp_path / "spaces.npz", PairData(x, y))
    status, out, err = cube("train", "--data", "spaces.npz", "--out", "run", "--mode", "translation", "--arch", "linear",
                            "--set", "n_epochs=1", "--set", "tuning_budget=1")
    assert status == 0, err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["mode"] == "translation" and "lowrank" in report["methods"] and "procrustes" in report["methods"]
    assert "recovery_ratio" not in report["methods"]["linear"]  # no text pairs, no links
    assert "lowrank" in out
