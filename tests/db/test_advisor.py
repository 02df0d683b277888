"""Index advice on a generated workload with planted missing indexes and planted traps."""

from __future__ import annotations

import json
import os
import secrets
from typing import Any

import asyncpg
import pytest

from asyncperf import ConfigurationError
from asyncperf.db import IndexAdvice, QueryAnalyzer
from asyncperf.db._advisor import METHOD_HYPOPG, METHOD_ROLLBACK, METHOD_UNAVAILABLE
from asyncperf.db._sql import quote_ident
from tests.db.conftest import DSN
from tests.db.workload import Statement, statements

pytestmark = pytest.mark.postgres


def planted(schema: str) -> list[Statement]:
    return [s for s in statements(schema) if s.expected is not None]


def traps(schema: str) -> list[Statement]:
    return [s for s in statements(schema) if s.expected is None]


def check_advice(advice: IndexAdvice, schema: str) -> None:
    """Every planted index found (one per statement), nothing for the traps."""
    verdicts = {v.query: v for v in advice.statements}
    for item in planted(schema):
        verdict = verdicts[item.sql]
        assert verdict.suggested is not None, (item.name, verdict.reason)
        suggested_schema, table, columns = verdict.suggested
        expected_table, expected_columns = item.expected  # type: ignore[misc]
        assert (suggested_schema, table) == (schema, expected_table), item.name
        # a composite's column order is the planner's choice (most selective first)
        assert sorted(columns) == sorted(expected_columns), (item.name, columns)
        assert verdict.cost_after is not None
        assert verdict.cost_before is not None
        assert verdict.cost_after <= 0.5 * verdict.cost_before
    for item in traps(schema):
        verdict = verdicts[item.sql]
        assert verdict.suggested is None, (item.name, verdict.reason)
        assert verdict.reason
    suggested = {(s.table, tuple(sorted(s.columns))) for s in advice}
    assert suggested == {
        (table, tuple(sorted(columns)))
        for table, columns in (item.expected for item in planted(schema))  # type: ignore[misc]
    }
    for suggestion in advice:
        assert suggestion.statement.startswith("CREATE INDEX CONCURRENTLY ")
        assert f"ON {quote_ident(schema)}.{quote_ident(suggestion.table)} (" in suggestion.statement
        assert suggestion.cost_after < suggestion.cost_before
        assert suggestion.statements
    json.dumps(advice.to_dict())


async def index_count(conn: Any, schema: str) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM pg_indexes WHERE schemaname = $1", schema))


async def test_finds_every_planted_index_and_nothing_for_the_traps(
    pool: Any, workload_schema: str
) -> None:
    analyzer = QueryAnalyzer(pool)
    before = await index_count(pool, workload_schema)
    advice = await analyzer.recommend_indexes([s.sql for s in statements(workload_schema)])
    assert advice.method == METHOD_HYPOPG
    check_advice(advice, workload_schema)
    reasons = {v.query: v.reason for v in advice.statements}
    by_name = {s.name: s.sql for s in statements(workload_schema)}
    assert reasons[by_name["country_name"]].startswith("low initial cost")  # tiny table
    assert reasons[by_name["sku"]].startswith("low initial cost")  # already indexed
    assert "BitmapOr" in reasons[by_name["kind_or_source"]]
    assert reasons[by_name["status"]].startswith("need 50% cost savings")
    assert await index_count(pool, workload_schema) == before


async def test_uses_pg_stat_statements_normalized_text(pool: Any, workload_schema: str) -> None:
    analyzer = QueryAnalyzer(pool)
    await analyzer.reset_statistics()
    for item in statements(workload_schema):
        for _ in range(2):
            await pool.fetch(item.sql, *item.args)
    advice = await analyzer.recommend_indexes(schemas=[workload_schema])
    assert all(workload_schema in v.query for v in advice.statements)
    # LIMIT 10 was normalized to LIMIT $1: explained through a generic plan
    assert any("LIMIT $1" in v.query and v.suggested for v in advice.statements)
    suggested = {(s.table, tuple(sorted(s.columns))) for s in advice}
    assert suggested == {
        (table, tuple(sorted(columns)))
        for table, columns in (item.expected for item in planted(workload_schema))  # type: ignore[misc]
    }


