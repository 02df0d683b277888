"""cached_fetch: keyed by statement and arguments, single-flight, invalidated by triggers."""

from __future__ import annotations

import asyncio
import datetime
import math
import re
from decimal import Decimal
from typing import Any

import asyncpg
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


async def wait_for(condition: Any, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def test_key_includes_database_and_search_path(pool: Any, scratch_schema: str) -> None:
    cache = Cache(MemoryStore())
    other_db = await asyncpg.create_pool(DSN.rsplit("/", 1)[0] + "/postgres", min_size=1)
    try:
        sql = "SELECT current_database() AS db"
        assert await cached_fetch(pool, sql, cache=cache) == [{"db": "test"}]
        assert await cached_fetch(other_db, sql, cache=cache) == [{"db": "postgres"}]
    finally:
        await other_db.close()
    # schema per tenant: the same text reads another table through the search path
    tenant_b = scratch_schema + "_b"
    await pool.execute(f"CREATE SCHEMA {quote_ident(tenant_b)}")
    try:
        tenants = []
        for schema, name in ((scratch_schema, "a"), (tenant_b, "b")):
            await pool.execute(
                f"CREATE TABLE {quote_ident(schema)}.tenant AS SELECT {name!r}::text AS name"
            )
            tenants.append(
                await asyncpg.create_pool(
                    DSN, min_size=1, max_size=1, server_settings={"search_path": schema}
                )
            )
        try:
            sql = "SELECT name FROM tenant"
            assert await cached_fetch(tenants[0], sql, cache=cache) == [{"name": "a"}]
            assert await cached_fetch(tenants[1], sql, cache=cache) == [{"name": "b"}]
            assert await cached_fetch(tenants[0], sql, cache=cache) == [{"name": "a"}]
        finally:
            for tenant in tenants:
                await tenant.close()
    finally:
        await pool.execute(f"DROP SCHEMA {quote_ident(tenant_b)} CASCADE")
    await cache.aclose()


async def test_key_encodes_arguments_canonically(pool: Any) -> None:
    cache = Cache(MemoryStore())
    sql = "SELECT $1::float8::text AS v"
    for value, text in ((math.inf, "Infinity"), (-math.inf, "-Infinity"), (math.nan, "NaN")):
        assert await cached_fetch(pool, sql, value, cache=cache) == [{"v": text}]
    big = "SELECT $1::numeric::text AS v"
    assert await cached_fetch(pool, big, 2**70, cache=cache) == [{"v": str(2**70)}]
    assert await cached_fetch(pool, big, 2**70 + 1, cache=cache) == [{"v": str(2**70 + 1)}]
    assert await cached_fetch(pool, big, Decimal("1.5"), cache=cache) == [{"v": "1.5"}]
    when = "SELECT $1::date::text AS v"
    assert await cached_fetch(pool, when, datetime.date(2024, 1, 2), cache=cache) == [
        {"v": "2024-01-02"}
    ]
    raw = "SELECT encode($1::bytea, 'hex') AS v"
    assert await cached_fetch(pool, raw, b"\x00\xff", cache=cache) == [{"v": "00ff"}]
    assert await cached_fetch(pool, raw, b"\x01", cache=cache) == [{"v": "01"}]
    await cache.aclose()


async def test_refuses_statements_with_side_effects(pool: Any, scratch_schema: str) -> None:
    table = await make_table(pool, scratch_schema)
    cache = Cache(MemoryStore())
    refused = {
        f"WITH d AS (DELETE FROM {table} WHERE id = 1 RETURNING id) SELECT id FROM d": "DELETE",
        f"WITH u AS (UPDATE {table} SET amount = 0 WHERE id = 1 RETURNING id) "
        "SELECT id FROM u": "UPDATE",
        f"WITH i AS (INSERT INTO {table} VALUES (500, 1) RETURNING id) SELECT id FROM i": "INSERT",
        f"SELECT * INTO {quote_ident(scratch_schema)}.copy FROM {table}": "INTO",
        f"SELECT id FROM {table} WHERE id = 1 FOR UPDATE": "FOR UPDATE",
        f"SELECT * FROM (SELECT id FROM {table} FOR SHARE) s": "FOR UPDATE/SHARE",
    }
    for sql, why in refused.items():
        with pytest.raises(ConfigurationError, match=re.escape(why)):
            await cached_fetch(pool, sql, cache=cache)
    assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 100  # nothing ran
    assert await pool.fetchval(f"SELECT amount FROM {table} WHERE id = 1") == 10
    from asyncperf.db._parse import uncacheable_reason

    assert uncacheable_reason("WITH c AS (SELECT 1 AS x) SELECT x FROM c") is None
    await cache.aclose()


async def test_listener_reconnects_and_spares_unrelated_entries(
    pool: Any, scratch_schema: str
) -> None:
    table = await make_table(pool, scratch_schema)
    cache = Cache(MemoryStore())
    await cache.set("unrelated", "kept", ttl=60, tags=["other"])
    sql = f"SELECT amount FROM {table} WHERE id = $1"
    inv = await setup_invalidation(pool, cache, [f"{scratch_schema}.prices"], dsn=DSN)
    inv.reconnect_delay = 0.5
    try:
        assert await cached_fetch(pool, sql, 1, cache=cache) == [{"amount": 10}]
        pid = inv._conn.get_server_pid()
        await pool.execute("SELECT pg_terminate_backend($1)", pid)
        await asyncio.sleep(0.2)  # the loss is seen at once; the reconnect waits 0.5 s
        await inv.wait_idle()
        assert await cache.get("unrelated") == "kept"  # not cache.clear()
        assert not inv.connected
        # disconnected: the table's entry was dropped, and nothing new is stored
        loads = cache.statistics().loads
        await cached_fetch(pool, sql, 1, cache=cache)
        await cached_fetch(pool, sql, 1, cache=cache)
        assert cache.statistics().loads == loads + 2
        await wait_for(lambda: inv.connected)
        assert inv.reconnects == 1
        assert inv._conn.get_server_pid() != pid
        # listening again: rows are cached, and a write invalidates them
        assert await cached_fetch(pool, sql, 1, cache=cache) == [{"amount": 10}]
        assert await cached_fetch(pool, sql, 1, cache=cache) == [{"amount": 10}]
        assert cache.statistics().loads == loads + 3
        await pool.execute(f"UPDATE {table} SET amount = 12 WHERE id = 1")
        await wait_for(lambda: inv.notifications)
        await inv.wait_idle()
        assert await cached_fetch(pool, sql, 1, cache=cache) == [{"amount": 12}]
        assert await cache.get("unrelated") == "kept"
    finally:
        await inv.aclose()
    assert not inv.connected
    await cache.aclose()


async def racing_load(
    pool: Any, cache: Cache, table: str, inv: Any, write: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Start a slow load, commit ``write`` and see it notified meanwhile, fetch again."""
    slow = f"SELECT amount, pg_sleep(0.4)::text AS s FROM {table} WHERE id = 1"
    first = asyncio.ensure_future(cached_fetch(pool, slow, cache=cache))
    await asyncio.sleep(0.15)  # the slow SELECT has taken its snapshot
    seen = inv.notifications
    await pool.execute(write)
    await wait_for(lambda: inv.notifications > seen)
    await inv.wait_idle()
    second = await cached_fetch(pool, slow, cache=cache)
    return await first, second


async def test_every_invalidation_of_a_cache_guards_it(pool: Any, scratch_schema: str) -> None:
    table = await make_table(pool, scratch_schema)
    s = quote_ident(scratch_schema)
    await pool.execute(f"CREATE TABLE {s}.other (id int)")
    cache = Cache(MemoryStore())
    first = await setup_invalidation(pool, cache, [f"{scratch_schema}.prices"], dsn=DSN)
    second = await setup_invalidation(
        pool, cache, [f"{scratch_schema}.other"], dsn=DSN, channel="asyncperf_other"
    )
    slow = f"SELECT amount, pg_sleep(0.3)::text AS s FROM {table} WHERE id = 1"

    async def race(amount: int) -> None:
        seen = first.notifications
        loading = asyncio.ensure_future(cached_fetch(pool, slow, cache=cache))
        await asyncio.sleep(0.1)
        await pool.execute(f"UPDATE {table} SET amount = {amount} WHERE id = 1")
        await wait_for(lambda: first.notifications > seen)
        await first.wait_idle()
        assert (await loading)[0]["amount"] != amount  # loaded before the write...
        assert (await cached_fetch(pool, slow, cache=cache))[0]["amount"] == amount  # not kept

    try:
        await race(13)  # the second (another channel) must not replace the first's guard
        await second.aclose()  # closing one must not unregister the other
        await race(15)
    finally:
        await first.aclose()
        await second.aclose()
    await cache.aclose()


async def test_a_caller_after_a_notified_write_does_not_join_an_older_load(
    pool: Any, scratch_schema: str
) -> None:
    table = await make_table(pool, scratch_schema)
    cache = Cache(MemoryStore())
    async with await setup_invalidation(pool, cache, [f"{scratch_schema}.prices"], dsn=DSN) as inv:
        before, after = await racing_load(
            pool, cache, table, inv, f"UPDATE {table} SET amount = 14 WHERE id = 1"
        )
        assert before[0]["amount"] == 10  # started before the write: may be old
        assert after[0]["amount"] == 14  # arrived after it was notified: must be new
    await cache.aclose()
