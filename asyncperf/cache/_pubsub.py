"""The Redis event subscription: lease wake-ups and invalidations, kept alive and watched."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ._redis import RedisStore

__all__ = ["FIRST_BACKOFF", "Listener", "back_off", "close_quietly"]

logger = logging.getLogger("asyncperf.cache")

_LISTEN_POLL: Final = 0.5
_PING_EVERY: Final = 2.0
FIRST_BACKOFF: Final = 0.05  # seconds before the first reconnect; doubled up to 2 s


async def back_off(seconds: float) -> float:
    """Wait ``seconds`` before a reconnect; return the next wait (doubling, at most 2 s)."""
    await asyncio.sleep(seconds)
    return min(seconds * 2, 2.0)


async def close_quietly(pubsub: Any) -> None:
    """Close a pub/sub connection even from a cancelled task; a failure is moot by then."""
    with contextlib.suppress(Exception):
        await asyncio.shield(pubsub.aclose())


class Listener:
    """One pub/sub connection for the store's event channel, kept alive and watched.

    It reconnects with backoff when Redis goes away; ``on_connection(False)`` fires when
    the subscription is lost (messages may have been missed from then on) and
    ``on_connection(True)`` when it is back.
    """

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.on_invalidation: Callable[[dict[str, Any]], None] | None = None
        self.on_connection: list[Callable[[bool], None]] = []
        self.connected = False
        self._subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        if self._task is None and not self._closing:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"asyncperf-redis-listener:{self.store.channel}"
            )

    async def ready(self, wait: float) -> bool:
        self.start()
        if self._subscribed.is_set():
            return True
        try:
            async with asyncio.timeout(wait):
                await self._subscribed.wait()
        except TimeoutError:
            return False
        return True

    def _set_connected(self, connected: bool) -> None:
        if connected == self.connected:
            return
        self.connected = connected
        if connected:
            self._subscribed.set()
        else:
            self._subscribed.clear()
        for callback in list(self.on_connection):
            try:
                callback(connected)
            except Exception:
                logger.exception("asyncperf: connection listener failed")

    async def _run(self) -> None:
        backoff = FIRST_BACKOFF
        timeout = self.store.op_timeout
        while not self._closing:
            if self.store.cluster:
                try:
                    # Cluster pub/sub does not load the slot map itself.
                    await self.store.client.initialize()
                except Exception as exc:
                    self._set_connected(False)
                    logger.debug("asyncperf: cluster not reachable yet: %r", exc)
                    backoff = await back_off(backoff)
                    continue
            pubsub = self.store.client.pubsub()
            try:
                async with asyncio.timeout(max(timeout, 1.0)):
                    await pubsub.subscribe(self.store.channel)
                self._set_connected(True)
                backoff = FIRST_BACKOFF
                last_ping = time.monotonic()
                while not self._closing:
                    async with asyncio.timeout(_LISTEN_POLL + max(timeout, 1.0)):
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=_LISTEN_POLL
                        )
                    if message is not None and message.get("type") == "message":
                        self.store._dispatch(message["data"])
                    if time.monotonic() - last_ping >= _PING_EVERY:
                        # A frozen server keeps the socket open: only a ping notices.
                        async with asyncio.timeout(max(timeout, 1.0)):
                            await pubsub.ping()
                        last_ping = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.connected:
                    logger.warning("asyncperf: Redis event subscription lost: %r", exc)
                self._set_connected(False)
                backoff = await back_off(backoff)
            finally:
                await close_quietly(pubsub)

    async def aclose(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
