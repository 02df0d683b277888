"""Auto-batching: calls made while the backend is busy travel together in one round trip."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["Batcher"]

ItemT = TypeVar("ItemT")
R = TypeVar("R")


class _Resubmit(Exception):
    """A batch leader was cancelled before answering: followers submit again."""


class Batcher(Generic[ItemT, R]):
    """Coalesce calls that arrive while the backend is busy into one round trip.

    A call made when nothing of its kind is in flight goes out at once: a lone caller
    pays nothing for batching. Calls made while one is in flight gather: the first of
    them opens a batch and yields once, the calls of the same event-loop turn join it,
    and it sends them all in one request (MGET, or one pipeline), handing every caller
    its own result. So a burst of N concurrent gets costs two round trips, not N.
    """

    __slots__ = ("_flush", "_in_flight", "_pending", "_single")

    def __init__(
        self,
        flush: Callable[[list[ItemT]], Awaitable[list[R]]],
        single: Callable[[ItemT], Awaitable[R]] | None = None,
    ) -> None:
        self._flush = flush
        # A lone call's own round trip (GET rather than a one-key MGET), if cheaper.
        self._single = single
        self._pending: list[tuple[ItemT, asyncio.Future[R]]] | None = None
        self._in_flight = 0

    async def submit(self, item: ItemT) -> R:
        while True:
            pending = self._pending
            if pending is None:
                if self._in_flight == 0:
                    single = self._single
                    if single is None:
                        return (await self._send([item]))[0]
                    self._in_flight += 1
                    try:
                        return await single(item)
                    finally:
                        self._in_flight -= 1
                return await self._lead(item)
            future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
            pending.append((item, future))
            try:
                return await future
            except _Resubmit:
                continue

    async def _send(self, items: list[ItemT]) -> list[R]:
        self._in_flight += 1
        try:
            return await self._flush(items)
        finally:
            self._in_flight -= 1

    async def _lead(self, item: ItemT) -> R:
        pending: list[tuple[ItemT, asyncio.Future[R]]] = []
        self._pending = pending
        try:
            try:
                await asyncio.sleep(0)
            finally:
                self._pending = None
            results = await self._send([item, *(queued for queued, _ in pending)])
        except BaseException as exc:
            handover: BaseException = exc if isinstance(exc, Exception) else _Resubmit()
            for _, future in pending:
                if not future.done():
                    future.set_exception(handover)
                    # The follower may be gone by now; never log "exception not retrieved".
                    future.exception()
            raise
        for (_, future), result in zip(pending, results[1:], strict=True):
            if not future.done():
                future.set_result(result)
        return results[0]
