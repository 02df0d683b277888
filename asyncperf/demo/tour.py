"""``asyncperf demo`` itself: check what is installed and reachable, then run the tour.

Part 1 (:mod:`.load`'s cache workload) needs only the core; part 2 (the app) needs the
``demo`` extra, and without it the tour says so and stops after part 1. ``--redis``,
``--dsn`` and ``--serve`` are checked before anything runs, so a missing module or an
unreachable server is one clear line and exit status 2. Every cache and the demo schema
are removed at exit.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, TextIO

from .. import __version__
from ..cache import Cache
from .app import ORDERS, Database, Stores, Tour, make_tour, redact
from .load import make_plan, run_app_load, run_cache_load
from .report import (
    Progress,
    cache_announcer,
    print_app_intro,
    print_app_report,
    print_cache_intro,
    print_cache_results,
    warm_progress,
)
from .serve import serve

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["run"]


def _missing(*modules: str) -> list[str]:
    import importlib.util

    return [name for name in modules if importlib.util.find_spec(name) is None]


async def _tour(args: argparse.Namespace) -> int:
    out = sys.stdout
    stores = Stores(args.redis)
    db = Database(args.dsn) if args.dsn else None
    missing = _missing("starlette", "httpx")  # without them, part 1 only
    for flag, module, extras in (("--dsn", "asyncpg", "demo,db"), ("--serve", "uvicorn", "demo")):
        needed = _missing("starlette", "httpx", module) if getattr(args, flag[2:]) else []
        if needed:
            print(
                f"asyncperf demo: {flag} needs {', '.join(needed)}: "
                f"pip install 'asyncperf[{extras}]'",
                file=sys.stderr,
            )
            return 2
    try:
        problem = await stores.check()
        if problem is not None:
            print(f"asyncperf demo: Redis at {redact(args.redis)}: {problem}", file=sys.stderr)
            return 2
        from ..monitor import PerformanceMonitor

        monitor = PerformanceMonitor()
        if db is not None:
            try:
                await db.open(monitor)
            except Exception as exc:  # unreachable, refused, bad credentials, no rights
                print(f"asyncperf demo: PostgreSQL at {redact(db.dsn)}: {exc}", file=sys.stderr)
                return 2
        print(
            f"asyncperf {__version__} demo: a tour of the cache, HTTP response cache, "
            "LLM cache, cached queries and monitor",
            file=out,
        )
        print(f"caches: {stores.describe()}", file=out)
        if db is not None:
            print(
                f"database: PostgreSQL at {redact(db.dsn)}, "
                f"{db.table} ({ORDERS:,} rows, dropped at exit)",
                file=out,
            )
        await _cache_part(args, stores, out)
        if missing:
            print(
                f"\npart 2 (the app tour) needs {' and '.join(missing)}: "
                "pip install 'asyncperf[demo]'",
                file=out,
            )
            return 0
        tour = make_tour(args, stores, monitor, db)
        if db is not None:
            await db.watch(_required(tour.db_cache))
        app = await _app_part(tour, out)
        if args.serve:
            plan = make_plan(1000, args.seed, tour.db is not None)
            await serve(app, args.serve, out, plan=plan, rate=args.serve_load)
        return 0
    finally:
        try:
            if db is not None:
                await db.close()
        finally:
            await stores.aclose()


async def _cache_part(args: argparse.Namespace, stores: Stores, out: TextIO) -> None:
    print_cache_intro(args, out)
    results = await run_cache_load(
        args, stores, announce=cache_announcer(stores, out), progress=warm_progress(out)
    )
    print_cache_results(args, results, out)


async def _app_part(tour: Tour, out: TextIO) -> Starlette:
    """Drive the app without caching and with it, print the report; return the cached app."""
    args = tour.args
    plan = make_plan(args.app_requests, args.seed, tour.db is not None)
    print_app_intro(tour, plan, out)
    results = await run_app_load(tour, plan, lambda label, total: Progress(out, label, total))
    print_app_report(tour, results, len(plan), out)
    return results.app


def _required(cache: Cache | None) -> Cache:
    assert cache is not None
    return cache


def run(args: argparse.Namespace) -> int:
    """Run ``asyncperf demo`` with parsed arguments; return the exit status."""
    return asyncio.run(_tour(args))
