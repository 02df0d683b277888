"""Write-behind: a response is stored after its reply is sent, exactly once.

A lookup of the same URL, an invalidation or :meth:`flush` that needs the write first
runs it (or waits for it) rather than reading around it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Final

import anyio

from ..cache.internal import set_now
from ._coalescing import Coalescing
from ._keys import PREFIX_DEPTH
from ._policy import Plan, plan_keep
from ._route import RoutePolicy
from ._stored import StoredResponse, encode_marker
from ._types import Lookup, Reply, RequestView, request_target

if TYPE_CHECKING:
    from ._plain import PlainMiss as PlainWriter

__all__ = ["PendingWrite", "PlainWrite", "WriteBehind"]

logger = logging.getLogger("asyncperf.http")

# Store writes in flight in tasks (aiohttp) before new ones run in their request instead.
_MAX_WRITERS: Final = 256


def _running_loop() -> asyncio.AbstractEventLoop | None:
    """Return the asyncio event loop this code runs in (``None`` under trio)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class PendingWrite:
    """A response's store write, run once: by its request after the reply is sent, or
    first by a lookup of the same URL, an invalidation or :meth:`ResponseCache.flush`
    (which then wait for it rather than read around it)."""

    __slots__ = ("_done", "_job", "_owner", "_previous", "_primary", "_state", "stored")

    def __init__(
        self, owner: WriteBehind, primary: str, job: Callable[[], Awaitable[bool]]
    ) -> None:
        self._owner = owner
        self._primary = primary
        self._job = job
        self._state = 0  # 0: waiting, 1: running, 2: done
        self._done: anyio.Event | None = None
        self.stored = False  # the store took the response (set once run)
        # An earlier unfinished write for the same URL (another variant, or a response
        # that was not coalesced): written first, so whoever waits for this one waits for
        # both, and the older response never lands after the newer.
        self._previous = owner._pending.get(primary)
        owner._pending[primary] = self

    def run_now(self) -> bool:
        """Whether the write is done without awaiting (never, but for a :class:`PlainWrite`
        with nothing in its way); ``False``: ``await run()``."""
        return self._state == 2

    async def run(self) -> None:
        """Write the response, or wait for the write already under way.

        The write is shielded from cancellation: whichever request runs it (its own, or a
        lookup or invalidation that needs it first), a client going away does not lose it.
        """
        if self._state:
            if self._state == 1:
                if self._done is None:
                    self._done = anyio.Event()
                await self._done.wait()
            return
        self._state = 1
        owner = self._owner
        previous, self._previous = self._previous, None
        try:
            if owner._writes_suspend:
                with anyio.CancelScope(shield=True):
                    if previous is not None:
                        await previous.run()
                    self.stored = await self._job()
            else:
                # A plain MemoryStore writes without ever suspending, so nothing can cancel
                # the write midway: a shield (~10 µs on asyncio) would protect nothing.
                if previous is not None:
                    await previous.run()
                self.stored = await self._job()
        except Exception:
            owner.count_error()
            logger.warning("storing the response to %s failed", self._primary, exc_info=True)
        finally:
            self._state = 2
            if owner._pending.get(self._primary) is self:
                del owner._pending[self._primary]
            if self._done is not None:
                self._done.set()


