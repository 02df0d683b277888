"""Request coalescing: concurrent misses for one URL make one request to the app.

In this process, waiters sleep on the leader's flight; with ``coalesce="distributed"``
a Redis lease extends it across processes. A URL whose response could not be stored
is not coalesced for a while (hit-for-pass), so uncacheable routes never queue.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any, Final

import anyio

from ._base import ResponseCacheBase
from ._types import REVALIDATE, Lookup, RequestView

__all__ = ["Coalescing"]

logger = logging.getLogger("asyncperf.http")

# Hit-for-pass: how long, and for how many URLs, an unstorable response stops coalescing.
PASS_SECONDS: Final = 30.0
_PASS_SLOTS: Final = 4096
# Cross-process coalescing without the Redis subscription yet: look again this often.
_UNSUBSCRIBED_RECHECK: Final = 0.05


class Coalescing(ResponseCacheBase):
    """The coalescing layer of :class:`~asyncperf.http.ResponseCache`."""

    def _coalescible(
        self, request: RequestView, primary: str, request_cc: Mapping[str, str | None]
    ) -> bool:
        """Whether a miss may wait for a concurrent request's response to the same URL."""
        if not self.coalesce or request.method != "GET":
            return False  # HEAD misses are not stored
        if "no-cache" in request_cc or "max-age" in request_cc or "no-store" in request_cc:
            return False  # the client asks the origin itself, or forbids storing
        if self.shared and "authorization" in request.headers:
            return False  # its response is rarely shareable: nobody should wait for it
        if "text/event-stream" in request.headers.get("accept", ""):
            return False  # an event stream is never stored, and may never end
        passes = self._passes
        if passes:
            until = passes.get(primary)
            if until is not None:
                if self.clock() < until:
                    return False
                del passes[primary]
        return True

    def release_now(self, lookup: Lookup) -> bool:
        """The part of :meth:`release` done without awaiting (this process's waiters);
        ``True`` when a cross-process lease is left, for ``await release(lookup)``."""
        flight, lookup.flight = lookup.flight, None
        if flight is not None:
            primary = lookup.primary
            if not lookup.stored and primary not in self._pending and lookup.action != REVALIDATE:
                # Not storable (hit-for-pass). A revalidation that failed leaves its entry
                # as it was: the URL stays coalescible.
                self._no_coalescing(primary)
            if self._flights.get(primary) is flight:
                del self._flights[primary]
            if flight[1] is not None:
                flight[1].set()
        return lookup.lease is not None

    async def release(self, lookup: Lookup) -> None:
        """Wake the requests waiting on this leader's response (idempotent).

        Called by the glue once the response is stored, or known not to be; a URL whose
        response was not stored is then not coalesced for a while (hit-for-pass), so
        uncacheable routes never make concurrent requests queue behind each other. A
        distributed leader writes its response first, then releases its lease, which
        wakes the other processes' waiters.
        """
        self.release_now(lookup)
        token, lookup.lease = lookup.lease, None
        if token is not None:
            primary = lookup.primary
            with anyio.CancelScope(shield=True):
                write = self._pending.get(primary)
                if write is not None:
                    await write.run()  # other processes cannot see our unwritten response
                try:
                    await self.cache.store.release_lease(self._lease_name(primary), token)  # type: ignore[attr-defined]
                except Exception:  # it expires on its own after coalesce_timeout
                    logger.debug("releasing the lease on %s failed", primary, exc_info=True)

    def _lease_name(self, primary: str) -> str:
        return f"{self.cache.name}:{primary}"

    async def _led_elsewhere(self, lookup: Lookup) -> bool:
        """Take the cross-process lease on the URL, or wait for the process holding it.

        Returns True when another process held it (and has released it, or the wait timed
        out): the caller looks again. False when this request holds it, or when Redis
        cannot be asked now (then it leads for this process only).
        """
        store: Any = self.cache.store
        if not store.available():
            return False
        name = self._lease_name(lookup.primary)
        token = uuid.uuid4().hex
        try:
            held_for = await store.try_lease(name, token, self._flight_life)
        except Exception:
            logger.debug("taking the lease on %s failed", lookup.primary, exc_info=True)
            return False
        if held_for == 0.0:
            lookup.lease = token
            return False

        async def answered() -> bool:
            return await self._read(lookup.primary) is not None

        deadline = time.monotonic() + min(self._flight_life, held_for + 0.05)
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                if not await store.ensure_listener():
                    remaining = min(remaining, _UNSUBSCRIBED_RECHECK)  # a release may be missed
                if await store.wait_for_lease(name, remaining, answered):
                    break
        except Exception:
            logger.debug("waiting for the lease on %s failed", lookup.primary, exc_info=True)
        return True

    def _no_coalescing(self, primary: str) -> None:
        """Remember that ``primary``'s response was not stored (hit-for-pass)."""
        passes = self._passes
        passes[primary] = self.clock() + PASS_SECONDS
        passes.move_to_end(primary)
        if len(passes) > _PASS_SLOTS:
            passes.popitem(last=False)
