"""The Cache facade: keys, TTLs, tags, basic operations, statistics and lifecycle.

Get-or-load lives in ``_loading.py`` (coroutines) and ``_loading_sync.py`` (threads),
leases in ``_lease.py``, the validated options in ``_policy.py``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Final, TypeVar, overload

from .._exceptions import ConfigurationError, SerializationError
from ._entry import Entry
from ._keys import MAX_KEY_LENGTH, check_key
from ._loading_sync import SyncLoading
from ._memory import MemoryStore
from ._policy import LoadPolicy, LockMode, check_ttl
from ._shared import DEFAULT, Default, Shared, with_fallback
from ._stats import CacheStatistics, HealthReport
from ._store import Store

__all__ = ["Cache", "LoadPolicy", "LockMode", "check_ttl"]

logger = logging.getLogger("asyncperf.cache")

T = TypeVar("T")

_INF: Final = math.inf


class Cache(SyncLoading):
    """One interface over any store: get/set, get-or-load with single-flight, tags, stats.

    Args:
        store: Where entries live; an in-process :class:`MemoryStore` by default.
        default_ttl: Seconds used when a call passes no ``ttl`` (``None``: no expiry).
        namespace: Prefix for every key and tag of this cache (``"users"`` -> ``users:``).
        codec: Replace the store's codec (stores that encode values only).
        strict: Re-raise store failures as :class:`~asyncperf.BackendError` instead of
            answering misses.
        ttl_jitter: Spread each TTL by up to this fraction either way (0.1 = ±10%), so
            keys written together do not all expire together.
        fallback: For a bare :class:`~asyncperf.RedisStore`: the in-process store that
            keeps caching while Redis is unavailable (default ``MemoryStore(1000)``;
            ``None`` for none). Not accepted with other stores.
        lock_timeout: For ``lock="distributed"``: the lease's lifetime in seconds, and
            half the longest a caller waits for another process's load before loading
            itself.

    A failing store never fails the application: failures are counted in
    ``statistics().errors``, logged at most every 10 s per kind, and answered as misses
    (the loader still runs). Cancellation always propagates.

    Example:
        >>> cache = Cache(MemoryStore(max_entries=10_000))
        >>> async def main():
        ...     return await cache.get_or_set("answer", lambda: 42, ttl=60)
    """

    __slots__ = ()

    def __init__(
        self,
        store: Store | None = None,
        *,
        default_ttl: float | None = None,
        namespace: str = "",
        codec: Any = None,
        strict: bool = False,
        ttl_jitter: float = 0.0,
        fallback: MemoryStore | Default | None = DEFAULT,
        lock_timeout: float = 10.0,
    ) -> None:
        if store is None:
            store = MemoryStore()
        if not isinstance(store, Store):
            raise ConfigurationError(
                f"store must implement the asyncperf Store protocol, got {type(store).__name__}"
            )
        store = with_fallback(store, fallback)
        if codec is not None:
            if not hasattr(store, "codec") or isinstance(store, MemoryStore):
                raise ConfigurationError(
                    "codec= applies to stores that encode values (Redis, tiered); "
                    "for an encoded MemoryStore pass MemoryStore(codec=...)"
                )
            store.codec = codec
        if (
            isinstance(ttl_jitter, bool)
            or not isinstance(ttl_jitter, int | float)
            or not 0.0 <= ttl_jitter < 1.0
        ):
            raise ConfigurationError(f"ttl_jitter must be a fraction in [0, 1), got {ttl_jitter!r}")
        if not isinstance(namespace, str):
            raise ConfigurationError(f"namespace must be a str, got {namespace!r}")
        shared = Shared(store, check_ttl(default_ttl, "default_ttl"), float(ttl_jitter), strict)
        shared.lock_timeout = check_ttl(lock_timeout, "lock_timeout") or 10.0
        self._bind(shared, namespace)

    # -- construction helpers ---------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Cache:
        """Build a cache from a URL such as ``memory://?max_entries=10000``.

        Query options (and keyword ``options``, which win) configure the store and the
        cache (``default_ttl``, ``namespace``, ``ttl_jitter``, ``strict``).

        Raises:
            ConfigurationError: Unknown scheme or option, or a bad value.
        """
        from ._url import cache_from_url

        return cache_from_url(url, options)

    @classmethod
    def tiered(
        cls,
        *,
        l2: Any,
        l1: MemoryStore | None = None,
        l1_ttl: float = 30.0,
        journal_path: str | os.PathLike[str] | None = None,
        **options: Any,
    ) -> Cache:
        """Build a cache with a coherent memory tier (L1) in front of Redis (L2).

        Args:
            l2: A :class:`~asyncperf.RedisStore` (or a ``redis://`` URL for one).
            l1: The memory tier (default ``MemoryStore(max_entries=10_000)``).
            l1_ttl: Longest time an entry stays in L1, in seconds.
            journal_path: A file that keeps the outage journal across processes (see
                :class:`~asyncperf.FallbackStore`).
            **options: Passed to :class:`Cache` (``default_ttl``, ``namespace``...).
        """
        from ._redis import RedisStore
        from ._tiered import TieredStore

        if isinstance(l2, str):
            l2 = RedisStore(l2)
        store = TieredStore(
            l1 if l1 is not None else MemoryStore(), l2, l1_ttl=l1_ttl, journal_path=journal_path
        )
        return cls(store, **options)

    def namespace(self, name: str) -> Cache:
        """Return a view of this cache whose keys and tags live under ``name``.

        The view shares the store, single-flight and background work; its ``clear()``
        removes only its own keys, and it keeps its own statistics.
        """
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"namespace name must be a non-empty str, got {name!r}")
        view = object.__new__(Cache)
        full = f"{self._namespace}:{name}" if self._namespace else name
        view._bind(self._shared, full)
        return view

    @property
    def store(self) -> Store:
        """The store behind this cache."""
        return self._store

    @property
    def name(self) -> str:
        """This cache's namespace ("" for the root)."""
        return self._namespace

    def __repr__(self) -> str:
        return f"Cache(store={self._store!r}, namespace={self._namespace!r})"

    # -- basic operations ----------------------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        """Return the fresh value stored under ``key``, or ``default``.

        ``None`` is a value like any other: pass a sentinel as ``default`` to tell a
        stored ``None`` from a miss.
        """
        data = self._data
        if data is not None:
            # The hit path, MemoryStore.get_entry inlined (a call costs a quarter of the
            # budget). Keys are checked only on a miss: an over-long key is stored
            # hashed, so its raw form is never found here, and a key that is not a str
            # (TypeError here) gets check_key's message below.
            try:
                full = self._prefix + key if self._prefix else key
                entry = data.get(full)
            except TypeError:
                entry = None
            if entry is not None:
                fresh_until = entry.fresh_until
                if fresh_until is None or self._clock() < fresh_until:
                    try:
                        data.move_to_end(full)
                    except KeyError:  # deleted by another thread since: still a valid read
                        pass
                    self._hits += 1
                    return entry.value
            elif self._mem is not None and type(key) is str and len(key) <= 200:
                # Absent from a plain memory store, under a valid key: a miss, without
                # checking the key and looking it up again below.
                self._misses += 1
                return default
        if type(key) is not str or len(key) > 200:  # MAX_KEY_LENGTH, a literal on purpose
            key = check_key(key)
        if self._prefix:
            key = self._prefix + key
        if data is not None:
            entry = data.get(key)
            if entry is not None:
                fresh_until = entry.fresh_until
                if fresh_until is None or self._clock() < fresh_until:
                    try:
                        data.move_to_end(key)
                    except KeyError:  # deleted by another thread since: still a valid read
                        pass
                    self._hits += 1
                    return entry.value
            mem = self._mem
            if mem is not None:
                if entry is not None:
                    mem.get_entry(key)  # drops it if expired
                self._misses += 1
                return default
        try:  # Cache._fetch inlined: one coroutine fewer on every remote read
            entry = await self._store.get(key)
        except Exception as exc:
            self._failed("get", exc)
            entry = None
        if entry is None or (entry.fresh_until is not None and entry.fresh_until <= self._clock()):
            self._misses += 1
            return default
        self._hits += 1
        return entry.value

    async def set(
        self, key: str, value: Any, *, ttl: float | None = None, tags: Iterable[str] = ()
    ) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (default: ``default_ttl``).

        Raises:
            ConfigurationError: A bad ``ttl`` or tag.
            SerializationError: The store encodes values and cannot encode this one;
                nothing is stored.
        """
        if type(key) is not str or len(key) > MAX_KEY_LENGTH:
            key = check_key(key)
        if self._prefix:
            key = self._prefix + key
        if ttl is None:
            ttl = self._default_ttl
        elif (type(ttl) is not float and type(ttl) is not int) or not 0.0 < ttl < _INF:
            ttl = check_ttl(ttl)
        if self._jitter and ttl is not None:
            ttl = self._jittered(ttl)
        mem = self._mem
        if mem is not None:
            data = self._data
            if data is not None and not tags and mem.plain:
                entry = data.get(key)
                if entry is not None and not entry.tags:
                    mem.overwrite(key, entry, value, ttl)  # in place: no allocation, no lock
                    self._sets += 1
                    return
            mem.set_value(key, value, ttl, self._tags(tags) if tags else ())
            self._sets += 1
        else:  # Cache._write inlined, as in get()
            try:
                await self._store.set(key, Entry(value, None, None, 0.0, self._tags(tags)), ttl)
            except SerializationError:
                raise
            except Exception as exc:
                self._failed("set", exc)
            else:
                self._sets += 1

    async def delete(self, key: str) -> bool:
        """Remove ``key``; return whether it was there."""
        key = self._key(key)
        try:
            removed = await self._store.delete(key)
        except Exception as exc:
            self._failed("delete", exc)
            return False
        self._deletes += removed
        return removed

    def _lifetime_store(self) -> Any:
        """The remote store that answers ttl()/expire() itself (behind any fallback/L1)."""
        remote = getattr(self._store, "primary", self._store)
        if isinstance(remote, MemoryStore) or not hasattr(remote, "expire"):
            return None
        return remote

    async def ttl(self, key: str) -> float | None:
        """Return the seconds ``key`` has left: ``math.inf`` if it never expires, ``None``
        if it is absent (or the store cannot say).
        """
        key = self._key(key)
        remote = self._lifetime_store()
        if remote is not None:
            try:
                left = await remote.ttl(key)
            except Exception as exc:
                self._failed("ttl", exc)
                return None
            if left is None:
                return math.inf
            return None if left < 0 else float(left)
        entry = self._mem.peek_entry(key) if self._mem is not None else await self._fetch(key)
        if entry is None:
            return None
        if entry.expires_at is None:
            return math.inf
        left = entry.expires_at - self._clock()
        return left if left > 0 else None

    async def expire(self, key: str, ttl: float | None) -> bool:
        """Give ``key`` a new lifetime (``None``: never expires); False if it is absent."""
        full = self._key(key)
        seconds = check_ttl(ttl)
        store: Any = self._store
        remote = self._lifetime_store()
        if remote is not None:
            try:
                changed = bool(await remote.expire(full, seconds))
            except Exception as exc:
                self._failed("expire", exc)
                return False
            front = getattr(store, "front", None)
            if front is not None:
                front.delete_entry(full)  # L1 re-reads the new lifetime from L2
            return changed
        mem = self._mem
        if mem is None:
            raise ConfigurationError(f"{type(store).__name__} cannot change a key's lifetime")
        entry = mem.get_entry(full)
        if entry is None:
            return False
        renewed = entry.copy_with(entry.value)
        renewed.fresh_until = None  # the new lifetime is the new freshness too
        mem.set_entry(full, renewed, seconds)
        return True

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Return ``{key: value}`` for the keys holding a fresh value (misses are absent)."""
        wanted = list(keys)
        full = [self._key(key) for key in wanted]
        try:
            entries = await self._store.get_many(full)
        except Exception as exc:
            self._failed("get_many", exc)
            entries = [None] * len(full)
        found: dict[str, Any] = {}
        now = self._clock()
        for key, entry in zip(wanted, entries, strict=True):
            if entry is None or not (entry.fresh_until is None or now < entry.fresh_until):
                self._misses += 1
            else:
                self._hits += 1
                found[key] = entry.value
        return found

    async def set_many(
        self, mapping: Mapping[str, Any], *, ttl: float | None = None, tags: Iterable[str] = ()
    ) -> None:
        """Store every ``key: value`` of ``mapping`` (same TTL and tags for all).

        Raises:
            SerializationError: A value cannot be encoded; nothing is stored.
        """
        checked_tags = self._tags(tags)
        items = [
            (self._key(key), Entry(value, tags=checked_tags), self._ttl(ttl))
            for key, value in mapping.items()
        ]
        try:
            await self._store.set_many(items)
        except SerializationError:
            raise
        except Exception as exc:
            self._failed("set_many", exc)
        else:
            self._sets += len(items)

    async def delete_many(self, keys: Iterable[str]) -> int:
        """Remove several keys; return how many were there."""
        full = [self._key(key) for key in keys]
        try:
            removed = await self._store.delete_many(full)
        except Exception as exc:
            self._failed("delete_many", exc)
            return 0
        self._deletes += removed
        return removed

    async def invalidate_tags(self, *tags: str) -> int:
        """Remove every entry stored with any of ``tags``; return how many."""
        checked = self._tags(tags)
        if not checked:
            return 0
        try:
            removed = await self._store.invalidate_tags(checked)
        except Exception as exc:
            self._failed("invalidate_tags", exc)
            return 0
        self._deletes += removed
        return removed

    async def clear(self) -> int:
        """Remove every key of this cache's namespace (the whole store for the root).

        Returns:
            How many entries were removed.
        """
        try:
            return await self._store.clear(self._prefix)
        except Exception as exc:
            self._failed("clear", exc)
            return 0

    # -- get-or-load -----------------------------------------------------------------------

    @overload
    async def get_or_set(
        self,
        key: str,
        loader: Callable[[], Awaitable[T]],
        *,
        ttl: float | None = None,
        tags: Iterable[str] = (),
        stale_ttl: float | None = None,
        stale_if_error: bool | float = False,
        early_refresh: bool | float = True,
        lock: LockMode = "local",
        store_if: Callable[[Any], bool] | None = None,
    ) -> T: ...

    @overload
    async def get_or_set(
        self,
        key: str,
        loader: Callable[[], T],
        *,
        ttl: float | None = None,
        tags: Iterable[str] = (),
        stale_ttl: float | None = None,
        stale_if_error: bool | float = False,
        early_refresh: bool | float = True,
        lock: LockMode = "local",
        store_if: Callable[[Any], bool] | None = None,
    ) -> T: ...

    async def get_or_set(
        self,
        key: str,
        loader: Callable[[], Any],
        *,
        ttl: float | None = None,
        tags: Iterable[str] = (),
        stale_ttl: float | None = None,
        stale_if_error: bool | float = False,
        early_refresh: bool | float = True,
        lock: LockMode = "local",
        store_if: Callable[[Any], bool] | None = None,
    ) -> Any:
        """Return the cached value for ``key``, calling ``loader`` once when it is missing.

        Concurrent callers for one missing key share one loader call (single-flight): all
        get its value, or all get its exception (exceptions are not cached). A cancelled
        loader does not strand the others: one of them takes over.

        Args:
            key: The key.
            loader: Zero-argument callable returning the value or an awaitable of it.
            ttl: Freshness in seconds (default: the cache's ``default_ttl``).
            tags: Tags to store the value under.
            stale_ttl: Serve a stale value this many seconds past its TTL while one
                background refresh runs (stale-while-revalidate).
            stale_if_error: Serve the stale value if the loader raises (``True``: values
                are kept one extra ``ttl`` for that; a number: that many seconds).
            early_refresh: Probabilistic early refresh (XFetch): refresh in the
                background before expiry, more likely as expiry nears and the slower the
                loader; ``True``, a float beta, or ``False``.
            lock: ``"local"`` (default), ``"distributed"`` or ``None``.
            store_if: A predicate on the loaded value; false means return it uncached.

        Raises:
            ConfigurationError: A bad option.
            SerializationError: The store cannot encode the loaded value.
            Exception: Whatever the loader raised (unless a stale value could be served).
        """
        policy = LoadPolicy(
            ttl=ttl,
            stale_ttl=stale_ttl,
            stale_if_error=stale_if_error,
            early_refresh=early_refresh,
            lock=lock,
            store_if=store_if,
        )
        return await self._get_or_load(self._key(key), loader, policy, self._tags(tags))

    # -- health, statistics, lifecycle ------------------------------------------------

    async def health(self) -> HealthReport:
        """Probe the store and report reachability and breaker state."""
        store = self._store
        try:
            report = await store.health()
        except Exception as exc:
            return HealthReport(ok=False, backend=type(store).__name__, detail=str(exc))
        return HealthReport(
            ok=report.ok,
            backend=report.backend,
            breaker_state=report.breaker_state,
            latency=report.latency,
            degraded=not report.ok,
            detail=report.detail,
        )

    def statistics(self) -> CacheStatistics:
        """Return a snapshot of this cache's counters (store-wide evictions/expirations)."""
        evictions = expirations = failures = degraded = 0
        breaker = "closed"
        store_stats = getattr(self._store, "statistics", None)
        if store_stats is not None:
            snapshot = store_stats()
            evictions = getattr(snapshot, "evictions", 0)
            expirations = getattr(snapshot, "expirations", 0)
            breaker = getattr(snapshot, "breaker_state", "closed")
            failures = getattr(snapshot, "failures", 0)
            degraded = getattr(snapshot, "degraded_reads", 0) + getattr(
                snapshot, "degraded_writes", 0
            )
        reads = self._hits + self._misses
        return CacheStatistics(
            hits=self._hits,
            misses=self._misses,
            hit_rate=self._hits / reads if reads else 0.0,
            sets=self._sets,
            deletes=self._deletes,
            evictions=evictions,
            expirations=expirations,
            errors=self._errors,
            loads=self._loads,
            load_errors=self._load_errors,
            load_seconds=self._load_seconds,
            coalesced=self._coalesced,
            stale_served=self._stale_served,
            early_refreshes=self._early_refreshes,
            background_refreshes=self._refreshes,
            lock_waits=self._lock_waits,
            lock_timeouts=self._lock_timeouts,
            breaker_state=breaker,
            backend_failures=failures,
            degraded_operations=degraded,
        )

    def in_flight(self) -> int:
        """Return how many loads are running now (async and sync)."""
        return len(self._shared.flights) + len(self._shared.sync_flights)

    async def wait_background(self) -> None:
        """Wait until background refreshes have finished (tests, graceful shutdown)."""
        await self._shared.tasks.wait_idle()

    async def aclose(self) -> None:
        """Stop background refreshes and close the store (shared by every namespace view)."""
        shared = self._shared
        if shared.closed:
            return
        shared.closed = True
        await shared.tasks.aclose()
        if shared.executor is not None:
            shared.executor.shutdown(wait=False, cancel_futures=True)
        await shared.store.aclose()

    async def __aenter__(self) -> Cache:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
