"""The Cache facade: keys, TTLs, tags, single-flight, stale serving, early refresh, stats."""

from __future__ import annotations

import concurrent.futures
import inspect
import logging
import math
import random
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Final, Literal, TypeVar, overload

import anyio

from .._exceptions import BackendError, ConfigurationError, SerializationError
from ._background import BackgroundTasks
from ._entry import Entry
from ._keys import MAX_KEY_LENGTH, check_key
from ._memory import _LOCK_READS, MemoryStore
from ._singleflight import Flight, SyncFlight
from ._stats import CacheStatistics, HealthReport, WarmReport
from ._store import LeaseStore, Store

__all__ = ["Cache", "LoadPolicy", "check_ttl"]

logger = logging.getLogger("asyncperf.cache")

T = TypeVar("T")
LockMode = Literal["local", "distributed"] | None
Loader = Callable[[], Any]

_LOCK_MODES: Final = ("local", "distributed", None)
_ERROR_LOG_INTERVAL: Final = 10.0
_INF: Final = math.inf
_UNSUBSCRIBED_RECHECK: Final = 0.05

# Outcomes of looking at an entry (see Cache._classify).
_MISS: Final = 0
_FRESH: Final = 1
_FRESH_REFRESH: Final = 2
_STALE: Final = 3


