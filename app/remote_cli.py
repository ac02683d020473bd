"""`cube datasets|jobs|models` and `cube transform --url`: the CLI for a running service, built on
the Python client (cube_client), so it needs no torch and no database.

    cube datasets upload|list|show|delete      cube jobs create|list|show|watch|cancel
    cube models list|show|alias                cube transform --url URL --model NAME --input F --output F

Server: --url or $CUBE_URL (default http://127.0.0.1:8000); key: --api-key or $CUBE_API_KEY.
--json prints the service's JSON for scripts. Exit status: 0 ok; 1 the server refused or failed
(the message names its code and param), or a watched job failed or was cancelled; 2 usage errors.

The command tree stays argparse, like the offline and admin commands it sits beside (they are
mounted from cube.commands): typer would mean rewriting those or mixing two parsers in one tree,
for no gain in what users see. rich draws the tables and the progress bars.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from app.job_watch import make_console
from cube.commands import UsageError, parse_value

TERMINAL_OK = "succeeded"


def remote_options() -> argparse.ArgumentParser:
    """--url, --api-key and --json, shared by every remote command."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--url", default=None, help="the service (default: $CUBE_URL or http://127.0.0.1:8000)")
    p.add_argument("--api-key", default=None, help="API key (default: $CUBE_API_KEY)")
    p.add_argument("--json", action="store_true", help="print the service's JSON (for scripts)")
    return p


def open_client(args: argparse.Namespace):
    from cube_client import Client

    return Client(args.url, api_key=args.api_key)


def json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} is not valid JSON: {exc}") from None


def key_values(items: list[str] | None, what: str) -> dict[str, Any]:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise UsageError(f"{what} expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key] = parse_value(value)
    return out


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def emit(args: argparse.Namespace, value: Any, render: Callable[[], Any]) -> int:
    """The service's JSON with --json, else the human rendering."""
    if args.json:
        print_json(value)
    else:
        render()
    return 0


def table(rows: list[dict[str, Any]], columns: list[tuple[str, Callable[[dict], Any]]], console: Console) -> None:
    t = Table(box=None, header_style="bold")
    for name, _ in columns:
        t.add_column(name, overflow="fold")  # ids are for copying: wrapped when narrow, never cut short
    for row in rows:
        t.add_row(*["" if (v := get(row)) is None else str(v) for _, get in columns])
    console.print(t)


def fields(record: dict[str, Any], console: Console, keys: list[str] | None = None) -> None:
    t = Table(box=None, show_header=False)
    for key in keys or list(record):
        value = record.get(key)
        t.add_row(f"[bold]{key}", json.dumps(value) if isinstance(value, (dict, list)) else str(value))
    console.print(t)


# ---- datasets

DATASET_COLUMNS = [("id", lambda d: d["id"]), ("name", lambda d: d["name"]), ("kind", lambda d: d["kind"]),
                   ("pairs", lambda d: d["num_pairs"]), ("dims", lambda d: f"{d['dim_in']}->{d['dim_out']}"),
                   ("status", lambda d: d["status"])]


def cmd_datasets(args: argparse.Namespace, client, console: Console) -> int:
    if args.action == "upload":
        metadata = json_arg(args.metadata, "--metadata")
        if args.json:
            ds = client.datasets.upload(args.path, kind=args.kind, name=args.name, teacher=args.teacher, metadata=metadata,
                                        target_teacher=args.target_teacher)
        else:
            with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                          TransferSpeedColumn(), console=make_console(stderr=True)) as bar:
                task = bar.add_task(f"uploading {args.path}", total=None)
                ds = client.datasets.upload(args.path, kind=args.kind, name=args.name, teacher=args.teacher,
                                            metadata=metadata, target_teacher=args.target_teacher,
                                            on_progress=lambda sent, total: bar.update(task, completed=sent, total=total))
        return show(args, ds, console)
    if args.action == "list":
        page = client.datasets.list(after=args.after, limit=args.limit)
        return emit(args, page, lambda: table(page["data"], DATASET_COLUMNS, console))
    if args.action == "show":
        return show(args, client.datasets.get(args.id), console)
    return emit(args, client.datasets.delete(args.id), lambda: console.print(f"deleted {args.id}"))


def show(args: argparse.Namespace, record: dict[str, Any], console: Console) -> int:
    return emit(args, record, lambda: fields(record, console))


# ---- jobs

JOB_COLUMNS = [("id", lambda j: j["id"]), ("model", lambda j: j["model"]), ("status", lambda j: j["status"]),
               ("epoch", lambda j: f"{j['progress']['epoch']}/{j['progress']['n_epochs']}"),
               ("dataset", lambda j: j["dataset_id"]), ("version", lambda j: j.get("model_version_id"))]


