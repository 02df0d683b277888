"""The ``asyncperf`` command: ``asyncperf demo`` is a tour of what asyncperf saves."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence

from . import __version__

__all__ = ["main"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"must be requests/s from 0 to 10000, got {text}")
    return value


def _bind(text: str) -> str:
    from .demo import parse_bind  # the app's third-party modules load when it runs

    parse_bind(text)
    return text


def build_parser() -> argparse.ArgumentParser:
    """Return the ``asyncperf`` argument parser."""
    parser = argparse.ArgumentParser(prog="asyncperf", description=__doc__)
    parser.add_argument("--version", action="version", version=f"asyncperf {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="a tour: the cache, then an app with the HTTP and LLM caches, cached queries "
        "and the monitor, with and without caching",
        description="Run a scripted cache workload, then drive an in-process Starlette app "
        "without caching and with it, and report what caching saved. Needs no server.",
    )
    demo.add_argument("--requests", type=_positive_int, default=4000)
    demo.add_argument("--keys", type=_positive_int, default=300)
    demo.add_argument("--concurrency", type=_positive_int, default=50)
    demo.add_argument("--latency-ms", type=_positive_float, default=20.0)
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument(
        "--app-requests",
        type=_positive_int,
        default=400,
        help="requests of the app load, run once without caching and once with (400)",
    )
    demo.add_argument(
        "--app-concurrency",
        type=_positive_int,
        default=16,
        help="concurrent clients of the app load (16)",
    )
    demo.add_argument(
        "--speed",
        type=_positive_float,
        default=5.0,
        help="divide the fake model's 300 ms per call by this (5: 60 ms)",
    )
    demo.add_argument(
        "--redis", metavar="URL", help="keep every cache in this Redis (a unique key prefix)"
    )
    demo.add_argument(
        "--dsn", metavar="URL", help="PostgreSQL DSN: add cached queries on a temporary table"
    )
    demo.add_argument(
        "--serve",
        metavar="HOST:PORT",
        nargs="?",
        const="127.0.0.1:8000",
        type=_bind,
        help="then serve the app with uvicorn, dashboard at /_asyncperf/ (127.0.0.1:8000)",
    )
    demo.add_argument(
        "--serve-load",
        metavar="RATE",
        type=_rate,
        default=20.0,
        help="while serving, send the app this many requests/s of the tour's traffic, "
        "so the dashboard moves; 0 sends none (20)",
    )
    from .db._cli import add_parser as add_db_parser  # imports neither asyncpg nor pglast

    add_db_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``asyncperf`` command line."""
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run as run_demo

        return run_demo(args)
    if args.command == "db":
        from .db._cli import run as run_db

        return run_db(args)
    raise AssertionError(args.command)  # argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
