"""Index advice, Dexter-style: hypothetical indexes, a 50 % bar, one index per statement.

For each statement: the planner's cost with what exists (C0); then with a hypothetical
btree on every candidate column (pass 1, C1); then with every ordered pair of candidate
columns of one table added (pass 2, C2). A composite wins when it halves C1 again, a single
column when it halves C0; when a plan uses several hypothetical indexes, each is tried
alone and the cheapest that still clears the bar is kept. Suggestions are merged across
statements. HypoPG makes this free; without it, a clearly labelled fallback builds real
indexes inside a transaction that is always rolled back, on small tables only.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from .._exceptions import ConfigurationError
from ._connection import Connection
from ._explain import explain_json, iter_nodes
from ._parse import ParsedStatement, parse_statement
from ._results import Result
from ._sql import MARKER, qualified, quote_ident, suggested_index_name

__all__ = [
    "METHOD_HYPOPG",
    "METHOD_ROLLBACK",
    "METHOD_UNAVAILABLE",
    "Advisor",
    "IndexAdvice",
    "IndexSuggestion",
    "StatementAdvice",
    "WorkloadStatement",
]

logger = logging.getLogger("asyncperf.db")

METHOD_HYPOPG = "hypopg"
METHOD_ROLLBACK = "fallback: real indexes in a rolled-back transaction (no HypoPG)"
METHOD_UNAVAILABLE = "unavailable: HypoPG is not installed and the fallback is off"

Fallback = Literal["rollback"] | None
_INDEXABLE_KINDS = frozenset({"select", "update", "delete", "insert"})
_SYSTEM_SCHEMAS = frozenset({"pg_catalog", "information_schema", "pg_toast"})
# Column types a btree would technically accept but which are never worth one.
_SKIPPED_TYPES = frozenset({"json", "jsonb", "xml"})


@dataclass(frozen=True)
class WorkloadStatement:
    """A statement to advise on: its text and, from pg_stat_statements, its weight."""

    query: str
    calls: int | None = None
    total_seconds: float | None = None
    queryid: int | None = None


@dataclass(frozen=True)
class IndexSuggestion(Result):
    """An index worth creating (costs are the planner's, summed over the statements).

    Attributes:
        schema: The table's schema.
        table: The table name.
        columns: Key columns, in order.
        name: The index name used in :attr:`statement`.
        statement: ``CREATE INDEX CONCURRENTLY IF NOT EXISTS ...`` with every identifier
            quoted; the name is ``asyncperf_<table>_<columns>_idx`` (see
            :func:`~asyncperf.db._sql.suggested_index_name`).
        cost_before: Planner cost of the statements it helps, with today's indexes.
        cost_after: The same with this index (hypothetical, or built and rolled back).
        statements: The statements it helps.
        method: How the costs were obtained (see :attr:`IndexAdvice.method`).
    """

    schema: str
    table: str
    columns: tuple[str, ...]
    name: str
    statement: str
    cost_before: float
    cost_after: float
    statements: tuple[str, ...]
    method: str

    @property
    def improvement(self) -> float:
        """The planner's speed-up factor, ``cost_before / cost_after``."""
        return self.cost_before / self.cost_after if self.cost_after > 0 else float("inf")


@dataclass(frozen=True)
class StatementAdvice(Result):
    """What the advisor concluded for one statement, and why.

    Attributes:
        query: The statement text.
        reason: Why an index is (or is not) suggested.
        suggested: ``(schema, table, columns)`` of the suggestion, when there is one.
        cost_before: C0, the planner's cost today (``None`` when EXPLAIN did not run).
        cost_after: The cost with the suggested index, when there is one.
        calls: Executions, when the statement came from pg_stat_statements.
        queryid: pg_stat_statements' query id.
    """

    query: str
    reason: str
    suggested: tuple[str, str, tuple[str, ...]] | None = None
    cost_before: float | None = None
    cost_after: float | None = None
    calls: int | None = None
    queryid: int | None = None


@dataclass(frozen=True)
class IndexAdvice(Result):
    """The advisor's answer: merged suggestions and a verdict for every statement.

    Iterating over it yields the suggestions.

    Attributes:
        suggestions: Indexes worth creating, the largest cost reduction first.
        statements: One verdict per statement examined.
        method: ``"hypopg"`` or the label of the fallback used.
        min_cost_savings: The bar a suggestion had to clear (0.5: half the cost).
    """

    suggestions: tuple[IndexSuggestion, ...]
    statements: tuple[StatementAdvice, ...]
    method: str
    min_cost_savings: float = 0.5
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __iter__(self) -> Iterator[IndexSuggestion]:
        return iter(self.suggestions)

    def __len__(self) -> int:
        return len(self.suggestions)


@dataclass(frozen=True)
class _Table:
    oid: int
    schema: str
    name: str
    kind: str
    rows: float
    bytes: int
    columns: frozenset[str]
    indexable: frozenset[str]
    # Key-column lists of valid, non-partial, plain-column btree indexes.
    btrees: tuple[tuple[str, tuple[str, ...]], ...]


Candidate = tuple[int, tuple[str, ...]]  # (table oid, columns)


class _Catalog:
    """Per-run cache of table lookups."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.by_name: dict[tuple[str | None, str], _Table | None] = {}
        self.by_oid: dict[int, _Table] = {}

    async def table(self, schema: str | None, name: str) -> _Table | None:
        key = (schema, name)
        if key in self.by_name:
            return self.by_name[key]
        regclass = qualified(schema, name) if schema else quote_ident(name)
        row = await self.conn.fetchrow(
            f"""{MARKER}
            SELECT c.oid, n.nspname, c.relname, c.relkind::text AS kind,
                   greatest(c.reltuples, 0)::float8 AS rows, pg_table_size(c.oid) AS bytes
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.oid = to_regclass($1)""",
            regclass,
        )
        table = None
        if row is not None:
            table = self.by_oid.get(row["oid"]) or await self._load(row)
        self.by_name[key] = table
        return table

    async def _load(self, row: Any) -> _Table:
        columns = await self.conn.fetch(
            f"""{MARKER}
            SELECT a.attname, t.typname,
                   EXISTS (SELECT 1 FROM pg_opclass oc JOIN pg_am am ON am.oid = oc.opcmethod
                           WHERE am.amname = 'btree' AND oc.opcdefault
                             AND (oc.opcintype = a.atttypid
                                  OR EXISTS (SELECT 1 FROM pg_cast k
                                             WHERE k.castsource = a.atttypid
                                               AND k.casttarget = oc.opcintype
                                               AND k.castmethod = 'b'))) AS btree
            FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
            WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped""",
            row["oid"],
        )
        indexes = await self.conn.fetch(
            f"""{MARKER}
            SELECT ic.relname AS name,
                   array(SELECT a.attname FROM unnest(i.indkey[0:i.indnkeyatts - 1])
                         WITH ORDINALITY k(attnum, ord)
                         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                         ORDER BY k.ord) AS columns,
                   0 <> ALL (i.indkey[0:i.indnkeyatts - 1]) AS plain
            FROM pg_index i
            JOIN pg_class ic ON ic.oid = i.indexrelid
            JOIN pg_am am ON am.oid = ic.relam
            WHERE i.indrelid = $1 AND i.indisvalid AND i.indpred IS NULL AND am.amname = 'btree'""",
            row["oid"],
        )
        table = _Table(
            oid=row["oid"],
            schema=row["nspname"],
            name=row["relname"],
            kind=row["kind"],
            rows=float(row["rows"]),
            bytes=int(row["bytes"] or 0),
            columns=frozenset(c["attname"] for c in columns),
            indexable=frozenset(
                c["attname"] for c in columns if c["btree"] and c["typname"] not in _SKIPPED_TYPES
            ),
            btrees=tuple((ix["name"], tuple(ix["columns"])) for ix in indexes if ix["plain"]),
        )
        self.by_oid[table.oid] = table
        return table


def covering_index(table: _Table, columns: Sequence[str]) -> str | None:
    """Return the name of an existing btree whose leading key columns are ``columns``."""
    wanted = tuple(columns)
    for name, keys in table.btrees:
        if keys[: len(wanted)] == wanted:
            return name
    return None


class _WhatIf:
    """Cost a statement with a set of indexes that do not (durably) exist."""

    label = METHOD_HYPOPG

    def __init__(self, conn: Connection, server_version: int, hypopg_schema: str | None):
        self.conn = conn
        self.server_version = server_version
        self.hypopg_schema = hypopg_schema
        self.counter = 0

    def _ddl(self, table: _Table, columns: tuple[str, ...], name: str | None) -> str:
        cols = ", ".join(quote_ident(c) for c in columns)
        named = f"{quote_ident(name)} " if name else ""
        return f"CREATE INDEX {named}ON {qualified(table.schema, table.name)} USING btree ({cols})"

    async def reset(self) -> None:
        if self.hypopg_schema is not None:
            await self.conn.execute(
                f"{MARKER} SELECT {quote_ident(self.hypopg_schema)}.hypopg_reset()"
            )

    async def _plan(self, statement: ParsedStatement, sql: str) -> Mapping[str, Any]:
        """Return the top plan node of ``sql`` as the indexes in place now shape it."""
        top = await explain_json(
            self.conn,
            sql,
            generic_parameters=statement.parameters,
            verbose=False,
            server_version=self.server_version,
        )
        plan: Mapping[str, Any] = top["Plan"]
        return plan

    async def cost(
        self,
        statement: ParsedStatement,
        sql: str,
        indexes: Sequence[tuple[_Table, tuple[str, ...]]],
    ) -> tuple[float, set[int]]:
        """Return the plan's total cost and the positions in ``indexes`` the plan used."""
        async with self._session():
            names = await self._create(indexes)
            plan = await self._plan(statement, sql)
        return float(plan["Total Cost"]), _used(plan, names)

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[None]:
        """Around one costing: no hypothetical index before it or left after it."""
        await self.reset()
        try:
            yield
        finally:
            await self.reset()

    async def _create(self, indexes: Sequence[tuple[_Table, tuple[str, ...]]]) -> dict[str, int]:
        """Create ``indexes``; return the created ones' names -> their position."""
        names: dict[str, int] = {}
        for position, (table, columns) in enumerate(indexes):
            try:
                name = await self.conn.fetchval(
                    f"{MARKER} SELECT indexname FROM "
                    f"{quote_ident(str(self.hypopg_schema))}.hypopg_create_index($1)",
                    self._ddl(table, columns, None),
                )
            except Exception as exc:  # a column type HypoPG cannot index
                logger.debug("hypothetical index on %s%s failed: %s", table.name, columns, exc)
                continue
            names[str(name)] = position
        return names


class _RollbackWhatIf(_WhatIf):
    """Real indexes built inside a transaction that is always rolled back."""

    label = METHOD_ROLLBACK

    def __init__(
        self,
        conn: Connection,
        server_version: int,
        lock_timeout: float,
        statement_timeout: float = 5.0,
    ) -> None:
        super().__init__(conn, server_version, None)
        self.lock_timeout = lock_timeout
        self.statement_timeout = statement_timeout

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[None]:
        transaction = self.conn.transaction()
        await transaction.start()
        try:
            millis = max(1, int(self.lock_timeout * 1000))
            await self.conn.execute(f"{MARKER} SET LOCAL lock_timeout = {millis}")
            yield
        finally:
            await transaction.rollback()

    async def _create(self, indexes: Sequence[tuple[_Table, tuple[str, ...]]]) -> dict[str, int]:
        names: dict[str, int] = {}
        # A build holds a ShareLock (writers wait) for as long as it runs: bound it.
        previous = await self.conn.fetchval(f"{MARKER} SELECT current_setting('statement_timeout')")
        await self.conn.execute(
            f"{MARKER} SELECT set_config('statement_timeout', $1, true)",
            str(max(1, int(self.statement_timeout * 1000))),
        )
        for position, (table, columns) in enumerate(indexes):
            self.counter += 1
            name = f"asyncperf_whatif_{self.counter}"
            try:
                # A savepoint (rolled back when the build fails): one failure (a
                # timeout, an unsupported type) is not fatal.
                async with self.conn.transaction():
                    await self.conn.execute(f"{MARKER} {self._ddl(table, columns, name)}")
            except Exception as exc:
                logger.debug("what-if index on %s%s failed: %s", table.name, columns, exc)
                continue
            names[name] = position
        await self.conn.execute(
            f"{MARKER} SELECT set_config('statement_timeout', $1, true)", previous
        )
        return names


def _used(plan: Mapping[str, Any], names: Mapping[str, int]) -> set[int]:
    used: set[int] = set()
    for node, _ in iter_nodes(plan):
        name = node.get("Index Name")
        if isinstance(name, str) and name in names:
            used.add(names[name])
    return used


class Advisor:
    """One advice run on one pinned connection (see :meth:`QueryAnalyzer.recommend_indexes`)."""

    def __init__(
        self,
        conn: Connection,
        *,
        server_version: int,
        hypopg_schema: str | None,
        fallback: Fallback,
        fallback_max_table_bytes: int,
        min_cost_savings: float,
        min_initial_cost: float,
        schemas: Sequence[str] | None,
        lock_timeout: float = 1.0,
        statement_timeout: float = 5.0,
    ) -> None:
        if not 0 < min_cost_savings < 1:
            raise ConfigurationError(f"min_cost_savings must be in (0, 1), got {min_cost_savings}")
        if not statement_timeout > 0:
            raise ConfigurationError(f"statement_timeout must be positive, got {statement_timeout}")
        if fallback not in (None, "rollback"):
            raise ConfigurationError(f"fallback must be 'rollback' or None, got {fallback!r}")
        self.conn = conn
        self.catalog = _Catalog(conn)
        self.min_cost_savings = min_cost_savings
        self.min_initial_cost = min_initial_cost
        self.schemas = frozenset(schemas) if schemas is not None else None
        self.fallback_max_table_bytes = fallback_max_table_bytes
        self.what_if: _WhatIf | None
        if hypopg_schema is not None:
            self.what_if = _WhatIf(conn, server_version, hypopg_schema)
        elif fallback == "rollback":
            self.what_if = _RollbackWhatIf(conn, server_version, lock_timeout, statement_timeout)
        else:
            self.what_if = None
        self.server_version = server_version

    @property
    def method(self) -> str:
        return self.what_if.label if self.what_if is not None else METHOD_UNAVAILABLE

    async def run(self, statements: Iterable[WorkloadStatement]) -> IndexAdvice:
        verdicts: list[StatementAdvice] = []
        wins: list[tuple[_Table, tuple[str, ...], float, float, WorkloadStatement]] = []
        for item in statements:
            verdict, win = await self._statement(item)
            if verdict is not None:
                verdicts.append(verdict)
            if win is not None:
                wins.append((*win, item))
        notes = []
        if self.what_if is None:
            notes.append(
                "HypoPG is not installed in this database (CREATE EXTENSION hypopg; Debian: "
                "postgresql-<version>-hypopg): no index was costed"
            )
        elif isinstance(self.what_if, _RollbackWhatIf):
            notes.append(
                "HypoPG is not installed: costs come from real indexes built inside a "
                "rolled-back transaction (ShareLock, lock_timeout, statement_timeout), on "
                "tables up to "
                f"{self.fallback_max_table_bytes:,} bytes only"
            )
        return IndexAdvice(
            suggestions=self._merge(wins),
            statements=tuple(verdicts),
            method=self.method,
            min_cost_savings=self.min_cost_savings,
            notes=tuple(notes),
        )

    async def _statement(
        self, item: WorkloadStatement
    ) -> tuple[StatementAdvice | None, tuple[_Table, tuple[str, ...], float, float] | None]:
        def verdict(reason: str, **extra: Any) -> StatementAdvice:
            return StatementAdvice(
                query=item.query, reason=reason, calls=item.calls, queryid=item.queryid, **extra
            )

        try:
            parsed = parse_statement(item.query)
        except ValueError as exc:
            return verdict(str(exc)), None
        if parsed.kind not in _INDEXABLE_KINDS or not parsed.tables:
            return verdict("not a statement that reads tables"), None
        tables: list[_Table] = []
        aliases: dict[str, _Table] = {}
        for ref in parsed.tables:
            table = await self.catalog.table(ref.schema, ref.name)
            if table is None:
                return verdict(f"table not found: {ref.name}"), None
            if table.schema in _SYSTEM_SCHEMAS:
                return verdict("reads system catalogs"), None
            if self.schemas is not None and table.schema not in self.schemas:
                return None, None  # outside the schemas asked about: not reported at all
            tables.append(table)
            aliases[ref.alias or ref.name] = table
            aliases.setdefault(ref.name, table)
        if self.what_if is None:
            return verdict(METHOD_UNAVAILABLE), None
        try:
            top = await explain_json(
                self.conn,
                item.query,
                generic_parameters=parsed.parameters,
                verbose=False,
                server_version=self.server_version,
            )
        except Exception as exc:
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return verdict(f"could not run EXPLAIN: {first_line}"), None
        cost0 = float(top["Plan"]["Total Cost"])
        if cost0 < self.min_initial_cost:
            return verdict(
                f"low initial cost ({cost0:,.1f} < {self.min_initial_cost:g})", cost_before=cost0
            ), None
        candidates = _candidate_columns(parsed, tables, aliases)
        if isinstance(self.what_if, _RollbackWhatIf):
            large = [t for t in tables if t.bytes > self.fallback_max_table_bytes]
            candidates = {t: c for t, c in candidates.items() if t not in large}
            if not candidates and large:
                return verdict(
                    f"table {large[0].schema}.{large[0].name} is over the fallback's size limit "
                    f"({self.fallback_max_table_bytes:,} bytes); install HypoPG",
                    cost_before=cost0,
                ), None
        singles: list[tuple[_Table, tuple[str, ...]]] = []
        pairs: list[tuple[_Table, tuple[str, ...]]] = []
        covered: list[str] = []
        for table, columns in candidates.items():
            for column in columns:
                existing = covering_index(table, (column,))
                if existing is None:
                    singles.append((table, (column,)))
                else:
                    covered.append(existing)
            pairs.extend(
                (table, pair)
                for pair in itertools.permutations(columns, 2)
                if covering_index(table, pair) is None
            )
        if not singles and not pairs:
            if covered:
                names = ", ".join(sorted(set(covered)))
                return verdict(
                    f"already covered by existing index {names}", cost_before=cost0
                ), None
            return verdict("no candidate columns", cost_before=cost0), None
        return await self._search(item, parsed, cost0, singles, pairs, verdict)

    async def _search(
        self,
        item: WorkloadStatement,
        parsed: ParsedStatement,
        cost0: float,
        singles: list[tuple[_Table, tuple[str, ...]]],
        pairs: list[tuple[_Table, tuple[str, ...]]],
        verdict: Any,
    ) -> tuple[StatementAdvice, tuple[_Table, tuple[str, ...], float, float] | None]:
        assert self.what_if is not None
        keep = 1.0 - self.min_cost_savings
        tried: list[tuple[_Table, tuple[str, ...]]] = []
        together, used_together = cost0, 0
        if singles:
            cost1, used1 = await self.what_if.cost(parsed, item.query, singles)
            tried += [singles[i] for i in sorted(used1)]
            together, used_together = cost1, len(used1)
        if pairs:
            both = singles + pairs
            cost2, used2 = await self.what_if.cost(parsed, item.query, both)
            tried += [both[i] for i in sorted(used2) if both[i] not in tried]
            if cost2 < together:
                together, used_together = cost2, len(used2)
        # At most one index per statement: cost each used candidate alone.
        best_single: tuple[float, tuple[_Table, tuple[str, ...]]] | None = None
        best_multi: tuple[float, tuple[_Table, tuple[str, ...]]] | None = None
        best_alone = cost0
        for table, columns in tried:
            alone, used = await self.what_if.cost(parsed, item.query, [(table, columns)])
            if not used:
                continue
            best_alone = min(best_alone, alone)
            if alone > keep * cost0:
                continue
            if len(columns) == 1:
                if best_single is None or alone < best_single[0]:
                    best_single = (alone, (table, columns))
            elif best_multi is None or alone < best_multi[0]:
                best_multi = (alone, (table, columns))
        # A composite must halve the best single-column plan again (Dexter's rule), so a
        # marginally cheaper wider index does not win over a narrow one.
        best = best_single
        if best_multi is not None and (best is None or best_multi[0] < keep * best[0]):
            best = best_multi
        if best is None:
            saving = 1.0 - best_alone / cost0 if cost0 else 0.0
            reason = (
                f"need {self.min_cost_savings:.0%} cost savings; the best single index saves "
                f"{saving:.0%}"
            )
            if used_together > 1 and together <= keep * cost0:
                reason += (
                    f" ({used_together} indexes together would save "
                    f"{1.0 - together / cost0:.0%}, e.g. a BitmapOr across columns; at most "
                    "one index per statement is suggested)"
                )
            return verdict(reason, cost_before=cost0), None
        cost_after, (table, columns) = best
        return verdict(
            f"index on {table.schema}.{table.name} ({', '.join(columns)}): cost "
            f"{cost0:,.1f} -> {cost_after:,.1f}",
            suggested=(table.schema, table.name, columns),
            cost_before=cost0,
            cost_after=cost_after,
        ), (table, columns, cost0, cost_after)

    def _merge(
        self, wins: list[tuple[_Table, tuple[str, ...], float, float, WorkloadStatement]]
    ) -> tuple[IndexSuggestion, ...]:
        merged: dict[tuple[int, tuple[str, ...]], list[Any]] = {}
        for table, columns, before, after, item in wins:
            entry = merged.setdefault((table.oid, columns), [table, 0.0, 0.0, []])
            entry[1] += before
            entry[2] += after
            entry[3].append(item.query)
        # A single column that leads a suggested composite is served by the composite.
        for (oid, columns), entry in list(merged.items()):
            if len(columns) != 1:
                continue
            for (other_oid, other), target in merged.items():
                if other_oid == oid and len(other) > 1 and other[0] == columns[0]:
                    target[1] += entry[1]
                    target[2] += entry[2]
                    target[3].extend(entry[3])
                    del merged[(oid, columns)]
                    break
        suggestions = []
        for (_, columns), (table, before, after, queries) in merged.items():
            name = suggested_index_name(table.name, columns)
            cols = ", ".join(quote_ident(c) for c in columns)
            suggestions.append(
                IndexSuggestion(
                    schema=table.schema,
                    table=table.name,
                    columns=columns,
                    name=name,
                    statement=(
                        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {quote_ident(name)} "
                        f"ON {qualified(table.schema, table.name)} ({cols})"
                    ),
                    cost_before=before,
                    cost_after=after,
                    statements=tuple(dict.fromkeys(queries)),
                    method=self.method,
                )
            )
        suggestions.sort(key=lambda s: s.cost_before - s.cost_after, reverse=True)
        return tuple(suggestions)


def _candidate_columns(
    parsed: ParsedStatement, tables: Sequence[_Table], aliases: Mapping[str, _Table]
) -> dict[_Table, tuple[str, ...]]:
    """Map each table to the indexable columns the statement filters, joins or sorts on."""
    found: dict[_Table, list[str]] = {}
    for use in parsed.columns:
        if use.qualifier:
            owners = [aliases[use.qualifier[-1]]] if use.qualifier[-1] in aliases else []
        else:
            owners = [t for t in tables if use.name in t.columns]
        for table in owners:
            if use.name in table.indexable and table.kind in {"r", "m", "p"}:
                columns = found.setdefault(table, [])
                if use.name not in columns:
                    columns.append(use.name)
    return {table: tuple(columns) for table, columns in found.items()}
