"""The ``plot`` console script: builds the argument parser from the command modules."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from api.commands import admin, cluster, engine, find_missing_extra, handles, service
from core.errors import PlotError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plot", description="PLOT: progressive localization via optimal transport"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    engine.register(commands)
    handles.register(commands)
    service.register(commands)
    cluster.register(commands)
    admin.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except PlotError as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    except ValidationError as error:
        if error.title != "Settings":
            raise
        from api.settings import describe_settings_error

        sys.stderr.write(f"error: {describe_settings_error(error)}\n")
        return 2
    except ModuleNotFoundError as error:
        extra = find_missing_extra(args.command, error)
        if extra is None:
            raise
        sys.stderr.write(f"plot {args.command} needs the {extra} extra: "
                         f"pip install 'plot-service[{extra}]'\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
