"""Index health: each check finds what was planted for it, with advice and a reason."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from asyncperf.db import QueryAnalyzer
from asyncperf.db._sql import quote_ident
from tests.db.conftest import DSN, flush_stats

pytestmark = pytest.mark.postgres


async def test_health_checks_find_what_was_planted(pool: Any, scratch_schema: str) -> None:
    s = quote_ident(scratch_schema)
    conn = await asyncpg.connect(DSN)
    try:
        await conn.execute(
            f"""
            CREATE TABLE {s}.parents (id int PRIMARY KEY, name text NOT NULL);
            INSERT INTO {s}.parents SELECT g, 'p' || g FROM generate_series(1, 1000) g;
            CREATE TABLE {s}.children (
                id int PRIMARY KEY, parent_id int NOT NULL REFERENCES {s}.parents (id),
                code int NOT NULL, tag text NOT NULL
            ) WITH (autovacuum_enabled = false);
            INSERT INTO {s}.children
                SELECT g, 1 + g % 1000, g % 7, 't' || (g % 3) FROM generate_series(1, 100000) g;
            CREATE INDEX children_code_idx ON {s}.children (code);
            CREATE INDEX children_code_tag_idx ON {s}.children (code, tag);
            CREATE TABLE {s}.ledger (id int PRIMARY KEY, amount int NOT NULL)
                WITH (autovacuum_enabled = false);
            INSERT INTO {s}.ledger SELECT g, g FROM generate_series(1, 100000) g;
            """
        )
        # an invalid index: a concurrent unique build over duplicate values fails
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                f"CREATE UNIQUE INDEX CONCURRENTLY children_tag_uq ON {s}.children (tag)"
            )
        # bloat: delete 2/3 of the ledger and vacuum (pages stay, rows go)
        await conn.execute(f"DELETE FROM {s}.ledger WHERE id % 3 <> 0")
        await flush_stats(conn)  # so the counters land before VACUUM resets them
        await conn.execute(f"VACUUM ANALYZE {s}.ledger")
        await conn.execute(f"ANALYZE {s}.parents")
        await flush_stats(conn)
        await conn.execute(f"ANALYZE {s}.children")
        # stale statistics and dead rows on children, after its last ANALYZE
        await conn.execute(f"UPDATE {s}.children SET tag = tag || 'x' WHERE id % 2 = 0")
        await flush_stats(conn)
    finally:
        await conn.close()

    health = None
    for _ in range(20):  # cumulative statistics arrive asynchronously
        health = await QueryAnalyzer(pool).index_health(schemas=[scratch_schema])
        if health.stale:
            break
        await asyncio.sleep(0.1)
    assert health is not None

    assert [(r.index, r.covered_by) for r in health.redundant] == [
        ("children_code_idx", "children_code_tag_idx")
    ]
    assert [i.index for i in health.invalid] == ["children_tag_uq"]
    assert [(f.table, f.columns) for f in health.unindexed_foreign_keys] == [
        ("children", ("parent_id",))
    ]
    unused = {u.index for u in health.unused}
    assert {"children_code_idx", "children_code_tag_idx"} <= unused
    assert "ledger_pkey" not in unused  # backs a constraint
    assert [b.index for b in health.bloated] == ["ledger_pkey"]
    assert health.bloated[0].bloat_ratio > 0.5
    stale = {t.table: t for t in health.stale}
    assert stale["children"].needs_vacuum
    assert "ledger" not in stale

    actions = {(a.action, a.target) for a in health.advice}
    assert ("DROP", f"{scratch_schema}.children_code_idx") in actions
    assert ("REINDEX", f"{scratch_schema}.children_tag_uq") in actions
    assert ("REINDEX", f"{scratch_schema}.ledger_pkey") in actions
    assert ("CREATE INDEX", f"{scratch_schema}.children") in actions
    assert ("VACUUM", f"{scratch_schema}.children") in actions
    for advice in health.advice:
        assert advice.reason
        assert quote_ident(scratch_schema) in advice.statement
    fk = next(a for a in health.advice if a.action == "CREATE INDEX")
    assert fk.statement == (
        f'CREATE INDEX CONCURRENTLY "children_parent_id_idx" ON {s}."children" ("parent_id")'
    )
    assert "children_parent_id_fkey" in fk.reason
    redundant = next(a for a in health.advice if a.target.endswith("children_code_idx"))
    assert "children_code_tag_idx" in redundant.reason
    health.to_dict()


async def test_analyze_advice_for_a_table_never_analyzed(pool: Any, scratch_schema: str) -> None:
    s = quote_ident(scratch_schema)
    conn = await asyncpg.connect(DSN)
    try:
        await conn.execute(
            f"CREATE TABLE {s}.fresh (id int) WITH (autovacuum_enabled = false);"
            f"INSERT INTO {s}.fresh SELECT generate_series(1, 2000)"
        )
        await flush_stats(conn)
    finally:
        await conn.close()
    for _ in range(20):
        health = await QueryAnalyzer(pool).index_health(schemas=[scratch_schema])
        if health.stale:
            break
        await asyncio.sleep(0.1)
    (table,) = health.stale
    assert table.needs_analyze
    assert table.last_analyze is None
    (advice,) = health.advice
    assert advice.action == "ANALYZE"
    assert advice.statement == f'ANALYZE {s}."fresh"'
    assert "never analyzed" in advice.reason
