"""cached_select: SQLAlchemy Core and ORM selects cached, invalidated by table triggers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import ForeignKey, MetaData, bindparam, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from asyncperf import Cache, ConfigurationError, MemoryStore
from asyncperf.db import PoolMonitor, TableInvalidation, cached_select, setup_invalidation
from asyncperf.db._sql import quote_ident
from tests.db.conftest import DSN

pytestmark = pytest.mark.postgres

ENGINE_URL = DSN.replace("postgresql://", "postgresql+asyncpg://", 1)


def models(schema: str) -> tuple[Any, Any, Any]:
    class Base(DeclarativeBase):
        metadata = MetaData(schema=schema)

    class Author(Base):
        __tablename__ = "authors"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]

    class Book(Base):
        __tablename__ = "books"
        id: Mapped[int] = mapped_column(primary_key=True)
        author_id: Mapped[int] = mapped_column(ForeignKey(Author.id))
        title: Mapped[str]

    return Base, Author, Book


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(ENGINE_URL, pool_size=2, max_overflow=0)
    try:
        yield engine
    finally:
        await engine.dispose()


async def changed(invalidation: TableInvalidation, before: int) -> None:
    for _ in range(100):
        if invalidation.notifications > before:
            break
        await asyncio.sleep(0.02)
    await invalidation.wait_idle()
    assert invalidation.notifications > before


async def write(sql: str) -> None:
    """A write from another connection, outside the engine."""
    conn = await asyncpg.connect(DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def setup(engine: AsyncEngine, schema: str) -> tuple[Any, Any, Any]:
    base, author, book = models(schema)
    async with engine.begin() as conn:
        await conn.run_sync(base.metadata.create_all)
        await conn.execute(insert(author), [{"id": 1, "name": "Le Guin"}, {"id": 2, "name": "Lem"}])
        await conn.execute(
            insert(book),
            [
                {"id": 1, "author_id": 1, "title": "The Dispossessed"},
                {"id": 2, "author_id": 1, "title": "The Lathe of Heaven"},
                {"id": 3, "author_id": 2, "title": "Solaris"},
            ],
        )
    return base, author, book


async def test_orm_selects_hit_and_are_invalidated_by_another_connection(
    engine: AsyncEngine, scratch_schema: str
) -> None:
    _, author, book = await setup(engine, scratch_schema)
    cache = Cache(MemoryStore())
    invalidation = await setup_invalidation(
        engine, cache, [f"{scratch_schema}.authors", f"{scratch_schema}.books"], dsn=DSN
    )
    monitor = PoolMonitor(engine)
    try:
        by_id = select(author).where(author.id == 1)
        counts = (
            select(author.name, func.count(book.id).label("books"))
            .join(book)
            .group_by(author.name)
            .order_by(author.name)
        )
        async with AsyncSession(engine) as session:
            assert await cached_select(session, by_id, cache=cache) == [
                {"id": 1, "name": "Le Guin"}
            ]
            assert await cached_select(session, counts, cache=cache) == [
                {"name": "Le Guin", "books": 2},
                {"name": "Lem", "books": 1},
            ]
            mixed = select(author, func.length(author.name).label("n")).where(author.id == 2)
            assert await cached_select(session, mixed, cache=cache) == [
                {"Author": {"id": 2, "name": "Lem"}, "n": 3}
            ]
        loads = cache.statistics().loads
        checkouts = monitor.statistics().acquisitions
        async with AsyncSession(engine) as session:  # hits: no connection at all
            assert await cached_select(session, by_id, cache=cache) == [
                {"id": 1, "name": "Le Guin"}
            ]
            assert await cached_select(session, counts, cache=cache) == [
                {"name": "Le Guin", "books": 2},
                {"name": "Lem", "books": 1},
            ]
            # another bound value: another key
            other = select(author).where(author.id == 2)
            assert await cached_select(session, other, cache=cache) == [{"id": 2, "name": "Lem"}]
        assert cache.statistics().loads == loads + 1
        assert monitor.statistics().acquisitions == checkouts + 1  # the one miss
        before = invalidation.notifications
        await write(f"INSERT INTO {quote_ident(scratch_schema)}.books VALUES (4, 2, 'Eden')")
        await changed(invalidation, before)
        async with AsyncSession(engine) as session:
            assert await cached_select(session, counts, cache=cache) == [
                {"name": "Le Guin", "books": 2},
                {"name": "Lem", "books": 2},
            ]
            # authors did not change: still a hit
            loads = cache.statistics().loads
            assert await cached_select(session, by_id, cache=cache) == [
                {"id": 1, "name": "Le Guin"}
            ]
            assert cache.statistics().loads == loads
    finally:
        monitor.close()
        await invalidation.aclose()
        await invalidation.uninstall(
            engine, [f"{scratch_schema}.authors", f"{scratch_schema}.books"]
        )
        await cache.aclose()


async def test_core_selects_through_a_connection_with_bind_params(
    engine: AsyncEngine, scratch_schema: str
) -> None:
    base, _, _ = await setup(engine, scratch_schema)
    books = base.metadata.tables[f"{scratch_schema}.books"]
    cache = Cache(MemoryStore())
    invalidation = await setup_invalidation(engine, cache, [f"{scratch_schema}.books"], dsn=DSN)
    try:
        by_author = (
            select(books.c.id, books.c.title)
            .where(books.c.author_id == bindparam("author"))
            .order_by(books.c.id)
        )
        in_list = select(books.c.title).where(books.c.id.in_([1, 3])).order_by(books.c.id)
        async with engine.connect() as conn:
            first = await cached_select(conn, by_author, {"author": 1}, cache=cache)
            assert first == [
                {"id": 1, "title": "The Dispossessed"},
                {"id": 2, "title": "The Lathe of Heaven"},
            ]
            assert await cached_select(conn, by_author, {"author": 2}, cache=cache) == [
                {"id": 3, "title": "Solaris"}
            ]
            assert await cached_select(conn, by_author, {"author": 1}, cache=cache) == first
            assert await cached_select(conn, in_list, cache=cache) == [
                {"title": "The Dispossessed"},
                {"title": "Solaris"},
            ]
            assert (cache.statistics().hits, cache.statistics().loads) == (1, 3)
            before = invalidation.notifications
            await write(f"UPDATE {quote_ident(scratch_schema)}.books SET title = 'S.' WHERE id = 3")
            await changed(invalidation, before)
            assert await cached_select(conn, in_list, cache=cache) == [
                {"title": "The Dispossessed"},
                {"title": "S."},
            ]
            with pytest.raises(ConfigurationError, match="select"):
                await cached_select(conn, insert(books), cache=cache)
            with pytest.raises(ConfigurationError, match="FOR UPDATE"):
                await cached_select(conn, select(books).with_for_update(), cache=cache)
        with pytest.raises(ConfigurationError, match="AsyncSession or AsyncConnection"):
            await cached_select(engine, select(books), cache=cache)
    finally:
        await invalidation.aclose()
        await invalidation.uninstall(engine, [f"{scratch_schema}.books"])
        await cache.aclose()
