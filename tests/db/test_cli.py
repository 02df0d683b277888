"""``asyncperf db report``: readable tables, --json, and read-only unless --apply-indexes."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest

from asyncperf.db import IndexSuggestion, QueryAnalyzer
from asyncperf.db._cli import _apply, add_parser, run
from asyncperf.db._sql import quote_ident
from tests.db.conftest import DSN
from tests.db.workload import statements


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="asyncperf")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


async def _sql(query: str, *args: Any) -> Any:
    conn = await asyncpg.connect(DSN)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


def sql(query: str, *args: Any) -> Any:
    return asyncio.run(_sql(query, *args))


def index_count(schema: str) -> int:
    return int(sql("SELECT count(*) FROM pg_indexes WHERE schemaname = $1", schema))


async def _prepare(schema: str) -> None:
    pool = await asyncpg.create_pool(DSN, min_size=1, max_size=1)
    try:
        await QueryAnalyzer(pool).reset_statistics()
        for item in statements(schema):
            if item.name in {"email", "status"}:
                for _ in range(3):
                    await pool.fetch(item.sql, *item.args)
    finally:
        await pool.close()


@pytest.mark.postgres
def test_report_reads_only_and_apply_creates_the_indexes(workload_schema: str) -> None:
    # run() owns its event loop (asyncio.run), as the real command does: a sync test.
    asyncio.run(_prepare(workload_schema))
    before = index_count(workload_schema)

    out = io.StringIO()
    assert run(parse(["db", "report", DSN, "--schema", workload_schema]), out=out) == 0
    text = out.getvalue()
    assert "Slow queries" in text
    assert "Index advice (hypopg)" in text
    assert (
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS "
        f'"asyncperf_customers_email_idx" ON {quote_ident(workload_schema)}' in text
    )
    assert "Maintenance advice" in text
    assert index_count(workload_schema) == before  # read-only

    out = io.StringIO()
    assert run(parse(["db", "report", DSN, "--schema", workload_schema, "--json"]), out=out) == 0
    data = json.loads(out.getvalue())
    assert {"extensions", "slow_queries", "findings", "index_advice", "health"} <= data.keys()
    assert [s["columns"] for s in data["index_advice"]["suggestions"]] == [["email"]]

    out = io.StringIO()
    args = parse(["db", "report", DSN, "--schema", workload_schema, "--apply-indexes", "--json"])
    try:
        assert run(args, out=out) == 0
        applied = json.loads(out.getvalue())["applied"]
        assert [a["ok"] for a in applied] == [True]
        assert index_count(workload_schema) == before + 1
    finally:
        sql(f"DROP INDEX IF EXISTS {quote_ident(workload_schema)}.asyncperf_customers_email_idx")


def test_unreachable_server_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(parse(["db", "report", "postgresql://postgres@127.0.0.1:1/test"])) == 2
    assert "cannot connect" in capsys.readouterr().err


def as_report(suggestions: Any) -> Any:
    return SimpleNamespace(index_advice=SimpleNamespace(suggestions=list(suggestions)))


async def _partial_index_case(
    schema: str,
) -> tuple[list[dict[str, Any]], list[str], list[dict[str, Any]]]:
    s = quote_ident(schema)
    conn = await asyncpg.connect(DSN)
    try:
        await conn.execute(
            f"CREATE TABLE {s}.t (id int PRIMARY KEY, c int NOT NULL);"
            f"INSERT INTO {s}.t SELECT g, g FROM generate_series(1, 50000) g;"
            # the user's own index, with the name PostgreSQL would give t (c)
            f"CREATE INDEX t_c_idx ON {s}.t (c) WHERE c < 10;"
            f"ANALYZE {s}.t"
        )
        advice = await QueryAnalyzer(conn).recommend_indexes([f"SELECT id FROM {s}.t WHERE c = $1"])
        assert [x.columns for x in advice] == [("c",)]
        applied = await _apply(conn, as_report(advice.suggestions), 5.0)
        names = await conn.fetch(
            "SELECT indexrelid::regclass::text AS name FROM pg_index "
            "WHERE indrelid = to_regclass($1) AND indisvalid ORDER BY 1",
            f"{s}.t",
        )
        again = await _apply(conn, as_report(advice.suggestions), 5.0)
        return applied, [r["name"] for r in names], again
    finally:
        await conn.close()


@pytest.mark.postgres
async def test_apply_indexes_never_drops_an_existing_index(scratch_schema: str) -> None:
    applied, names, again = await _partial_index_case(scratch_schema)
    s = scratch_schema  # a plain name: regclass text leaves it unquoted
    assert names == [f"{s}.asyncperf_t_c_idx", f"{s}.t_c_idx", f"{s}.t_pkey"]
    assert [(a["ok"], a["created"]) for a in applied] == [(True, True)]
    assert [(a["ok"], a["created"]) for a in again] == [(True, False)]  # idempotent


@pytest.mark.postgres
async def test_apply_drops_only_its_own_failed_build(scratch_schema: str) -> None:
    s = quote_ident(scratch_schema)
    conn = await asyncpg.connect(DSN)
    try:
        await conn.execute(
            f"CREATE TABLE {s}.u (id int, dup int);"
            f"INSERT INTO {s}.u SELECT g, 1 FROM generate_series(1, 10) g;"
            f"CREATE INDEX mine ON {s}.u (dup)"
        )

        def suggestion(name: str, statement: str) -> IndexSuggestion:
            return IndexSuggestion(
                schema=scratch_schema,
                table="u",
                columns=("dup",),
                name=name,
                statement=statement,
                cost_before=2.0,
                cost_after=1.0,
                statements=(),
                method="test",
            )

        applied = await _apply(
            conn,
            as_report(
                [
                    # a name clash: the index there is someone else's
                    suggestion("mine", f"CREATE INDEX CONCURRENTLY mine ON {s}.u (id)"),
                    # our concurrent build fails and leaves an invalid index: dropped
                    suggestion(
                        "asyncperf_u_dup_idx",
                        f"CREATE UNIQUE INDEX CONCURRENTLY asyncperf_u_dup_idx ON {s}.u (dup)",
                    ),
                ]
            ),
            5.0,
        )
        assert await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{s}.mine")
        assert [a["ok"] for a in applied] == [True, False]  # "mine" exists: left alone
        applied = await _apply(
            conn,
            as_report([suggestion("other", f"CREATE INDEX CONCURRENTLY mine ON {s}.u (id)")]),
            5.0,
        )
        assert not applied[0]["ok"]
        assert "already exists" in applied[0]["error"]
        names = await conn.fetch(
            "SELECT indexrelid::regclass::text AS name FROM pg_index "
            "WHERE indrelid = to_regclass($1)",
            f"{s}.u",
        )
        assert [r["name"] for r in names] == [f"{scratch_schema}.mine"]
    finally:
        await conn.close()


def test_sqlalchemy_urls_are_accepted_like_dsns(capsys: pytest.CaptureFixture[str]) -> None:
    engine_url = DSN.replace("postgresql://", "postgresql+asyncpg://", 1)
    reports = []
    for url in (DSN, engine_url):
        assert run(parse(["db", "report", url, "--json", "--top", "3", "--explain-top", "0"])) == 0
        reports.append(json.loads(capsys.readouterr().out))
    assert reports[0]["extensions"] == reports[1]["extensions"]
    assert reports[1]["extensions"]["hypopg"] is True


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@127.0.0.1/test", "unsupported URL scheme 'mysql'"),
        ("postgresql+psycopg://postgres@127.0.0.1/test", "unsupported URL scheme"),
        ("127.0.0.1:5432/test", "not a database URL"),
        ("postgresql+asyncpg://postgres@127.0.0.1:notaport/test", "bad database URL"),
        ("postgresql://postgres@127.0.0.1/test?sslmode=bogus", "bad database URL: `sslmode`"),
    ],
)
def test_bad_urls_get_one_line_and_exit_2(
    url: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(parse(["db", "report", url])) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"asyncperf db: {message}")
