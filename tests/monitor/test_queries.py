"""Statement fingerprints, and asyncpg timing through its query-logging hook."""

from __future__ import annotations

import asyncio

import pytest

from asyncperf.monitor import PerformanceMonitor, fingerprint

DSN = "postgresql://postgres@127.0.0.1:5432/test"


def test_fingerprints_ignore_values_and_layout() -> None:
    a = fingerprint("SELECT * FROM users WHERE id = 42 AND name = 'bob'")
    b = fingerprint("select *\n  from users where id = $1 and name = $2 -- comment")
    assert a.id == b.id
    assert a.text == "SELECT * FROM users WHERE id = ? AND name = ?"
    assert a.operation == "SELECT"
    assert (
        fingerprint("DELETE FROM t WHERE id IN (1, 2, 3)").text == "DELETE FROM t WHERE id IN (?)"
    )
    assert fingerprint("SELECT 1").id != fingerprint("SELECT 1 FROM t").id
    assert fingerprint("   ").operation == "UNKNOWN"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # asyncpg runs on asyncio


@pytest.mark.postgres
async def test_asyncpg_statements_are_timed_by_fingerprint() -> None:
    asyncpg = pytest.importorskip("asyncpg")
    monitor = PerformanceMonitor(loop_lag_interval=None)
    pool = await asyncpg.create_pool(DSN, min_size=1, max_size=2, init=monitor.asyncpg_init)
    try:
        for value in range(3):
            await pool.fetchval("SELECT $1::int + 1", value)
        await pool.fetch("SELECT pg_sleep(0.01)")
        with pytest.raises(asyncpg.PostgresError):
            await pool.fetch("SELECT * FROM no_such_table_asyncperf")
        await asyncio.sleep(0.05)  # asyncpg calls its query loggers with call_soon
    finally:
        await pool.close()
    rows = {row["text"]: row for row in monitor.snapshot()["db"]["statements"]}
    assert rows["SELECT ?::int + ?"]["count"] == 3
    assert rows["SELECT pg_sleep(?)"]["count"] == 1
    assert rows["SELECT pg_sleep(?)"]["sum_seconds"] > 0
    failing = fingerprint("SELECT * FROM no_such_table_asyncperf")
    errors = dict(monitor.db_errors.children())
    assert errors[("SELECT", failing.id, "UndefinedTableError")].value == 1
    assert "SELECT ?::int + ?" not in monitor.prometheus_text()  # SQL never becomes a label
