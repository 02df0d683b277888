"""EXPLAIN (FORMAT JSON) plans, and the findings a person can act on.

:func:`analyze_plan` is pure (a plan in, findings out) so its rules are tested on plans
recorded from the server; :func:`explain_json` runs EXPLAIN, including generic plans for
pg_stat_statements' ``$n`` text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._connection import Connection
from ._results import Result
from ._sql import MARKER

__all__ = [
    "ExplainResult",
    "Finding",
    "analyze_plan",
    "explain_json",
    "iter_nodes",
    "plan_relations",
]

#: Tables smaller than this are never worth a finding: scanning them is cheap.
LARGE_TABLE_ROWS = 10_000
#: A filter is selective when it keeps at most this share of the rows it reads.
SELECTIVE = 0.1
#: Estimated and actual row counts this many times apart are a misestimate.
MISESTIMATE_FACTOR = 10.0
_GENERIC_NAME = "asyncperf_generic_plan"


@dataclass(frozen=True)
class Finding(Result):
    """Something in a plan worth acting on.

    Attributes:
        kind: ``seq_scan``, ``sort_under_limit``, ``misestimate``, ``disk_sort``,
            ``disk_hash``, ``nested_loop``, ``lossy_bitmap``, ``heap_fetches`` or
            ``workers_not_launched``.
        severity: ``high``, ``medium`` or ``low``.
        node_type: The plan node (``Seq Scan``, ``Sort``, ...).
        relation: ``schema.table`` the node reads, when it reads one.
        message: What was seen, with the numbers.
        advice: What to do about it.
        numbers: The figures behind the message (rows, costs, kB, loops, ...).
    """

    kind: str
    severity: str
    node_type: str
    relation: str | None
    message: str
    advice: str
    numbers: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ExplainResult(Result):
    """A plan and what :func:`analyze_plan` found in it (times in seconds).

    Attributes:
        plan: The root ``Plan`` object of EXPLAIN's JSON.
        total_cost: The planner's estimated total cost of the root node.
        plan_rows: The planner's estimated row count at the root.
        findings: Actionable findings, the most severe first.
        analyzed: Whether the statement ran (EXPLAIN ANALYZE; rolled back).
        generic: Whether this is a generic plan (``$n`` text explained without values).
        planning_seconds: Planning time (ANALYZE only).
        execution_seconds: Execution time (ANALYZE only).
    """

    plan: Mapping[str, Any]
    total_cost: float
    plan_rows: float
    findings: tuple[Finding, ...]
    analyzed: bool
    generic: bool
    planning_seconds: float | None = None
    execution_seconds: float | None = None


def iter_nodes(
    plan: Mapping[str, Any], parent: Mapping[str, Any] | None = None
) -> Iterator[tuple[Mapping[str, Any], Mapping[str, Any] | None]]:
    """Yield every node of a plan tree with its parent, depth first."""
    yield plan, parent
    for child in plan.get("Plans", ()):
        yield from iter_nodes(child, plan)


def _relation(node: Mapping[str, Any]) -> str | None:
    name = node.get("Relation Name")
    if name is None:
        return None
    schema = node.get("Schema")
    return f"{schema}.{name}" if schema else str(name)


def plan_relations(plan: Mapping[str, Any]) -> set[tuple[str, str]]:
    """Return the ``(schema, table)`` pairs a VERBOSE plan reads."""
    return {
        (str(node["Schema"]), str(node["Relation Name"]))
        for node, _ in iter_nodes(plan)
        if "Relation Name" in node and "Schema" in node
    }


def _rows(node: Mapping[str, Any], *, analyzed: bool) -> float:
    """Rows a node produces over all its loops (actual under ANALYZE, else estimated)."""
    if analyzed and "Actual Rows" in node:
        return float(node["Actual Rows"]) * float(node.get("Actual Loops", 1) or 1)
    return float(node.get("Plan Rows", 0))


def _seq_scan(
    node: Mapping[str, Any], table_rows: Mapping[str, float], analyzed: bool
) -> Finding | None:
    if node.get("Node Type") != "Seq Scan" or "Filter" not in node:
        return None
    relation = _relation(node)
    loops = float(node.get("Actual Loops", 1) or 1)
    if analyzed and "Actual Rows" in node:
        kept = float(node["Actual Rows"]) * loops
        removed = float(node.get("Rows Removed by Filter", 0)) * loops
        read = kept + removed
    else:
        kept = float(node.get("Plan Rows", 0))
        if node.get("Parallel Aware"):
            kept *= 1 + float(node.get("Workers Planned", 2) or 2)
        read = float(table_rows.get(relation or "", 0.0))
    if read < LARGE_TABLE_ROWS or kept > SELECTIVE * read:
        return None
    share = kept / read if read else 0.0
    return Finding(
        kind="seq_scan",
        severity="high" if share < 0.01 else "medium",
        node_type="Seq Scan",
        relation=relation,
        message=(
            f"Seq Scan on {relation} reads {read:,.0f} rows to keep {kept:,.0f} "
            f"({share:.2%}) with filter {node['Filter']}"
        ),
        advice="index the filtered column(s) so only matching rows are read "
        "(recommend_indexes() checks which index would pay off)",
        numbers={"rows_read": read, "rows_kept": kept, "total_cost": node["Total Cost"]},
    )


def _sort_under_limit(node: Mapping[str, Any], analyzed: bool) -> Finding | None:
    if node.get("Node Type") != "Limit":
        return None
    child = node.get("Plans", [None])[0]
    while child is not None and child.get("Node Type") in {"Gather Merge", "Gather"}:
        child = child.get("Plans", [None])[0]
    if child is None or child.get("Node Type") != "Sort":
        return None
    source = child.get("Plans", [{}])[0]
    sorted_rows = _rows(source, analyzed=analyzed) if source else _rows(child, analyzed=analyzed)
    if sorted_rows < 1000:
        return None
    kept = _rows(node, analyzed=analyzed)
    keys = ", ".join(child.get("Sort Key", ()))
    return Finding(
        kind="sort_under_limit",
        severity="high" if sorted_rows >= 100_000 else "medium",
        node_type="Sort",
        relation=_relation(source) if source else None,
        message=f"sorts {sorted_rows:,.0f} rows by {keys} to return the first {kept:,.0f}",
        advice=f"an index ordered by ({keys}) lets the Limit stop after {kept:,.0f} rows",
        numbers={
            "rows_sorted": sorted_rows,
            "rows_returned": kept,
            "sort_cost": child["Total Cost"],
        },
    )


def _under_limit(plan: Mapping[str, Any]) -> set[int]:
    """Return the ids of the nodes below a Limit node."""
    below: set[int] = set()

    def visit(node: Mapping[str, Any], limited: bool) -> None:
        if limited:
            below.add(id(node))
        for child in node.get("Plans", ()):
            visit(child, limited or node.get("Node Type") == "Limit")

    visit(plan, False)
    return below


def _misestimated_below(node: Mapping[str, Any], limited: set[int]) -> bool:
    for child, _ in iter_nodes(node):
        if child is not node and _misestimate(child, early_stop=id(child) in limited):
            return True
    return False


def _misestimate(node: Mapping[str, Any], *, early_stop: bool = False) -> Finding | None:
    if "Actual Rows" not in node or node.get("Actual Loops", 1) == 0:
        return None
    loops = float(node.get("Actual Loops", 1) or 1)
    actual = float(node["Actual Rows"]) * loops
    estimated = float(node.get("Plan Rows", 0)) * loops
    if early_stop and actual < estimated:
        return None
    high, low = max(actual, estimated), max(min(actual, estimated), 1.0)
    if high < 1000 or high / low < MISESTIMATE_FACTOR:
        return None
    relation = _relation(node)
    target = f"ANALYZE {relation}" if relation else "ANALYZE the tables involved"
    return Finding(
        kind="misestimate",
        severity="medium",
        node_type=str(node.get("Node Type")),
        relation=relation,
        message=(
            f"{node.get('Node Type')} estimated {estimated:,.0f} rows, got {actual:,.0f} "
            f"({high / low:,.0f}x off)"
        ),
        advice=f"{target}; if it persists, CREATE STATISTICS on correlated columns "
        "or raise the column's statistics target",
        numbers={"estimated_rows": estimated, "actual_rows": actual, "factor": high / low},
    )


def _spills(node: Mapping[str, Any]) -> list[Finding]:
    found = []
    if node.get("Sort Space Type") == "Disk":
        kb = float(node.get("Sort Space Used", 0))
        found.append(
            Finding(
                kind="disk_sort",
                severity="medium",
                node_type="Sort",
                relation=None,
                message=f"sort spilled {kb:,.0f} kB to disk ({node.get('Sort Method')})",
                advice=f"raise work_mem above {kb / 1024:,.1f} MB for this query "
                "(SET LOCAL work_mem), or avoid the sort with an index",
                numbers={"disk_kb": kb},
            )
        )
    batches = float(node.get("Hash Batches", 1) or 1)
    if node.get("Node Type") == "Hash" and batches > 1:
        found.append(
            Finding(
                kind="disk_hash",
                severity="medium",
                node_type="Hash",
                relation=None,
                message=f"hash split into {batches:,.0f} batches on disk "
                f"(planned {node.get('Original Hash Batches', 1)}), peak "
                f"{node.get('Peak Memory Usage', 0)} kB",
                advice="raise work_mem (or hash_mem_multiplier) for this query",
                numbers={"batches": batches, "peak_kb": float(node.get("Peak Memory Usage", 0))},
            )
        )
    lossy = float(node.get("Lossy Heap Blocks", 0) or 0)
    if lossy > 0:
        found.append(
            Finding(
                kind="lossy_bitmap",
                severity="low",
                node_type=str(node.get("Node Type")),
                relation=_relation(node),
                message=f"bitmap went lossy on {lossy:,.0f} heap blocks (rechecks every row)",
                advice="raise work_mem so the bitmap stays exact",
                numbers={"lossy_blocks": lossy},
            )
        )
    fetches = float(node.get("Heap Fetches", 0) or 0)
    if node.get("Node Type") == "Index Only Scan" and fetches >= 1000:
        found.append(
            Finding(
                kind="heap_fetches",
                severity="low",
                node_type="Index Only Scan",
                relation=_relation(node),
                message=f"index-only scan fetched {fetches:,.0f} heap rows (visibility map stale)",
                advice=f"VACUUM {_relation(node) or 'the table'} to refresh the visibility map",
                numbers={"heap_fetches": fetches},
            )
        )
    planned, launched = node.get("Workers Planned"), node.get("Workers Launched")
    if planned is not None and launched is not None and launched < planned:
        found.append(
            Finding(
                kind="workers_not_launched",
                severity="low",
                node_type=str(node.get("Node Type")),
                relation=None,
                message=f"{launched} of {planned} planned parallel workers launched",
                advice="raise max_parallel_workers / max_worker_processes, or run fewer "
                "parallel queries at once",
                numbers={"planned": float(planned), "launched": float(launched)},
            )
        )
    return found


def _nested_loop(node: Mapping[str, Any], analyzed: bool) -> Finding | None:
    if node.get("Node Type") != "Nested Loop" or len(node.get("Plans", ())) < 2:
        return None
    outer, inner = node["Plans"][0], node["Plans"][1]
    outer_rows = _rows(outer, analyzed=analyzed)
    if outer_rows < LARGE_TABLE_ROWS:
        return None
    indexed = inner.get("Node Type") in {"Index Scan", "Index Only Scan", "Memoize"}
    what = inner.get("Node Type")
    relation = _relation(inner)
    return Finding(
        kind="nested_loop",
        severity="medium" if indexed else "high",
        node_type="Nested Loop",
        relation=relation,
        message=f"Nested Loop runs its inner {what}{' on ' + relation if relation else ''} "
        f"{outer_rows:,.0f} times",
        advice="a hash or merge join usually wins over this many outer rows: check the "
        "outer estimate (ANALYZE) and index the inner join column",
        numbers={"outer_rows": outer_rows, "total_cost": node["Total Cost"]},
    )


_SEVERITY = {"high": 0, "medium": 1, "low": 2}


def analyze_plan(
    plan: Mapping[str, Any],
    *,
    table_rows: Mapping[str, float] | None = None,
    analyzed: bool | None = None,
) -> list[Finding]:
    """Return the actionable findings of a plan, the most severe first.

    Args:
        plan: The root ``Plan`` object of ``EXPLAIN (FORMAT JSON)``.
        table_rows: Estimated rows of each ``schema.table`` (``pg_class.reltuples``), used
            to judge sequential scans without ANALYZE.
        analyzed: Whether the plan carries actual numbers (detected when ``None``).

    Returns:
        Findings with the plan node and the numbers behind each.
    """
    rows = table_rows or {}
    if analyzed is None:
        analyzed = "Actual Rows" in plan
    findings: list[Finding] = []
    limited = _under_limit(plan)
    for node, _ in iter_nodes(plan):
        candidates = (
            _seq_scan(node, rows, analyzed),
            _sort_under_limit(node, analyzed),
            # Below a Limit, nodes stop early: fewer rows than estimated is expected there.
            # A misestimate propagates upwards: report only the deepest node that has it.
            _misestimate(node, early_stop=id(node) in limited)
            if analyzed and not _misestimated_below(node, limited)
            else None,
            _nested_loop(node, analyzed),
        )
        findings.extend(f for f in candidates if f is not None)
        findings.extend(_spills(node))
    findings.sort(key=lambda f: _SEVERITY.get(f.severity, 3))
    return findings


async def explain_json(
    conn: Connection,
    sql: str,
    args: Sequence[Any] = (),
    *,
    generic_parameters: int = 0,
    analyze: bool = False,
    verbose: bool = True,
    server_version: int = 150000,
    statement_timeout: float | None = None,
) -> dict[str, Any]:
    """Run EXPLAIN (FORMAT JSON) and return its top-level object (``Plan``, timings).

    Args:
        conn: The connection.
        sql: The statement.
        args: Bind values for a custom plan.
        generic_parameters: With no ``args``, the number of ``$n`` placeholders to explain
            through a generic plan (``GENERIC_PLAN`` on 16+, PREPARE + forced generic
            plan before).
        analyze: Run the statement (inside a transaction that is rolled back).
        verbose: Add VERBOSE (schema names on relation nodes).
        server_version: ``server_version_num``.
        statement_timeout: Seconds allowed for EXPLAIN ANALYZE.
    """
    options = ["FORMAT JSON"]
    if verbose:
        options.append("VERBOSE")
    if analyze:
        options += ["ANALYZE", "BUFFERS"]
    if generic_parameters and not args:
        if server_version >= 160000:
            text = f"{MARKER} EXPLAIN (GENERIC_PLAN, {', '.join(options)}) {sql}"
            return _decode(await conn.fetchval(text))
        await conn.execute(f"{MARKER} PREPARE {_GENERIC_NAME} AS {sql}")
        try:
            nulls = ", ".join(["NULL"] * generic_parameters)
            async with conn.transaction():
                await conn.execute(f"{MARKER} SET LOCAL plan_cache_mode = force_generic_plan")
                return _decode(
                    await conn.fetchval(
                        f"{MARKER} EXPLAIN ({', '.join(options)}) EXECUTE {_GENERIC_NAME}({nulls})"
                    )
                )
        finally:
            await conn.execute(f"{MARKER} DEALLOCATE {_GENERIC_NAME}")
    text = f"{MARKER} EXPLAIN ({', '.join(options)}) {sql}"
    if not analyze:
        return _decode(await conn.fetchval(text, *args))
    # EXPLAIN ANALYZE runs the statement: do it in a transaction that is always rolled back.
    transaction = conn.transaction()
    await transaction.start()
    try:
        if statement_timeout is not None:
            millis = max(1, int(statement_timeout * 1000))
            await conn.execute(f"{MARKER} SET LOCAL statement_timeout = {millis}")
        return _decode(await conn.fetchval(text, *args))
    finally:
        await transaction.rollback()


def _decode(raw: Any) -> dict[str, Any]:
    data = json.loads(raw) if isinstance(raw, str) else raw
    top = data[0] if isinstance(data, list) else data
    assert isinstance(top, dict)
    return top
