"""``asyncperf db report``: readable tables, --json, and read-only unless --apply-indexes."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
from typing import Any

import asyncpg
import pytest

from asyncperf.db import QueryAnalyzer
from asyncperf.db._cli import add_parser, run
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
        f'CREATE INDEX CONCURRENTLY "customers_email_idx" ON {quote_ident(workload_schema)}' in text
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
        sql(f"DROP INDEX IF EXISTS {quote_ident(workload_schema)}.customers_email_idx")


def test_unreachable_server_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(parse(["db", "report", "postgresql://postgres@127.0.0.1:1/test"])) == 2
    assert "cannot connect" in capsys.readouterr().err
