"""The trainer: determinism, exact resume from a checkpoint, callbacks, early stopping, and how
batches reach the device."""
import shutil

import numpy as np
import pytest
import torch

from cube import StopTraining, TrainConfig, build_model, fit, predict
from cube.checkpoint import is_checkpoint, latest_checkpoint
from cube.trainer import batch_to, pins_host_batches

TINY_CUBE = {"grid": [2, 2, 3], "channels": 4, "hidden": 16, "steps": 2}
NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device here: the CUDA path is checked by bench/gpu_check.sh on a GPU machine")


def split(data):
    return (data.input[:900], data.target[:900]), (data.input[900:1050], data.target[900:1050])


def train_once(data, cfg, checkpoint_dir=None, callbacks=(), resume_from=None):
    torch.manual_seed(cfg.seed)
    model = build_model("cube", {"d_in": 16, "d_out": 16, **TINY_CUBE})
    train, val = split(data)
    result = fit(model, train, val, cfg, checkpoint_dir=checkpoint_dir, callbacks=callbacks, resume_from=resume_from)
    return model, result


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_same_seed_same_weights(synthetic):
    cfg = TrainConfig(n_epochs=2, batch_size=64, seed=3, early_stopping_patience=0)
    a, _ = train_once(synthetic, cfg)
    b, _ = train_once(synthetic, cfg)
    for k, v in weights(a).items():
        assert torch.equal(v, b.state_dict()[k]), k


class StopAfter:
    def __init__(self, epoch):
        self.epoch = epoch
        self.seen = []

    def on_epoch_end(self, report):
        self.seen.append(report.epoch)
        if report.epoch == self.epoch:
            raise StopTraining


def test_resume_equals_uninterrupted(synthetic, tmp_path):
    cfg = TrainConfig(n_epochs=4, batch_size=64, seed=1, early_stopping_patience=0)
    straight, straight_result = train_once(synthetic, cfg)

    interrupted, first = train_once(synthetic, cfg, checkpoint_dir=tmp_path, callbacks=[StopAfter(2)])
    assert first.cancelled and first.epochs_run == 2
    assert latest_checkpoint(tmp_path).name == "epoch-0002"

    resumed, second = train_once(synthetic, cfg, checkpoint_dir=tmp_path)
    assert second.resumed_from == 2 and second.epochs_run == 4
    for k, v in weights(straight).items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert [h["train_loss"] for h in second.history] == [h["train_loss"] for h in straight_result.history]


def test_resume_reports_where_it_resumed(synthetic, tmp_path):
    cfg = TrainConfig(n_epochs=3, batch_size=64, early_stopping_patience=0)
    train_once(synthetic, cfg, checkpoint_dir=tmp_path, callbacks=[StopAfter(1)])
    reports = []

    class Record:
        def on_epoch_end(self, report):
            reports.append(report)

    train_once(synthetic, cfg, checkpoint_dir=tmp_path, callbacks=[Record()])
    assert [r.epoch for r in reports] == [2, 3]
    assert reports[0].resumed_from == 1 and reports[1].resumed_from is None


class Record:
    def __init__(self):
        self.reports = []

    def on_epoch_end(self, report):
        assert report.checkpoint is None or is_checkpoint(report.checkpoint)  # whole when reported
        self.reports.append(report)


