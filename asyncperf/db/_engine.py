"""SQLAlchemy 2 async engines (asyncpg driver) as a source of asyncpg connections.

SQLAlchemy is optional (``asyncperf[sqlalchemy]``) and never imported here: an object can
only be an ``AsyncEngine`` once ``sqlalchemy.ext.asyncio`` has been imported by whoever
built it, so detection looks the module up in ``sys.modules``.

Connections are borrowed from the engine's own pool and handed back as they came: the
work runs on the raw asyncpg connection (``driver_connection``), never through
SQLAlchemy's transaction, and a transaction left open is rolled back. A connection that
died, or was terminated because it could not be cleaned, is invalidated so the pool
drops it instead of handing it to the application.
"""

from __future__ import annotations

import logging
import sys
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from .._exceptions import BackendUnavailable, ConfigurationError

__all__ = ["EnginePool", "PoolHooks", "as_pool", "check_engine", "engine_pool", "is_async_engine"]

logger = logging.getLogger("asyncperf.db")


def is_async_engine(obj: Any) -> bool:
    """Whether ``obj`` is a ``sqlalchemy.ext.asyncio.AsyncEngine`` (no import needed)."""
    module = sys.modules.get("sqlalchemy.ext.asyncio")
    engine_class = getattr(module, "AsyncEngine", None)
    return engine_class is not None and isinstance(obj, engine_class)


def is_sync_engine(obj: Any) -> bool:
    """Whether ``obj`` is a synchronous ``sqlalchemy.engine.Engine``."""
    module = sys.modules.get("sqlalchemy.engine")
    engine_class = getattr(module, "Engine", None)
    return engine_class is not None and isinstance(obj, engine_class)


def check_engine(engine: Any) -> None:
    """Refuse an engine whose dialect is not PostgreSQL through asyncpg.

    Raises:
        ConfigurationError: Another database or driver (the message names it).
    """
    dialect = engine.dialect
    name, driver = str(dialect.name), str(dialect.driver)
    if (name, driver) != ("postgresql", "asyncpg"):
        raise ConfigurationError(
            f"asyncperf.db needs a postgresql+asyncpg engine, got {name}+{driver} "
            f"(driver {driver!r}): create it with "
            "create_async_engine('postgresql+asyncpg://...')"
        )


def _one_statement(method: str) -> Callable[..., Awaitable[Any]]:
    """Return an ``EnginePool`` method running ``conn.<method>`` on a borrowed connection."""

    async def run(self: EnginePool, sql: str, *args: Any) -> Any:
        async with self.connection() as conn:
            return await getattr(conn, method)(sql, *args)

    run.__name__ = method
    run.__qualname__ = f"EnginePool.{method}"
    run.__doc__ = f"Borrow a connection for one ``{method}(sql, *args)``, like ``asyncpg.Pool``."
    return run


class EnginePool:
    """The part of ``asyncpg.Pool`` asyncperf.db uses, over an ``AsyncEngine``'s pool.

    ``await acquire()`` checks a connection out of the engine's pool and returns its raw
    asyncpg connection; ``release()`` gives it back. ``fetch``/``fetchrow``/``fetchval``/
    ``execute`` borrow a connection for one statement, like the pool's own methods.
    """

    def __init__(self, engine: Any) -> None:
        check_engine(engine)
        # Weak: the engine keys the registry of its EnginePool, which must not keep it alive.
        self._engine = weakref.ref(engine)
        self._held: dict[int, Any] = {}  # id(raw asyncpg connection) -> AsyncConnection

    @property
    def engine(self) -> Any:
        """The ``AsyncEngine``.

        Raises:
            BackendUnavailable: The engine was garbage-collected.
        """
        engine = self._engine()
        if engine is None:
            raise BackendUnavailable("the SQLAlchemy engine given to asyncperf.db is gone")
        return engine

    def __repr__(self) -> str:
        return f"EnginePool({self._engine()!r})"

    async def acquire(self) -> Any:
        """Check a connection out of the engine's pool; return the asyncpg connection."""
        conn = await self.engine.connect()
        try:
            raw = (await conn.get_raw_connection()).driver_connection
        except BaseException:
            await conn.close()
            raise
        self._held[id(raw)] = conn
        return raw

    async def release(self, raw: Any) -> None:
        """Give a connection from :meth:`acquire` back to the engine's pool."""
        conn = self._held.pop(id(raw))
        await _give_back(conn, raw)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """``async with`` one raw asyncpg connection from the engine's pool."""
        raw = await self.acquire()
        try:
            yield raw
        finally:
            await self.release(raw)

    fetch = _one_statement("fetch")
    fetchrow = _one_statement("fetchrow")
    fetchval = _one_statement("fetchval")
    execute = _one_statement("execute")


async def _give_back(conn: Any, raw: Any) -> None:
    """Return ``conn`` to its pool as it was lent: no transaction, or not at all."""
    try:
        if raw.is_closed():
            # Dead, or terminated because it could not be cleaned: the pool must drop it.
            await conn.invalidate()
        elif raw.is_in_transaction():
            # Never SQLAlchemy's (nothing ran through it): ours, left by an error.
            try:
                await raw.execute("ROLLBACK")
            except Exception as exc:
                logger.warning("asyncperf.db: rollback before release failed: %r", exc)
                await conn.invalidate(exc)
    finally:
        await conn.close()


