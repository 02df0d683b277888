"""Query-result caching on :class:`asyncperf.Cache`, invalidated when a table changes.

``cached_fetch`` keys on the statement text and its arguments, tags each entry with the
tables the statement reads (views expanded to their base tables), and loads misses through
``Cache.get_or_set`` (single-flight: concurrent misses share one query). Invalidation is
opt-in and explicit: :func:`setup_invalidation` installs statement-level triggers that
``NOTIFY`` on every write and a listener that drops the tagged entries.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from .._exceptions import ConfigurationError
from ..cache import Cache, get_default_cache
from ._deps import require_asyncpg
from ._parse import parse_statement
from ._sql import MARKER, qualified, quote_ident, quote_literal

__all__ = [
    "CHANNEL",
    "TableInvalidation",
    "cached_fetch",
    "setup_invalidation",
    "table_tag",
]

logger = logging.getLogger("asyncperf.db")

#: The default LISTEN/NOTIFY channel of the invalidation triggers.
CHANNEL = "asyncperf_table_changed"
_FUNCTION = "asyncperf_notify_table_change"
_TRIGGER = "asyncperf_invalidate"
_KEY_PREFIX = "pg:"

# Active invalidations by id(cache): cached_fetch consults them so a load that raced a
# table change is returned but not stored. The invalidation holds the cache, so the id
# cannot be reused while registered.
_active: dict[int, TableInvalidation] = {}
# (id(pool), sql) -> tags, so each statement's tables are resolved once per pool.
_tags_cache: dict[tuple[int, str], tuple[str, ...]] = {}


def table_tag(database: str, schema: str, table: str) -> str:
    """Return the cache tag of a table (what the triggers' notifications invalidate)."""
    return f"pg-table:{database}/{schema}.{table}"


def _key(sql: str, args: Sequence[Any]) -> str:
    payload = orjson.dumps(
        [sql, [[type(a).__name__, a] for a in args]],
        default=repr,
        option=orjson.OPT_NON_STR_KEYS,
    )
    return _KEY_PREFIX + hashlib.sha256(payload).hexdigest()


_RESOLVE = f"""{MARKER}
WITH RECURSIVE rel(oid) AS (
    SELECT to_regclass(x)::oid FROM unnest($1::text[]) x
  UNION
    SELECT d.refobjid FROM rel
    JOIN pg_rewrite r ON r.ev_class = rel.oid
    JOIN pg_depend d ON d.objid = r.oid AND d.classid = 'pg_rewrite'::regclass
                    AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> rel.oid)
SELECT current_database() AS database, n.nspname AS schema, c.relname AS table
FROM rel JOIN pg_class c ON c.oid = rel.oid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm', 'f')"""


async def _tags(pool: Any, sql: str) -> tuple[str, ...]:
    key = (id(pool), sql)
    cached = _tags_cache.get(key)
    if cached is not None:
        return cached
    try:
        parsed = parse_statement(sql)
    except ValueError as exc:
        raise ConfigurationError(f"cached_fetch: {exc}") from exc
    if parsed.kind != "select":
        raise ConfigurationError("cached_fetch caches SELECT statements only")
    names = [
        qualified(t.schema, t.name) if t.schema else quote_ident(t.name) for t in parsed.tables
    ]
    rows = await pool.fetch(_RESOLVE, names) if names else []
    tags = tuple(sorted({table_tag(r["database"], r["schema"], r["table"]) for r in rows}))
    if len(_tags_cache) > 10_000:
        _tags_cache.clear()
    _tags_cache[key] = tags
    return tags


async def cached_fetch(
    pool: Any,
    sql: str,
    *args: Any,
    ttl: float | None = 60.0,
    cache: Cache | None = None,
    lock: Any = "local",
) -> list[dict[str, Any]]:
    """Return the rows of a SELECT, from the cache when they are there.

    Rows are returned as dicts (column name to value): asyncpg records cannot be stored in
    a remote cache, and a dict reads the same (``row["id"]``) from every tier.

    Args:
        pool: An asyncpg pool (or connection) to run the query on.
        sql: The SELECT statement.
        *args: Its bind arguments (part of the cache key).
        ttl: Seconds the rows stay fresh (``None``: the cache's default).
        cache: The cache (default: asyncperf's default in-memory cache).
        lock: ``Cache.get_or_set``'s single-flight mode (``"local"`` by default).

    Returns:
        The rows.

    Raises:
        ConfigurationError: The statement is not a single SELECT.
    """
    cache = cache if cache is not None else get_default_cache()
    tags = await _tags(pool, sql)
    invalidation = _active.get(id(cache))
    before = invalidation.generation(tags) if invalidation is not None else 0

    async def load() -> list[dict[str, Any]]:
        return [dict(record) for record in await pool.fetch(sql, *args)]

    def unchanged(_: object) -> bool:
        # A table changed while we were loading: hand the rows out, don't keep them.
        return invalidation is None or invalidation.generation(tags) == before

    rows: list[dict[str, Any]] = await cache.get_or_set(
        _key(sql, args), load, ttl=ttl, tags=tags, lock=lock, store_if=unchanged
    )
    return rows


class TableInvalidation:
    """Triggers and a LISTEN connection that drop cached rows when their tables change.

    Create it with :func:`setup_invalidation`; close it with :meth:`aclose` (or
    ``async with``). The triggers stay installed (they cost one NOTIFY per writing
    statement) until :meth:`uninstall`.
    """

    def __init__(self, cache: Cache, *, channel: str = CHANNEL) -> None:
        self.cache = cache
        self.channel = channel
        self.notifications = 0
        self._generations: dict[str, int] = {}
        self._conn: Any = None
        self._pool: Any = None
        self._database = ""
        self._pending: set[asyncio.Task[Any]] = set()

    def generation(self, tags: Iterable[str]) -> int:
        """Return a number that grows whenever one of ``tags``' tables changes."""
        return sum(self._generations.get(tag, 0) for tag in tags) + self._generations.get("*", 0)

    async def install(self, conn: Any, tables: Iterable[str]) -> list[str]:
        """Install the notify triggers on ``tables`` (``"schema.table"`` or ``"table"``).

        Returns:
            The tables' tags.
        """
        installed = []
        async with _connection(conn) as c, c.transaction():
            for name in tables:
                schema, table, database = await _resolve_table(c, name)
                function = f"{quote_ident(schema)}.{quote_ident(_FUNCTION)}"
                await c.execute(
                    f"""{MARKER}
                    CREATE OR REPLACE FUNCTION {function}() RETURNS trigger
                    LANGUAGE plpgsql AS $body$
                    BEGIN
                      PERFORM pg_notify(TG_ARGV[0], current_database() || '/' ||
                                        TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME);
                      RETURN NULL;
                    END $body$"""
                )
                target = qualified(schema, table)
                await c.execute(
                    f"{MARKER} DROP TRIGGER IF EXISTS {quote_ident(_TRIGGER)} ON {target}"
                )
                await c.execute(
                    f"{MARKER} CREATE TRIGGER {quote_ident(_TRIGGER)} "
                    f"AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {target} "
                    f"FOR EACH STATEMENT EXECUTE FUNCTION {function}({quote_literal(self.channel)})"
                )
                installed.append(table_tag(database, schema, table))
        return installed

    async def uninstall(self, conn: Any, tables: Iterable[str]) -> None:
        """Remove the triggers from ``tables`` (and the function once no trigger uses it)."""
        asyncpg = require_asyncpg()
        async with _connection(conn) as c:
            for name in tables:
                schema, table, _ = await _resolve_table(c, name)
                await c.execute(
                    f"{MARKER} DROP TRIGGER IF EXISTS {quote_ident(_TRIGGER)} "
                    f"ON {qualified(schema, table)}"
                )
                try:
                    await c.execute(
                        f"{MARKER} DROP FUNCTION IF EXISTS "
                        f"{quote_ident(schema)}.{quote_ident(_FUNCTION)}()"
                    )
                except asyncpg.DependentObjectsStillExistError:
                    pass  # other tables of this schema still use it

    async def start(self, pool: Any, *, dsn: str | None = None) -> None:
        """Start listening: on its own connection from ``dsn``, or one held from ``pool``."""
        asyncpg = require_asyncpg()
        if dsn is not None:
            self._conn = await asyncpg.connect(dsn)
        else:
            self._pool = pool
            self._conn = await pool.acquire()
        self._database = await self._conn.fetchval(f"{MARKER} SELECT current_database()")
        await self._conn.add_listener(self.channel, self._notified)
        self._conn.add_termination_listener(self._lost)
        _active[id(self.cache)] = self

    def _bump(self, tag: str) -> None:
        self._generations[tag] = self._generations.get(tag, 0) + 1

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.notifications += 1
        tag = f"pg-table:{payload}"
        self._bump(tag)
        task = asyncio.get_running_loop().create_task(self.cache.invalidate_tags(tag))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _lost(self, _conn: Any) -> None:
        # Notifications may have been missed: nothing cached through this listener can be
        # trusted any more.
        logger.warning("asyncperf.db: invalidation listener lost its connection; cache cleared")
        self._bump("*")
        _active.pop(id(self.cache), None)
        task = asyncio.get_running_loop().create_task(self.cache.clear())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def wait_idle(self) -> None:
        """Wait until the invalidations already notified have reached the cache."""
        while self._pending:
            await asyncio.gather(*list(self._pending))

    async def aclose(self) -> None:
        """Stop listening and release the listener's connection (triggers stay)."""
        if _active.get(id(self.cache)) is self:
            del _active[id(self.cache)]
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.remove_termination_listener(self._lost)
            await conn.remove_listener(self.channel, self._notified)
            if self._pool is not None:
                await self._pool.release(conn)
            else:
                await conn.close()
        await self.wait_idle()

    async def __aenter__(self) -> TableInvalidation:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def setup_invalidation(
    pool: Any,
    cache: Cache,
    tables: Iterable[str],
    *,
    dsn: str | None = None,
    channel: str = CHANNEL,
) -> TableInvalidation:
    """Install notify triggers on ``tables`` and start listening for their changes.

    This is the explicit setup step of table invalidation: it runs DDL (``CREATE
    FUNCTION``, ``CREATE TRIGGER``), so it needs the right to alter those tables.

    Args:
        pool: The asyncpg pool the cached queries run on.
        cache: The cache :func:`cached_fetch` stores into.
        tables: ``"schema.table"`` or search-path-relative ``"table"`` names.
        dsn: Listen on a connection of its own to this DSN (default: hold one of the
            pool's connections while listening).
        channel: The NOTIFY channel.

    Returns:
        The running invalidation; ``aclose()`` it when done.
    """
    invalidation = TableInvalidation(cache, channel=channel)
    await invalidation.install(pool, tables)
    await invalidation.start(pool, dsn=dsn)
    return invalidation


class _connection:
    """``async with`` a connection from a pool, or a connection as is."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.conn: Any = None

    async def __aenter__(self) -> Any:
        asyncpg = require_asyncpg()
        if isinstance(self.target, asyncpg.Pool):
            self.conn = await self.target.acquire()
            return self.conn
        return self.target

    async def __aexit__(self, *exc: object) -> None:
        if self.conn is not None:
            await self.target.release(self.conn)


async def _resolve_table(conn: Any, name: str) -> tuple[str, str, str]:
    try:
        parsed = parse_statement(f"SELECT FROM {name}")
    except ValueError as exc:
        raise ConfigurationError(f"not a table name: {name!r}") from exc
    if len(parsed.tables) != 1:
        raise ConfigurationError(f"not a table name: {name!r}")
    ref = parsed.tables[0]
    regclass = qualified(ref.schema, ref.name) if ref.schema else quote_ident(ref.name)
    row = await conn.fetchrow(
        f"""{MARKER}
        SELECT n.nspname AS schema, c.relname AS table, current_database() AS database
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p')""",
        regclass,
    )
    if row is None:
        raise ConfigurationError(f"no such table: {name!r}")
    return row["schema"], row["table"], row["database"]
