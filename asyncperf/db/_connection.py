"""Where the analyzer gets its connections: an asyncpg pool, a SQLAlchemy ``AsyncEngine``
(asyncpg driver), a connection, or a DSN."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from .._exceptions import BackendUnavailable, ConfigurationError
from ._deps import require_asyncpg
from ._engine import EnginePool, as_pool

__all__ = ["Connection", "ConnectionSource"]

#: asyncpg ships no type stubs; connections are typed loosely.
Connection = Any


class ConnectionSource:
    """Hand out connections from a pool, an engine, a single connection, or a DSN.

    A DSN opens one connection on first use, kept until :meth:`aclose`; a connection
    given by the caller is shared under a lock and never closed here.
    """

    def __init__(self, target: Any) -> None:
        asyncpg = require_asyncpg()
        self._pool: Any = None
        self._connection: Any = None
        self._dsn: str | None = None
        self._owned = False
        self._lock = asyncio.Lock()
        target = as_pool(target)
        if isinstance(target, asyncpg.Pool | EnginePool):
            self._pool = target
        elif isinstance(target, asyncpg.Connection):
            self._connection = target
        elif isinstance(target, str):
            if not target.startswith(("postgres://", "postgresql://")):
                raise ConfigurationError(
                    "expected an asyncpg pool, a SQLAlchemy AsyncEngine, an asyncpg "
                    "connection or a postgresql:// DSN"
                )
            self._dsn = target
        else:
            raise ConfigurationError(
                "expected an asyncpg pool, a SQLAlchemy AsyncEngine, an asyncpg connection "
                f"or a postgresql:// DSN, got {type(target).__name__}"
            )

    @property
    def pool(self) -> Any:
        """The asyncpg pool (or an engine's :class:`EnginePool`), else ``None``."""
        return self._pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """Yield a connection for one unit of work (released or unlocked afterwards).

        Raises:
            BackendUnavailable: The server cannot be reached.
        """
        if isinstance(self._pool, EnginePool):
            async with self._pool.connection() as conn:
                yield conn
            return
        if self._pool is not None:
            async with self._pool.acquire() as conn:
                yield conn
            return
        async with self._lock:
            if self._connection is None or self._connection.is_closed():
                self._connection = await self._connect()
            yield self._connection

    async def _connect(self) -> Connection:
        asyncpg = require_asyncpg()
        if self._dsn is None:
            raise BackendUnavailable("the connection given to asyncperf.db was closed")
        try:
            conn = await asyncpg.connect(self._dsn)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            raise BackendUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc
        self._owned = True
        return conn

    async def aclose(self) -> None:
        """Close the connection this source opened from a DSN (pools are left alone)."""
        if self._owned and self._connection is not None:
            conn, self._connection = self._connection, None
            self._owned = False
            await conn.close()
