"""More pairs than the ones scored: several files with their sources and weights, and a report that
scores only the question rows of held-out groups (eval_filter=question) on the same split as a file
of just those rows."""
import json

import numpy as np
import pytest
import torch

from cube.config import ConfigError, RunConfig, SplitConfig, TrainConfig
from cube.experiment import run_experiment
from cube.pairs import PairData, PairFileError, concat_pairs, load_pairs_npz, save_pairs_npz, split_pairs
from cube.trainer import _batches


def chats(n_groups=60, seed=0, dim=8):
    """Conversations of 1-6 turn pairs; about a third of the pairs are question turns."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 7, n_groups)
    groups = np.repeat([f"chat{i}" for i in range(n_groups)], sizes)
    n = len(groups)
    question = rng.random(n) < 0.35
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return PairData(x, x + 0.1 * rng.standard_normal((n, dim)).astype(np.float32), groups, None, question)


def test_question_split_equals_the_split_of_the_question_rows_alone():
    data = chats()
    cfg = SplitConfig(eval_filter="question")
    split = split_pairs(data, cfg)
    alone = data.subset(np.flatnonzero(data.question))
    reference = split_pairs(alone, SplitConfig())
    for name in ("val", "test"):
        got = getattr(split, name)
        assert data.question[got].all()
        assert np.array_equal(data.input[got], alone.input[getattr(reference, name)])
    held_out = set(data.groups[split.val]) | set(data.groups[split.test])
    assert not held_out & set(data.groups[split.train])
    # Training gets every row of the other groups, question turns or not; nothing of a held-out chat.
    assert np.array_equal(split.train, np.flatnonzero(~np.isin(data.groups, list(held_out))))
    assert (~data.question[split.train]).any()


def test_question_filter_needs_the_field():
    data = chats()
    data.question = None
    with pytest.raises(PairFileError, match="question") as exc:
        split_pairs(data, SplitConfig(eval_filter="question"))
    assert exc.value.field == "question"
    with pytest.raises(ConfigError, match="eval_filter"):
        SplitConfig(eval_filter="questions").validate()


def test_concat_keeps_sources_shares_groups_and_drops_repeats(tmp_path):
    every = chats(seed=1)
    questions = every.subset(np.flatnonzero(every.question))
    questions.question = None  # a file without the field: its rows do not count as question turns
    merged = concat_pairs([questions, every])
    assert len(merged) == len(every)  # the question rows of `every` repeat the first file's and are dropped
    assert (merged.source == 0).sum() == len(questions) and (merged.source == 1).sum() == (~every.question).sum()
    # The first file's rows are marked by their copies in the second; the second keeps only the others.
    assert merged.question[merged.source == 0].all() and not merged.question[merged.source == 1].any()
    assert set(merged.groups) == set(every.groups)
    save_pairs_npz(tmp_path / "p.npz", every)
    assert np.array_equal(load_pairs_npz(tmp_path / "p.npz").question, every.question)
    # A repeat inside one file is that file's business (its loader kept it): only later files lose theirs.
    twice = questions.subset(np.r_[np.arange(len(questions)), 0])
    again = concat_pairs([twice, every])
    assert (again.source == 0).sum() == len(questions) + 1 and (again.source == 1).sum() == (~every.question).sum()
    with pytest.raises(PairFileError, match="different dimensions"):
        concat_pairs([every, chats(dim=4)])


def test_weighted_batches_draw_in_proportion_and_weight_zero_never():
    weights = torch.tensor([0.0] * 50 + [1.0] * 25 + [3.0] * 25, dtype=torch.float64)
    drawn = torch.cat(list(_batches(100, 16, seed=0, epoch=0, weights=weights)))
    assert len(drawn) == 100 and (drawn >= 50).all()
    counts = torch.cat([torch.cat(list(_batches(100, 16, seed=0, epoch=e, weights=weights))) for e in range(40)])
    share = (counts >= 75).float().mean().item()
    assert share == pytest.approx(0.75, abs=0.03)
    again = torch.cat(list(_batches(100, 16, seed=0, epoch=0, weights=weights)))
    assert torch.equal(drawn, again)  # a resumed run sees the same batches


def test_report_scores_question_rows_and_records_sources_and_weights(tmp_path):
    every = chats(n_groups=120, seed=2)
    questions = every.subset(np.flatnonzero(every.question))
    data = concat_pairs([questions, every])
    run = RunConfig(arch="linear", train=TrainConfig(n_epochs=2, batch_size=32, device="cpu", tuning_budget=1,
                                                     source_weights=[1.0, 0.5]),
                    split=SplitConfig(eval_filter="question"))
    report = run_experiment(data, run, tmp_path).report
    reference = split_pairs(questions, SplitConfig())
    assert report["n"]["test"] == len(reference.test) and report["n"]["val"] == len(reference.val)
    assert report["data"]["eval_filter"] == "question" and report["data"]["source_weights"] == [1.0, 0.5]
    assert report["data"]["pairs_per_source"] == [len(questions), len(every) - len(questions)]
    assert report["n"]["train"] == sum(report["data"]["train_pairs_per_source"]) > len(reference.train)
    assert json.loads((tmp_path / "report.json").read_text())["split"]["eval_filter"] == "question"
    with pytest.raises(ConfigError, match="2 file"):
        run_experiment(data, RunConfig(arch="linear", train=TrainConfig(n_epochs=1, tuning_budget=1,
                                                                        source_weights=[1.0])), tmp_path)
