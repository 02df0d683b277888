"""SQLAlchemy 2 async engines wherever an asyncpg pool goes: analyzer, cache, pool monitor."""

from __future__ import annotations

import asyncio
import sqlite3
import types
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import TimeoutError as SATimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from asyncperf import Cache, ConfigurationError, MemoryStore
from asyncperf.db import PoolMonitor, QueryAnalyzer, cached_fetch, setup_invalidation
from asyncperf.db._advisor import METHOD_HYPOPG, METHOD_ROLLBACK
from asyncperf.db._engine import is_async_engine
from tests.db.conftest import DSN
from tests.db.test_advisor import check_advice, index_count, planted
from tests.db.test_cached import make_table
from tests.db.workload import statements

pytestmark = pytest.mark.postgres

ENGINE_URL = DSN.replace("postgresql://", "postgresql+asyncpg://", 1)


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEngine]:
    """One pooled connection: whatever the code under test leaves behind, the next
    checkout sees."""
    engine = create_async_engine(ENGINE_URL, pool_size=1, max_overflow=0)
    try:
        yield engine
    finally:
        await engine.dispose()


def aiosqlite_engine() -> AsyncEngine:
    """An async engine of another driver (never connected: the DBAPI is a stand-in)."""
    fake = types.SimpleNamespace(
        paramstyle="qmark", has_stop=True, sqlite_version_info=sqlite3.sqlite_version_info
    )
    return create_async_engine("sqlite+aiosqlite://", module=fake)


async def session_state(engine: AsyncEngine) -> dict[str, Any]:
    """What a checkout of the engine's connection finds: settings, HypoPG, transaction."""
    async with engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        in_transaction = raw.is_in_transaction()
        pid = raw.get_server_pid()
        # (first: loading HypoPG's library defines its GUCs, which is no change of setting)
        hypothetical = await raw.fetchval("SELECT count(*) FROM hypopg_list_indexes")
        # Every setting's value (asyncpg's type introspection runs SET jit = off and
        # then SETs it back: the value, not its source, is what must not change).
        settings = await raw.fetch("SELECT name, setting FROM pg_settings ORDER BY name")
        return {
            "pid": pid,
            "in_transaction": in_transaction,
            "settings": [tuple(r) for r in settings],
            "hypothetical": hypothetical,
            "prepared": await raw.fetchval(
                "SELECT count(*) FROM pg_prepared_statements WHERE from_sql"
            ),
        }


async def test_engines_are_recognised_without_importing_anything() -> None:
    engine = create_async_engine(ENGINE_URL)
    try:
        assert is_async_engine(engine)
        assert not is_async_engine(engine.sync_engine)
        assert not is_async_engine(object())
    finally:
        await engine.dispose()


async def test_other_drivers_and_sync_engines_are_refused_by_name() -> None:
    other = aiosqlite_engine()
    with pytest.raises(ConfigurationError, match="aiosqlite"):
        QueryAnalyzer(other)
    with pytest.raises(ConfigurationError, match="aiosqlite"):
        await cached_fetch(other, "SELECT 1", cache=Cache(MemoryStore()))
    sync = create_engine("sqlite://")
    with pytest.raises(ConfigurationError, match="AsyncEngine"):
        QueryAnalyzer(sync)
    sync.dispose()


async def test_the_planted_workload_through_an_engine_gives_the_same_advice(
    pool: Any, engine: AsyncEngine, workload_schema: str
) -> None:
    before_indexes = await index_count(pool, workload_schema)
    before = await session_state(engine)
    sqls = [s.sql for s in statements(workload_schema)]
    through_pool = await QueryAnalyzer(pool).recommend_indexes(sqls)
    through_engine = await QueryAnalyzer(engine).recommend_indexes(sqls)
    assert through_engine.method == METHOD_HYPOPG
    check_advice(through_engine, workload_schema)
    assert [s.statement for s in through_engine] == [s.statement for s in through_pool]
    assert [(v.query, v.suggested, v.reason) for v in through_engine.statements] == [
        (v.query, v.suggested, v.reason) for v in through_pool.statements
    ]
    # nothing left behind: no index, no hypothetical index, no transaction, no setting
    after = await session_state(engine)
    changed = dict(after["settings"]).items() ^ dict(before["settings"]).items()
    assert after == before, changed
    assert after["pid"] == before["pid"]  # the very connection the analyzer used
    assert after["hypothetical"] == 0
    assert after["in_transaction"] is False
    assert await index_count(pool, workload_schema) == before_indexes