_pools: weakref.WeakKeyDictionary[Any, EnginePool] = weakref.WeakKeyDictionary()


def engine_pool(engine: Any) -> EnginePool:
    """The (one) :class:`EnginePool` of ``engine``."""
    found = _pools.get(engine)
    if found is None:
        found = _pools[engine] = EnginePool(engine)
    return found


def as_pool(target: Any) -> Any:
    """``target`` itself, or the :class:`EnginePool` of an ``AsyncEngine``.

    Raises:
        ConfigurationError: A synchronous SQLAlchemy engine, or a non-asyncpg engine.
    """
    if is_async_engine(target):
        return engine_pool(target)
    if is_sync_engine(target):
        raise ConfigurationError(
            "asyncperf.db needs an AsyncEngine (create_async_engine('postgresql+asyncpg://"
            "...')), got a synchronous sqlalchemy Engine"
        )
    return target


class PoolHooks:
    """Watch every checkout of an engine's pool, whoever makes it (sessions included).

    Holds and the number in use come from the pool's ``checkout``/``checkin`` events.
    SQLAlchemy has no event for the start of a checkout or for a pool timeout, so the
    wait and the timeouts are timed by a thin wrapper around the pool's public
    ``connect()`` (re-applied when ``engine.dispose()`` replaces the pool).

    Args:
        engine: The ``AsyncEngine``.
        monitor: The ``PoolMonitor`` whose ``_waiting``, ``_waited``, ``_timed_out``,
            ``_checked_out`` and ``_checked_in`` receive the measurements.
    """

    def __init__(self, engine: Any, monitor: Any) -> None:
        from sqlalchemy import event, exc

        check_engine(engine)
        self.engine = engine
        self.sync_engine = engine.sync_engine
        self._event = event
        self._timeout_error: type[BaseException] = exc.TimeoutError
        self._monitor = monitor
        self._pool: Any = None
        self._original: Any = None
        self._wrapper: Any = None
        self.sizes()  # refuse a pool that cannot be sized before hooking anything
        event.listen(self.sync_engine, "checkout", self._on_checkout)
        event.listen(self.sync_engine, "checkin", self._on_checkin)
        event.listen(self.sync_engine, "engine_disposed", self._on_disposed)
        self._wrap()

    def sizes(self) -> tuple[int, int, int, int]:
        """``(open, idle, pool_size, pool_size + max_overflow)`` of the current pool.

        Raises:
            ConfigurationError: The pool keeps no connections (``NullPool``,
                ``StaticPool``...) or has no bound (``max_overflow=-1``).
        """
        pool = self.sync_engine.pool
        if not all(hasattr(pool, name) for name in ("size", "checkedin", "checkedout")):
            raise ConfigurationError(
                f"PoolMonitor needs a QueuePool-like pool with a size, got "
                f"{type(pool).__name__} (create_async_engine's default pool has one)"
            )
        overflow = int(getattr(pool, "_max_overflow", 0))  # no public accessor
        if overflow < 0:
            raise ConfigurationError(
                "PoolMonitor needs a bounded pool, got max_overflow=-1 (or pool_size=0): "
                "there is no size to advise on"
            )
        idle, out, size = int(pool.checkedin()), int(pool.checkedout()), int(pool.size())
        return idle + out, idle, size, size + overflow

    def _wrap(self) -> None:
        pool = self.sync_engine.pool
        original = pool.connect
        monitor, timeout_error = self._monitor, self._timeout_error

        def connect() -> Any:
            started = monitor._clock()
            monitor._waiting += 1
            try:
                fairy = original()
            except timeout_error:
                monitor._timed_out()
                raise
            finally:
                monitor._waiting -= 1
            monitor._waited(started)
            return fairy

        pool.connect = connect
        self._pool, self._original, self._wrapper = pool, original, connect

    def _on_checkout(self, _dbapi: Any, record: Any, _proxy: Any) -> None:
        self._monitor._checked_out(id(record))

    def _on_checkin(self, _dbapi: Any, record: Any) -> None:
        self._monitor._checked_in(id(record))

    def _on_disposed(self, _engine: Any) -> None:
        if self.sync_engine.pool is not self._pool:
            self._wrap()

    def close(self) -> None:
        """Remove the events and the wrapper."""
        for name, fn in (
            ("checkout", self._on_checkout),
            ("checkin", self._on_checkin),
            ("engine_disposed", self._on_disposed),
        ):
            if self._event.contains(self.sync_engine, name, fn):
                self._event.remove(self.sync_engine, name, fn)
        pool: Any = self._pool
        if pool is not None and vars(pool).get("connect") is self._wrapper:
            if getattr(self._original, "__self__", None) is pool:
                delattr(pool, "connect")  # it was the class's own method
            else:
                pool.connect = self._original  # another monitor's wrapper
        self._pool = self._original = self._wrapper = None