def cmd_jobs(args: argparse.Namespace, client, console: Console) -> int:
    if args.action == "create":
        architecture = json_arg(args.architecture, "--architecture") or {}
        if args.arch:
            architecture["kind"] = args.arch
        body = {"mode": args.mode, "code_size": args.code_size, "seed": args.seed, "device": args.device,
                "validation": json_arg(args.validation, "--validation"), "metadata": json_arg(args.metadata, "--metadata")}
        job = client.jobs.create(dataset_id=args.dataset, model=args.model, architecture=architecture or None,
                                 hyperparameters=key_values(args.set, "--set") or None,
                                 **{k: v for k, v in body.items() if v is not None})
        if args.watch:
            return finish(args, watched(args, client, job["id"], console), console)
        return show(args, job, console)
    if args.action == "list":
        page = client.jobs.list(status=args.status, after=args.after, limit=args.limit,
                                **key_values(args.filter, "--filter"))
        return emit(args, page, lambda: table(page["data"], JOB_COLUMNS, console))
    if args.action == "show":
        return show(args, client.jobs.get(args.id), console)
    if args.action == "cancel":
        return show(args, client.jobs.cancel(args.id), console)
    return finish(args, watched(args, client, args.id, console), console)


def watched(args: argparse.Namespace, client, job_id: str, console: Console) -> dict[str, Any]:
    from app.job_watch import watch

    if args.json:
        return client.jobs.wait(job_id, poll_interval=args.poll_interval)
    return watch(client, job_id, make_console(stderr=True), poll_interval=args.poll_interval)


def finish(args: argparse.Namespace, job: dict[str, Any], console: Console) -> int:
    """The watched job's outcome; exit 1 unless it succeeded."""
    if args.json:
        print_json(job)
    elif job["status"] == TERMINAL_OK:
        console.print(f"job {job['id']} succeeded: model {job['model']} version {job['model_version_id']}")
    else:
        error = job.get("error") or {}
        why = f": {error.get('code')}: {error.get('message')}" if error else ""
        print(f"error: job {job['id']} {job['status']}{why}", file=sys.stderr)
    return 0 if job["status"] == TERMINAL_OK else 1


# ---- models

MODEL_COLUMNS = [("name", lambda m: m["id"]), ("latest", lambda m: m.get("latest_version")),
                 ("aliases", lambda m: " ".join(f"{a}->v{v}" for a, v in sorted((m.get("aliases") or {}).items())))]
VERSION_COLUMNS = [("version", lambda v: v["version"]), ("status", lambda v: v["status"]), ("arch", lambda v: v["arch"]),
                   ("dims", lambda v: f"{v['dim_in']}->{v['dim_out']}"), ("teacher", lambda v: v.get("teacher")),
                   ("aliases", lambda v: " ".join(v.get("aliases") or [])), ("job", lambda v: v["source_job_id"])]


def cmd_models(args: argparse.Namespace, client, console: Console) -> int:
    if args.action == "list":
        page = client.models.list(after=args.after, limit=args.limit)
        return emit(args, page, lambda: table(page["data"], MODEL_COLUMNS, console))
    if args.action == "show":
        if args.version is not None:
            return show(args, client.models.version(args.name, args.version), console)
        model = client.models.get(args.name)

        def render() -> None:
            console.print(f"[bold]{model['id']}[/bold] (latest version {model.get('latest_version')})")
            table(model.get("versions") or [], VERSION_COLUMNS, console)
        return emit(args, model, render)
    if args.delete:
        return emit(args, client.models.delete_alias(args.name, args.alias),
                    lambda: console.print(f"removed {args.name}@{args.alias}"))
    if args.version is None:
        raise UsageError("models alias NAME ALIAS VERSION, or --delete to remove the alias")
    moved = client.models.set_alias(args.name, args.alias, args.version)
    return emit(args, moved, lambda: console.print(f"{args.name}@{args.alias} -> version {moved['version']}"))


# ---- transform

def cmd_transform_remote(args: argparse.Namespace, client, console: Console) -> int:
    from app.vector_files import VectorFileError, read_inputs, write_outputs

    try:
        inputs = read_inputs(args.input, args.key)
    except VectorFileError as exc:
        raise UsageError(str(exc)) from None
    y = client.transform(args.model, inputs, version=args.version, alias=args.alias, normalize=args.normalize,
                         output="code" if args.code else None, input_kind="code" if args.from_code else None,
                         target_space=args.target_space)
    try:
        write_outputs(args.output, y)
    except VectorFileError as exc:
        raise UsageError(str(exc)) from None
    summary = {"model": args.model, "vectors": int(y.shape[0]), "dim": int(y.shape[1]), "output": args.output}
    return emit(args, summary, lambda: console.print(f"wrote {y.shape[0]} vectors of {y.shape[1]} dimensions to {args.output}"))


def run_remote(handler: Callable[[argparse.Namespace, Any, Console], int]) -> Callable[[argparse.Namespace], int]:
    """A remote command: the client opened from the options, and a refusal as one line, exit 1."""
    def run(args: argparse.Namespace) -> int:
        from cube_client import CubeError

        try:
            with open_client(args) as client:
                return handler(args, client, make_console())
        except CubeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except FileNotFoundError as exc:
            raise UsageError(str(exc)) from None
    return run


