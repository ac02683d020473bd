"""A trained model judged on a foreign held-out set (every pair of it), beside the baselines that can
honestly be shown there.

The metrics are the training report's (`cube.metrics.evaluate_predictions`): retrieval of each
input's own target among all the set's targets, cosines, spread. Baselines:

    identity     needs no fitting: shown whenever input and target have the same size
    mean, ridge  closed-form, refitted on the model's own training split (ridge's lambda on its
    procrustes   validation split), exactly as the training report fitted them: the same data and
                 the same deterministic fit give the same baseline, now scored on the new set
    linear, mlp, resmlp
                 not shown: they were trained (and tuned) next to the model and their weights were not
                 kept; retraining them here would be a new experiment, not the report's baselines

An autoencoder (`code_size` given) is shown beside PCA at its code size and the mean, refitted the
same way; identity, ridge and Procrustes have no bottleneck, so they are not baselines for it.

Without the training pairs (a deleted dataset) only identity is shown, and the centred cosine is
centred on the held-out targets' own mean instead of the training targets'.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from cube.autoencoder import PCA
from cube.baselines import Identity, MeanTarget, Procrustes, Ridge
from cube.metrics import COLLAPSE_SPREAD, collapsed, evaluate_predictions
from cube.pairs import PairData

TRAINED_BASELINES = ("linear", "mlp", "resmlp")
NOT_KEPT = "trained next to the model; its weights were not kept, so it cannot be scored on other data"


def evaluate_held_out(predict, main: str, held_out: PairData,
                      train: tuple[np.ndarray, np.ndarray] | None,
                      val: tuple[np.ndarray, np.ndarray] | None, code_size: int | None = None) -> dict[str, Any]:
    """`predict(x) -> y` is the model; `train`/`val` its own training and validation pairs (None when
    they are gone). Returns a report with the training report's keys (`main`, `methods`, `n`)."""
    same_space = held_out.dim_in == held_out.dim_out
    if train is not None:
        centre, centred_on = train[1].astype(np.float64).mean(axis=0), "training_targets"
    else:
        centre, centred_on = held_out.target.astype(np.float64).mean(axis=0), "held_out_targets"

    def judge(pred: np.ndarray) -> dict[str, float]:
        return evaluate_predictions(pred, held_out.target, centre)

    methods = {main: judge(predict(held_out.input))}
    not_shown: dict[str, str] = {name: NOT_KEPT for name in TRAINED_BASELINES if name != main}
    if same_space and not code_size:
        methods["identity"] = judge(Identity().predict(held_out.input))
    fitted = ([MeanTarget(), PCA(code_size)] if code_size else
              [MeanTarget(), Ridge()] + ([Procrustes()] if same_space else []))
    for baseline in fitted:
        if train is None:
            not_shown[baseline.name] = "fitted on the model's training pairs, which are no longer stored"
            continue
        baseline.fit(train, val)
        methods[baseline.name] = judge(baseline.predict(held_out.input))
    return {
        "n": {"test": len(held_out)},
        "main": main,
        "methods": methods,
        "baselines_fitted_on": "the model's own training split" if train is not None else None,
        "not_shown": not_shown,
        "centered_on": centred_on,
        "collapse_alarm": {"threshold": COLLAPSE_SPREAD, "methods": collapsed(methods)},
    }
