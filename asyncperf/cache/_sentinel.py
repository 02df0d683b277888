"""Sentinel failover: on ``+switch-master`` drop every connection to the old master at once.

A client from ``Sentinel.master_for()`` finds the master through the sentinels only when
it opens a connection; connections already open stay on the old master, which keeps
accepting writes until Sentinel demotes it (seconds later, or never if it cannot), and
those writes are lost when it resyncs. The watcher subscribes to ``+switch-master`` on
every sentinel and, for the store's service, closes all pooled connections (idle and in
use) synchronously, in the message handler, before any other task runs: every command
after that opens a new connection, which asks the sentinels and reaches the new master.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final

from ._pubsub import FIRST_BACKOFF, back_off, close_quietly

__all__ = ["SentinelWatch", "sentinel_pool"]

logger = logging.getLogger("asyncperf.cache")

_CHANNEL: Final = "+switch-master"
_POLL: Final = 0.5


def sentinel_pool(client: Any) -> Any | None:
    """The client's SentinelConnectionPool (a ``master_for`` client), else ``None``."""
    pool = getattr(client, "connection_pool", None)
    if getattr(pool, "sentinel_manager", None) is None or not getattr(pool, "is_master", False):
        return None
    return pool


def _drop_connections(pool: Any) -> int:
    """Close every connection of ``pool`` now, without awaiting (so nothing runs between)."""
    connections = [*pool._available_connections, *pool._in_use_connections]
    for connection in connections:
        force = getattr(connection, "_force_disconnect", None)
        if force is not None:
            force()
        else:  # older redis-py: close the transport directly
            writer = getattr(connection, "_writer", None)
            if writer is not None:
                writer.close()
            connection._reader = connection._writer = None
    pool.master_address = None  # rediscovered by the next connection
    return len(connections)


class SentinelWatch:
    """One subscription to ``+switch-master`` per sentinel of a ``master_for`` pool."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.service = str(pool.service_name)
        self.failovers = 0
        self.subscribed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._last: tuple[str, str] | None = None

    def start(self) -> None:
        """Start watching (needs a running loop); a no-op once started."""
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        for index, sentinel in enumerate(self.pool.sentinel_manager.sentinels):
            self._tasks.append(
                loop.create_task(
                    self._watch(sentinel), name=f"asyncperf-sentinel-watch:{self.service}:{index}"
                )
            )

    def on_message(self, data: bytes | str) -> bool:
        """Handle one ``+switch-master`` payload; True when this store's master moved."""
        text = data.decode() if isinstance(data, bytes) else data
        parts = text.split()
        if len(parts) != 5 or parts[0] != self.service:
            return False
        new_master = (parts[3], parts[4])
        if new_master == self._last:
            return False  # the same switch, announced by another sentinel
        self._last = new_master
        self.failovers += 1
        dropped = _drop_connections(self.pool)
        logger.warning(
            "asyncperf: Sentinel switched %s from %s:%s to %s:%s; closed %d connections "
            "to the old master",
            self.service,
            parts[1],
            parts[2],
            parts[3],
            parts[4],
            dropped,
        )
        return True

    def cut(self, exc: Exception, failovers: int) -> bool:
        """Whether ``exc`` is a command's connection closed by :meth:`on_message` while it
        ran (``failovers`` is the count when it started). Such a command is sent once more,
        to the new master, and is no breaker failure: before, a burst of them opened the
        breaker and the writes made just after the switch were skipped. The store's
        commands are idempotent, so one that also reached the new master is harmless."""
        from redis.exceptions import ConnectionError as RedisConnectionError

        return self.failovers != failovers and isinstance(exc, (RedisConnectionError, OSError))

    async def _watch(self, sentinel: Any) -> None:
        backoff = FIRST_BACKOFF
        while True:
            pubsub = sentinel.pubsub()
            try:
                await pubsub.subscribe(_CHANNEL)
                self.subscribed.set()
                backoff = FIRST_BACKOFF
                while True:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=_POLL
                    )
                    if message is not None and message.get("type") == "message":
                        self.on_message(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.debug("asyncperf: sentinel subscription lost: %r", exc)
                backoff = await back_off(backoff)
            finally:
                await close_quietly(pubsub)

    async def aclose(self) -> None:
        """Stop watching."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