async def test_rolled_back_fallback_through_an_engine(
    pool: Any, engine: AsyncEngine, workload_schema: str
) -> None:
    before_indexes = await index_count(pool, workload_schema)
    before = await session_state(engine)
    advice = await QueryAnalyzer(engine).recommend_indexes(
        [s.sql for s in statements(workload_schema)], use_hypopg=False
    )
    assert advice.method == METHOD_ROLLBACK
    check_advice(advice, workload_schema)
    assert await session_state(engine) == before
    assert await index_count(pool, workload_schema) == before_indexes


async def test_explain_health_and_report_through_an_engine(
    pool: Any, engine: AsyncEngine, workload_schema: str
) -> None:
    before = await session_state(engine)
    sql = planted(workload_schema)[0].sql
    generic = await QueryAnalyzer(engine).explain(sql)  # $1 without values: generic plan
    assert generic.generic
    assert generic.total_cost == (await QueryAnalyzer(pool).explain(sql)).total_cost
    analyzed = await QueryAnalyzer(engine).explain(
        sql, *planted(workload_schema)[0].args, analyze=True
    )
    assert analyzed.analyzed
    assert analyzed.execution_seconds is not None
    health = await QueryAnalyzer(engine).index_health(schemas=[workload_schema])
    assert health == await QueryAnalyzer(pool).index_health(schemas=[workload_schema])
    ext = await QueryAnalyzer(engine).extensions()
    assert ext.hypopg
    assert ext.pg_stat_statements
    assert await session_state(engine) == before


async def test_a_connection_that_cannot_be_cleaned_is_dropped_from_the_engine_pool(
    engine: AsyncEngine, workload_schema: str
) -> None:
    before = await session_state(engine)
    analyzer = QueryAnalyzer(engine)
    async with analyzer._connection() as raw:
        raw.terminate()  # what _leave_clean does when hypopg_reset() fails
    after = await session_state(engine)
    assert after["pid"] != before["pid"]  # invalidated, replaced by a fresh connection


async def test_an_error_inside_a_transaction_leaves_none_open(engine: AsyncEngine) -> None:
    before = await session_state(engine)
    analyzer = QueryAnalyzer(engine)
    async with analyzer._connection() as raw:
        await raw.execute("BEGIN")
        with pytest.raises(asyncpg.DivisionByZeroError):
            await raw.execute("SELECT 1 / 0")
        assert raw.is_in_transaction()
    after = await session_state(engine)
    assert after == before  # same connection, rolled back, reusable


async def test_cached_fetch_on_an_engine_hits_and_is_invalidated(
    pool: Any, engine: AsyncEngine, scratch_schema: str
) -> None:
    table = await make_table(pool, scratch_schema)
    cache = Cache(MemoryStore())
    sql = f"SELECT id, amount FROM {table} WHERE id = $1"
    invalidation = await setup_invalidation(engine, cache, [f"{scratch_schema}.prices"], dsn=DSN)
    try:
        rows = await cached_fetch(engine, sql, 3, cache=cache)
        assert rows == [{"id": 3, "amount": 30}] == await cached_fetch(pool, sql, 3)
        assert await cached_fetch(engine, sql, 3, cache=cache) == rows
        assert (cache.statistics().hits, cache.statistics().loads) == (1, 1)
        # a write from another connection, outside the engine
        other = await asyncpg.connect(DSN)
        try:
            await other.execute(f"UPDATE {table} SET amount = 31 WHERE id = 3")
        finally:
            await other.close()
        for _ in range(100):
            if invalidation.notifications:
                break
            await asyncio.sleep(0.02)
        await invalidation.wait_idle()
        assert await cached_fetch(engine, sql, 3, cache=cache) == [{"id": 3, "amount": 31}]
        assert cache.statistics().loads == 2
    finally:
        await invalidation.aclose()
        await invalidation.uninstall(engine, [f"{scratch_schema}.prices"])
        await cache.aclose()
    state = await session_state(engine)
    assert state["in_transaction"] is False
    assert state["prepared"] == 0


async def test_the_invalidation_listener_can_hold_an_engine_connection(
    pool: Any, scratch_schema: str
) -> None:
    engine = create_async_engine(ENGINE_URL, pool_size=2, max_overflow=0)
    table = await make_table(pool, scratch_schema)
    cache = Cache(MemoryStore())
    try:
        invalidation = await setup_invalidation(engine, cache, [f"{scratch_schema}.prices"])
        try:
            sql = f"SELECT count(*) AS n FROM {table}"
            assert (await cached_fetch(engine, sql, cache=cache))[0]["n"] == 100
            await pool.execute(f"DELETE FROM {table} WHERE id = 1")
            for _ in range(100):
                if invalidation.notifications:
                    break
                await asyncio.sleep(0.02)
            await invalidation.wait_idle()
            assert (await cached_fetch(engine, sql, cache=cache))[0]["n"] == 99
        finally:
            await invalidation.aclose()
        # the listening connection went back to the pool without its LISTEN
        async with engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            channels = await raw.fetchval("SELECT count(*) FROM pg_listening_channels()")
            assert channels == 0
        assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await cache.aclose()
        await engine.dispose()


