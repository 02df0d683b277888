"""In-process LRU + TTL store with entry and byte caps, safe across threads."""

from __future__ import annotations

import heapq
import math
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from .._exceptions import ConfigurationError
from ._codec import Codec
from ._entry import Entry
from ._store import BaseStore

__all__ = ["MemoryStore", "MemoryStoreStatistics", "estimate_size"]

# Bytes one entry costs beyond its key string and value: the Entry object, its OrderedDict
# slot and linked-list node, and its share of the expiry wheel. Measured with tracemalloc
# on CPython 3.11 (python -m bench.measure_memory: 236 B at 100k entries); used so that
# max_bytes bounds what the process really holds, not just the payloads.
ENTRY_OVERHEAD: Final = 236

# Reads take no lock: with the GIL every OrderedDict call below is atomic, and a read that
# races a concurrent delete just sees a miss. A free-threaded interpreter has no such
# guarantee, so there reads lock too.
_LOCK_READS: Final = not getattr(sys, "_is_gil_enabled", lambda: True)()

_SWEEP_BATCH: Final = 512


_SMALL_SCALARS: Final = frozenset({int, float, bool, type(None), complex})
_SEQUENCES: Final = frozenset({list, tuple, set, frozenset})


def estimate_size(value: Any, *, limit: int = 10_000) -> int:
    """Estimate the bytes ``value`` holds, following containers (at most ``limit`` objects).

    Strings, bytes and containers shared between places are counted once. Objects that are
    not built-in containers count with ``sys.getsizeof`` plus their ``__dict__``; pass
    ``sizeof=`` to :class:`MemoryStore` for exact accounting of your own types (or use a
    codec, which accounts the encoded size).
    """
    getsizeof = sys.getsizeof
    kind = type(value)
    if kind in _SMALL_SCALARS or kind is str or kind is bytes:
        return getsizeof(value)
    seen: set[int] = set()
    stack = [value]
    total = 0
    visited = 0
    while stack and visited < limit:
        obj = stack.pop()
        kind = type(obj)
        visited += 1
        if kind in _SMALL_SCALARS:  # small and often shared: no identity bookkeeping
            total += getsizeof(obj)
            continue
        ident = id(obj)
        if ident in seen:
            continue
        seen.add(ident)
        total += getsizeof(obj)
        if kind is dict or kind in _SEQUENCES:
            # Scalars are summed here rather than pushed: most cached values are flat.
            # (Strings inside containers are not de-duplicated: an overestimate, the safe
            # side for a cap.)
            for item in (*obj.keys(), *obj.values()) if kind is dict else obj:
                item_kind = type(item)
                if item_kind is str or item_kind in _SMALL_SCALARS:
                    total += getsizeof(item)
                else:
                    stack.append(item)
        elif kind is not str and kind is not bytes and hasattr(obj, "__dict__"):
            stack.append(vars(obj))
    return total


@dataclass(frozen=True, slots=True)
class MemoryStoreStatistics:
    """A snapshot of a :class:`MemoryStore`.

    Attributes:
        entries: Entries held now (expired ones not yet swept included).
        bytes: Bytes accounted for those entries: payload (estimated, or encoded size with
            a codec) + key + per-entry overhead. Kept only when ``max_bytes`` or a codec is
            set (0 otherwise: accounting costs a size estimate per write).
        max_entries: The entry cap.
        max_bytes: The byte cap, or ``None``.
        evictions: Entries dropped to respect a cap (least recently used first).
        expirations: Entries dropped because their TTL ran out.
        rejected: Values refused because one alone exceeds ``max_bytes``.
        decode_errors: Stored payloads that could not be decoded (codec mode).
    """

    entries: int
    bytes: int
    max_entries: int
    max_bytes: int | None
    evictions: int
    expirations: int
    rejected: int
    decode_errors: int


