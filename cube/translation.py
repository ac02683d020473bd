"""Translation between teachers: one text, two embedding models. The input is teacher A's vector of a
text, the target teacher B's vector of the same text; a trained map then moves a vector database
built with A into B's space without re-embedding its texts.

A text file for translation holds single texts (`{"text": ...}` per JSONL line, or a CSV column
`text`) or text pairs (`input`, `target`, as `cube.textpairs` reads them: a question and its answer).
Every distinct text is one item, in the `group` of the row it first appears in (a row without a
group is its own), so the texts of one pair row stay on one side of the split unless one of them
appeared earlier elsewhere. Each pair row becomes a `link` (question item, answer item): the report's
recovery ratio is question -> answer R@10 with translated questions against natively encoded
answers, divided by the same with native questions, over the links inside the test split.

Every trained method with a linear path (the cube's skip, the linear map, the MLP's skip, the residual
MLP's projection) starts at the Procrustes map fitted on the training split, and its start is its
epoch-0 candidate for early stopping: the comparison is on an equal footing, and training can only
keep or improve the start's validation score.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from cube.baselines import Identity, LowRankAffine, MeanTarget, Procrustes, Ridge
from cube.metrics import evaluate_predictions, retrieval_metrics
from cube.pairs import MIN_PAIRS, PairData, PairFileError, validate_pairs
from cube.textpairs import TEXT_FORMATS, decode_utf8, infer_format, jsonl_objects, load_text_pairs

# Model options a translation run gives an architecture: the residual MLP gets a projection even
# between spaces of one size, so that it too has a linear path to start at Procrustes.
MODEL_DEFAULTS = {"resmlp": {"project": True}}


@dataclass
class TranslationTexts:
    texts: list[str]           # distinct texts, in order of first appearance
    groups: list[str]          # each text's split group
    links: list[tuple[int, int]]  # (question text, answer text) per pair row; empty for single texts

    def __len__(self) -> int:
        return len(self.texts)


def _single_text(value, line: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PairFileError(f"line {line}: 'text' must be a non-empty string", field="text", line=line)
    return value


def _first_row_has_text(raw: str, fmt: str) -> bool:
    if fmt == "csv":
        return "text" in (next(csv.reader(io.StringIO(raw)), None) or [])
    return next((("text" in obj) for _, obj in jsonl_objects(raw)), False)


def load_translation_texts(path: str | Path, *, fmt: str | None = None, min_texts: int = MIN_PAIRS) -> TranslationTexts:
    """The distinct texts of a single-text or text-pair file with their groups and links."""
    fmt = fmt or infer_format(path, TEXT_FORMATS)
    try:
        raw = decode_utf8(Path(path).read_bytes())
    except OSError as exc:
        raise PairFileError(f"cannot read {path}: {exc.strerror}", field="file") from None
    if not _first_row_has_text(raw, fmt):
        pairs = load_text_pairs(path, fmt=fmt, min_pairs=1)
        given = pairs.groups or [f"row:{i}" for i in range(len(pairs))]
        return text_items([(x, y) for x, y in zip(pairs.inputs, pairs.targets)], given, min_texts)
    rows = jsonl_objects(raw) if fmt == "jsonl" else enumerate(csv.DictReader(io.StringIO(raw, newline="")), start=2)
    texts, groups = [], []
    for line, row in rows:
        texts.append(_single_text(row.get("text"), line))
        group = row.get("group")
        groups.append(f"row:{len(texts)}" if group in (None, "") else str(group))
    return text_items([(t,) for t in texts], groups, min_texts)


def text_items(rows: list[tuple[str, ...]], row_groups: list[str], min_texts: int = MIN_PAIRS) -> TranslationTexts:
    """Distinct texts, each in the group of the first row it appears in. A text is one item, so it is
    never on two sides of the split; joining every group that shares a text instead would chain
    conversations through common lines ("how are you?") into one part a quarter of the data. A pair
    whose text first appeared in another group may then straddle the split: the recovery ratio
    counts only the links with both texts in the test split."""
    index: dict[str, int] = {}
    groups: list[str] = []
    links = []
    for row, group in zip(rows, row_groups):
        ids = []
        for text in row:
            if text not in index:
                index[text] = len(groups)
                groups.append(group)
            ids.append(index[text])
        if len(ids) == 2 and ids[0] != ids[1]:
            links.append((ids[0], ids[1]))
    if len(index) < min_texts:
        raise PairFileError(f"need at least {min_texts} distinct texts, found {len(index)}", field="text")
    return TranslationTexts(list(index), groups, links)


def encode_translation(items: TranslationTexts, teacher, target_teacher, cache_dir: str | Path, *,
                       batch_size: int = 64, min_pairs: int = MIN_PAIRS,
                       progress: Callable[[int, int], None] | None = None) -> PairData:
    """Each text's vector by `teacher` (input) and by `target_teacher` (target), through the cache."""
    from cube.encoding import EmbeddingCache, encode_texts

    cache = EmbeddingCache(cache_dir)
    try:
        x = encode_texts(items.texts, teacher, cache, batch_size=batch_size, progress=progress)
        y = encode_texts(items.texts, target_teacher, cache, batch_size=batch_size, progress=progress)
    finally:
        cache.close()
    links = np.array(items.links, dtype=np.int64).reshape(-1, 2) if items.links else None
    return validate_pairs(x, y, groups=np.array(items.groups), links=links, min_pairs=min_pairs)