async def test_no_hypothetical_index_survives_on_the_pooled_connection(
    workload_schema: str,
) -> None:
    pool = await asyncpg.create_pool(DSN, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.fetchval(
                "SELECT count(*) FROM hypopg_create_index($1)",
                f"CREATE INDEX ON {quote_ident(workload_schema)}.orders (note)",
            )
        await QueryAnalyzer(pool).recommend_indexes([s.sql for s in planted(workload_schema)][:2])
        async with pool.acquire() as conn:  # max_size=1: the connection the advisor used
            assert await conn.fetchval("SELECT count(*) FROM hypopg_list_indexes") == 0
    finally:
        await pool.close()


async def test_rolled_back_fallback_gives_the_same_advice(pool: Any, workload_schema: str) -> None:
    before = await index_count(pool, workload_schema)
    advice = await QueryAnalyzer(pool).recommend_indexes(
        [s.sql for s in statements(workload_schema)], use_hypopg=False
    )
    assert advice.method == METHOD_ROLLBACK
    assert any("rolled-back" in note for note in advice.notes)
    check_advice(advice, workload_schema)
    assert all(s.method == METHOD_ROLLBACK for s in advice)
    assert await index_count(pool, workload_schema) == before
    # over the size limit, the fallback refuses to build
    limited = await QueryAnalyzer(pool).recommend_indexes(
        [planted(workload_schema)[0].sql], use_hypopg=False, fallback_max_table_bytes=1024
    )
    assert not limited.suggestions
    assert "size limit" in limited.statements[0].reason
    off = await QueryAnalyzer(pool).recommend_indexes(
        [planted(workload_schema)[0].sql], use_hypopg=False, fallback=None
    )
    assert off.method == METHOD_UNAVAILABLE
    assert not off.suggestions
    with pytest.raises(ConfigurationError):
        await QueryAnalyzer(pool).recommend_indexes([], min_cost_savings=1.5)


async def test_database_without_hypopg() -> None:
    """A database where HypoPG is not installed: probed, labelled, fallback only."""
    name = f"asyncperf_nohypo_{os.getpid()}_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(DSN)
    try:
        await admin.execute(f"CREATE DATABASE {quote_ident(name)}")
        conn = await asyncpg.connect(DSN.rsplit("/", 1)[0] + "/" + name)
        try:
            await conn.execute(
                "CREATE TABLE items (id int PRIMARY KEY, code int NOT NULL, label text);"
                "INSERT INTO items SELECT g, g * 7, 'item' FROM generate_series(1, 50000) g;"
                "ANALYZE items"
            )
            analyzer = QueryAnalyzer(conn)
            ext = await analyzer.extensions()
            assert not ext.hypopg
            assert any("hypopg" in p.lower() for p in ext.problems)
            advice = await analyzer.recommend_indexes(["SELECT label FROM items WHERE code = $1"])
            assert advice.method == METHOD_ROLLBACK
            (suggestion,) = advice.suggestions
            assert suggestion.columns == ("code",)
            assert (
                await conn.fetchval("SELECT count(*) FROM pg_indexes WHERE tablename = 'items'")
                == 1
            )
            none = await analyzer.recommend_indexes(
                ["SELECT label FROM items WHERE code = $1"], fallback=None
            )
            assert none.method == METHOD_UNAVAILABLE
            assert "HypoPG is not installed" in none.notes[0]
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
        await admin.close()


async def test_applying_the_advice_makes_the_slow_statements_faster(
    pool: Any, workload_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    analyzer = QueryAnalyzer(pool)
    work = planted(workload_schema)
    advice = await analyzer.recommend_indexes([s.sql for s in work])
    assert len(advice) == len(work)

    async def measure() -> tuple[float, float]:
        cost = elapsed = 0.0
        for item in work:
            cost += (await analyzer.explain(item.sql)).total_cost  # generic plan
            # best of 3 EXPLAIN ANALYZE runs, to damp noise on a shared machine
            runs = [await analyzer.explain(item.sql, *item.args, analyze=True) for _ in range(3)]
            elapsed += min(r.execution_seconds or 0.0 for r in runs)
        return cost, elapsed

    cost_before, time_before = await measure()
    try:
        for suggestion in advice:
            await pool.execute(suggestion.statement)
        await pool.execute(f"ANALYZE {quote_ident(workload_schema)}.orders")
        cost_after, time_after = await measure()
        for item in work:  # every statement's own plan got cheaper
            result = await analyzer.explain(item.sql)
            assert not [f for f in result.findings if f.kind in {"seq_scan", "sort_under_limit"}]
    finally:
        for suggestion in advice:
            await pool.execute(
                f"DROP INDEX CONCURRENTLY IF EXISTS "
                f"{quote_ident(suggestion.schema)}.{quote_ident(suggestion.name)}"
            )
    cost_factor = cost_before / cost_after
    time_factor = time_before / time_after
    with capsys.disabled():
        print(
            f"\n[asyncperf.db] applying {len(advice)} suggested indexes: plan cost "
            f"{cost_before:,.0f} -> {cost_after:,.0f} ({cost_factor:,.0f}x), EXPLAIN ANALYZE "
            f"{time_before * 1000:.1f} ms -> {time_after * 1000:.2f} ms ({time_factor:,.0f}x)"
        )
    assert cost_factor > 1
    assert time_factor > 1


async def test_rollback_fallback_bounds_each_build_with_a_statement_timeout(
    pool: Any, scratch_schema: str
) -> None:
    s = quote_ident(scratch_schema)
    await pool.execute(
        f"CREATE TABLE {s}.big (id int, code int NOT NULL);"
        f"INSERT INTO {s}.big SELECT g, (g::bigint * 7919 % 1000003)::int "
        "FROM generate_series(1, 300000) g;"
        f"ANALYZE {s}.big"
    )
    query = f"SELECT id FROM {s}.big WHERE code = $1"
    # the builds run under a statement_timeout (5 s by default)
    seen: list[str] = []

    class Spy(asyncpg.Connection):  # type: ignore[misc]
        async def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
            if "CREATE INDEX" in query:
                seen.append(await self.fetchval("SHOW statement_timeout"))
            return await super().execute(query, *args, **kwargs)

    spied = await asyncpg.create_pool(DSN, min_size=1, max_size=1, connection_class=Spy)
    try:
        advice = await QueryAnalyzer(spied).recommend_indexes([query], use_hypopg=False)
    finally:
        await spied.close()
    assert seen
    assert set(seen) == {"5s"}
    assert [x.columns for x in advice] == [("code",)]  # builds well within 5 s
    # a build that runs longer than the timeout is cancelled: the writers' wait is bounded
    bounded = await QueryAnalyzer(pool).recommend_indexes(
        [query], use_hypopg=False, fallback_statement_timeout=0.01
    )
    assert not bounded.suggestions
    assert bounded.statements[0].reason.startswith("need 50% cost savings")
    assert "statement_timeout" in bounded.notes[0]
    async with pool.acquire() as conn:
        assert await conn.fetchval("SHOW statement_timeout") == "0"
    with pytest.raises(ConfigurationError):
        await QueryAnalyzer(pool).recommend_indexes(
            [query], use_hypopg=False, fallback_statement_timeout=0
        )
