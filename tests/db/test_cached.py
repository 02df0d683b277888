"""cached_fetch: keyed by statement and arguments, single-flight, invalidated by triggers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from asyncperf import Cache, ConfigurationError, MemoryStore
from asyncperf.db import cached_fetch, setup_invalidation, table_tag
from asyncperf.db._sql import quote_ident
from tests.db.conftest import DSN

pytestmark = pytest.mark.postgres


async def make_table(pool: Any, schema: str) -> str:
    s = quote_ident(schema)
    await pool.execute(
        f"CREATE TABLE {s}.prices (id int PRIMARY KEY, amount int NOT NULL);"
        f"INSERT INTO {s}.prices SELECT g, g * 10 FROM generate_series(1, 100) g;"
        f"CREATE VIEW {s}.cheap AS SELECT * FROM {s}.prices WHERE amount < 100"
    )
    return f"{s}.prices"


async def test_hits_keys_and_single_flight(pool: Any, scratch_schema: str) -> None:
    table = await make_table(pool, scratch_schema)
    cache = Cache(MemoryStore())
    sql = f"SELECT id, amount FROM {table} WHERE id = $1"
    rows = await cached_fetch(pool, sql, 3, ttl=60, cache=cache)
    assert rows == [{"id": 3, "amount": 30}]
    assert await cached_fetch(pool, sql, 3, ttl=60, cache=cache) == rows
    assert await cached_fetch(pool, sql, 4, ttl=60, cache=cache) == [{"id": 4, "amount": 40}]
    stats = cache.statistics()
    assert (stats.hits, stats.loads) == (1, 2)
    # 50 concurrent misses on one key: one query
    slow = f"SELECT id, pg_sleep(0.05)::text AS s FROM {table} WHERE id = $1"
    results = await asyncio.gather(*(cached_fetch(pool, slow, 7, cache=cache) for _ in range(50)))
    assert all(r == results[0] for r in results)
    assert cache.statistics().loads == 3
    assert cache.statistics().coalesced == 49
    with pytest.raises(ConfigurationError, match="SELECT"):
        await cached_fetch(pool, f"DELETE FROM {table}", cache=cache)
    await cache.aclose()


async def test_a_write_to_a_table_invalidates_what_read_it(pool: Any, scratch_schema: str) -> None:
    table = await make_table(pool, scratch_schema)
    cache = Cache(MemoryStore())
    view = f"{quote_ident(scratch_schema)}.cheap"
    count_sql = f"SELECT count(*) AS n FROM {view}"  # through a view: tagged with the base table
    invalidation = await setup_invalidation(pool, cache, [f"{scratch_schema}.prices"], dsn=DSN)
    try:
        assert (await cached_fetch(pool, count_sql, cache=cache))[0]["n"] == 9
        await pool.execute(f"INSERT INTO {table} VALUES (1000, 5)")
        for _ in range(100):
            if invalidation.notifications:
                break
            await asyncio.sleep(0.02)
        await invalidation.wait_idle()
        assert invalidation.notifications == 1
        assert (await cached_fetch(pool, count_sql, cache=cache))[0]["n"] == 10
        # without a change, the value stays cached
        loads = cache.statistics().loads
        await cached_fetch(pool, count_sql, cache=cache)
        assert cache.statistics().loads == loads
        database = await pool.fetchval("SELECT current_database()")
        assert await cache.invalidate_tags(table_tag(database, scratch_schema, "prices")) == 1
    finally:
        await invalidation.aclose()
        await invalidation.uninstall(pool, [f"{scratch_schema}.prices"])
        await cache.aclose()
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'asyncperf_invalidate' "
            "AND tgrelid = to_regclass($1)",
            table,
        )
        == 0
    )


async def test_listener_on_a_pool_connection(pool: Any, scratch_schema: str) -> None:
    table = await make_table(pool, scratch_schema)
    cache = Cache(MemoryStore())
    async with await setup_invalidation(pool, cache, [f"{scratch_schema}.prices"]) as inv:
        sql = f"SELECT amount FROM {table} WHERE id = $1"
        assert await cached_fetch(pool, sql, 1, cache=cache) == [{"amount": 10}]
        await pool.execute(f"UPDATE {table} SET amount = 11 WHERE id = 1")
        for _ in range(100):
            if inv.notifications:
                break
            await asyncio.sleep(0.02)
        await inv.wait_idle()
        assert await cached_fetch(pool, sql, 1, cache=cache) == [{"amount": 11}]
    with pytest.raises(ConfigurationError):
        await setup_invalidation(pool, cache, [f"{scratch_schema}.missing"])
    await cache.aclose()
