"""Get-or-load for coroutines: load policy, single-flight leading, background refresh."""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any, Final

import anyio

from .._exceptions import SerializationError
from ._base import CacheBase
from ._entry import Entry
from ._lease import lead_distributed
from ._policy import Loader, LoadPolicy, check_positive_int
from ._singleflight import ABANDONED, Flight
from ._stats import WarmReport
from ._store import LeaseStore

__all__ = ["FRESH", "MISS", "Loading"]

logger = logging.getLogger("asyncperf.cache")

# Outcomes of looking at an entry (see Loading._classify).
MISS: Final = 0
FRESH: Final = 1
FRESH_REFRESH: Final = 2
STALE: Final = 3


class Loading(CacheBase):
    """The async get-or-load half of :class:`~asyncperf.Cache` (a mixin of it)."""

    __slots__ = ()

    def _classify(self, entry: Entry | None, policy: LoadPolicy) -> int:
        """Count and classify a lookup: miss, fresh, fresh-but-refresh-early, or stale."""
        if entry is None:
            self._misses += 1
            return MISS
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
                return FRESH_REFRESH
            return FRESH
        if policy.stale_ttl is not None and now < deadline + policy.stale_ttl:
            self._hits += 1
            self._stale_served += 1
            return STALE
        self._misses += 1
        return MISS

    async def _get_or_load(
        self, key: str, loader: Loader, policy: LoadPolicy, tags: tuple[str, ...]
    ) -> Any:
        mem = self._mem
        flights = self._shared.flights
        while True:
            entry = mem.get_entry(key) if mem is not None else await self._fetch(key)
            outcome = self._classify(entry, policy)
            if outcome != MISS:
                assert entry is not None
                if outcome != FRESH:
                    self._refresh_in_background(key, loader, policy, tags)
                return entry.value
            stale = entry if policy.grace is not None else None
            if policy.lock is None:
                return await self._lead(key, Flight(), loader, policy, tags, stale)
            flight = flights.get(key)
            if flight is None:
                flight = flights[key] = Flight()
                if policy.lock == "distributed" and self._leases_usable():
                    lead = partial(self._lead, key, flight, loader, policy, tags, stale)
                    return await lead_distributed(self, key, flight, lead)
                return await self._lead(key, flight, loader, policy, tags, stale)
            self._coalesced += 1
            ending = await flight.outcome()
            if ending is not ABANDONED:
                return ending
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

    # -- warming and forced loads --------------------------------------------------

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
        check_positive_int(concurrency, "concurrency")
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
            ending = await flight.outcome()
            if ending is not ABANDONED:
                return ending
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
