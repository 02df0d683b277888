"""Fixtures for the asyncperf.db tests: the local PostgreSQL, a generated schema.

Tests marked ``postgres`` need PostgreSQL on 127.0.0.1:5432 (database ``test`` with
pg_stat_statements and HypoPG, see .ci/postgres.sh). When it is down they fail: the
fixtures raise, nothing is skipped.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

from asyncperf.db._sql import quote_ident
from tests.db.workload import schema_sql

DSN = os.environ.get("ASYNCPERF_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def anyio_backend() -> str:
    # asyncpg runs on asyncio only (tests/conftest.py also parametrizes trio).
    return "asyncio"


async def _run(statements: list[str]) -> None:
    conn = await asyncpg.connect(DSN)
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def workload_schema() -> Iterator[str]:
    """A dedicated schema with the generated workload tables, dropped after the session."""
    name = f"asyncperf_t_{os.getpid()}_{secrets.token_hex(3)}"
    asyncio.run(_run(schema_sql(name)))
    try:
        yield name
    finally:
        asyncio.run(_run([f"DROP SCHEMA IF EXISTS {quote_ident(name)} CASCADE"]))


@pytest.fixture
def scratch_schema() -> Iterator[str]:
    """An empty schema for one test, dropped afterwards."""
    name = f"asyncperf_s_{os.getpid()}_{secrets.token_hex(3)}"
    asyncio.run(_run([f"CREATE SCHEMA {quote_ident(name)}"]))
    try:
        yield name
    finally:
        asyncio.run(_run([f"DROP SCHEMA IF EXISTS {quote_ident(name)} CASCADE"]))


@pytest.fixture
async def pool() -> AsyncIterator[Any]:
    pool = await asyncpg.create_pool(DSN, min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


async def flush_stats(conn: Any) -> None:
    """Make this backend's pending statistics visible (PostgreSQL 15+)."""
    await conn.execute("SELECT pg_stat_force_next_flush()")
    await conn.execute("SELECT 1")
