"""Get-or-load for threads: decorated sync functions on a MemoryStore, refreshed in a pool."""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from .._exceptions import ConfigurationError, SerializationError
from ._entry import Entry
from ._loading import FRESH, MISS, Loading
from ._memory import MemoryStore
from ._policy import Loader, LoadPolicy
from ._singleflight import ABANDONED, SyncFlight

__all__ = ["SyncLoading"]

logger = logging.getLogger("asyncperf.cache")

T = TypeVar("T")


class SyncLoading(Loading):
    """The threaded get-or-load half of :class:`~asyncperf.Cache` (a mixin of it)."""

    __slots__ = ()

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
            if outcome != MISS:
                assert entry is not None
                if outcome != FRESH:
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
            ending = flight.outcome()
            if ending is not ABANDONED:
                return ending

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
            ending = running.outcome()
            if ending is not ABANDONED:
                return ending
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