def check_ttl(value: object, name: str = "ttl") -> float | None:
    """Return ``value`` as a TTL in seconds, or ``None``.

    Raises:
        ConfigurationError: Not a number, a bool, zero, negative, NaN or infinite.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(
            f"{name} must be a number of seconds or None, got {type(value).__qualname__}"
        )
    seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigurationError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return seconds


def _check_tags(tags: Iterable[str]) -> tuple[str, ...]:
    if isinstance(tags, str | bytes):
        raise ConfigurationError(
            f"tags must be a list of str, not a single {type(tags).__name__} ({tags!r})"
        )
    checked = tuple(tags)
    for tag in checked:
        if type(tag) is not str or not tag:
            raise ConfigurationError(f"every tag must be a non-empty str, got {tag!r}")
    return checked


class LoadPolicy:
    """How ``get_or_set`` treats one kind of value; validated once, reused per call.

    Args:
        ttl: Freshness in seconds (``None``: the cache's ``default_ttl``).
        stale_ttl: After freshness ends, serve the stale value for this many more seconds
            while one background refresh runs (stale-while-revalidate).
        stale_if_error: Serve the stale value when the loader raises: ``True`` keeps values
            for one extra ``ttl`` for that purpose, a number keeps them that many seconds.
        early_refresh: Probabilistic early refresh (XFetch): ``True`` (beta 1.0), a float
            beta (higher refreshes earlier), or ``False``.
        lock: ``"local"`` single-flight, ``"distributed"`` (also across processes through a
            store that supports locks; otherwise local), or ``None`` (no coalescing).
        store_if: Called with each loaded value; a false answer returns the value without
            storing it.
    """

    __slots__ = ("beta", "grace", "lock", "stale_ttl", "store_if", "ttl")

    def __init__(
        self,
        *,
        ttl: float | None = None,
        stale_ttl: float | None = None,
        stale_if_error: bool | float = False,
        early_refresh: bool | float = True,
        lock: LockMode = "local",
        store_if: Callable[[Any], bool] | None = None,
    ) -> None:
        self.ttl = check_ttl(ttl)
        self.stale_ttl = check_ttl(stale_ttl, "stale_ttl")
        if stale_if_error is True or stale_if_error is False:
            self.grace: float | Literal[True] | None = True if stale_if_error else None
        else:
            self.grace = check_ttl(stale_if_error, "stale_if_error")
        if early_refresh is True:
            self.beta = 1.0
        elif early_refresh is False:
            self.beta = 0.0
        else:
            beta = check_ttl(early_refresh, "early_refresh")
            assert beta is not None
            self.beta = beta
        if lock not in _LOCK_MODES:
            raise ConfigurationError(f"lock must be 'local', 'distributed' or None, got {lock!r}")
        self.lock = lock
        if store_if is not None and not callable(store_if):
            raise ConfigurationError("store_if must be a callable taking the loaded value")
        self.store_if = store_if

    def physical_ttl(self, ttl: float | None) -> tuple[float | None, float | None]:
        """Return ``(fresh_ttl, keep_ttl)``: how long the value is fresh, and kept."""
        if ttl is None:
            return None, None
        extra = self.stale_ttl or 0.0
        if self.grace is True:
            extra = max(extra, ttl)
        elif self.grace is not None:
            extra = max(extra, self.grace)
        return ttl, ttl + extra


class _ErrorLog:
    """Log store failures at most once per interval per (operation, exception type)."""

    __slots__ = ("_last", "_suppressed")

    def __init__(self) -> None:
        self._last: dict[tuple[str, type[BaseException]], float] = {}
        self._suppressed: dict[tuple[str, type[BaseException]], int] = {}

    def report(self, operation: str, exc: BaseException) -> None:
        slot = (operation, type(exc))
        now = time.monotonic()
        last = self._last.get(slot)
        if last is not None and now - last < _ERROR_LOG_INTERVAL:
            self._suppressed[slot] = self._suppressed.get(slot, 0) + 1
            return
        self._last[slot] = now
        suppressed = self._suppressed.pop(slot, 0)
        logger.warning(
            "asyncperf cache %s failed (%s: %s); answered as a miss%s",
            operation,
            type(exc).__name__,
            exc,
            f" ({suppressed} similar failures not logged)" if suppressed else "",
        )


class _Shared:
    """State every namespace view of one cache shares."""

    __slots__ = (
        "closed",
        "default_ttl",
        "error_log",
        "executor",
        "flights",
        "jitter",
        "lock",
        "lock_timeout",
        "store",
        "strict",
        "sync_flights",
        "tasks",
    )

    def __init__(self, store: Store, default_ttl: float | None, jitter: float, strict: bool):
        self.store = store
        self.default_ttl = default_ttl
        self.jitter = jitter
        self.strict = strict
        self.flights: dict[str, Flight] = {}
        self.sync_flights: dict[str, SyncFlight] = {}
        self.lock = threading.Lock()
        self.tasks = BackgroundTasks()
        self.executor: concurrent.futures.ThreadPoolExecutor | None = None
        self.error_log = _ErrorLog()
        self.closed = False
        self.lock_timeout = 10.0


class _Default:
    """The marker for "pick the default" where ``None`` means "none"."""

    def __repr__(self) -> str:
        return "<default>"


_DEFAULT: Final = _Default()
_FALLBACK_ENTRIES: Final = 1000


def _with_fallback(store: Store, fallback: MemoryStore | _Default | None) -> Store:
    """Put a memory fallback behind a bare remote store (Redis), as the default asks."""
    from ._redis import RedisStore

    if not isinstance(store, RedisStore):
        if fallback is not _DEFAULT and fallback is not None:
            raise ConfigurationError(
                "fallback= applies to remote stores such as RedisStore; "
                f"{type(store).__name__} has its own handling of failures"
            )
        return store
    if fallback is None:
        return store
    from ._tiered import FallbackStore

    if isinstance(fallback, _Default):
        fallback = MemoryStore(max_entries=_FALLBACK_ENTRIES)
    return FallbackStore(store, fallback)


class Cache:
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

    __slots__ = (
        "_clock",
        "_coalesced",
        "_data",
        "_default_ttl",
        "_deletes",
        "_early_refreshes",
        "_errors",
        "_hits",
        "_jitter",
        "_load_errors",
        "_load_seconds",
        "_loads",
        "_lock_timeouts",
        "_lock_waits",
        "_mem",
        "_misses",
        "_namespace",
        "_prefix",
        "_random",
        "_refreshes",
        "_sets",
        "_shared",
        "_stale_served",
        "_store",
    )

    def __init__(
        self,
        store: Store | None = None,
        *,
        default_ttl: float | None = None,
        namespace: str = "",
        codec: Any = None,
        strict: bool = False,
        ttl_jitter: float = 0.0,
        fallback: MemoryStore | _Default | None = _DEFAULT,
        lock_timeout: float = 10.0,
    ) -> None:
        if store is None:
            store = MemoryStore()
        if not isinstance(store, Store):
            raise ConfigurationError(
                f"store must implement the asyncperf Store protocol, got {type(store).__name__}"
            )
        store = _with_fallback(store, fallback)
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
        shared = _Shared(store, check_ttl(default_ttl, "default_ttl"), float(ttl_jitter), strict)
        shared.lock_timeout = check_ttl(lock_timeout, "lock_timeout") or 10.0
        self._bind(shared, namespace)

    def _bind(self, shared: _Shared, namespace: str) -> None:
        store = shared.store
        self._shared = shared
        self._store = store
        # The hot path reads a plain MemoryStore directly (no await, no wrapper): that is
        # what keeps a hit within 3x of an `async def` around dict.get.
        self._mem = (
            store
            if isinstance(store, MemoryStore) and store.codec is None and not _LOCK_READS
            else None
        )
        self._default_ttl = shared.default_ttl
        self._jitter = shared.jitter
        # A tiered store's L1 is read inline too; its misses go on to the store.
        front = self._mem if self._mem is not None else getattr(store, "front", None)
        self._data = front._data if front is not None else None
        self._clock = store.clock
        self._namespace = namespace
        self._prefix = f"{namespace}:" if namespace else ""
        self._random = random.random
        self._hits = self._misses = self._sets = self._deletes = self._errors = 0
        self._loads = self._load_errors = self._coalesced = self._stale_served = 0
        self._early_refreshes = self._refreshes = self._lock_waits = self._lock_timeouts = 0
        self._load_seconds = 0.0

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
        **options: Any,
    ) -> Cache:
        """Build a cache with a coherent memory tier (L1) in front of Redis (L2).

        Args:
            l2: A :class:`~asyncperf.RedisStore` (or a ``redis://`` URL for one).
            l1: The memory tier (default ``MemoryStore(max_entries=10_000)``).
            l1_ttl: Longest time an entry stays in L1, in seconds.
            **options: Passed to :class:`Cache` (``default_ttl``, ``namespace``...).
        """
        from ._redis import RedisStore
        from ._tiered import TieredStore

        if isinstance(l2, str):
            l2 = RedisStore(l2)
        store = TieredStore(l1 if l1 is not None else MemoryStore(), l2, l1_ttl=l1_ttl)
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

    # -- keys, TTLs, tags ----------------------------------------------------------------

    def _key(self, key: str) -> str:
        if type(key) is not str or len(key) > MAX_KEY_LENGTH:
            key = check_key(key)
        return self._prefix + key if self._prefix else key

    def _ttl(self, ttl: float | None) -> float | None:
        ttl = self._shared.default_ttl if ttl is None else check_ttl(ttl)
        if ttl is not None and self._shared.jitter:
            ttl = self._jittered(ttl)
        return ttl

    def _jittered(self, ttl: float) -> float:
        return ttl * (1.0 + self._shared.jitter * (2.0 * self._random() - 1.0))

    def _tags(self, tags: Iterable[str]) -> tuple[str, ...]:
        if not tags:
            return ()
        checked = _check_tags(tags)
        if self._prefix:
            prefix = self._prefix
            return tuple([prefix + tag for tag in checked])  # a list first: no generator
        return checked

    # -- failure handling --------------------------------------------------------------------

    def _failed(self, operation: str, exc: Exception) -> None:
        self._errors += 1
        if isinstance(exc, SerializationError):
            logger.debug("asyncperf cache %s: undecodable payload (%s)", operation, exc)
            return
        self._shared.error_log.report(operation, exc)
        if self._shared.strict:
            if isinstance(exc, BackendError):
                raise exc
            raise BackendError(f"cache {operation} failed: {exc}") from exc

    async def _fetch(self, key: str) -> Entry | None:
        try:
            return await self._store.get(key)
        except Exception as exc:
            self._failed("get", exc)
            return None

    async def _write(self, key: str, entry: Entry, ttl: float | None) -> None:
        mem = self._mem
        if mem is not None:
            mem.set_entry(key, entry, ttl)
            self._sets += 1
            return
        try:
            await self._store.set(key, entry, ttl)
        except SerializationError:
            raise
        except Exception as exc:
            self._failed("set", exc)
        else:
            self._sets += 1

    # -- basic operations ----------------------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        """Return the fresh value stored under ``key``, or ``default``.

        ``None`` is a value like any other: pass a sentinel as ``default`` to tell a
        stored ``None`` from a miss.
        """
        if type(key) is not str or len(key) > 200:  # MAX_KEY_LENGTH, a literal on purpose
            key = check_key(key)
        if self._prefix:
            key = self._prefix + key
        data = self._data
        if data is not None:
            # MemoryStore.get_entry inlined: a call costs a quarter of the hit budget.
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
        entry = await self._fetch(key)
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
            if data is not None and not tags and mem._plain:
                # MemoryStore.overwrite inlined, for the same reason as in get().
                entry = data.get(key)
                if entry is not None and not entry.tags:
                    now = self._clock()
                    expires_at = None if ttl is None else now + ttl
                    previous = entry.expires_at
                    entry.value = value
                    entry.expires_at = entry.fresh_until = expires_at
                    entry.load_time = 0.0
                    try:
                        data.move_to_end(key)
                    except KeyError:  # removed meanwhile by another thread: a lost race
                        pass
                    if now >= mem._next_sweep or (
                        expires_at is not None and (previous is None or expires_at < previous)
                    ):
                        mem._rescheduled(key, expires_at, now)
                    self._sets += 1
                    return
            mem.set_value(key, value, ttl, self._tags(tags) if tags else ())
            self._sets += 1
        else:
            await self._write(key, Entry(value, tags=self._tags(tags)), ttl)

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

    async def exists(self, key: str) -> bool:
        """Return whether a fresh value is stored under ``key`` (counts no hit or miss)."""
        key = self._key(key)
        mem = self._mem
        entry = mem.get_entry(key) if mem is not None else await self._fetch(key)
        return entry is not None and entry.is_fresh(self._clock())

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

    def _classify(self, entry: Entry | None, policy: LoadPolicy) -> int:
        """Count and classify a lookup: miss, fresh, fresh-but-refresh-early, or stale."""
        if entry is None:
            self._misses += 1
            return _MISS
        now = self._clock()
        deadline = entry.fresh_until
        if deadline is None or now < deadline:
            self._hits += 1
            if (
                policy.beta
                and deadline is not None
                and entry.load_time > 0.0
                # XFetch: refresh when now - delta * beta * ln(u) >= expiry, u in (0, 1].
                and now - entry.load_time * policy.beta * math.log(1.0 - self._random()) >= deadline
            ):
                self._early_refreshes += 1
                return _FRESH_REFRESH
            return _FRESH
        if policy.stale_ttl is not None and now < deadline + policy.stale_ttl:
            self._hits += 1
            self._stale_served += 1
            return _STALE
        self._misses += 1
        return _MISS

    async def _get_or_load(
        self, key: str, loader: Loader, policy: LoadPolicy, tags: tuple[str, ...]
    ) -> Any:
        mem = self._mem
        flights = self._shared.flights
        while True:
            entry = mem.get_entry(key) if mem is not None else await self._fetch(key)
            outcome = self._classify(entry, policy)
            if outcome != _MISS:
                assert entry is not None
                if outcome != _FRESH:
                    self._refresh_in_background(key, loader, policy, tags)
                return entry.value
            stale = entry if policy.grace is not None else None
            if policy.lock is None:
                return await self._lead(key, Flight(), loader, policy, tags, stale)
            flight = flights.get(key)
            if flight is None:
                flight = flights[key] = Flight()
                if policy.lock == "distributed" and self._leases_usable():
                    return await self._lead_distributed(key, flight, loader, policy, tags, stale)
                return await self._lead(key, flight, loader, policy, tags, stale)
            self._coalesced += 1
            await flight.event.wait()
            if not flight.abandoned:
                if flight.error is not None:
                    raise flight.error
                return flight.value
            # The leader was cancelled: look again (another waiter may have loaded it
            # meanwhile), and if it is still missing, lead.

    async def _lead(
        self,
        key: str,
        flight: Flight,
        loader: Loader,
        policy: LoadPolicy,
        tags: tuple[str, ...],
        stale: Entry | None,
    ) -> Any:
        loaded = False
        try:
            started = self._clock()
            try:
                value = loader()
                if inspect.isawaitable(value):
                    value = await value
            except Exception as exc:
                self._count_load(started, failed=True)
                if stale is not None:
                    self._stale_served += 1
                    logger.debug("asyncperf: loader for %r failed, serving stale", key)
                    flight.resolve(stale.value)
                    return stale.value
                flight.fail(exc)
                raise
            loaded = True
            elapsed = self._count_load(started, failed=False)
            if policy.store_if is None or policy.store_if(value):
                await self._store_loaded(key, value, policy, tags, elapsed)
            flight.resolve(value)
            return value
        except BaseException as exc:
            if loaded and isinstance(exc, SerializationError):
                flight.fail(exc)
            elif loaded:
                flight.resolve(value)  # cancelled while storing: the value is still good
            else:
                flight.abandon()
            raise
        finally:
            flights = self._shared.flights
            if flights.get(key) is flight:
                del flights[key]

    def _leases_usable(self) -> bool:
        store: Any = self._store
        return isinstance(store, LeaseStore) and store.available()

    async def _lead_distributed(
        self,
        key: str,
        flight: Flight,
        loader: Loader,
        policy: LoadPolicy,
        tags: tuple[str, ...],
        stale: Entry | None,
    ) -> Any:
        """Lead the load across processes: one holder of a Redis lease loads, the others
        wait for its release message (no polling) and read what it stored.

        A lease whose holder died expires after ``lock_timeout`` and the next waiter
        takes it; a wait past twice that, or a store that fails, runs the loader here.
        """
        store: Any = self._store
        lease_ttl = self._shared.lock_timeout
        token = uuid.uuid4().hex
        deadline = time.monotonic() + 2 * lease_ttl

        async def fresh_value() -> bool:
            entry = await self._fetch(key)
            if entry is not None and entry.is_fresh(self._clock()):
                found.append(entry.value)
                return True
            return False

        found: list[Any] = []
        try:
            while True:
                try:
                    held_for = await store.try_lease(key, token, lease_ttl)
                except Exception as exc:
                    self._failed("lease", exc)
                    break
                if held_for == 0.0:
                    try:
                        return await self._lead(key, flight, loader, policy, tags, stale)
                    finally:
                        with anyio.CancelScope(shield=True):
                            try:
                                await store.release_lease(key, token)
                            except Exception as exc:  # it expires on its own
                                self._failed("lease release", exc)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._lock_timeouts += 1
                    break
                wait = min(remaining, held_for + 0.05)
                if not await store.ensure_listener():
                    # Not subscribed (yet): a release message could be missed, so look
                    # again soon rather than sleeping out the holder's whole lease.
                    wait = min(wait, _UNSUBSCRIBED_RECHECK)
                await store.wait_for_lease(key, wait, fresh_value)
                if found or await fresh_value():
                    self._lock_waits += 1
                    flight.resolve(found[0])
                    return found[0]
        except BaseException:
            flight.abandon()
            raise
        finally:
            if flight.event.is_set() and self._shared.flights.get(key) is flight:
                del self._shared.flights[key]
        return await self._lead(key, flight, loader, policy, tags, stale)

    def _count_load(self, started: float, *, failed: bool) -> float:
        elapsed = max(self._clock() - started, 0.0)
        self._loads += 1
        self._load_seconds += elapsed
        if failed:
            self._load_errors += 1
        return elapsed

    def _loaded_entry(
        self, value: Any, policy: LoadPolicy, tags: tuple[str, ...], elapsed: float
    ) -> tuple[Entry, float | None]:
        fresh, keep = policy.physical_ttl(self._ttl(policy.ttl))
        entry = Entry(value, load_time=elapsed, tags=tags)
        if keep is not None and fresh is not None and keep > fresh:
            entry.fresh_until = self._clock() + fresh
        return entry, keep

    async def _store_loaded(
        self, key: str, value: Any, policy: LoadPolicy, tags: tuple[str, ...], elapsed: float
    ) -> None:
        entry, keep = self._loaded_entry(value, policy, tags, elapsed)
        await self._write(key, entry, keep)

    def _refresh_in_background(
        self, key: str, loader: Loader, policy: LoadPolicy, tags: tuple[str, ...]
    ) -> None:
        flights = self._shared.flights
        if key in flights:
            return  # a load is already running; it will store the fresh value
        # Registered before the task starts so that a burst of hits spawns one refresh.
        flight = flights[key] = Flight()

        async def refresh() -> None:
            self._refreshes += 1
            try:
                await self._lead(key, flight, loader, policy, tags, None)
            except Exception as exc:
                logger.warning("asyncperf: background refresh of %r failed: %r", key, exc)

        if not self._shared.tasks.spawn(refresh, name=f"asyncperf-refresh:{key}"):
            del flights[key]

    # -- the sync path (decorated sync functions on a MemoryStore) ----------------------

    def _sync_store(self) -> MemoryStore:
        store = self._store
        if not isinstance(store, MemoryStore):
            raise ConfigurationError(
                "a sync function can only be cached in a MemoryStore-backed cache; "
                f"this cache uses {type(store).__name__} (make the function async, or pass "
                "cache=Cache(MemoryStore()))"
            )
        return store

    def get_or_set_sync(
        self, key: str, loader: Callable[[], T], *, policy: LoadPolicy, tags: Iterable[str] = ()
    ) -> T:
        """Blocking :meth:`get_or_set` for sync code (MemoryStore only; single-flight
        across threads). Used by ``@cached`` on plain functions.
        """
        result: T = self._get_or_load_sync(self._key(key), loader, policy, self._tags(tags))
        return result

    def _get_or_load_sync(
        self, key: str, loader: Loader, policy: LoadPolicy, tags: tuple[str, ...]
    ) -> Any:
        store = self._sync_store()
        shared = self._shared
        while True:
            try:
                entry = store.get_entry(key)
            except SerializationError as exc:
                self._failed("get", exc)
                entry = None
            outcome = self._classify(entry, policy)
            if outcome != _MISS:
                assert entry is not None
                if outcome != _FRESH:
                    self._refresh_in_thread(key, loader, policy, tags)
                return entry.value
            stale = entry if policy.grace is not None else None
            if policy.lock is None:
                return self._lead_sync(key, SyncFlight(), loader, policy, tags, stale)
            with shared.lock:
                flight = shared.sync_flights.get(key)
                leader = flight is None
                if flight is None:
                    flight = shared.sync_flights[key] = SyncFlight()
            if leader:
                return self._lead_sync(key, flight, loader, policy, tags, stale)
            self._coalesced += 1
            flight.event.wait()
            if not flight.abandoned:
                if flight.error is not None:
                    raise flight.error
                return flight.value

    def _lead_sync(
        self,
        key: str,
        flight: SyncFlight,
        loader: Loader,
        policy: LoadPolicy,
        tags: tuple[str, ...],
        stale: Entry | None,
    ) -> Any:
        store = self._sync_store()
        try:
            started = self._clock()
            try:
                value = loader()
            except Exception as exc:
                self._count_load(started, failed=True)
                if stale is not None:
                    self._stale_served += 1
                    flight.resolve(stale.value)
                    return stale.value
                flight.fail(exc)
                raise
            elapsed = self._count_load(started, failed=False)
            if policy.store_if is None or policy.store_if(value):
                entry, keep = self._loaded_entry(value, policy, tags, elapsed)
                try:
                    store.set_entry(key, entry, keep)
                except SerializationError as exc:
                    flight.fail(exc)
                    raise
                self._sets += 1
            flight.resolve(value)
            return value
        except BaseException:
            flight.abandon()  # a no-op when resolved or failed above
            raise
        finally:
            with self._shared.lock:
                if self._shared.sync_flights.get(key) is flight:
                    del self._shared.sync_flights[key]

    def _refresh_sync(
        self, key: str, loader: Loader, policy: LoadPolicy, tags: tuple[str, ...]
    ) -> Any:
        flight = SyncFlight()
        with self._shared.lock:
            running = self._shared.sync_flights.setdefault(key, flight)
        if running is not flight:  # a load is running: its value is as fresh as ours
            running.event.wait()
            if not running.abandoned:
                if running.error is not None:
                    raise running.error
                return running.value
        return self._lead_sync(key, flight, loader, policy, tags, None)

    def _refresh_in_thread(
        self, key: str, loader: Loader, policy: LoadPolicy, tags: tuple[str, ...]
    ) -> None:
        shared = self._shared
        with shared.lock:
            if key in shared.sync_flights or shared.closed:
                return
            flight = shared.sync_flights[key] = SyncFlight()
            if shared.executor is None:
                shared.executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=2, thread_name_prefix="asyncperf-refresh"
                )
            executor = shared.executor

        def refresh() -> None:
            self._refreshes += 1
            try:
                self._lead_sync(key, flight, loader, policy, tags, None)
            except Exception as exc:
                logger.warning("asyncperf: background refresh of %r failed: %r", key, exc)

        executor.submit(refresh)

    # -- warming, health, statistics, lifecycle ------------------------------------------

    async def warm(
        self,
        loaders: Mapping[str, Callable[[], Any]],
        *,
        concurrency: int = 10,
        ttl: float | None = None,
        tags: Iterable[str] = (),
        force: bool = False,
        progress: Callable[[int, int], Any] | None = None,
    ) -> WarmReport:
        """Pre-fill keys by running their loaders, at most ``concurrency`` at a time.

        Keys already fresh are skipped unless ``force=True``. A failing loader is
        recorded in the report and does not stop the others. ``progress(done, total)``
        is called after each key (it may be a coroutine function).

        Raises:
            ConfigurationError: ``concurrency`` is not a positive int, or a bad option.
        """
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(f"concurrency must be a positive int, got {concurrency!r}")
        policy = LoadPolicy(ttl=ttl, early_refresh=False)
        checked_tags = self._tags(tags)
        pending = iter(list(loaders.items()))
        total = len(loaders)
        loaded = skipped = done = 0
        failed: dict[str, BaseException] = {}
        started = time.perf_counter()

        async def worker() -> None:
            nonlocal loaded, skipped, done
            for key, loader in pending:
                full = self._key(key)
                try:
                    if not force and await self.exists(key):
                        skipped += 1
                    else:
                        await self._load_now(full, loader, policy, checked_tags)
                        loaded += 1
                except Exception as exc:
                    failed[key] = exc
                done += 1
                if progress is not None:
                    result = progress(done, total)
                    if inspect.isawaitable(result):
                        await result

        async with anyio.create_task_group() as group:
            for _ in range(min(concurrency, max(total, 1))):
                group.start_soon(worker)
        return WarmReport(
            loaded=loaded, skipped=skipped, failed=failed, seconds=time.perf_counter() - started
        )

    async def _load_now(
        self, key: str, loader: Loader, policy: LoadPolicy, tags: tuple[str, ...]
    ) -> Any:
        """Load and store ``key`` regardless of what is cached (joins a running load)."""
        flights = self._shared.flights
        flight = flights.get(key)
        if flight is not None:
            await flight.event.wait()
            if not flight.abandoned:
                if flight.error is not None:
                    raise flight.error
                return flight.value
        flight = flights[key] = Flight()
        return await self._lead(key, flight, loader, policy, tags, None)

    async def refresh(
        self,
        key: str,
        loader: Callable[[], Any],
        *,
        ttl: float | None = None,
        tags: Iterable[str] = (),
    ) -> Any:
        """Run ``loader`` now and store its value, whatever is cached; return the value."""
        policy = LoadPolicy(ttl=ttl)
        return await self._load_now(self._key(key), loader, policy, self._tags(tags))

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
