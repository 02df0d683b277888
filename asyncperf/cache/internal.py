"""The core's internal API for asyncperf's own sibling packages (http, llm, db, monitor).

Not public: names here may change between minor releases. It exists so that no sibling
package imports a private module of the core (``..cache._cache``) or reads a private
attribute: everything they need from the core comes through this one module.

- :func:`check_ttl`: validate a seconds option the way every ``ttl`` is validated.
- :class:`Flight` / :class:`SyncFlight`: the single-flight outcome that coroutines
  (asyncio or trio) or threads wait on.
- :class:`LeaseStore` and :func:`lease_store`: the cross-process lease protocol and the
  store of a cache that offers it.
- :func:`plain_memory_store`: the :class:`MemoryStore` of a cache that uses nothing else,
  for callers whose writes to it can take a synchronous fast path (they never suspend).
- :func:`get_now`: ``Cache.get`` without awaiting, when the answer is in memory (a plain
  memory cache, or a tiered cache's L1 hit); :data:`LATER` when it must be awaited.
- :func:`set_now`: the fast path for a tagged write whose key, TTL and tags the caller
  built itself (so they need no checking), counted as ``Cache.set`` counts it.
- :class:`ZstdPool`: per-thread zstd compressors and decompressors (one pool design for
  the codec and HTTP bodies).
- :data:`ABANDONED`: what ``Flight.outcome()`` returns when the leader gave up.
"""

from __future__ import annotations

import enum
import math
from typing import Any, Final

from ._cache import Cache, check_ttl
from ._entry import Entry
from ._keys import MAX_KEY_LENGTH
from ._memory import MemoryStore
from ._singleflight import ABANDONED, Flight, SyncFlight
from ._store import LeaseStore
from ._zstd import ZstdPool

__all__ = [
    "ABANDONED",
    "LATER",
    "Flight",
    "Later",
    "LeaseStore",
    "SyncFlight",
    "ZstdPool",
    "check_ttl",
    "get_now",
    "lease_store",
    "plain_memory_store",
    "set_now",
]


def plain_memory_store(cache: Cache) -> MemoryStore | None:
    """Return the cache's store when it is a plain :class:`MemoryStore`, else ``None``."""
    return cache._mem


def lease_store(cache: Cache) -> LeaseStore | None:
    """Return the cache's store when it can hold cross-process leases, else ``None``."""
    store = cache.store
    return store if isinstance(store, LeaseStore) else None


class Later(enum.Enum):
    """The type of :data:`LATER` (an enum, so ``is LATER`` narrows a union for mypy)."""

    LATER = "later"


LATER: Final = Later.LATER  # get_now's answer when only ``await cache.get(key)`` can tell


def get_now(cache: Cache, key: str) -> Any:
    """Return what ``await cache.get(key)`` would (``None`` when absent), without awaiting,
    when memory can answer; :data:`LATER` when it cannot (a remote store, an expired entry
    to drop, a key ``Cache.get`` must check). Counted as ``Cache.get`` counts it.
    """
    data = cache._data
    if data is None or type(key) is not str or len(key) > MAX_KEY_LENGTH:
        return LATER
    full = cache._prefix + key if cache._prefix else key
    entry = data.get(full)
    if entry is None:
        if cache._mem is None:
            return LATER  # a tiered cache's L1 miss: the L2 may hold it
        cache._misses += 1
        return None
    fresh_until = entry.fresh_until
    if fresh_until is not None and cache._clock() >= fresh_until:
        return LATER
    try:
        data.move_to_end(full)
    except KeyError:  # deleted by another thread since: still a valid read
        pass
    cache._hits += 1
    return entry.value


def set_now(cache: Cache, key: str, value: object, ttl: float, tags: list[str]) -> bool:
    """Store ``value`` under ``tags`` in a plain memory cache without awaiting, as
    ``Cache.set`` would; ``False``: not done (the cache is not one, there are no tags, or
    the key, TTL or jitter needs ``Cache.set``, which must then be used).

    For callers that built ``key`` and ``tags`` (non-empty strings) themselves: only what
    such a caller cannot rule out (an over-long key, which the cache stores hashed, and an
    unbounded TTL) is checked here.
    """
    mem = cache._mem
    if (
        mem is None
        or not tags  # Cache.set overwrites an untagged entry in place
        or cache._jitter
        or len(key) > MAX_KEY_LENGTH
        or not 0.0 < ttl < math.inf
    ):
        return False
    prefix = cache._prefix
    if prefix:
        key = prefix + key
        stored = tuple([prefix + tag for tag in tags])
    else:
        stored = tuple(tags)
    mem.set_entry(key, Entry(value, None, None, 0.0, stored), ttl)  # positional: faster
    cache._sets += 1
    return True
