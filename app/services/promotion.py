"""Safe promotion: a new version takes the model's `default` alias (what callers who name no version
or alias are served) only when its held-out report passes the job's gate.

The gate, on the report's held-out (test) split, for the policy's `metric` (MRR unless the job says):

    the trained model's score >= the best baseline's score - max_loss_to_baseline
    and, when min_score is given, the trained model's score >= min_score

"Baselines" are every other method in the report (identity and procrustes where input and target
share a space, ridge, mean, and the trained linear/mlp/resmlp); the best of them is the bar. The
policy's `mode` says what the verdict does: `gate` moves `default` only on a pass, `always` moves it
regardless (the verdict is still recorded), `manual` never moves it (only PUT .../aliases/default does).
The verdict (its inputs, reasons and whether `default` moved) is stored on the version and in the
job's events.
"""
from __future__ import annotations

import time
from typing import Any

from sqlalchemy.orm import Session

from app.models import ModelAlias, ModelVersion
from app.webhooks import outbox

DEFAULT_ALIAS = "default"
APPROVED, REJECTED = "approved", "rejected"
# MRR uses every rank, so it moves smoothly on small held-out splits where recall@10 moves in steps of
# 1/n_test; it is also what validation monitors and ridge's lambda is chosen on.
DEFAULT_POLICY: dict[str, Any] = {"mode": "gate", "metric": "mrr", "max_loss_to_baseline": 0.01, "min_score": None}


def policy_of(stored: dict[str, Any] | None) -> dict[str, Any]:
    """The job's policy with every field filled (jobs created before gates existed have none)."""
    return {**DEFAULT_POLICY, **(stored or {})}


def judge(evaluation: dict[str, Any], policy: dict[str, Any]) -> dict[str, Any]:
    """The gate's inputs and verdict for one held-out report (no side effects)."""
    metric, margin, floor = policy["metric"], policy["max_loss_to_baseline"], policy["min_score"]
    main = evaluation.get("main")
    methods = evaluation.get("methods") or {}
    score = (methods.get(main) or {}).get(metric)
    baselines = {name: m[metric] for name, m in methods.items() if name != main and m.get(metric) is not None}
    best = max(baselines, key=baselines.__getitem__) if baselines else None
    reasons = []
    if score is None:
        reasons.append(f"the held-out report has no {metric} for the trained model ({main})")
    else:
        if best is not None and score < baselines[best] - margin:
            reasons.append(f"held-out {metric} {score:.4f} loses to the {best} baseline's {baselines[best]:.4f} by "
                           f"{baselines[best] - score:.4f}, more than the allowed {margin:g}")
        if floor is not None and score < floor:
            reasons.append(f"held-out {metric} {score:.4f} is below the floor {floor:g}")
    return {
        "policy": dict(policy),
        "metric": metric,
        "score": score,
        "baselines": baselines,
        "best_baseline": None if best is None else {"method": best, "score": baselines[best]},
        "identity": baselines.get("identity"),  # absent when input and target spaces differ
        "passed": not reasons,
        "reasons": reasons,
    }


def promote(session: Session, version: ModelVersion, policy: dict[str, Any]) -> dict[str, Any]:
    """Judge a just-registered version inside the registering transaction: set its status and its
    `promotion` record, and move `default` to it when the policy says so. Returns the record."""
    verdict = judge(version.evaluation, policy)
    mode = policy["mode"]
    move = mode == "always" or (mode == "gate" and verdict["passed"])
    current = session.get(ModelAlias, (version.model_name, DEFAULT_ALIAS))
    previous = session.get(ModelVersion, current.version_id).version if current is not None else None
    if move:
        if current is None:
            session.add(ModelAlias(model_name=version.model_name, alias=DEFAULT_ALIAS, version_id=version.id,
                                   updated_at=time.time()))
        else:
            current.version_id, current.updated_at = version.id, time.time()
        outbox.alias_moved(session, version.model_name, DEFAULT_ALIAS)
    record = {**verdict, "promoted": move, "previous_default": previous, "summary": summary(version, verdict, mode, move, previous)}
    version.status = APPROVED if verdict["passed"] else REJECTED
    version.promotion = record
    session.flush()
    return record


def summary(version: ModelVersion, verdict: dict[str, Any], mode: str, moved: bool, previous: int | None) -> str:
    """One sentence: what the gate said and what happened to `default`."""
    name = f"version {version.version}"
    if verdict["passed"]:
        best = verdict["best_baseline"]
        said = (f"{name} passed its gate (held-out {verdict['metric']} {verdict['score']:.4f}"
                + (f", best baseline {best['method']} {best['score']:.4f})" if best else ")"))
    else:
        said = f"{name} failed its gate: " + "; ".join(verdict["reasons"])
    kept = "no default yet" if previous is None else f"default stays on version {previous}"
    if moved:
        done = "; default moved to it" + (" (promotion mode always)" if not verdict["passed"] else "")
    elif mode == "manual":
        done = f"; not promoted (promotion mode manual; {kept})"
    else:
        done = f"; not promoted ({kept})"
    return said + done
