"""Statement timing overhead: SQLAlchemy engine events beside asyncpg's query logger.

Groups (each against its own un-instrumented floor, one statement per op, ``SELECT 1``
on a real PostgreSQL at 127.0.0.1:5432, one connection held for the whole run):

- ``db-timing-asyncpg``: ``conn.fetchval`` bare, and with
  ``PerformanceMonitor.instrument_asyncpg`` (asyncpg's ``add_query_logger`` hook).
- ``db-timing-sqlalchemy``: ``AsyncConnection.exec_driver_sql`` on a postgresql+asyncpg
  engine bare, and with ``PerformanceMonitor.instrument_sqlalchemy``
  (``before_cursor_execute``/``after_cursor_execute`` on the sync engine).

The summary adds a note with the added microseconds per statement of each hook.
``db-timing-hooks`` times the hooks alone, without the server, against an empty loop.
Reported, never asserted.
"""

from __future__ import annotations

import types
from collections.abc import Sequence

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from asyncperf.monitor import PerformanceMonitor
from bench._data import QUICK
from bench.conftest import REPORT, AsyncBench

DSN = "postgresql://postgres@127.0.0.1:5432/test"
OPS = 200 if QUICK else 3_000


def _added_note() -> None:
    rows = {(r.group, r.label): r.value for r in REPORT.results}
    parts = []
    for group, hook in (("db-timing-asyncpg", "query logger"), ("db-timing-sqlalchemy", "events")):
        bare, timed = rows.get((group, "bare")), rows.get((group, "instrumented"))
        if bare is not None and timed is not None:
            parts.append(f"{hook} +{(timed - bare) / 1000:.1f} µs/statement ({timed / bare:.2f}x)")
    if len(parts) == 2:
        REPORT.notes.append("  statement timing: asyncpg " + parts[0] + "; SQLAlchemy " + parts[1])


@pytest.mark.benchmark(group="db-timing-asyncpg")
@pytest.mark.parametrize("variant", ["bare", "instrumented"])
def test_asyncpg_query_logger(abench: AsyncBench, variant: str) -> None:
    conn = abench.run(asyncpg.connect(DSN))
    monitor = PerformanceMonitor(loop_lag_interval=None)
    if variant == "instrumented":
        monitor.instrument_asyncpg(conn)

    async def body(keys: Sequence[str]) -> None:
        for _ in keys:
            await conn.fetchval("SELECT 1")

    try:
        abench.measure(body, label=variant, floor=variant == "bare", ops=OPS)
    finally:
        abench.run(conn.close())
    if variant == "instrumented":
        assert monitor.queries.statements  # it did record


@pytest.mark.benchmark(group="db-timing-sqlalchemy")
@pytest.mark.parametrize("variant", ["bare", "instrumented"])
def test_sqlalchemy_engine_events(abench: AsyncBench, variant: str) -> None:
    engine = create_async_engine(DSN.replace("postgresql://", "postgresql+asyncpg://", 1))
    monitor = PerformanceMonitor(loop_lag_interval=None)
    if variant == "instrumented":
        monitor.instrument_sqlalchemy(engine)
    conn = abench.run(engine.connect())

    async def body(keys: Sequence[str]) -> None:
        for _ in keys:
            await conn.exec_driver_sql("SELECT 1")

    try:
        abench.measure(body, label=variant, floor=variant == "bare", ops=OPS)
    finally:
        abench.run(conn.close())
        abench.run(engine.dispose())
    if variant == "instrumented":
        assert monitor.queries.statements
        _added_note()


HOOK_SQL = "SELECT id, name FROM users WHERE id = $1"


@pytest.mark.benchmark(group="db-timing-hooks")
@pytest.mark.parametrize("variant", ["no hook", "asyncpg query logger", "sqlalchemy events"])
def test_hook_cost_without_the_server(abench: AsyncBench, variant: str) -> None:
    """The hooks alone, no round trip (the round trip's noise hides them above): what
    asyncpg's logger call costs, and what SQLAlchemy's two event dispatches cost."""
    from asyncpg.connection import LoggedQuery

    engine = create_async_engine(DSN.replace("postgresql://", "postgresql+asyncpg://", 1))
    sync_engine = engine.sync_engine
    monitor = PerformanceMonitor(loop_lag_interval=None)
    record = LoggedQuery(HOOK_SQL, (1,), None, 0.0001, None, None, None)
    context = types.SimpleNamespace()
    if variant == "sqlalchemy events":
        monitor.instrument_sqlalchemy(engine)
    dispatch = sync_engine.dispatch
    logger = monitor.queries

    async def body(keys: Sequence[str]) -> None:
        if variant == "asyncpg query logger":
            for _ in keys:
                logger(record)
        elif variant == "sqlalchemy events":
            for _ in keys:
                dispatch.before_cursor_execute(None, None, HOOK_SQL, (1,), context, False)
                dispatch.after_cursor_execute(None, None, HOOK_SQL, (1,), context, False)
        else:
            for _ in keys:
                pass

    try:
        abench.measure(body, label=variant, floor=variant == "no hook")
    finally:
        abench.run(engine.dispose())
    if variant != "no hook":
        assert monitor.queries.statements
