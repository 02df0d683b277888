"""The SQL reader: PostgreSQL's own parser (pglast), never regexes."""

from __future__ import annotations

import pytest

from asyncperf.db._parse import ColumnUse, TableRef, parse_statement


def test_tables_aliases_and_candidate_columns() -> None:
    parsed = parse_statement(
        "SELECT o.id, c.name FROM shop.orders o JOIN customers c ON c.id = o.customer_id "
        "WHERE o.status = $1 AND c.email = $2 GROUP BY o.region ORDER BY o.placed_at DESC "
        "LIMIT $3"
    )
    assert parsed.kind == "select"
    assert parsed.parameters == 3
    assert parsed.tables == (TableRef("shop", "orders", "o"), TableRef(None, "customers", "c"))
    assert set(parsed.columns) == {
        ColumnUse(("c",), "id", "join"),
        ColumnUse(("o",), "customer_id", "join"),
        ColumnUse(("o",), "status", "where"),
        ColumnUse(("c",), "email", "where"),
        ColumnUse(("o",), "region", "group"),
        ColumnUse(("o",), "placed_at", "order"),
    }
    # select-list columns are not candidates
    assert not any(c.name == "name" for c in parsed.columns)


def test_ctes_are_not_tables_and_subqueries_are_walked() -> None:
    parsed = parse_statement(
        "WITH recent AS (SELECT * FROM events WHERE at > $1) "
        "SELECT * FROM recent r WHERE EXISTS (SELECT 1 FROM flags f WHERE f.event_id = r.id)"
    )
    assert [t.name for t in parsed.tables] == ["events", "flags"]
    assert ColumnUse((), "at", "where") in parsed.columns
    assert ColumnUse(("f",), "event_id", "where") in parsed.columns


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("UPDATE t SET a = 1 WHERE b = $1", "update"),
        ("DELETE FROM t WHERE b = 2", "delete"),
        ("INSERT INTO t SELECT * FROM u", "insert"),
        ("RESET ALL", "other"),
        ("SELECT pg_advisory_unlock_all()", "select"),
    ],
)
def test_statement_kinds(sql: str, kind: str) -> None:
    assert parse_statement(sql).kind == kind


def test_identifiers_with_quotes_and_case() -> None:
    parsed = parse_statement('SELECT 1 FROM "My Schema"."Odd""Table" WHERE "Col" = 1')
    assert parsed.tables == (TableRef("My Schema", 'Odd"Table', None),)
    assert parsed.columns == (ColumnUse((), "Col", "where"),)


@pytest.mark.parametrize("sql", ["SELEC 1", "SELECT 1; SELECT 2", ""])
def test_rejects_what_is_not_one_statement(sql: str) -> None:
    with pytest.raises(ValueError, match=r"parse|statement"):
        parse_statement(sql)