class PlainWrite(PendingWrite):
    """The store write of a plain miss (see ``_plain.py``): what it needs is kept here,
    and :meth:`run_now` writes to a plain memory cache without a coroutine."""

    __slots__ = ("body", "coding", "entry", "fields", "lookup", "request", "route")

    def __init__(
        self,
        owner: PlainWriter,
        request: RequestView,
        lookup: Lookup,
        entry: StoredResponse,
        coding: str,
        fields: Mapping[str, str],
        route: RoutePolicy | None,
    ) -> None:
        self._owner = owner
        self._primary = primary = lookup.primary
        self._state = 0
        self._done = None
        self.stored = False
        self._previous = owner._pending.get(primary)
        owner._pending[primary] = self
        self.request, self.lookup, self.entry, self.route = request, lookup, entry, route
        self.body, self.coding, self.fields = entry.body, coding, fields

    @property
    def _job(self) -> Callable[[], Awaitable[bool]]:  # type: ignore[override]
        """The general write (when awaited: another write first, or Cache.set needed)."""
        owner: PlainWriter = self._owner  # type: ignore[assignment]
        return owner._store_job(
            self.request,
            self.lookup,
            self.entry,
            self.body,
            self.coding,
            self.fields,
            None,
            [],
            self.route,
        )

    def run_now(self) -> bool:
        """Write now, without awaiting, when nothing is in the way; ``False``: the caller
        must ``await run()`` (the write runs elsewhere, waits on an earlier one, or needs
        ``Cache.set``)."""
        owner: PlainWriter = self._owner  # type: ignore[assignment]
        if self._state or self._previous is not None or owner._writes_suspend:
            # Under way, behind an earlier write, or for a store only Cache.set writes
            # (Redis, tiered): run() does it, planned and packed once.
            return self._state == 2
        self._state = 1
        try:
            stored = owner.plain_store(self)
            if stored is None:
                self._state = 0
                return False
            self.stored = stored
        except Exception:
            owner.count_error()
            logger.warning("storing the response to %s failed", self._primary, exc_info=True)
        self._state = 2
        if owner._pending.get(self._primary) is self:
            del owner._pending[self._primary]
        if self._done is not None:
            self._done.set()
        return True


class WriteBehind(Coalescing):
    """The write-behind layer of :class:`~asyncperf.http.ResponseCache`."""

    async def store(self, reply: Reply) -> None:
        """Write the response behind ``reply`` to the store now (after sending it)."""
        if reply.write is not None:
            await reply.write.run()

    async def store_later(self, reply: Reply) -> None:
        """Write the response behind ``reply`` after the caller returns (asyncio: in a
        task; elsewhere right now), for glue that cannot act after sending."""
        write = reply.write
        if write is None:
            return
        loop = _running_loop()
        if loop is None or len(self._writers) >= _MAX_WRITERS:
            await write.run()  # not on asyncio, or the store is falling behind: write now
            return
        task = loop.create_task(write.run(), name="asyncperf-http-store")
        self._writers.add(task)
        task.add_done_callback(self._writers.discard)

    async def flush(self) -> None:
        """Wait until every response this process has answered is written to the store.

        Misses are stored just after their reply is sent; a lookup of the same URL and
        every invalidation wait for the writes under way. Call this before shutting the
        event loop down, or in tests that read the store directly.
        """
        for write in list(self._pending.values()):  # those of responses answered by now
            await write.run()

    def _tags(
        self, request: RequestView, tags: Iterable[str], route: RoutePolicy | None
    ) -> list[str]:
        """A stored response's tags: ``p:`` for every path-segment prefix (capped in depth;
        no ``p:/``, as ``invalidate(prefix="/")`` clears the namespace), ``u:`` for its URL,
        ``t:`` for the app's and the route's own."""
        target = request_target(request)
        segments = request.path.strip("/").split("/")
        if "" in segments:  # "//" inside the path, or the path "/" itself
            segments = [segment for segment in segments if segment]
        all_tags: list[str] = []
        current = "p:"
        for segment in segments[:PREFIX_DEPTH]:
            current += "/" + segment
            all_tags.append(current)
        if all_tags and current[2:] == target:
            # A plain URL's own prefix tag names what its URL tag names (invalidate(prefix)
            # asks for both): one tag, one index set fewer per stored response.
            all_tags[-1] = "u:" + target
        else:
            all_tags.append("u:" + target)
        if tags:
            all_tags.extend(["t:" + tag for tag in tags])
        if route is not None:
            all_tags.extend("t:" + tag for tag in route.expand_tags(request.params))
        return all_tags

    async def _write(
        self,
        request: RequestView,
        lookup: Lookup,
        entry: StoredResponse,
        plan: Plan,
        tags: Iterable[str],
        route: RoutePolicy | None,
    ) -> str:
        ttl = keep if (keep := plan_keep(plan)) > 0.001 else 0.001
        all_tags = self._tags(request, tags, route)
        blob = entry.encode()
        primary = lookup.primary
        if entry.vary:
            key = self.variant_key(primary, entry.vary, request.headers)
            await self.cache.set(primary, encode_marker(entry.vary), ttl=ttl, tags=all_tags)
        else:
            key = primary
        if not set_now(self.cache, key, blob, ttl, all_tags):
            await self.cache.set(key, blob, ttl=ttl, tags=all_tags)
        self._stores += 1
        return key
