"""Read SQL with PostgreSQL's own parser (pglast, the libpg_query binding): no regexes.

From one statement we need the tables it reads or writes, the columns it filters, joins,
groups or sorts on (the index candidates, as Dexter takes them from pg_query), and how
many ``$n`` parameters it has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._deps import require_pglast

__all__ = [
    "ColumnUse",
    "ParsedStatement",
    "TableRef",
    "parse_statement",
    "uncacheable_reason",
]

_KINDS = {
    "SelectStmt": "select",
    "InsertStmt": "insert",
    "UpdateStmt": "update",
    "DeleteStmt": "delete",
    "MergeStmt": "merge",
}


@dataclass(frozen=True)
class TableRef:
    """A table named in a statement, as written (``schema`` is ``None`` when unqualified)."""

    schema: str | None
    name: str
    alias: str | None


@dataclass(frozen=True)
class ColumnUse:
    """A column reference in a WHERE, JOIN ON, GROUP BY or ORDER BY clause.

    ``qualifier`` is what precedes the column name (``("o",)`` for ``o.customer_id``,
    ``()`` when unqualified).
    """

    qualifier: tuple[str, ...]
    name: str
    clause: str


@dataclass(frozen=True)
class ParsedStatement:
    """What the advisor and the query cache need to know about one statement."""

    kind: str
    tables: tuple[TableRef, ...]
    columns: tuple[ColumnUse, ...]
    parameters: int
    reads_tables: bool


class _Collector:
    def __init__(self) -> None:
        self.tables: list[TableRef] = []
        self.columns: list[ColumnUse] = []
        self.parameters = 0

    def walk(self, node: Any, clause: str | None, ctes: frozenset[str]) -> None:
        ast = require_pglast().ast
        if isinstance(node, list | tuple):
            for item in node:
                self.walk(item, clause, ctes)
            return
        if not isinstance(node, ast.Node):
            return
        kind = type(node).__name__
        if kind == "RangeVar":
            if node.schemaname is None and node.relname in ctes:
                return
            alias = node.alias.aliasname if node.alias is not None else None
            self.tables.append(TableRef(node.schemaname, node.relname, alias))
            return
        if kind == "ColumnRef":
            if clause is not None:
                names = [f.sval for f in node.fields if type(f).__name__ == "String"]
                if names and len(names) == len(node.fields):
                    self.columns.append(ColumnUse(tuple(names[:-1]), names[-1], clause))
            return
        if kind == "ParamRef":
            self.parameters = max(self.parameters, int(node.number))
            return
        if kind in {"SelectStmt", "UpdateStmt", "DeleteStmt", "InsertStmt", "MergeStmt"}:
            self._statement(node, ctes)
            return
        if kind == "JoinExpr":
            self.walk(node.larg, None, ctes)
            self.walk(node.rarg, None, ctes)
            self.walk(node.quals, "join", ctes)
            self.walk(getattr(node, "usingClause", None), None, ctes)
            return
        for slot in type(node).__slots__:
            self.walk(getattr(node, slot, None), clause, ctes)

    def _statement(self, node: Any, ctes: frozenset[str]) -> None:
        with_clause = getattr(node, "withClause", None)
        if with_clause is not None:
            names = frozenset(cte.ctename for cte in with_clause.ctes or ())
            ctes = ctes | names
            for cte in with_clause.ctes or ():
                self.walk(cte.ctequery, None, ctes)
        roles = {
            "whereClause": "where",
            "havingClause": "where",
            "sortClause": "order",
            "groupClause": "group",
        }
        for slot in type(node).__slots__:
            if slot == "withClause":
                continue
            self.walk(getattr(node, slot, None), roles.get(slot), ctes)


_WRITES = {
    "InsertStmt": "INSERT",
    "UpdateStmt": "UPDATE",
    "DeleteStmt": "DELETE",
    "MergeStmt": "MERGE",
}


def _side_effect(node: Any) -> str | None:
    ast = require_pglast().ast
    if isinstance(node, list | tuple):
        for item in node:
            reason = _side_effect(item)
            if reason is not None:
                return reason
        return None
    if not isinstance(node, ast.Node):
        return None
    kind = type(node).__name__
    if kind in _WRITES:
        return f"it contains a data-modifying {_WRITES[kind]} (in a WITH clause)"
    if kind == "SelectStmt":
        if node.intoClause is not None:
            return "SELECT ... INTO creates a table"
        if node.lockingClause:
            return "it takes row locks (FOR UPDATE/SHARE)"
    for slot in type(node).__slots__:
        reason = _side_effect(getattr(node, slot, None))
        if reason is not None:
            return reason
    return None


def _parse_one(sql: str) -> Any:
    """Return the one statement node of ``sql``.

    Raises:
        ValueError: The text does not parse, or holds more or fewer than one statement.
    """
    pglast = require_pglast()
    try:
        parsed = pglast.parse_sql(sql)
    except pglast.parser.ParseError as exc:
        raise ValueError(f"could not parse: {exc}") from exc
    if len(parsed) != 1:
        raise ValueError(f"expected one statement, found {len(parsed)}")
    return parsed[0].stmt


def uncacheable_reason(sql: str) -> str | None:
    """Return why the result of ``sql`` must not be cached, or ``None`` when it may be.

    Only a plain SELECT may be cached: not another kind of statement, not one with a
    data-modifying statement anywhere in its tree (``WITH d AS (DELETE ... RETURNING ...)
    SELECT ...``), not ``SELECT ... INTO`` and not one with a locking clause
    (``FOR UPDATE``/``FOR SHARE``), since serving those from a cache would skip their
    side effects.

    Raises:
        ValueError: The text does not parse, or holds more or fewer than one statement.
    """
    stmt = _parse_one(sql)
    if type(stmt).__name__ != "SelectStmt":
        return f"it is not a SELECT ({type(stmt).__name__})"
    return _side_effect(stmt)


def parse_statement(sql: str) -> ParsedStatement:
    """Parse one SQL statement.

    Args:
        sql: The statement text; ``$n`` placeholders (pg_stat_statements' normalized text)
            are fine.

    Returns:
        The tables, candidate columns and parameter count of the statement.

    Raises:
        ValueError: The text does not parse, or holds more or fewer than one statement.
    """
    stmt = _parse_one(sql)
    collector = _Collector()
    collector.walk(stmt, None, frozenset())
    kind = _KINDS.get(type(stmt).__name__, "other")
    return ParsedStatement(
        kind=kind,
        tables=tuple(dict.fromkeys(collector.tables)),
        columns=tuple(dict.fromkeys(collector.columns)),
        parameters=collector.parameters,
        reads_tables=bool(collector.tables),
    )