def test_every_checkpoint_written_and_deleted_is_reported(synthetic, tmp_path):
    cfg = TrainConfig(n_epochs=4, batch_size=64, early_stopping_patience=0)
    record = Record()
    train_once(synthetic, cfg, checkpoint_dir=tmp_path, callbacks=[record])
    written = [r.checkpoint for r in record.reports]
    removed = [p for r in record.reports for p in r.removed_checkpoints]
    assert [p.parent for p in written] == [tmp_path] * 4 and len(set(written)) == 4
    assert removed == written[:2]  # the trainer keeps the newest two
    kept = sorted(p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert kept == written[2:] and not any(p.exists() for p in removed)
    assert train_once(synthetic, cfg, callbacks=[record])[1].epochs_run == 4
    assert record.reports[-1].checkpoint is None and record.reports[-1].removed_checkpoints == ()


def test_resume_from_another_directorys_checkpoint(synthetic, tmp_path):
    """A new attempt works in its own directory and resumes from the checkpoint an earlier one reported."""
    cfg = TrainConfig(n_epochs=4, batch_size=64, seed=1, early_stopping_patience=0)
    straight, _ = train_once(synthetic, cfg)
    first, second = tmp_path / "attempt-1", tmp_path / "attempt-2"
    record = Record()
    train_once(synthetic, cfg, checkpoint_dir=first, callbacks=[record, StopAfter(2)])
    before = sorted(p.name for p in first.iterdir())
    resumed, result = train_once(synthetic, cfg, checkpoint_dir=second, resume_from=record.reports[-1].checkpoint)
    assert result.resumed_from == 2 and result.epochs_run == 4
    for k, v in weights(straight).items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert sorted(p.name for p in first.iterdir()) == before  # the earlier attempt's directory is untouched
    assert latest_checkpoint(second).name == "epoch-0004"


def test_a_torn_checkpoint_is_ignored(synthetic, tmp_path):
    """A crash mid-save leaves a temp directory; `latest` still points at the last complete one."""
    cfg = TrainConfig(n_epochs=2, batch_size=64, early_stopping_patience=0)
    train_once(synthetic, cfg, checkpoint_dir=tmp_path, callbacks=[StopAfter(1)])
    shutil.copytree(tmp_path / "epoch-0001", tmp_path / ".epoch-0002.tmp")
    (tmp_path / ".epoch-0002.tmp" / "model.safetensors").write_bytes(b"torn")
    _, result = train_once(synthetic, cfg, checkpoint_dir=tmp_path)
    assert result.resumed_from == 1 and result.epochs_run == 2


def test_callbacks_see_every_epoch_with_validation_metrics(synthetic):
    seen = []

    class Record:
        def on_epoch_end(self, report):
            seen.append(report)

    cfg = TrainConfig(n_epochs=3, batch_size=128, early_stopping_patience=0)
    train_once(synthetic, cfg, callbacks=[Record()])
    assert [r.epoch for r in seen] == [1, 2, 3]
    assert seen[-1].step == seen[-1].total_steps == 3 * 8
    assert set(seen[0].val) == {"loss", "recall_at_1", "recall_at_10", "mrr"}


def test_early_stopping_keeps_the_best_epoch(synthetic):
    # A learning rate far too high makes validation stop improving quickly.
    cfg = TrainConfig(n_epochs=30, batch_size=64, learning_rate=5.0, early_stopping_patience=2, grad_clip=0)
    model, result = train_once(synthetic, cfg)
    assert result.stopped_early and result.epochs_run < 30
    assert result.epochs_run - result.best_epoch == 2
    best = max(h["val_mrr"] for h in result.history)
    _, val = split(synthetic)
    from cube.metrics import retrieval_metrics

    assert retrieval_metrics(predict(model, val[0]), val[1])["mrr"] == pytest.approx(best, abs=1e-6)


def test_training_reduces_the_loss(synthetic):
    cfg = TrainConfig(n_epochs=5, batch_size=64, early_stopping_patience=0)
    _, result = train_once(synthetic, cfg)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_predict_returns_float32_rows(synthetic):
    model = build_model("linear", {"d_in": 16, "d_out": 16})
    out = predict(model, synthetic.input[:10])
    assert out.dtype == np.float32 and out.shape == (10, 16)


def test_divergence_is_an_error_not_a_best_epoch(synthetic):
    from cube.errors import TrainingDiverged

    cfg = TrainConfig(n_epochs=3, batch_size=64, learning_rate=1e30, grad_clip=0, loss="mse", warmup_steps=0)
    with pytest.raises(TrainingDiverged, match="learning_rate"):
        train_once(synthetic, cfg)


def test_another_runs_checkpoint_is_refused(synthetic, tmp_path):
    from cube.errors import CheckpointMismatch

    cfg = TrainConfig(n_epochs=3, batch_size=64, early_stopping_patience=0)
    torch.manual_seed(0)
    model = build_model("cube", {"d_in": 16, "d_out": 16, **TINY_CUBE})
    train, val = split(synthetic)
    fit(model, train, val, cfg, checkpoint_dir=tmp_path, callbacks=[StopAfter(1)], fingerprint="run-a")
    with pytest.raises(CheckpointMismatch, match="different run"):
        fit(model, train, val, cfg, checkpoint_dir=tmp_path, fingerprint="run-b")
    assert fit(model, train, val, cfg, checkpoint_dir=tmp_path, fingerprint="run-a").resumed_from == 1


def test_only_cuda_batches_are_pinned_and_copied_without_blocking():
    assert not pins_host_batches(torch.device("cpu"))
    assert pins_host_batches(torch.device("cuda")) and pins_host_batches(torch.device("cuda:1"))


def test_a_batch_is_the_indexed_rows_for_any_index_shape():
    source = torch.randn(50, 8)
    for idx in (torch.tensor([3, 0, 49, 3]), torch.randint(0, 50, (6, 4))):  # a batch; hard negatives (B, k)
        batch = batch_to(torch.device("cpu"), source, idx)
        assert batch.shape == (*idx.shape, 8) and torch.equal(batch, source[idx])


@NEEDS_CUDA
def test_a_cuda_batch_is_the_indexed_rows():
    source, idx = torch.randn(50, 8), torch.randint(0, 50, (6, 4))
    batch = batch_to(torch.device("cuda"), source, idx)
    assert batch.device.type == "cuda" and torch.equal(batch.cpu(), source[idx])


@NEEDS_CUDA
def test_fit_on_cuda_with_bf16_autocast_and_hard_negatives(synthetic):
    cfg = TrainConfig(n_epochs=2, batch_size=64, device="cuda", hard_negatives=4, early_stopping_patience=0)
    model, result = train_once(synthetic, cfg)
    assert result.device == "cuda" and result.epochs_run == 2 and torch.backends.cudnn.benchmark
    assert all(np.isfinite(h["train_loss"]) for h in result.history)
    assert next(model.parameters()).device.type == "cuda"
    assert predict(model, synthetic.input[:10]).shape == (10, 16)
