"""Query-result caching on :class:`asyncperf.Cache`, invalidated when a table changes.

``cached_fetch`` keys on the statement text and its arguments, tags each entry with the
tables the statement reads (views expanded to their base tables), and loads misses through
``Cache.get_or_set`` (single-flight: concurrent misses share one query). Invalidation is
opt-in and explicit: :func:`setup_invalidation` installs statement-level triggers that
``NOTIFY`` on every write and a listener that drops the tagged entries.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import itertools
import json
import logging
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any

from .._exceptions import ConfigurationError
from ..cache import Cache, get_default_cache
from ._deps import require_asyncpg
from ._engine import EnginePool, as_pool
from ._parse import parse_statement, uncacheable_reason
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
_TABLE_TAG_PREFIX = "pg-table:"

# Active invalidations by id(cache), all of them: cached_fetch consults them so a load that
# raced a table change (or ran while a listener was disconnected) is returned but not
# stored. An invalidation holds its cache, so the id cannot be reused while registered.
_active: dict[int, list[TableInvalidation]] = {}

# A snapshot of the active invalidations' state for some tags: (serial, generation) of
# each, or None while one of them is disconnected (nothing may be stored then).
_State = tuple[tuple[int, int], ...] | None


def table_tag(database: str, schema: str, table: str) -> str:
    """Return the cache tag of a table (what the triggers' notifications invalidate)."""
    return f"{_TABLE_TAG_PREFIX}{database}/{schema}.{table}"


def _state(cache: Cache, tags: Iterable[str]) -> _State:
    invalidations = _active.get(id(cache))
    if not invalidations:
        return ()
    if not all(inv.connected for inv in invalidations):
        return None
    return tuple((inv.serial, inv.generation(tags)) for inv in invalidations)


# -- what a query runs against ------------------------------------------------------------


class _Target:
    """What one pool (or connection) runs queries against, resolved once."""

    __slots__ = ("key", "tags")

    def __init__(self, key: str) -> None:
        self.key = key  # canonical (current_database(), current_schemas(true))
        self.tags: dict[str, tuple[str, ...]] = {}  # sql -> table tags


_weak_targets: weakref.WeakKeyDictionary[Any, _Target] = weakref.WeakKeyDictionary()
# Pools that take no weak reference (asyncpg.Pool has __slots__): held, pruned when closed.
_strong_targets: dict[int, tuple[Any, _Target]] = {}


def _lookup(pool: Any) -> _Target | None:
    try:
        return _weak_targets.get(pool)
    except TypeError:
        entry = _strong_targets.get(id(pool))
        return entry[1] if entry is not None and entry[0] is pool else None


def _closed(pool: Any) -> bool:
    for name in ("is_closing", "is_closed"):
        check = getattr(pool, name, None)
        if callable(check):
            try:
                return bool(check())
            except Exception:
                return False
    return False


def _remember(pool: Any, target: _Target) -> None:
    try:
        _weak_targets[pool] = target
    except TypeError:
        for key, (held, _) in list(_strong_targets.items()):
            if _closed(held):
                del _strong_targets[key]
        if len(_strong_targets) > 1_000:
            _strong_targets.clear()
        _strong_targets[id(pool)] = (pool, target)


async def _target(pool: Any, runner: Any = None) -> _Target:
    """The database and schema search path ``pool`` runs against (resolved once, through
    ``runner`` when given: a connection of ``pool``'s).

    Two tenants (a database or a schema each) may run the same text with the same
    arguments: the key must tell their rows apart.
    """
    target = _lookup(pool)
    if target is None:
        row = await (runner or pool).fetchrow(
            f"{MARKER} SELECT current_database() AS database, current_schemas(true) AS schemas"
        )
        key = json.dumps([row["database"], list(row["schemas"])], ensure_ascii=True)
        target = _lookup(pool) or _Target(key)
        _remember(pool, target)
    return target


# -- the cache key ------------------------------------------------------------------------


def _canonical(value: Any) -> Any:
    """A JSON-ready, type-tagged form of a bind argument: equal only for equal arguments.

    Floats keep their repr (``inf``, ``-inf``, ``nan``, ``-0.0`` stay apart), integers of
    any size are written in hex, decimals as text, dates as ISO 8601, bytes as hex.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return ["bool", value]
    if isinstance(value, int):
        return ["int", hex(value)]
    if isinstance(value, float):
        return ["float", float.__repr__(value)]
    if isinstance(value, Decimal):
        return ["decimal", str(value)]
    if isinstance(value, str):
        return ["str", str.__str__(value)]
    if isinstance(value, bytes | bytearray | memoryview):
        return ["bytes", bytes(value).hex()]
    if isinstance(value, datetime.datetime):
        return ["datetime", value.isoformat()]
    if isinstance(value, datetime.date):
        return ["date", value.isoformat()]
    if isinstance(value, datetime.time):
        return ["time", value.isoformat()]
    if isinstance(value, datetime.timedelta):
        return ["timedelta", value.days, value.seconds, value.microseconds]
    if isinstance(value, uuid.UUID):
        return ["uuid", str(value)]
    if isinstance(value, list | tuple):
        return [type(value).__name__, [_canonical(v) for v in value]]
    if isinstance(value, dict):
        items = [[_canonical(k), _canonical(v)] for k, v in value.items()]
        return ["dict", sorted(items, key=_dumps)]
    if isinstance(value, set | frozenset):
        return ["set", sorted((_canonical(v) for v in value), key=_dumps)]
    kind = type(value)
    return [f"{kind.__module__}.{kind.__qualname__}", repr(value)]


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def _key(target: str, sql: str, args: Sequence[Any]) -> str:
    payload = _dumps([target, sql, [_canonical(a) for a in args]])
    return _KEY_PREFIX + hashlib.sha256(payload.encode("ascii")).hexdigest()


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


async def _tags(runner: Any, target: _Target, sql: str) -> tuple[str, ...]:
    cached = target.tags.get(sql)
    if cached is not None:
        return cached
    try:
        reason = uncacheable_reason(sql)
        parsed = parse_statement(sql)
    except ValueError as exc:
        raise ConfigurationError(f"cached_fetch: {exc}") from exc
    if reason is not None:
        raise ConfigurationError(
            f"cached_fetch caches plain SELECT statements only, and {reason}: "
            "serving it from the cache would skip its side effects"
        )
    names = [
        qualified(t.schema, t.name) if t.schema else quote_ident(t.name) for t in parsed.tables
    ]
    rows = await runner.fetch(_RESOLVE, names) if names else []
    tags = tuple(sorted({table_tag(r["database"], r["schema"], r["table"]) for r in rows}))
    if len(target.tags) > 10_000:
        target.tags.clear()
    target.tags[sql] = tags
    return tags


class _Load:
    """A running load: the invalidation state it started in, and when it is done."""

    __slots__ = ("done", "state")

    def __init__(self, state: _State) -> None:
        self.state = state
        self.done = asyncio.Event()


# Running loads by (id(cache), key): a caller that arrives after a change was notified must
# not join a load that started before it (its rows may predate the change).
_loads: dict[tuple[int, str], set[_Load]] = {}


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

    The key is the database and schema search path the pool runs against (resolved once
    per pool or connection), the statement text and the type-tagged arguments.

    Args:
        pool: An asyncpg pool (or connection), or a SQLAlchemy ``AsyncEngine`` (asyncpg
            driver: each miss borrows a connection from its pool), to run the query on.
        sql: The SELECT statement.
        *args: Its bind arguments (part of the cache key).
        ttl: Seconds the rows stay fresh (``None``: the cache's default).
        cache: The cache (default: asyncperf's default in-memory cache).
        lock: ``Cache.get_or_set``'s single-flight mode (``"local"`` by default).

    Returns:
        The rows.

    Raises:
        ConfigurationError: The statement is not a single plain SELECT (a data-modifying
            WITH, ``SELECT ... INTO`` and ``FOR UPDATE``/``FOR SHARE`` are refused).
    """
    cache = cache if cache is not None else get_default_cache()
    pool = as_pool(pool)
    target = await _target(pool)
    tags = await _tags(pool, target, sql)

    async def fetch() -> list[dict[str, Any]]:
        return [dict(record) for record in await pool.fetch(sql, *args)]

    return await _through_cache(cache, _key(target.key, sql, args), tags, fetch, ttl, lock)


async def _through_cache(
    cache: Cache,
    key: str,
    tags: tuple[str, ...],
    fetch: Callable[[], Awaitable[list[dict[str, Any]]]],
    ttl: float | None,
    lock: Any,
) -> list[dict[str, Any]]:
    """``cache.get_or_set(key, fetch)``, storing nothing that a table change overtook."""
    flight_key = (id(cache), key)
    if lock is not None:
        # Do not join a load that started before a change this caller already knows of:
        # wait for it to end (it will not be stored) and load afresh.
        while True:
            now = _state(cache, tags)
            stale = [load for load in _loads.get(flight_key, ()) if load.state != now]
            if not stale:
                break
            await stale[0].done.wait()

    started: list[_State] = []

    async def load() -> list[dict[str, Any]]:
        running = _Load(_state(cache, tags))
        started.append(running.state)
        _loads.setdefault(flight_key, set()).add(running)
        try:
            return await fetch()
        finally:
            loads = _loads.get(flight_key)
            if loads is not None:
                loads.discard(running)
                if not loads:
                    del _loads[flight_key]
            running.done.set()

    def unchanged(_: object) -> bool:
        # A table changed while we were loading, or a listener is disconnected: hand the
        # rows out, don't keep them.
        before = started[-1] if started else None
        return before is not None and _state(cache, tags) == before

    rows: list[dict[str, Any]] = await cache.get_or_set(
        key, load, ttl=ttl, tags=tags, lock=lock, store_if=unchanged
    )
    return rows


class TableInvalidation:
    """Triggers and a LISTEN connection that drop cached rows when their tables change.

    Create it with :func:`setup_invalidation`; close it with :meth:`aclose` (or
    ``async with``). The triggers stay installed (they cost one NOTIFY per writing
    statement) until :meth:`uninstall`.

    When the listening connection is lost, it reconnects (after ``reconnect_delay``
    seconds, doubling up to ``max_reconnect_delay``, until :meth:`aclose`). While it is
    disconnected, :func:`cached_fetch` stores nothing in its cache; on the loss and again
    once listening resumes, the entries of the tables it watches (its ``pg-table:`` tags)
    are invalidated. Other entries of the cache are left alone.
    """

    _serials = itertools.count(1)

    def __init__(
        self,
        cache: Cache,
        *,
        channel: str = CHANNEL,
        reconnect_delay: float = 0.1,
        max_reconnect_delay: float = 10.0,
    ) -> None:
        if not 0 < reconnect_delay <= max_reconnect_delay:
            raise ConfigurationError(
                "need 0 < reconnect_delay <= max_reconnect_delay, got "
                f"{reconnect_delay} and {max_reconnect_delay}"
            )
        self.cache = cache
        self.channel = channel
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        self.notifications = 0
        self.reconnects = 0
        #: The tags of the tables this invalidation watches (installed or notified).
        self.tags: set[str] = set()
        self.serial = next(self._serials)
        self._generations: dict[str, int] = {}
        self._conn: Any = None
        self._on_lost: Any = None
        self._pool: Any = None
        self._dsn: str | None = None
        self._database = ""
        self._connected = False
        self._closed = False
        self._reconnecting: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[Any]] = set()

    @property
    def connected(self) -> bool:
        """Whether the listener is connected (and so sees every change)."""
        return self._connected

    def generation(self, tags: Iterable[str]) -> int:
        """Return a number that grows whenever one of ``tags``' tables changes."""
        return sum(self._generations.get(tag, 0) for tag in tags) + self._generations.get("*", 0)

    async def install(self, conn: Any, tables: Iterable[str]) -> list[str]:
        """Install the notify triggers on ``tables`` (``"schema.table"`` or ``"table"``).

        Returns:
            The tables' tags.
        """
        installed = []
        async with _connection(as_pool(conn)) as c, c.transaction():
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
        self.tags.update(installed)
        return installed

    async def uninstall(self, conn: Any, tables: Iterable[str]) -> None:
        """Remove the triggers from ``tables`` (and the function once no trigger uses it)."""
        asyncpg = require_asyncpg()
        async with _connection(as_pool(conn)) as c:
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
        if dsn is not None:
            self._dsn = dsn
        else:
            self._pool = as_pool(pool)
        self._closed = False
        await self._connect()
        self._connected = True
        _active.setdefault(id(self.cache), []).append(self)

    async def _connect(self) -> None:
        asyncpg = require_asyncpg()
        conn = await (asyncpg.connect(self._dsn) if self._dsn is not None else self._pool.acquire())

        def on_lost(_conn: Any) -> None:
            self._lost(conn)

        try:
            database = await conn.fetchval(f"{MARKER} SELECT current_database()")
            await conn.add_listener(self.channel, self._notified)
            conn.add_termination_listener(on_lost)
        except BaseException:
            await self._discard(conn, None)
            raise
        self._conn, self._on_lost, self._database = conn, on_lost, database

    async def _discard(self, conn: Any, on_lost: Any) -> None:
        """Stop listening on ``conn`` and give it back (closed connections too)."""
        try:
            if on_lost is not None:
                conn.remove_termination_listener(on_lost)
            if not conn.is_closed():
                await conn.remove_listener(self.channel, self._notified)
        except Exception as exc:
            logger.debug("asyncperf.db: removing the listener failed: %r", exc)
        try:
            if self._pool is not None:
                await self._pool.release(conn)
            else:
                await conn.close()
        except Exception as exc:
            logger.debug("asyncperf.db: releasing the listener's connection failed: %r", exc)

    def _bump(self, tag: str) -> None:
        self._generations[tag] = self._generations.get(tag, 0) + 1

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.notifications += 1
        tag = f"{_TABLE_TAG_PREFIX}{payload}"
        self.tags.add(tag)
        self._bump(tag)
        self._spawn(self.cache.invalidate_tags(tag))

    def _lost(self, conn: Any) -> None:
        if self._closed or conn is not self._conn:
            return
        # Notifications may be missed until we listen again: store nothing meanwhile, and
        # drop what this listener vouched for (only its own tables' entries).
        logger.warning(
            "asyncperf.db: invalidation listener lost its connection; reconnecting, "
            "nothing is cached meanwhile"
        )
        self._connected = False
        self._bump("*")
        self._conn = self._on_lost = None
        self._spawn(self._invalidate_watched())
        self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect(conn))

    async def _invalidate_watched(self) -> None:
        if self.tags:
            await self.cache.invalidate_tags(*sorted(self.tags))

    async def _reconnect(self, old: Any) -> None:
        await self._discard(old, None)
        delay = self.reconnect_delay
        while not self._closed:
            await asyncio.sleep(delay)
            try:
                await self._connect()
            except Exception as exc:
                delay = min(delay * 2, self.max_reconnect_delay)
                logger.warning(
                    "asyncperf.db: invalidation listener could not reconnect (%r); "
                    "next try in %.1f s",
                    exc,
                    delay,
                )
                continue
            # Listening again: whatever changed while we were away is dropped now.
            await self._invalidate_watched()
            self.reconnects += 1
            self._bump("*")
            self._connected = True
            logger.info("asyncperf.db: invalidation listener reconnected")
            return

    async def wait_idle(self) -> None:
        """Wait until the invalidations already notified have reached the cache."""
        while self._pending:
            await asyncio.gather(*list(self._pending))

    async def aclose(self) -> None:
        """Stop listening and release the listener's connection (triggers stay)."""
        self._closed = True
        self._connected = False
        registered = _active.get(id(self.cache), [])
        if self in registered:
            registered.remove(self)
        if not registered:
            _active.pop(id(self.cache), None)
        task, self._reconnecting = self._reconnecting, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        conn, self._conn = self._conn, None
        on_lost, self._on_lost = self._on_lost, None
        if conn is not None:
            await self._discard(conn, on_lost)
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
    reconnect_delay: float = 0.1,
    max_reconnect_delay: float = 10.0,
) -> TableInvalidation:
    """Install notify triggers on ``tables`` and start listening for their changes.

    This is the explicit setup step of table invalidation: it runs DDL (``CREATE
    FUNCTION``, ``CREATE TRIGGER``), so it needs the right to alter those tables. Several
    invalidations may serve one cache; :func:`cached_fetch` consults all of them.

    Args:
        pool: The asyncpg pool (or SQLAlchemy ``AsyncEngine``) the cached queries run on.
        cache: The cache :func:`cached_fetch` stores into.
        tables: ``"schema.table"`` or search-path-relative ``"table"`` names.
        dsn: Listen on a connection of its own to this DSN (default: hold one of the
            pool's connections while listening).
        channel: The NOTIFY channel.
        reconnect_delay: Seconds before the first reconnect after the listening
            connection is lost (doubling after each failure).
        max_reconnect_delay: The longest wait between reconnect attempts.

    Returns:
        The running invalidation; ``aclose()`` it when done.
    """
    invalidation = TableInvalidation(
        cache,
        channel=channel,
        reconnect_delay=reconnect_delay,
        max_reconnect_delay=max_reconnect_delay,
    )
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
        if isinstance(self.target, asyncpg.Pool | EnginePool):
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