def fixed_baselines(same_space: bool) -> list:
    """The closed-form methods of a translation report (identity only between spaces of one size)."""
    return [MeanTarget(), Ridge(), LowRankAffine(), Procrustes()] + ([Identity()] if same_space else [])


class ProcrustesStart:
    """build_model for a translation: every model with a linear path starts at the Procrustes map of
    the training pairs; `started` names the architectures that did."""

    def __init__(self, train: tuple[np.ndarray, np.ndarray]):
        self.start = Procrustes().fit(train, train)
        self.started: list[str] = []

    def __call__(self, arch: str, config: dict) -> nn.Module:
        from cube.models import build_model

        model = build_model(arch, config)
        if start_at(model, self.start) and arch not in self.started:
            self.started.append(arch)
        return model


def start_at(model: nn.Module, start: Procrustes) -> bool:
    """Set the model's linear path to the fitted Procrustes map (y = my + (x - mx) W) and zero the MLP
    branch added to it, so the model starts as exactly that map. False if the model has no linear path.
    The cube's automaton adds nothing yet (its cell rule's last layer starts at zero); its read-out is
    left as it is, since zeroing it too would leave both without a gradient."""
    from cube.models import linear_path

    path = linear_path(model)
    if path is None:
        return False
    w = torch.as_tensor(start.w.T, dtype=torch.float32)  # nn.Linear stores (d_out, d_in)
    b = torch.as_tensor(start.my - start.mx @ start.w, dtype=torch.float32)
    branch = getattr(model, "out", None)  # the MLP's and the residual MLP's added branch
    with torch.no_grad():
        path.weight.copy_(w)
        if branch is not None:
            branch.weight.zero_()
            branch.bias.zero_()
        # The residual MLP's projection has no bias: the offset goes to the zeroed branch.
        (path.bias if path.bias is not None else branch.bias).copy_(b)
    return True


class Recovery:
    """The recovery ratio on the test split's links: question -> answer R@10 with translated questions
    against the answers' native target vectors, over the same with the questions' native vectors."""

    def __init__(self, te: PairData):
        self.links = 0 if te.links is None else len(te.links)
        if self.links < 2:  # no pairs (single texts, or vectors given as such): nothing to recover
            return
        self.questions = te.links[:, 0]
        self.corpus = te.target[te.links[:, 1]]
        self.native = retrieval_metrics(te.target[self.questions], self.corpus)["recall_at_10"]

    def __call__(self, pred: np.ndarray) -> dict[str, float]:
        if self.links < 2:
            return {}
        translated = retrieval_metrics(pred[self.questions], self.corpus)["recall_at_10"]
        return {"qa_recall_at_10": translated, "recovery_ratio": translated / self.native if self.native > 0 else 0.0}


def judge(te: PairData, target_mean: np.ndarray) -> Callable[[np.ndarray], dict[str, float]]:
    """Every metric of a translation report for one method's test predictions."""
    recovered = Recovery(te)
    return lambda pred: {**evaluate_predictions(pred, te.target, target_mean), **recovered(pred)}


def summary(te: PairData, started: list[str], start_candidate: bool) -> dict:
    """What the report says about the translation run beside the table."""
    recovered = Recovery(te)
    out = {"start": "procrustes", "started_at_procrustes": started, "epoch_0_candidate": start_candidate}
    if recovered.links >= 2:
        out.update(test_links=recovered.links, native_qa_recall_at_10=recovered.native)
    return out
