"""``QueryAnalyzer``: slow statements, plans, index advice and index health in one API."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from .._exceptions import BackendError, ConfigurationError
from ._advisor import Advisor, Fallback, IndexAdvice, WorkloadStatement
from ._connection import Connection, ConnectionSource
from ._explain import ExplainResult, analyze_plan, explain_json, plan_relations
from ._health import IndexHealth, index_health
from ._parse import parse_statement
from ._results import Result
from ._sql import MARKER, quote_ident
from ._statements import (
    Ordering,
    SlowQuery,
    is_workload_statement,
    rank_statements,
    statement_stats,
)

__all__ = ["DatabaseReport", "Extensions", "QueryAnalyzer"]

logger = logging.getLogger("asyncperf.db")


@dataclass(frozen=True)
class Extensions(Result):
    """What the database offers the analyzer.

    Attributes:
        server_version: ``server_version_num`` (150020 for 15.20).
        pg_stat_statements: Installed in this database and readable (preloaded).
        hypopg: Installed in this database.
        hypopg_schema: The schema HypoPG's functions live in.
        problems: Why a feature is unavailable, with the command that fixes it.
    """

    server_version: int
    pg_stat_statements: bool
    hypopg: bool
    hypopg_schema: str | None
    problems: tuple[str, ...]


@dataclass(frozen=True)
class DatabaseReport(Result):
    """Everything ``asyncperf db report`` prints."""

    extensions: Extensions
    slow_queries: tuple[SlowQuery, ...]
    findings: tuple[tuple[str, ExplainResult | str], ...]
    index_advice: IndexAdvice
    health: IndexHealth


class QueryAnalyzer:
    """Analyze a PostgreSQL database through asyncpg.

    Args:
        pool_or_dsn: An ``asyncpg.Pool``, a SQLAlchemy ``AsyncEngine`` with the asyncpg
            driver (connections are borrowed from its pool, and handed back with no
            transaction open, no hypothetical index and no session setting changed), an
            ``asyncpg.Connection`` or a ``postgresql://`` DSN (then one connection is
            opened on first use and closed by :meth:`aclose`).
        statement_timeout: Seconds allowed for each EXPLAIN ANALYZE.

    Example:
        >>> async with QueryAnalyzer("postgresql://postgres@127.0.0.1/test") as analyzer:
        ...     for query in await analyzer.slow_queries(top=5):  # doctest: +SKIP
        ...         print(f"{query.total_seconds:8.3f} s  {query.query}")
    """

    monitor_kind = "db_queries"  # the metric prefix PerformanceMonitor.watch uses

    def __init__(self, pool_or_dsn: Any, *, statement_timeout: float = 30.0) -> None:
        if not statement_timeout > 0:
            raise ConfigurationError(f"statement_timeout must be positive, got {statement_timeout}")
        self._source = ConnectionSource(pool_or_dsn)
        self.statement_timeout = statement_timeout
        self._extensions: Extensions | None = None

    async def __aenter__(self) -> QueryAnalyzer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection opened from a DSN (a pool or engine given by the caller
        stays open)."""
        await self._source.aclose()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        async with self._source.connection() as conn:
            yield conn

    async def extensions(self, *, refresh: bool = False) -> Extensions:
        """Probe the server version, pg_stat_statements and HypoPG (cached)."""
        if self._extensions is not None and not refresh:
            return self._extensions
        async with self._connection() as conn:
            self._extensions = await _probe(conn)
        return self._extensions

    # -- pg_stat_statements ------------------------------------------------------------------

    async def _statement_rows(self) -> list[dict[str, Any]]:
        ext = await self.extensions()
        if not ext.pg_stat_statements:
            raise BackendError("pg_stat_statements is unavailable: " + "; ".join(ext.problems))
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"""{MARKER} SELECT * FROM pg_stat_statements
                WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"""
            )
        return [dict(r) for r in rows]

    async def slow_queries(
        self,
        top: int = 20,
        min_calls: int = 1,
        min_mean_seconds: float = 0.0,
        *,
        order_by: Ordering = "total",
        include_utility: bool = False,
    ) -> list[SlowQuery]:
        """Return this database's heaviest statements from pg_stat_statements.

        Args:
            top: How many to return.
            min_calls: Leave out statements called fewer times.
            min_mean_seconds: Leave out statements faster on average.
            order_by: ``"total"`` time (load, default), ``"mean"`` (latency), ``"calls"``
                (N+1 patterns), ``"rows"``, ``"share"`` of database time, or
                ``"hit_ratio"`` (the worst buffer-cache hit ratio first).
            include_utility: Keep housekeeping (``RESET ALL``, ``BEGIN``, DDL, the
                analyzer's own statements), which is left out by default.

        Raises:
            BackendError: pg_stat_statements is not installed or not preloaded.
            ConfigurationError: A bad filter.
        """
        stats = statement_stats(await self._statement_rows())
        if not include_utility:
            stats = [s for s in stats if is_workload_statement(s.query)]
        return rank_statements(
            stats,
            top=top,
            min_calls=min_calls,
            min_mean_seconds=min_mean_seconds,
            order_by=order_by,
        )

    async def reset_statistics(self, *, tables: bool = False) -> None:
        """Reset pg_stat_statements for this database (and, with ``tables``, its table and
        index usage counters, which index_health's "unused" check relies on)."""
        ext = await self.extensions()
        async with self._connection() as conn:
            if ext.pg_stat_statements:
                await conn.execute(
                    f"""{MARKER} SELECT pg_stat_statements_reset(0,
                    (SELECT oid FROM pg_database WHERE datname = current_database()), 0)"""
                )
            if tables:
                await conn.execute(f"{MARKER} SELECT pg_stat_reset()")

    # -- EXPLAIN -----------------------------------------------------------------------------

    async def explain(self, sql: str, *args: Any, analyze: bool = False) -> ExplainResult:
        """EXPLAIN a statement and report what in its plan is worth acting on.

        Statements with ``$n`` placeholders and no ``args`` (pg_stat_statements' text) get
        a generic plan. ``analyze=True`` runs the statement inside a transaction that is
        rolled back, under the analyzer's statement timeout.

        Args:
            sql: One statement.
            *args: Bind values.
            analyze: Run it for actual row counts and timings (EXPLAIN ANALYZE, BUFFERS).

        Raises:
            ConfigurationError: ``analyze`` on a statement with placeholders but no values.
        """
        try:
            parameters = parse_statement(sql).parameters
        except ValueError:
            parameters = 0
        generic = bool(parameters) and not args
        if generic and analyze:
            raise ConfigurationError(
                f"the statement has {parameters} placeholders: pass values to EXPLAIN ANALYZE it"
            )
        ext = await self.extensions()
        async with self._connection() as conn:
            top = await explain_json(
                conn,
                sql,
                args,
                generic_parameters=parameters if generic else 0,
                analyze=analyze,
                server_version=ext.server_version,
                statement_timeout=self.statement_timeout,
            )
            relations = sorted(plan_relations(top["Plan"]))
            table_rows: dict[str, float] = {}
            if relations:
                rows = await conn.fetch(
                    f"""{MARKER}
                    SELECT n.nspname || '.' || c.relname AS name,
                           greatest(c.reltuples, 0)::float8 AS rows
                    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    JOIN unnest($1::text[], $2::text[]) AS r(s, t)
                      ON n.nspname = r.s AND c.relname = r.t""",
                    [s for s, _ in relations],
                    [t for _, t in relations],
                )
                table_rows = {r["name"]: r["rows"] for r in rows}
        plan = top["Plan"]
        return ExplainResult(
            plan=plan,
            total_cost=float(plan["Total Cost"]),
            plan_rows=float(plan["Plan Rows"]),
            findings=tuple(analyze_plan(plan, table_rows=table_rows, analyzed=analyze)),
            analyzed=analyze,
            generic=generic,
            planning_seconds=top["Planning Time"] / 1000 if "Planning Time" in top else None,
            execution_seconds=top["Execution Time"] / 1000 if "Execution Time" in top else None,
        )

    # -- index advice ------------------------------------------------------------------------

    async def recommend_indexes(
        self,
        statements: Iterable[str] | None = None,
        *,
        top: int = 50,
        min_calls: int = 1,
        min_mean_seconds: float = 0.0,
        min_cost_savings: float = 0.5,
        min_initial_cost: float = 100.0,
        schemas: Sequence[str] | None = None,
        fallback: Fallback = "rollback",
        fallback_max_table_bytes: int = 64 << 20,
        fallback_statement_timeout: float = 5.0,
        use_hypopg: bool = True,
    ) -> IndexAdvice:
        """Suggest at most one index per slow statement, merged across statements.

        With HypoPG, candidate btrees (every filtered, joined, grouped or sorted column,
        and every ordered pair of them on one table) are hypothetical: nothing is built.
        Without HypoPG (or with ``use_hypopg=False``) and ``fallback="rollback"``, real
        indexes are built inside a transaction that is always rolled back, only on tables
        up to ``fallback_max_table_bytes``, under a 1 s ``lock_timeout`` and a
        ``fallback_statement_timeout`` (the build blocks writers meanwhile; a build that
        runs longer is cancelled and that candidate is skipped); the result's ``method``
        says so. Either way nothing is
        left behind, and HypoPG's per-connection state is reset before the connection
        goes back to a pool.

        Args:
            statements: Statements to advise on (default: the ``top`` statements of
                pg_stat_statements by total time, normalized ``$n`` text included).
            top: How many pg_stat_statements entries to consider.
            min_calls: ... with at least this many calls.
            min_mean_seconds: ... and at least this mean time.
            min_cost_savings: The share of the plan cost an index must save (0.5: half).
            min_initial_cost: Statements cheaper than this are left alone.
            schemas: Only advise on statements whose tables are all in these schemas.
            fallback: ``"rollback"`` (see above) or ``None`` for no advice without HypoPG.
            fallback_max_table_bytes: Size limit of tables the fallback builds on.
            fallback_statement_timeout: Seconds each statement of the fallback (an index
                build, an EXPLAIN) may run (``SET LOCAL statement_timeout``).
            use_hypopg: Set to ``False`` to use the fallback even where HypoPG exists.

        Returns:
            The suggestions (iterate over it) and a verdict with a reason per statement.
        """
        ext = await self.extensions()
        if statements is None:
            ranked = await self.slow_queries(
                top=top, min_calls=min_calls, min_mean_seconds=min_mean_seconds
            )
            workload = [
                WorkloadStatement(q.query, q.calls, q.total_seconds, q.queryid) for q in ranked
            ]
        else:
            workload = [WorkloadStatement(s) for s in statements]
        hypopg_schema = ext.hypopg_schema if ext.hypopg and use_hypopg else None
        async with self._connection() as conn:
            advisor = Advisor(
                conn,
                server_version=ext.server_version,
                hypopg_schema=hypopg_schema,
                fallback=fallback,
                fallback_max_table_bytes=fallback_max_table_bytes,
                statement_timeout=fallback_statement_timeout,
                min_cost_savings=min_cost_savings,
                min_initial_cost=min_initial_cost,
                schemas=schemas,
            )
            try:
                if hypopg_schema is not None:
                    await conn.execute(
                        f"{MARKER} SELECT {quote_ident(hypopg_schema)}.hypopg_reset()"
                    )
                return await advisor.run(workload)
            finally:
                await _leave_clean(conn, hypopg_schema)

    async def index_health(self, *, schemas: Sequence[str] | None = None) -> IndexHealth:
        """Check indexes and tables: unused, redundant, invalid and bloated indexes, foreign
        keys without an index, stale statistics; with maintenance advice and reasons.

        Args:
            schemas: Only these schemas (default: every user schema).
        """
        async with self._connection() as conn:
            return await index_health(conn, schemas=schemas)

    async def report(
        self, *, top: int = 10, schemas: Sequence[str] | None = None, explain_top: int = 5
    ) -> DatabaseReport:
        """Gather slow queries, plan findings, index advice and health (read-only).

        Args:
            top: Slow statements to list and to advise on.
            schemas: Limit index advice and health to these schemas.
            explain_top: How many of the slowest statements to EXPLAIN (generic plans).
        """
        ext = await self.extensions()
        slow: list[SlowQuery] = []
        findings: list[tuple[str, ExplainResult | str]] = []
        if ext.pg_stat_statements:
            slow = await self.slow_queries(top=top)
            for query in slow[:explain_top]:
                try:
                    findings.append((query.query, await self.explain(query.query)))
                except Exception as exc:
                    first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    findings.append((query.query, f"could not EXPLAIN: {first_line}"))
            advice = await self.recommend_indexes(
                [q.query for q in slow], schemas=schemas, fallback=None
            )
        else:
            advice = await self.recommend_indexes([], schemas=schemas, fallback=None)
        health = await self.index_health(schemas=schemas)
        return DatabaseReport(ext, tuple(slow), tuple(findings), advice, health)