class MemoryStore(BaseStore):
    """An LRU + TTL store in this process, usable from coroutines and threads at once.

    Entries expire lazily when read; an amortised sweep on writes drops expired entries
    nobody reads (a time wheel of one-second buckets: no timer or task per key). Caps
    evict the least recently used entries first.

    Args:
        max_entries: Most entries kept.
        max_bytes: Most bytes kept, counting payload, key and a measured per-entry overhead
            (``None``: no byte cap). A single value larger than this is not stored.
        codec: Store values encoded (isolates them from later mutation and accounts their
            exact encoded size); values then round-trip as the codec documents. By
            default objects are kept as they are and their size is estimated.
        sizeof: Custom size function for objects (ignored with a codec).
        clock: Monotonic seconds; injected by tests.

    Attributes:
        plain: No codec and no byte cap: values are kept as they are, and an untagged
            entry can be overwritten in place (:meth:`overwrite`). Read-only.

    Example:
        >>> store = MemoryStore(max_entries=10_000, max_bytes=64 * 2**20)
    """

    backend_name = "memory"

    def __init__(
        self,
        max_entries: int = 10_000,
        max_bytes: int | None = None,
        *,
        codec: Codec | None = None,
        sizeof: Callable[[Any], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries <= 0:
            raise ConfigurationError(f"max_entries must be a positive int, got {max_entries!r}")
        if max_bytes is not None and (
            isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0
        ):
            raise ConfigurationError(f"max_bytes must be a positive int or None, got {max_bytes!r}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.codec = codec
        self.clock = clock
        self.plain = codec is None and max_bytes is None
        self._sizeof = sizeof or estimate_size
        self._data: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()
        # tag -> its keys: the key itself while it has one (most tags name one entry: an
        # HTTP response's URL tag), a set from the second on: no set, and one object fewer
        # for the garbage collector to track, per entry so tagged.
        self._tags: dict[str, set[str] | str] = {}
        self._bytes = 0
        self._evictions = 0
        self._expirations = 0
        self._rejected = 0
        self._decode_errors = 0
        # Expiry wheel: second -> keys listed there; a heap of those seconds. Invariant: a
        # key with a TTL is listed in a bucket at or before the one its expiry falls in, so
        # an overwrite that extends the TTL (the common case) schedules nothing; the sweep
        # moves such keys on when it reaches them.
        self._wheel: dict[int, list[str]] = {}
        self._buckets: list[int] = []
        self._wheel_items = 0
        self._next_sweep = math.inf
        if _LOCK_READS:  # pragma: no cover - free-threaded builds only
            self.get_entry = self._get_locked  # type: ignore[method-assign]

    def __repr__(self) -> str:
        return (
            f"MemoryStore(max_entries={self.max_entries}, max_bytes={self.max_bytes}, "
            f"entries={len(self._data)})"
        )

    def __len__(self) -> int:
        return len(self._data)

    @property
    def mapping(self) -> OrderedDict[str, Entry]:
        """The live ``key -> Entry`` mapping, least recently used first.

        For readers that inline :meth:`get_entry` on their hit path (the Cache facade):
        read it, never write to it; an entry's ``fresh_until`` says whether it may be served.
        """
        return self._data

    # -- sync core (used directly by Cache for the fast path and sync decorators) -------

    def get_entry(self, key: str) -> Entry | None:
        """Return the live entry for ``key`` and mark it recently used, or ``None``."""
        entry = self._data.get(key)
        if entry is None:
            return None
        expires_at = entry.expires_at
        if expires_at is not None and expires_at <= self.clock():
            self._expire(key, entry)
            return None
        try:
            self._data.move_to_end(key)
        except KeyError:  # deleted by another thread between the two calls
            return None
        if self.codec is not None:
            return self._decoded(key, entry)
        return entry

    def _get_locked(self, key: str) -> Entry | None:  # pragma: no cover - free-threaded only
        with self._lock:
            return MemoryStore.get_entry(self, key)

    def _expire(self, key: str, entry: Entry) -> None:
        with self._lock:
            if self._data.get(key) is entry:
                self._remove(key, entry)
                self._expirations += 1

    def _decoded(self, key: str, entry: Entry) -> Entry | None:
        try:
            return entry.copy_with(self.codec.decode(entry.value))  # type: ignore[union-attr]
        except Exception:
            self._decode_errors += 1
            self.delete_entry(key)
            raise

    def peek_entry(self, key: str) -> Entry | None:
        """Return the entry for ``key`` without touching recency or expiring it."""
        entry = self._data.get(key)
        if entry is not None and self.codec is not None:
            return self._decoded(key, entry)
        return entry

    def set_value(
        self, key: str, value: Any, ttl: float | None, tags: tuple[str, ...] = ()
    ) -> None:
        """Store a plain ``value`` (no stale window, no load time) for ``ttl`` seconds."""
        if not tags and self.plain and not _LOCK_READS:
            entry = self._data.get(key)
            if entry is not None and not entry.tags:
                self.overwrite(key, entry, value, ttl)
                return
        self.set_entry(key, Entry(value, None, None, 0.0, tags), ttl)  # positional: faster

    def overwrite(self, key: str, entry: Entry, value: Any, ttl: float | None) -> None:
        """Replace the value of an untagged ``entry`` in place (plain stores only).

        No allocation, no re-insertion and no lock on the common path: each step is
        atomic under the GIL, and the only race, with a concurrent delete, eviction or
        expiry of the same key, loses this write exactly as if that removal came after
        it, which a cache may do at any time anyway.
        """
        now = self.clock()
        expires_at = None if ttl is None else now + ttl
        previous = entry.expires_at
        entry.value = value
        entry.expires_at = entry.fresh_until = expires_at
        entry.load_time = 0.0
        try:
            self._data.move_to_end(key)
        except KeyError:
            pass
        if now >= self._next_sweep or (
            expires_at is not None and (previous is None or expires_at < previous)
        ):
            self._rescheduled(key, expires_at, now)

    def _rescheduled(self, key: str, expires_at: float | None, now: float) -> None:
        """Wheel upkeep after an in-place overwrite: list a shortened TTL, sweep if due."""
        with self._lock:
            if expires_at is not None:
                self._schedule(key, int(expires_at))
            if now >= self._next_sweep:
                self._sweep_locked(now)

    def set_entry(self, key: str, entry: Entry, ttl: float | None) -> None:
        """Store ``entry`` for ``ttl`` seconds (``None``: until evicted).

        Raises:
            SerializationError: With a codec, when the value cannot be encoded.
        """
        if self.codec is not None:
            encoded = self.codec.encode(entry.value, key=key)
            entry = entry.copy_with(encoded)
            size = len(encoded) + sys.getsizeof(key) + ENTRY_OVERHEAD
        elif self.max_bytes is not None:
            size = self._sizeof(entry.value) + sys.getsizeof(key) + ENTRY_OVERHEAD
        else:
            size = 0
        now = self.clock()
        expires_at = entry.expires_at = None if ttl is None else now + ttl
        if entry.fresh_until is None:
            entry.fresh_until = expires_at
        # One flat critical section with no helper calls on the common path: this is the
        # write hot path (acquire/release costs half of a `with` block).
        lock = self._lock
        lock.acquire()
        try:
            data = self._data
            old = data.pop(key, None)
            if old is not None:
                self._bytes -= old.size
                if old.tags:
                    self._untag(key, old.tags)
            if self.max_bytes is not None and size > self.max_bytes:
                self._rejected += 1
                return
            entry.size = size
            data[key] = entry
            self._bytes += size
            if entry.tags:  # the tag index: a tag naming one key holds the key itself
                index = self._tags
                for tag in entry.tags:
                    keys = index.get(tag)
                    if keys is None:
                        index[tag] = key
                    elif isinstance(keys, str):
                        if keys != key:
                            index[tag] = {keys, key}
                    else:
                        keys.add(key)
            if expires_at is not None and (
                old is None or old.expires_at is None or expires_at < old.expires_at
            ):
                self._schedule(key, int(expires_at))
            if now >= self._next_sweep:
                self._sweep_locked(now)
            if len(data) > self.max_entries or (
                self.max_bytes is not None and self._bytes > self.max_bytes
            ):
                self._evict_locked()
        finally:
            lock.release()

    def _evict_locked(self) -> None:
        data = self._data
        max_bytes = self.max_bytes if self.max_bytes is not None else math.inf
        while data and (len(data) > self.max_entries or self._bytes > max_bytes):
            key, entry = data.popitem(last=False)
            self._forget(key, entry)
            self._evictions += 1

    def _remove(self, key: str, entry: Entry) -> None:
        del self._data[key]
        self._forget(key, entry)

    def _forget(self, key: str, entry: Entry) -> None:
        self._bytes -= entry.size
        if entry.tags:
            self._untag(key, entry.tags)

    def _untag(self, key: str, tags: tuple[str, ...]) -> None:
        index = self._tags
        for tag in tags:
            keys = index.get(tag)
            if keys is None:
                continue
            if isinstance(keys, str):
                if keys == key:
                    del index[tag]
            else:
                keys.discard(key)
                if not keys:
                    del index[tag]

    def delete_entry(self, key: str) -> bool:
        """Remove ``key``; return whether a live entry was there."""
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return False
            self._remove(key, entry)
            return entry.expires_at is None or entry.expires_at > self.clock()

    def invalidate_tags_sync(self, tags: Iterable[str]) -> int:
        """Remove every entry stored under any of ``tags``; return how many."""
        removed = 0
        with self._lock:
            for tag in tags:
                members = self._tags.pop(tag, ())
                for key in (members,) if isinstance(members, str) else members:
                    entry = self._data.get(key)
                    if entry is not None:
                        self._remove(key, entry)
                        removed += 1
        return removed

    def clear_sync(self, prefix: str = "") -> int:
        """Remove every key that starts with ``prefix``; return how many."""
        with self._lock:
            if not prefix:
                removed = len(self._data)
                self._data.clear()
                self._tags.clear()
                self._wheel.clear()
                self._buckets.clear()
                self._wheel_items = 0
                self._next_sweep = math.inf
                self._bytes = 0
                return removed
            # list() copies in one C call, which no lock-free read (move_to_end) can
            # interleave with; a Python loop over the live dict could see one.
            doomed = [key for key in list(self._data) if key.startswith(prefix)]
            for key in doomed:
                self._remove(key, self._data[key])
            return len(doomed)

    # -- expiry wheel ---------------------------------------------------------------------

    def _schedule(self, key: str, bucket: int) -> None:
        keys = self._wheel.get(bucket)
        if keys is None:
            self._wheel[bucket] = [key]
            heapq.heappush(self._buckets, bucket)
            if bucket + 1 < self._next_sweep:
                self._next_sweep = bucket + 1
        else:
            keys.append(key)
        self._wheel_items += 1
        # Overwritten keys leave stale references behind; rebuild the wheel when they
        # outnumber the live entries, which keeps it O(entries).
        if self._wheel_items > 2 * len(self._data) + 1024:
            self._rebuild_wheel()

    def _rebuild_wheel(self) -> None:
        self._wheel.clear()
        self._wheel_items = 0
        for key, entry in list(self._data.items()):  # a snapshot: see clear_sync
            if entry.expires_at is not None:
                self._wheel.setdefault(int(entry.expires_at), []).append(key)
                self._wheel_items += 1
        self._buckets = list(self._wheel)
        heapq.heapify(self._buckets)
        self._next_sweep = self._buckets[0] + 1 if self._buckets else math.inf

    def _sweep_locked(self, now: float, budget: int = _SWEEP_BATCH) -> int:
        removed = 0
        buckets = self._buckets
        while buckets and buckets[0] + 1 <= now and budget > 0:
            bucket = buckets[0]
            keys = self._wheel[bucket]
            while keys and budget > 0:
                key = keys.pop()
                budget -= 1
                self._wheel_items -= 1
                entry = self._data.get(key)
                if entry is None or entry.expires_at is None:
                    continue
                if entry.expires_at <= now:
                    self._remove(key, entry)
                    self._expirations += 1
                    removed += 1
                elif int(entry.expires_at) != bucket:
                    # Overwritten with a later expiry since it was listed here: move it on.
                    self._schedule(key, int(entry.expires_at))
            if not keys:
                heapq.heappop(buckets)
                del self._wheel[bucket]
        self._next_sweep = buckets[0] + 1 if buckets else math.inf
        if budget == 0 and buckets and self._next_sweep <= now:
            self._next_sweep = now  # more to do: continue on the next write
        return removed

    def sweep(self) -> int:
        """Drop every expired entry now; return how many (writes do this bit by bit)."""
        with self._lock:
            now = self.clock()
            removed = self._sweep_locked(now, budget=sys.maxsize)
            # The current second's bucket is not due yet, but some of it may have expired.
            for key in list(self._wheel.get(int(now), ())):
                entry = self._data.get(key)
                if entry is not None and entry.expires_at is not None and entry.expires_at <= now:
                    self._remove(key, entry)
                    self._expirations += 1
                    removed += 1
            return removed

    def statistics(self) -> MemoryStoreStatistics:
        """Return a snapshot of sizes and counters."""
        return MemoryStoreStatistics(
            entries=len(self._data),
            bytes=self._bytes,
            max_entries=self.max_entries,
            max_bytes=self.max_bytes,
            evictions=self._evictions,
            expirations=self._expirations,
            rejected=self._rejected,
            decode_errors=self._decode_errors,
        )

    def keys(self) -> list[str]:
        """Return a snapshot of the stored keys, least recently used first."""
        with self._lock:
            return list(self._data)

    # -- Store protocol ---------------------------------------------------------------------

    async def get(self, key: str) -> Entry | None:
        """Return the live entry for ``key``, or ``None``."""
        return self.get_entry(key)

    async def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        """Return one live entry or ``None`` per key, in order."""
        get = self.get_entry
        return [get(key) for key in keys]

    async def set(self, key: str, entry: Entry, ttl: float | None) -> None:
        """Store ``entry`` under ``key`` for ``ttl`` seconds."""
        self.set_entry(key, entry, ttl)

    async def set_many(self, items: Sequence[tuple[str, Entry, float | None]]) -> None:
        """Store several ``(key, entry, ttl)`` items; with a codec, none if one fails."""
        if self.codec is not None:
            for key, entry, _ in items:  # encode every value first: all or nothing
                self.codec.encode(entry.value, key=key)
        for key, entry, ttl in items:
            self.set_entry(key, entry, ttl)

    async def delete(self, key: str) -> bool:
        """Remove ``key``; return whether it was there."""
        return self.delete_entry(key)

    async def delete_many(self, keys: Sequence[str]) -> int:
        """Remove several keys; return how many were there."""
        return sum(self.delete_entry(key) for key in keys)

    async def invalidate_tags(self, tags: Sequence[str]) -> int:
        """Remove every entry stored under any of ``tags``; return how many."""
        return self.invalidate_tags_sync(tags)

    async def clear(self, prefix: str = "") -> int:
        """Remove every key starting with ``prefix`` (all keys when empty)."""
        return self.clear_sync(prefix)
