"""PerformanceMonitor.instrument_sqlalchemy: statement timings through engine events."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import bindparam, column, select, table, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from asyncperf import ConfigurationError
from asyncperf.monitor import PerformanceMonitor, fingerprint
from tests.db.conftest import DSN

pytestmark = pytest.mark.postgres

ENGINE_URL = DSN.replace("postgresql://", "postgresql+asyncpg://", 1)
FAMILY = "asyncperf_db_client_operation_duration_seconds"
ERRORS = "asyncperf_db_client_operation_errors_total"


def count(exposition: str, family: str, statement: str) -> float:
    total = 0.0
    for line in exposition.splitlines():
        if line.startswith(f"{family}_count{{") and f'statement="{statement}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_statements_are_timed_by_fingerprint_without_their_parameters() -> None:
    engine = create_async_engine(ENGINE_URL, pool_size=1, max_overflow=0)
    monitor = PerformanceMonitor(loop_lag_interval=None)
    monitor.instrument_sqlalchemy(engine)
    monitor.instrument_sqlalchemy(engine)  # twice: still one listener
    pg_class = table("pg_class", column("oid"), column("relname"))
    query = select(pg_class.c.relname).where(pg_class.c.oid == bindparam("n"))
    try:
        async with AsyncSession(engine) as session:
            for secret in (424242, 737373):
                assert (await session.execute(query, {"n": secret})).all() == []
            await session.execute(text("SELECT 'very-secret-literal' AS s"))
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError):
                await conn.execute(text("SELECT 1 / :zero"), {"zero": 0})
        compiled = str(query.compile(dialect=engine.dialect))
        exposition = monitor.prometheus_text()
        select_id = fingerprint(compiled).id
        assert count(exposition, FAMILY, select_id) == 2
        literal_id = fingerprint("SELECT 'very-secret-literal' AS s").id
        assert count(exposition, FAMILY, literal_id) == 1
        failing_id = fingerprint("SELECT 1 / $1").id
        assert count(exposition, FAMILY, failing_id) == 1
        assert (
            f'{ERRORS}{{operation="SELECT",statement="{failing_id}",error="DivisionByZeroError"}} 1'
            in exposition
        )
        for secret in ("424242", "737373", "very-secret-literal"):
            assert secret not in exposition
            assert secret not in str(monitor.snapshot())
        rows = {row["id"]: row for row in monitor.snapshot()["db"]["statements"]}
        assert rows[select_id]["operation"] == "SELECT"
        assert rows[select_id]["text"] == fingerprint(compiled).text
    finally:
        await engine.dispose()


async def test_the_same_families_as_instrument_asyncpg() -> None:
    by_engine, by_asyncpg = PerformanceMonitor(), PerformanceMonitor()
    engine = create_async_engine(ENGINE_URL)
    by_engine.instrument_sqlalchemy(engine)
    conn = await asyncpg.connect(DSN)
    by_asyncpg.instrument_asyncpg(conn)
    try:
        async with engine.connect() as sa_conn:
            await sa_conn.exec_driver_sql("SELECT 1")
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()
        await engine.dispose()

    def families(monitor: PerformanceMonitor) -> set[str]:
        return {
            line.split("{", 1)[0]
            for line in monitor.prometheus_text().splitlines()
            if line.startswith("asyncperf_db_")
            and f'statement="{fingerprint("SELECT 1").id}"' in line
        }

    assert families(by_engine) == families(by_asyncpg)
    assert f"{FAMILY}_count" in families(by_engine)
    with pytest.raises(ConfigurationError, match="Engine"):
        by_engine.instrument_sqlalchemy(object())
