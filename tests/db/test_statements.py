"""Slow statements: pg_stat_statements of PostgreSQL 12-17, ranking, filters, reset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from asyncperf import ConfigurationError
from asyncperf.db import QueryAnalyzer, SlowQuery, statement_stats
from asyncperf.db._statements import is_workload_statement, rank_statements
from tests.db.conftest import DSN
from tests.db.workload import statements

FIXTURES = Path(__file__).parent / "fixtures"
VERSIONS = [12, 13, 14, 15, 16, 17]


def load(version: int) -> dict[str, Any]:
    return json.loads((FIXTURES / f"pg_stat_statements.{version}.json").read_text())


def by_query(stats: list[SlowQuery]) -> dict[str, SlowQuery]:
    return {s.query: s for s in stats}


@pytest.mark.parametrize("version", VERSIONS)
def test_every_version_normalizes_to_the_same_figures(version: int) -> None:
    reference = by_query(statement_stats(load(15)["rows"]))
    stats = by_query(statement_stats(load(version)["rows"]))
    assert stats.keys() == reference.keys()
    for query, ref in reference.items():
        got = stats[query]
        assert got.calls == ref.calls
        assert got.total_seconds == pytest.approx(ref.total_seconds)
        assert got.mean_seconds == pytest.approx(ref.total_seconds / ref.calls)
        assert got.rows == ref.rows
        assert got.hit_ratio == ref.hit_ratio
        assert got.share_of_total == pytest.approx(ref.share_of_total)
        assert got.max_seconds == pytest.approx(ref.max_seconds)
    assert sum(s.share_of_total for s in stats.values()) == pytest.approx(1.0)
    if version == 12:
        assert all(s.wal_bytes is None for s in stats.values())
    else:
        assert all(s.wal_bytes is not None for s in stats.values())


def test_planning_time_counts_towards_the_total() -> None:
    row = load(15)["rows"][0]
    (stat,) = statement_stats([row])
    expected = (row["total_exec_time"] + row["total_plan_time"]) / 1000
    assert stat.total_seconds == pytest.approx(expected)
    assert stat.plan_seconds == pytest.approx(row["total_plan_time"] / 1000)


def test_rows_of_one_queryid_are_summed() -> None:
    row = load(14)["rows"][0]
    nested = {**row, "toplevel": False, "calls": 1, "total_exec_time": 1000.0, "max_exec_time": 999}
    (stat,) = statement_stats([row, nested])
    assert stat.calls == row["calls"] + 1
    assert stat.total_seconds == pytest.approx(
        (row["total_exec_time"] + 2 * row["total_plan_time"] + 1000.0) / 1000
    )
    assert stat.max_seconds == pytest.approx(0.999)


def test_ranking_and_filters() -> None:
    stats = statement_stats(load(15)["rows"])
    by_total = rank_statements(stats, top=3, min_calls=1, min_mean_seconds=0, order_by="total")
    assert len(by_total) == 3
    assert [s.total_seconds for s in by_total] == sorted(
        (s.total_seconds for s in stats), reverse=True
    )[:3]
    by_mean = rank_statements(stats, top=50, min_calls=1, min_mean_seconds=0, order_by="mean")
    assert [s.mean_seconds for s in by_mean] == sorted(
        (s.mean_seconds for s in by_mean), reverse=True
    )
    slowest = by_mean[0].mean_seconds
    only = rank_statements(stats, top=50, min_calls=1, min_mean_seconds=slowest, order_by="total")
    assert [s.mean_seconds for s in only] == [slowest]
    assert (
        rank_statements(stats, top=50, min_calls=10**9, min_mean_seconds=0, order_by="calls") == []
    )
    worst_hits = rank_statements(
        stats, top=50, min_calls=1, min_mean_seconds=0, order_by="hit_ratio"
    )
    ratios = [s.hit_ratio for s in worst_hits if s.hit_ratio is not None]
    assert ratios == sorted(ratios)
    for order in ("rows", "share", "calls"):
        assert rank_statements(stats, top=50, min_calls=1, min_mean_seconds=0, order_by=order)


@pytest.mark.parametrize(
    "kwargs",
    [{"top": 0}, {"min_calls": -1}, {"min_mean_seconds": float("nan")}, {"order_by": "speed"}],
)
def test_bad_filters_are_rejected(kwargs: dict[str, Any]) -> None:
    options: dict[str, Any] = {
        "top": 5,
        "min_calls": 1,
        "min_mean_seconds": 0.0,
        "order_by": "total",
    }
    options.update(kwargs)
    with pytest.raises(ConfigurationError):
        rank_statements([], **options)


@pytest.mark.parametrize(
    ("query", "kept"),
    [
        ("SELECT * FROM orders WHERE id = $1", True),
        ("UPDATE orders SET x = $1 WHERE id = $2", True),
        ("RESET ALL", False),
        ("UNLISTEN *", False),
        ("SELECT pg_advisory_unlock_all()", False),
        ("/* asyncperf */ EXPLAIN (FORMAT JSON) SELECT 1 FROM orders", False),
        ("SELECT * FROM hypopg_list_indexes", False),
        ("SELECT t.oid FROM pg_catalog.pg_type t WHERE t.oid = $1", False),
        ("SELECT interval $1 FROM orders", True),  # unparseable normalized text is kept
    ],
)
def test_housekeeping_is_left_out(query: str, kept: bool) -> None:
    assert is_workload_statement(query) is kept


@pytest.mark.postgres
async def test_live_slow_queries_rank_the_workload(pool: Any, workload_schema: str) -> None:
    analyzer = QueryAnalyzer(pool)
    await analyzer.reset_statistics()
    work = statements(workload_schema)
    heavy = work[0]  # the seq-scanning e-mail lookup, run most
    for _ in range(6):
        await pool.fetch(heavy.sql, *heavy.args)
    for item in work[1:3]:
        await pool.fetch(item.sql, *item.args)
    found = await analyzer.slow_queries(top=50)
    mine = [q for q in found if workload_schema in q.query]
    assert {q.query for q in mine} >= {heavy.sql, *(w.sql for w in work[1:3])}
    email = next(q for q in mine if q.query == heavy.sql)
    assert email.calls == 6
    assert email.rows == 6
    assert email.mean_seconds > 0
    assert 0 < email.share_of_total <= 1
    assert email.hit_ratio is not None
    assert all("asyncperf */" not in q.query for q in found)
    assert not any(q.query.startswith("RESET ALL") for q in found)
    by_calls = await analyzer.slow_queries(top=1, order_by="calls")
    assert by_calls[0].calls >= 6
    frequent = await analyzer.slow_queries(min_calls=6)
    assert heavy.sql in {q.query for q in frequent}
    assert all(q.calls >= 6 for q in frequent)
    assert await analyzer.slow_queries(min_mean_seconds=3600) == []
    # to_dict() is JSON-ready
    json.dumps(email.to_dict())
    await analyzer.reset_statistics()
    assert heavy.sql not in {q.query for q in await analyzer.slow_queries(top=100)}


@pytest.mark.postgres
async def test_dsn_source_opens_and_closes_its_connection() -> None:
    async with QueryAnalyzer(DSN) as analyzer:
        ext = await analyzer.extensions()
        assert ext.server_version >= 130000
        assert ext.pg_stat_statements, ext.problems
        assert ext.hypopg, ext.problems
        await analyzer.slow_queries(top=1)
    with pytest.raises(ConfigurationError):
        QueryAnalyzer("mysql://nope")
    with pytest.raises(ConfigurationError):
        QueryAnalyzer(42)