def add_remote_commands(sub: argparse._SubParsersAction) -> None:
    common = remote_options()

    def paging(p: argparse.ArgumentParser) -> None:
        p.add_argument("--limit", type=int, default=None, help="at most this many (server default 20, max 100)")
        p.add_argument("--after", default=None, help="the page after this id")

    p = sub.add_parser("datasets", help="datasets on a running service: upload, list, show, delete")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("upload", parents=[common], help="upload a pair file (NPZ, Parquet, JSONL, CSV)")
    a.add_argument("path")
    a.add_argument("--kind", choices=["embedding_pairs", "text_pairs"], help="default: guessed from the file")
    a.add_argument("--name")
    a.add_argument("--teacher", help="text pairs: the teacher that encodes them (server default: minilm)")
    a.add_argument("--target-teacher", help="texts for translation: the teacher whose space a model maps them into")
    a.add_argument("--metadata", help="a JSON object kept with the dataset")
    paging(actions.add_parser("list", parents=[common], help="the newest datasets"))
    for action in ("show", "delete"):
        actions.add_parser(action, parents=[common], help=f"{action} one dataset").add_argument("id")
    p.set_defaults(func=run_remote(cmd_datasets))

    p = sub.add_parser("jobs", help="training jobs on a running service: create, list, show, watch, cancel")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("create", parents=[common], help="queue a training job")
    a.add_argument("--dataset", required=True, help="dataset id")
    a.add_argument("--model", help="the model the new version joins (default: from the dataset's name)")
    a.add_argument("--arch", choices=["cube", "linear", "mlp", "resmlp"], help="architecture kind (server default: cube)")
    a.add_argument("--architecture", help='architecture as JSON, e.g. \'{"grid": [4, 4, 4]}\'')
    a.add_argument("--set", action="append", metavar="KEY=VALUE", help="a hyperparameter (repeatable), e.g. n_epochs=20")
    a.add_argument("--mode", choices=["dialogue", "autoencoder", "translation"])
    a.add_argument("--code-size", type=int, help="with --mode autoencoder: values in the code (docs/autoencoder.md)")
    a.add_argument("--validation", help="validation split as JSON")
    a.add_argument("--seed", type=int)
    a.add_argument("--device", choices=["cpu", "cuda"])
    a.add_argument("--metadata", help="a JSON object kept with the job")
    a.add_argument("--watch", action="store_true", help="then watch it as `jobs watch` does")
    a.add_argument("--poll-interval", type=float, default=1.0, help=argparse.SUPPRESS)
    a = actions.add_parser("list", parents=[common], help="the newest jobs")
    paging(a)
    a.add_argument("--status", choices=["validating_files", "queued", "running", "succeeded", "failed", "cancelled"])
    a.add_argument("--filter", action="append", metavar="KEY=VALUE", help="another filter the server takes (repeatable)")
    for action, text in (("show", "one job"), ("cancel", "cancel a job (idempotent)")):
        actions.add_parser(action, parents=[common], help=text).add_argument("id")
    a = actions.add_parser("watch", parents=[common],
                           help="a live progress bar until the job ends; exit 1 if it fails or is cancelled")
    a.add_argument("id")
    a.add_argument("--poll-interval", type=float, default=1.0, help="seconds between polls")
    p.set_defaults(func=run_remote(cmd_jobs))

    p = sub.add_parser("models", help="models on a running service: list, show, alias")
    actions = p.add_subparsers(dest="action", required=True)
    paging(actions.add_parser("list", parents=[common], help="models by name"))
    a = actions.add_parser("show", parents=[common], help="a model's versions, or one version with --version")
    a.add_argument("name")
    a.add_argument("--version", type=int)
    a = actions.add_parser("alias", parents=[common], help="point ALIAS at VERSION, or --delete it")
    a.add_argument("name")
    a.add_argument("alias")
    a.add_argument("version", nargs="?", type=int)
    a.add_argument("--delete", action="store_true")
    p.set_defaults(func=run_remote(cmd_models))


def extend_transform(transform: argparse.ArgumentParser) -> None:
    """`cube transform` (offline, a model directory) learns `--url`: then `--model` is a served model's
    name, and input/output may be .npy, .npz or .jsonl."""
    local = transform.get_default("func")
    for action in transform._actions:  # the offline help text describes the local form only
        if action.dest == "model":
            action.help = "model directory (model.json + model.safetensors), or with --url a served model's name"
        elif action.dest in ("input", "output"):
            action.help += "; with --url also .npz or .jsonl"
    transform.add_argument("--url", default=None, help="transform on this service instead of locally")
    transform.add_argument("--api-key", default=None, help="with --url: API key (default: $CUBE_API_KEY)")
    transform.add_argument("--version", type=int, default=None, help="with --url: a version number")
    transform.add_argument("--alias", default=None, help="with --url: an alias")
    transform.add_argument("--key", default=None, help="with --url: the array to read from an .npz input")
    transform.add_argument("--normalize", action="store_true", help="with --url: unit-length outputs")
    transform.add_argument("--json", action="store_true", help="with --url: print a JSON summary")
    remote = run_remote(cmd_transform_remote)
    transform.set_defaults(func=lambda args: remote(args) if args.url else local(args))
