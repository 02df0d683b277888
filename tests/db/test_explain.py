"""EXPLAIN findings: live plans on the generated workload, and the pure rules."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from asyncperf import ConfigurationError
from asyncperf.db import QueryAnalyzer, analyze_plan
from asyncperf.db._sql import quote_ident
from tests.db.conftest import DSN


@pytest.mark.postgres
async def test_seq_scan_under_a_selective_filter(pool: Any, workload_schema: str) -> None:
    s = quote_ident(workload_schema)
    analyzer = QueryAnalyzer(pool)
    generic = await analyzer.explain(f"SELECT id FROM {s}.customers WHERE email = $1")
    assert generic.generic
    assert not generic.analyzed
    (finding,) = [f for f in generic.findings if f.kind == "seq_scan"]
    assert finding.node_type == "Seq Scan"
    assert finding.relation == f"{workload_schema}.customers"
    assert finding.numbers["rows_read"] == pytest.approx(100_000, rel=0.05)
    assert finding.severity == "high"

    analyzed = await analyzer.explain(
        f"SELECT id FROM {s}.customers WHERE email = $1", "user7@example.com", analyze=True
    )
    assert analyzed.analyzed
    assert not analyzed.generic
    assert analyzed.execution_seconds is not None
    assert analyzed.execution_seconds > 0
    (finding,) = [f for f in analyzed.findings if f.kind == "seq_scan"]
    assert finding.numbers["rows_kept"] == 1
    assert finding.numbers["rows_read"] == pytest.approx(100_000, rel=0.01)
    analyzed.to_dict()


@pytest.mark.postgres
async def test_sort_under_limit_and_no_finding_for_indexed_lookups(
    pool: Any, workload_schema: str
) -> None:
    s = quote_ident(workload_schema)
    analyzer = QueryAnalyzer(pool)
    result = await analyzer.explain(
        f"SELECT id FROM {s}.events ORDER BY occurred_at DESC LIMIT 10", analyze=True
    )
    kinds = [f.kind for f in result.findings]
    assert "sort_under_limit" in kinds
    assert "misestimate" not in kinds  # nodes below a Limit stop early by design
    sort = next(f for f in result.findings if f.kind == "sort_under_limit")
    assert sort.numbers["rows_sorted"] == pytest.approx(100_000, rel=0.01)
    assert "occurred_at" in sort.advice
    indexed = await analyzer.explain(f"SELECT name FROM {s}.products WHERE sku = $1", "SKU-5")
    assert indexed.findings == ()


@pytest.mark.postgres
async def test_disk_sort_and_misestimate(scratch_schema: str) -> None:
    s = quote_ident(scratch_schema)
    conn = await asyncpg.connect(DSN)
    try:
        await conn.execute(
            f"CREATE TABLE {s}.t (a int, b int) WITH (autovacuum_enabled = false);"
            f"INSERT INTO {s}.t SELECT g, g % 10 FROM generate_series(1, 1000) g;"
            f"ANALYZE {s}.t;"
            f"INSERT INTO {s}.t SELECT g, 1 FROM generate_series(1, 60000) g;"
            "SET work_mem = '64kB'; SET max_parallel_workers_per_gather = 0"
        )
        analyzer = QueryAnalyzer(conn)
        result = await analyzer.explain(f"SELECT * FROM {s}.t WHERE b = 1 ORDER BY a", analyze=True)
        kinds = {f.kind for f in result.findings}
        assert {"disk_sort", "misestimate"} <= kinds
        disk = next(f for f in result.findings if f.kind == "disk_sort")
        assert disk.numbers["disk_kb"] > 0
        miss = next(f for f in result.findings if f.kind == "misestimate")
        assert miss.numbers["factor"] >= 10
        assert f"ANALYZE {scratch_schema}.t" in miss.advice
        # EXPLAIN ANALYZE of a write is rolled back
        await analyzer.explain(f"DELETE FROM {s}.t", analyze=True)
        assert await conn.fetchval(f"SELECT count(*) FROM {s}.t") == 61000
        with pytest.raises(ConfigurationError, match="placeholders"):
            await analyzer.explain(f"SELECT * FROM {s}.t WHERE a = $1", analyze=True)
    finally:
        await conn.close()


def node(kind: str, **extra: Any) -> dict[str, Any]:
    return {"Node Type": kind, "Total Cost": 100.0, "Plan Rows": 1, **extra}


def test_nested_loop_over_a_large_outer_side() -> None:
    plan = node(
        "Nested Loop",
        Plans=[
            node("Seq Scan", **{"Relation Name": "a", "Schema": "s", "Plan Rows": 50_000}),
            node("Seq Scan", **{"Relation Name": "b", "Schema": "s", "Plan Rows": 10}),
        ],
    )
    (finding,) = analyze_plan(plan, analyzed=False)
    assert finding.kind == "nested_loop"
    assert finding.severity == "high"
    assert finding.relation == "s.b"
    assert finding.numbers["outer_rows"] == 50_000


def test_spills_lossy_bitmaps_heap_fetches_and_workers() -> None:
    plan = node(
        "Gather",
        **{"Workers Planned": 4, "Workers Launched": 1, "Actual Rows": 1, "Actual Loops": 1},
        Plans=[
            node(
                "Hash",
                **{"Hash Batches": 8, "Original Hash Batches": 1, "Peak Memory Usage": 4096},
                Plans=[
                    node("Bitmap Heap Scan", **{"Lossy Heap Blocks": 120, "Relation Name": "x"}),
                    node("Index Only Scan", **{"Heap Fetches": 5000, "Relation Name": "y"}),
                ],
            )
        ],
    )
    kinds = {f.kind for f in analyze_plan(plan, analyzed=True)}
    assert kinds == {"workers_not_launched", "disk_hash", "lossy_bitmap", "heap_fetches"}


def test_small_tables_and_unselective_filters_are_not_findings() -> None:
    small = node("Seq Scan", **{"Relation Name": "t", "Schema": "s", "Filter": "(a = 1)"})
    assert analyze_plan(small, table_rows={"s.t": 500}) == []
    wide = node(
        "Seq Scan",
        **{"Relation Name": "t", "Schema": "s", "Filter": "(a = 1)", "Plan Rows": 40_000},
    )
    assert analyze_plan(wide, table_rows={"s.t": 100_000}) == []
