"""The `cube` command: the cube library's offline commands plus the service's commands.

    cube train | transform | export | synth   offline (cube.commands)
    cube up [--host --port --data-dir]  embedded service: migrations + one worker + the API
    cube api [--host --port --workers N] the API only: N processes on one port (production: many replicas)
    cube worker [--device cuda ...]     one Celery worker on a device's queue (training.cpu, training.cuda)
    cube db upgrade | current           Alembic migrations
    cube keys create | list | revoke    API keys (the secret is printed once, as the last word)
    cube datasets | jobs | models       a running service, through the Python client (app.remote_cli)
    cube transform --url URL --model NAME   the same, on a served model

Service commands import their modules lazily, so `cube train` never loads the web stack.
"""
from __future__ import annotations

import argparse
import sys

from app.remote_cli import add_remote_commands, extend_transform
from cube.commands import UsageError, add_commands as add_offline_commands, positive_int
from cube.config import ConfigError
from cube.pairs import PairFileError
from cube.errors import CheckpointMismatch, TrainingDiverged


def cmd_up(args: argparse.Namespace) -> int:
    from app.serve import up

    return up(args.host, args.port, args.data_dir)


def cmd_api(args: argparse.Namespace) -> int:
    from app.serve import run_api
    from app.settings import get_settings

    run_api(get_settings(), args.host, args.port, args.workers)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from app.serve import run_worker

    run_worker(args.concurrency, args.pool, args.max_tasks_per_child, args.loglevel, args.device, args.parent_pid)
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from app.migrate import current
    from app.serve import migrate
    from app.settings import get_settings

    settings = get_settings()
    if args.action == "upgrade":
        migrate(settings)
    print(f"database at revision {current(settings.database)}")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from app.db import get_sessionmaker
    from app.errors import ServiceError
    from app.serve import migrate
    from app.services import keys
    from app.settings import get_settings

    settings = get_settings()
    if settings.embedded:  # like `cube up`: the embedded database is created on first use
        migrate(settings)
    with get_sessionmaker(settings.database)() as session:
        try:
            if args.action == "create":
                key, secret = keys.create_key(session, args.scope, args.name)
                print(f"created {key.id} (scope {key.scope}{', name ' + key.name if key.name else ''}); "
                      "the key is shown only this once:")
                print(secret)
            elif args.action == "list":
                print(f"{'id':<26} {'prefix':<14} {'scope':<10} {'created':<20} {'revoked':<20} name")
                for k in keys.list_keys(session):
                    print(f"{k.id:<26} {k.prefix + '...':<14} {k.scope:<10} {_when(k.created_at):<20} "
                          f"{_when(k.revoked_at):<20} {k.name or ''}")
            else:
                print(f"revoked {keys.revoke_key(session, args.id).id}")
        except ServiceError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 1 if exc.status == 404 else 2
    return 0


def _when(t: float | None) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def add_service_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="start the embedded service: migrations, one worker and the API (Ctrl-C stops both)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--data-dir", help="where the database, broker and files live (default: $CUBE_DATA_DIR or ./runs/service)")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("api", help="run the HTTP API (settings from CUBE_* variables)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=positive_int, default=1,
                   help="API processes on the port (each with its own model cache and batcher)")
    p.set_defaults(func=cmd_api)

    p = sub.add_parser("worker", help="run a Celery worker on a device's training queue")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="the jobs it takes: those created with this device (queue training.<device>)")
    p.add_argument("--concurrency", type=int, default=1, help="jobs at once (GPU workers: 1 per GPU)")
    p.add_argument("--pool", default="prefork", choices=["prefork", "solo", "threads"])
    p.add_argument("--max-tasks-per-child", type=int, default=None, help="GPU workers: 1 frees the CUDA allocator")
    p.add_argument("--loglevel", default="info")
    p.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)  # `cube up`'s worker: stop with it
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("keys", help="API keys: create (printed once), list, revoke")
    keys_sub = p.add_subparsers(dest="action", required=True)
    k = keys_sub.add_parser("create", help="create a key; its secret is the last word of the output")
    k.add_argument("--scope", required=True, choices=["train", "transform", "admin"])
    k.add_argument("--name", help="a label to recognise the key by")
    keys_sub.add_parser("list", help="all keys: id, display prefix, scope, created, revoked")
    k = keys_sub.add_parser("revoke", help="revoke a key by id (requests with it get 401 at once)")
    k.add_argument("id")
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser("db", help="database migrations")
    p.add_argument("action", choices=["upgrade", "current"])
    p.set_defaults(func=cmd_db)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cube", description="Train and serve embedding-to-embedding models.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_offline_commands(sub)
    add_service_commands(sub)
    add_remote_commands(sub)
    extend_transform(sub.choices["transform"])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, ConfigError, CheckpointMismatch, TrainingDiverged) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PairFileError as exc:
        where = f" (field {exc.field}" + (f", row {exc.row}" if exc.row is not None else "") + ")" if exc.field else ""
        print(f"error: {exc.message}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
