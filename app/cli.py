"""The `cube` command: the cube library's offline commands plus the service's commands.

    cube train | transform | synth      offline (cube.commands)
    cube up [--host --port --data-dir]  embedded service: migrations + one worker + the API
    cube api [--host --port]            the API only (production: many replicas)
    cube worker [--concurrency ...]     one Celery worker on the training queue
    cube db upgrade | current           Alembic migrations

Service commands import their modules lazily, so `cube train` never loads the web stack.
"""
from __future__ import annotations

import argparse
import sys

from cube.commands import UsageError, add_commands as add_offline_commands
from cube.config import ConfigError
from cube.pairs import PairFileError


def cmd_up(args: argparse.Namespace) -> int:
    from app.serve import up

    return up(args.host, args.port, args.data_dir)


def cmd_api(args: argparse.Namespace) -> int:
    from app.serve import run_api
    from app.settings import get_settings

    run_api(get_settings(), args.host, args.port)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from app.serve import run_worker

    run_worker(args.concurrency, args.pool, args.max_tasks_per_child, args.loglevel)
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


def add_service_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="start the embedded service: migrations, one worker and the API (Ctrl-C stops both)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--data-dir", help="where the database, broker and files live (default: $CUBE_DATA_DIR or ./runs/service)")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("api", help="run the HTTP API (settings from CUBE_* variables)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=cmd_api)

    p = sub.add_parser("worker", help="run a Celery worker on the training queue")
    p.add_argument("--concurrency", type=int, default=1, help="jobs at once (GPU workers: 1 per GPU)")
    p.add_argument("--pool", default="prefork", choices=["prefork", "solo", "threads"])
    p.add_argument("--max-tasks-per-child", type=int, default=None, help="GPU workers: 1 frees the CUDA allocator")
    p.add_argument("--loglevel", default="info")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("db", help="database migrations")
    p.add_argument("action", choices=["upgrade", "current"])
    p.set_defaults(func=cmd_db)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cube", description="Train and serve embedding-to-embedding models.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_offline_commands(sub)
    add_service_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, ConfigError) as exc:
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
