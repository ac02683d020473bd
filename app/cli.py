"""The `cube` command: the cube library's offline commands plus the service's commands.

Service commands import their modules lazily, so `cube train` never loads the web stack.
"""
from __future__ import annotations

import argparse
import sys

from cube.commands import UsageError, add_commands as add_offline_commands
from cube.config import ConfigError
from cube.pairs import PairFileError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cube", description="Train and serve embedding-to-embedding models.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_offline_commands(sub)
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
