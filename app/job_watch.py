"""`cube jobs watch`: a live progress bar (epoch, latest metrics, ETA) fed by `client.jobs.wait`."""
from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

# The metrics worth a glance while a job runs, by short label; the full set is in `cube jobs show`.
HEADLINE_METRICS = {"train_loss": "loss", "val_recall_at_10": "val_r@10", "val_mrr": "val_mrr"}
MIN_LOG_WIDTH = 160  # a log file or pipe has no width of its own; rich would assume 80 and cut ids and metrics


def metrics_text(metrics: dict[str, Any] | None) -> str:
    if not metrics:
        return ""
    shown = {label: metrics[k] for k, label in HEADLINE_METRICS.items() if isinstance(metrics.get(k), (int, float))} or \
        {k: v for k, v in list(metrics.items())[:3] if isinstance(v, (int, float))}
    return " ".join(f"{label}={value:.4g}" for label, value in shown.items())


def eta_text(job: dict[str, Any], now: float | None = None) -> str:
    finish = job.get("estimated_finish")
    if job.get("status") != "running" or not finish:
        return ""
    left = max(0, int(finish - (now or time.time())))
    return f"ETA {left // 3600:d}:{left % 3600 // 60:02d}:{left % 60:02d}"


def make_console(stderr: bool = False) -> Console:
    """A rich console; when it writes to a file or a pipe, wide enough for whole ids and metrics."""
    out = Console(stderr=stderr)
    if not out.is_terminal:
        out.width = max(out.width, MIN_LOG_WIDTH)
    return out


def watch(client: Any, job_id: str, console: Console, poll_interval: float = 1.0) -> dict[str, Any]:
    """Draw the job's progress until it finishes; the final job."""
    columns = (TextColumn("[bold]{task.fields[status]:<9}"), BarColumn(bar_width=30),
               TextColumn("epoch {task.completed:.0f}/{task.total:.0f}"), TextColumn("{task.fields[metrics]}"),
               TextColumn("{task.fields[eta]}"))
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(job_id, total=1, status="", metrics="", eta="")

        def update(job: dict[str, Any]) -> None:
            p = job["progress"]
            progress.update(task, total=max(1, p["n_epochs"]), completed=p["epoch"], status=job["status"],
                            metrics=metrics_text(job.get("metrics")), eta=eta_text(job))

        return client.jobs.wait(job_id, on_progress=update, poll_interval=poll_interval)
