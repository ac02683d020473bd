"""Human-readable forms of an evaluation report: a Markdown (and terminal) table and a PNG plot."""
from __future__ import annotations

from pathlib import Path
from typing import Any

COLUMNS = [("recall_at_1", "R@1"), ("recall_at_10", "R@10"), ("mrr", "MRR"), ("mean_cosine", "mean cos"),
           ("centered_cosine", "centred cos"), ("output_spread", "spread")]
ORDER = ["multi-head", "cube", "linear", "mlp", "resmlp", "pca", "ridge", "lowrank", "procrustes", "identity", "mean"]
# A translation report of text pairs also has each method's recovery ratio (cube.translation).
RECOVERY = ("recovery_ratio", "recovery")


def _cell(report: dict[str, Any], method: str, key: str) -> str:
    value = report["methods"][method][key]
    ci = report.get("intervals", {}).get(method, {}).get(key)
    return f"{value:.3f} ± {(ci[1] - ci[0]) / 2:.3f}" if ci else f"{value:.3f}"


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    names = sorted(report["methods"], key=lambda m: (ORDER.index(m) if m in ORDER else len(ORDER), m))
    columns = COLUMNS + ([RECOVERY] if all(RECOVERY[0] in m for m in report["methods"].values()) else [])
    rows = [["method"] + [title for _, title in columns]]
    for name in names:
        label = f"{name} (trained)" if name == report.get("main") else name
        rows.append([label] + [_cell(report, name, key) for key, _ in columns])
    return rows


def markdown_table(report: dict[str, Any]) -> str:
    rows = table_rows(report)
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def text_table(report: dict[str, Any]) -> str:
    rows = table_rows(report)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


def collapse_warnings(report: dict[str, Any]) -> list[str]:
    """One line per method whose predictions crowd together (output spread well below the targets')."""
    alarm = report.get("collapse_alarm") or {}
    return [f"Collapse alarm: {name}'s output spread is {report['methods'][name]['output_spread']:.2f} of the "
            f"targets' (below {alarm['threshold']}): its predictions crowd together, so retrieval suffers."
            for name in alarm.get("methods", [])]


def tuning_text(report: dict[str, Any]) -> str:
    """The tuning budget and what each trained method chose, on validation."""
    tuning = report.get("tuning")
    if not tuning:
        return ""
    rates = ", ".join(f"{lr:g}" for lr in tuning["learning_rates"])
    lines = [f"Every trained method had the same tuning budget: {tuning['budget']} learning rate(s) ({rates}), "
             f"each run stopping early on validation {tuning['monitor']}; chosen on the validation split only "
             "(first seed; further seeds use the chosen rate).", "",
             "| method | chosen learning rate | best epoch | validation score per learning rate |", "|---|---|---|---|"]
    for name, chosen in tuning["chosen"].items():
        key = f"val_{tuning['monitor']}"
        trials = ", ".join(f"{t['learning_rate']:g}: {t[key]:.3f}" for t in chosen["trials"])
        lines.append(f"| {name} | {chosen['learning_rate']:g} | {chosen['best_epoch']} | {trials} |")
    return "\n".join(lines) + "\n"


def write_markdown(report: dict[str, Any], path: str | Path) -> None:
    n = report["n"]
    seeds = report.get("seeds", 1)
    head = (f"# Held-out evaluation\n\n{n['train']} training, {n['val']} validation, {n['test']} test pairs. "
            f"Retrieval of each input's true target among all {n['test']} test targets (cosine). "
            + (f"Trainable methods: mean ± 95% interval over {seeds} seeds.\n\n" if seeds > 1 else "One seed.\n\n"))
    # Mean cosine means little on anisotropic embeddings: say what a constant output already scores.
    constant = next(iter(report["methods"].values())).get("constant_cosine")
    foot = ("" if constant is None else
            f"\nThe constant predictor (the mean training target) scores a mean cosine of {constant:.3f}; "
            "a method's mean cosine is informative only above it. Spread: per-dimension spread of the "
            "predictions relative to the targets' (near 0 = collapsed).\n")
    alarms = "".join(f"\n**{line}**\n" for line in collapse_warnings(report))
    tuning = tuning_text(report)
    Path(path).write_text(head + markdown_table(report) + "\n" + foot + alarms + ("\n" + tuning if tuning else ""))


def write_plot(history: list[dict[str, Any]], path: str | Path, title: str = "") -> None:
    """Train/validation loss and validation recall@10 per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [h["train_loss"] for h in history], label="train loss")
    ax1.plot(epochs, [h["val_loss"] for h in history], label="validation loss")
    ax1.set_xlabel("epoch")
    ax1.legend()
    ax2.plot(epochs, [h["val_recall_at_10"] for h in history], color="tab:green")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation recall@10")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