async def _leave_clean(conn: Connection, hypopg_schema: str | None) -> None:
    """Reset HypoPG's backend-private state; if that fails, don't let the connection live."""
    if hypopg_schema is None:
        return
    try:
        await conn.execute(f"{MARKER} SELECT {quote_ident(hypopg_schema)}.hypopg_reset()")
    except BaseException:
        # Hypothetical indexes survive a pool's release reset: a connection we cannot
        # clean must not be handed to anyone else.
        conn.terminate()
        raise


async def _probe(conn: Connection) -> Extensions:
    version = int(await conn.fetchval(f"{MARKER} SHOW server_version_num"))
    rows = await conn.fetch(
        f"""{MARKER}
        SELECT a.name, e.extname IS NOT NULL AS installed, n.nspname AS schema
        FROM pg_available_extensions a
        LEFT JOIN pg_extension e ON e.extname = a.name
        LEFT JOIN pg_namespace n ON n.oid = e.extnamespace
        WHERE a.name IN ('pg_stat_statements', 'hypopg')"""
    )
    found = {r["name"]: r for r in rows}
    problems: list[str] = []
    pgss = False
    pgss_row = found.get("pg_stat_statements")
    if pgss_row is None:
        problems.append("pg_stat_statements is not available (install postgresql-contrib)")
    elif not pgss_row["installed"]:
        problems.append(
            "pg_stat_statements is not installed in this database "
            "(CREATE EXTENSION pg_stat_statements)"
        )
    else:
        preload = str(await conn.fetchval(f"{MARKER} SHOW shared_preload_libraries"))
        if "pg_stat_statements" not in [p.strip() for p in preload.split(",")]:
            problems.append(
                "pg_stat_statements is not preloaded (ALTER SYSTEM SET "
                "shared_preload_libraries = 'pg_stat_statements', then restart the server)"
            )
        else:
            pgss = True
    hypopg_row = found.get("hypopg")
    hypopg = bool(hypopg_row is not None and hypopg_row["installed"])
    if not hypopg:
        problems.append(
            "HypoPG is not installed in this database (Debian: apt-get install "
            f"postgresql-{version // 10000}-hypopg; then CREATE EXTENSION hypopg)"
        )
    return Extensions(
        server_version=version,
        pg_stat_statements=pgss,
        hypopg=hypopg,
        hypopg_schema=hypopg_row["schema"] if hypopg and hypopg_row is not None else None,
        problems=tuple(problems),
    )