async def test_pool_monitor_watches_every_checkout_of_an_engine() -> None:
    engine = create_async_engine(ENGINE_URL, pool_size=2, max_overflow=0, pool_timeout=0.2)
    monitor = PoolMonitor(engine, window=30.0)
    try:

        async def work() -> None:  # the app's own checkouts, not through the monitor
            async with AsyncSession(engine) as session:
                await session.execute(text("SELECT pg_sleep(0.3)"))

        results = await asyncio.gather(*(work() for _ in range(4)), return_exceptions=True)
        timeouts = [r for r in results if isinstance(r, SATimeoutError)]
        assert len(timeouts) == 2  # two waited 0.2 s behind the two 0.3 s holds
        async with monitor.acquire() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar() == 1
            assert monitor.statistics().in_use == 1
        stats = monitor.statistics()
        assert stats.acquisitions == 3
        assert stats.timeouts == 2
        assert stats.peak_in_use == 2 == stats.max_size
        assert stats.min_size == 2
        assert stats.size == 2
        assert stats.idle == 2
        assert stats.in_use == 0
        assert stats.waiting == 0
        assert stats.hold_mean_seconds > 0
        assert 0 < stats.utilisation <= 1
        advice = await monitor.advice()
        sizing = next(a for a in advice if a.action == "size_up")
        assert "pool_size + max_overflow from 2" in sizing.message
        assert "2 acquire timeouts" in sizing.reason
        with pytest.raises(ConfigurationError, match="pool_timeout"):
            async with monitor.acquire(timeout=1.0):
                pass
        # dispose() replaces the pool: still watched
        await engine.dispose()
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        assert monitor.statistics().acquisitions == 5  # + advice()'s own query + this one
    finally:
        monitor.close()
        await engine.dispose()
    # closed: no longer counting
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    assert monitor.statistics().acquisitions == 5
    assert "connect" not in vars(engine.sync_engine.pool)
    await engine.dispose()


async def test_pool_monitor_gives_an_idle_engine_the_same_advice_as_a_pool() -> None:
    engine = create_async_engine(ENGINE_URL, pool_size=10, max_overflow=0)
    pool = await asyncpg.create_pool(DSN, min_size=1, max_size=10)
    try:
        verdicts = []
        for target in (pool, engine):
            clock_now = [0.0]
            monitor = PoolMonitor(target, window=60.0, clock=lambda c=clock_now: c[0])
            for _ in range(20):
                async with monitor.acquire() as conn:
                    clock_now[0] += 0.01
                    if target is pool:
                        await conn.fetchval("SELECT 1")
                    else:
                        await conn.execute(text("SELECT 1"))
                clock_now[0] += 1.0
            advice = monitor.local_advice()
            verdicts.append([(a.action, a.numbers.get("suggested_max_size")) for a in advice])
            monitor.close()
        assert verdicts[0] == verdicts[1] == [("size_down", 2.0)]
    finally:
        await pool.close()
        await engine.dispose()


async def test_pool_monitor_refuses_pools_it_cannot_size() -> None:
    for options in ({"poolclass": NullPool}, {"pool_size": 2, "max_overflow": -1}):
        engine = create_async_engine(ENGINE_URL, **options)
        try:
            with pytest.raises(ConfigurationError, match=r"NullPool|max_overflow"):
                PoolMonitor(engine)
        finally:
            await engine.dispose()
    with pytest.raises(ConfigurationError, match="aiosqlite"):
        PoolMonitor(aiosqlite_engine())


async def test_an_engine_used_once_can_still_be_collected() -> None:
    import gc
    import weakref

    engine = create_async_engine(ENGINE_URL)
    assert (await cached_fetch(engine, "SELECT 1 AS one", cache=Cache(MemoryStore()))) == [
        {"one": 1}
    ]
    await engine.dispose()
    gone = weakref.ref(engine)
    del engine
    gc.collect()
    assert gone() is None


def test_importing_asyncperf_db_does_not_import_sqlalchemy() -> None:
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, asyncperf.db, asyncperf.monitor; "
        "from asyncperf.db._engine import is_async_engine; "
        "assert not is_async_engine(object()); "
        "assert 'sqlalchemy' not in sys.modules, 'imported sqlalchemy'"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
