"""Single-flight across processes: one holder of a store's lease loads, the others wait."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import anyio

from ._singleflight import Flight

if TYPE_CHECKING:
    from ._loading import Loading

__all__ = ["lead_distributed"]

_UNSUBSCRIBED_RECHECK: Final = 0.05


async def lead_distributed(
    cache: Loading, key: str, flight: Flight, lead: Callable[[], Awaitable[Any]]
) -> Any:
    """Lead the load across processes: one holder of a Redis lease loads, the others
    wait for its release message (no polling) and read what it stored.

    ``lead()`` is this process's own load of ``key`` (``Loading._lead`` with its loader,
    policy and tags), run by the lease holder, or here when the lease cannot help.

    A lease whose holder died expires after ``lock_timeout`` and the next waiter
    takes it; a wait past twice that, or a store that fails, runs the loader here.
    """
    store: Any = cache._store
    lease_ttl = cache._shared.lock_timeout
    token = uuid.uuid4().hex
    deadline = time.monotonic() + 2 * lease_ttl

    async def fresh_value() -> bool:
        entry = await cache._fetch(key)
        if entry is not None and entry.is_fresh(cache._clock()):
            found.append(entry.value)
            return True
        return False

    found: list[Any] = []
    try:
        while True:
            try:
                held_for = await store.try_lease(key, token, lease_ttl)
            except Exception as exc:
                cache._failed("lease", exc)
                break
            if held_for == 0.0:
                try:
                    return await lead()
                finally:
                    with anyio.CancelScope(shield=True):
                        try:
                            await store.release_lease(key, token)
                        except Exception as exc:  # it expires on its own
                            cache._failed("lease release", exc)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                cache._lock_timeouts += 1
                break
            wait = min(remaining, held_for + 0.05)
            if not await store.ensure_listener():
                # Not subscribed (yet): a release message could be missed, so look
                # again soon rather than sleeping out the holder's whole lease.
                wait = min(wait, _UNSUBSCRIBED_RECHECK)
            await store.wait_for_lease(key, wait, fresh_value)
            if found or await fresh_value():
                cache._lock_waits += 1
                flight.resolve(found[0])
                return found[0]
    except BaseException:
        flight.abandon()
        raise
    finally:
        if flight.event.is_set() and cache._shared.flights.get(key) is flight:
            del cache._shared.flights[key]
    return await lead()
