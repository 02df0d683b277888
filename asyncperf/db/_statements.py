"""Slow statements from pg_stat_statements, across the column names of PostgreSQL 12-17.

The view's columns changed between versions (``total_time`` became ``total_exec_time`` +
``total_plan_time`` in 13, ``blk_read_time`` became ``shared_blk_read_time`` in 17, ...),
so rows are read with ``SELECT *`` and normalized in Python by :func:`statement_stats`,
which the recorded fixtures of each version exercise without a server of that version.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .._exceptions import ConfigurationError
from ._parse import parse_statement
from ._results import Result
from ._sql import MARKER

__all__ = [
    "ORDERINGS",
    "Ordering",
    "SlowQuery",
    "is_workload_statement",
    "rank_statements",
    "statement_stats",
]

Ordering = Literal["total", "mean", "calls", "rows", "hit_ratio", "share"]
ORDERINGS: tuple[Ordering, ...] = ("total", "mean", "calls", "rows", "hit_ratio", "share")

# asyncpg's pool reset and other housekeeping that is never worth reporting.
_NOISE_PREFIXES = ("hypopg_", "pg_stat_statements")


@dataclass(frozen=True)
class SlowQuery(Result):
    """One normalized statement from pg_stat_statements (times in seconds).

    Attributes:
        queryid: pg_stat_statements' query id (rows of several users/levels are summed).
        query: The normalized text (constants replaced by ``$n``).
        calls: Executions.
        total_seconds: Planning plus execution time, summed.
        mean_seconds: ``total_seconds / calls``.
        min_seconds: Fastest execution (execution time only).
        max_seconds: Slowest execution (execution time only).
        stddev_seconds: Spread of execution times; much larger than the mean suggests
            plan instability or parameter skew.
        rows: Rows returned or affected, summed.
        rows_per_call: ``rows / calls``.
        hit_ratio: Shared-buffer hits over hits plus reads (``None`` when no block was read).
        share_of_total: This statement's share of the database's statement time (0-1).
        temp_blocks_written: Blocks spilled to temporary files (work_mem too small).
        wal_bytes: WAL generated (``None`` before PostgreSQL 13).
        plan_seconds: Planning time (0 unless ``pg_stat_statements.track_planning``).
    """

    queryid: int
    query: str
    calls: int
    total_seconds: float
    mean_seconds: float
    min_seconds: float
    max_seconds: float
    stddev_seconds: float
    rows: int
    rows_per_call: float
    hit_ratio: float | None
    share_of_total: float
    temp_blocks_written: int
    wal_bytes: int | None
    plan_seconds: float


def _num(row: Mapping[str, Any], *names: str) -> float:
    for name in names:
        value = row.get(name)
        if value is not None:
            return float(value)
    return 0.0


def _opt(row: Mapping[str, Any], name: str) -> int | None:
    value = row.get(name)
    return None if value is None else int(value)


def statement_stats(rows: Iterable[Mapping[str, Any]]) -> list[SlowQuery]:
    """Normalize raw pg_stat_statements rows of any version 12-17 into :class:`SlowQuery`.

    Rows sharing a ``queryid`` (other users, nested levels) are summed. The share of total
    time is computed over every row given.

    Args:
        rows: Mappings of column name to value, as ``SELECT * FROM pg_stat_statements``
            returns them.

    Returns:
        One entry per query id, in no particular order.
    """
    groups: dict[Any, dict[str, Any]] = {}
    for row in rows:
        calls = int(_num(row, "calls"))
        exec_ms = _num(row, "total_exec_time", "total_time")
        plan_ms = _num(row, "total_plan_time")
        key = row.get("queryid")
        if key is None:
            key = ("text", row.get("query"))
        group = groups.get(key)
        if group is None:
            group = groups[key] = {
                "queryid": int(row["queryid"]) if row.get("queryid") is not None else 0,
                "query": str(row.get("query") or ""),
                "calls": 0,
                "exec_ms": 0.0,
                "plan_ms": 0.0,
                "min_ms": None,
                "max_ms": 0.0,
                "stddev_ms": 0.0,
                "stddev_calls": -1,
                "rows": 0,
                "hit": 0,
                "read": 0,
                "temp": 0,
                "wal": None,
            }
        group["calls"] += calls
        group["exec_ms"] += exec_ms
        group["plan_ms"] += plan_ms
        low = _num(row, "min_exec_time", "min_time")
        group["min_ms"] = low if group["min_ms"] is None else min(group["min_ms"], low)
        group["max_ms"] = max(group["max_ms"], _num(row, "max_exec_time", "max_time"))
        if calls > group["stddev_calls"]:
            # Spreads of separate rows do not add; keep the one of the busiest row.
            group["stddev_ms"] = _num(row, "stddev_exec_time", "stddev_time")
            group["stddev_calls"] = calls
        group["rows"] += int(_num(row, "rows"))
        group["hit"] += int(_num(row, "shared_blks_hit"))
        group["read"] += int(_num(row, "shared_blks_read"))
        group["temp"] += int(_num(row, "temp_blks_written"))
        wal = _opt(row, "wal_bytes")
        if wal is not None:
            group["wal"] = (group["wal"] or 0) + wal
    grand_total = sum(g["exec_ms"] + g["plan_ms"] for g in groups.values())
    result = []
    for g in groups.values():
        total = (g["exec_ms"] + g["plan_ms"]) / 1000.0
        calls = g["calls"]
        blocks = g["hit"] + g["read"]
        result.append(
            SlowQuery(
                queryid=g["queryid"],
                query=g["query"],
                calls=calls,
                total_seconds=total,
                mean_seconds=total / calls if calls else 0.0,
                min_seconds=(g["min_ms"] or 0.0) / 1000.0,
                max_seconds=g["max_ms"] / 1000.0,
                stddev_seconds=g["stddev_ms"] / 1000.0,
                rows=g["rows"],
                rows_per_call=g["rows"] / calls if calls else 0.0,
                hit_ratio=g["hit"] / blocks if blocks else None,
                share_of_total=(total * 1000.0) / grand_total if grand_total else 0.0,
                temp_blocks_written=g["temp"],
                wal_bytes=None if g["wal"] is None else int(g["wal"]),
                plan_seconds=g["plan_ms"] / 1000.0,
            )
        )
    return result


def is_workload_statement(query: str) -> bool:
    """Tell application statements from housekeeping worth leaving out of reports.

    Leaves out asyncperf's own statements (they carry :data:`MARKER`), utility statements
    (``RESET ALL``, ``BEGIN``, ``SET``, ``EXPLAIN``, DDL, ...), statements that read no
    table (``SELECT pg_advisory_unlock_all()``), and HypoPG / pg_stat_statements calls.
    Text the parser rejects (truncated, or ``interval $1``) is kept: it is still load.
    """
    if MARKER in query:
        return False
    try:
        parsed = parse_statement(query)
    except ValueError:
        return True
    if parsed.kind == "other":
        return False
    if not parsed.tables:
        return False
    if any(t.name.startswith(_NOISE_PREFIXES) for t in parsed.tables):
        return False
    # Catalog-only reads (drivers' type introspection, monitoring) are not the workload.
    return not all(
        t.name.startswith("pg_") or t.schema in ("pg_catalog", "information_schema")
        for t in parsed.tables
    )


def rank_statements(
    stats: Iterable[SlowQuery],
    *,
    top: int,
    min_calls: int,
    min_mean_seconds: float,
    order_by: Ordering,
) -> list[SlowQuery]:
    """Filter and rank statements: the biggest first (the worst ``hit_ratio`` first).

    Raises:
        ConfigurationError: A bad ``top``, ``min_calls``, ``min_mean_seconds`` or ``order_by``.
    """
    if top <= 0:
        raise ConfigurationError(f"top must be positive, got {top}")
    if min_calls < 0:
        raise ConfigurationError(f"min_calls must not be negative, got {min_calls}")
    if not min_mean_seconds >= 0:
        raise ConfigurationError(f"min_mean_seconds must be >= 0, got {min_mean_seconds}")
    if order_by not in ORDERINGS:
        raise ConfigurationError(f"order_by must be one of {ORDERINGS}, got {order_by!r}")
    kept = [s for s in stats if s.calls >= min_calls and s.mean_seconds >= min_mean_seconds]
    keys: dict[str, Callable[[SlowQuery], float]] = {
        "total": lambda s: s.total_seconds,
        "mean": lambda s: s.mean_seconds,
        "calls": lambda s: float(s.calls),
        "rows": lambda s: float(s.rows),
        "share": lambda s: s.share_of_total,
        # The worst cache behaviour first; statements that read nothing last.
        "hit_ratio": lambda s: -(s.hit_ratio if s.hit_ratio is not None else 2.0),
    }
    key = keys[order_by]
    kept.sort(key=lambda s: (key(s), s.total_seconds), reverse=True)
    return kept[:top]
