"""Counters a cache keeps, and the frozen snapshot it hands out."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["CacheStatistics", "HealthReport", "WarmReport"]


@dataclass(frozen=True, slots=True)
class CacheStatistics:
    """A snapshot of one cache's counters (one namespace view counts on its own).

    Attributes:
        hits: Reads answered with a fresh value.
        misses: Reads that found nothing usable (absent, expired, corrupt, store failed).
        hit_rate: ``hits / (hits + misses)``, 0.0 before any read.
        sets: Values written (by ``set``, ``set_many`` or a loader).
        deletes: Keys removed by ``delete``/``delete_many``.
        evictions: Entries the store dropped for its caps (store-wide).
        expirations: Entries the store dropped at their TTL (store-wide).
        errors: Store failures and undecodable payloads, each answered as a miss.
        loads: Loader calls that completed (successfully or not).
        load_errors: Loader calls that raised.
        load_seconds: Total seconds spent in loaders.
        coalesced: Callers that waited for another caller's load instead of loading.
        stale_served: Stale values served (stale-while-revalidate or stale-if-error).
        early_refreshes: Refreshes started early by probabilistic early expiry.
        background_refreshes: Refreshes run in the background (stale or early).
        lock_waits: Distributed single-flight waits answered by another process's load.
        lock_timeouts: Distributed waits that gave up and ran the loader here.
        breaker_state: ``"closed"`` for stores without a breaker.
        backend_failures: Remote store operations that failed (store-wide); each was
            answered from memory or as a miss.
        degraded_operations: Reads and writes served from memory while the remote store
            was unavailable (store-wide).
    """

    hits: int
    misses: int
    hit_rate: float
    sets: int
    deletes: int
    evictions: int
    expirations: int
    errors: int
    loads: int
    load_errors: int
    load_seconds: float
    coalesced: int
    stale_served: int
    early_refreshes: int
    background_refreshes: int
    lock_waits: int
    lock_timeouts: int
    breaker_state: str
    backend_failures: int
    degraded_operations: int

    def to_dict(self) -> dict[str, Any]:
        """Return the snapshot as a plain dict (for JSON)."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class HealthReport:
    """What :meth:`Cache.health` found.

    Attributes:
        ok: The store answered and is in normal service (False while a remote store is
            unavailable or recovering, even if a fallback keeps the cache working).
        backend: The store's backend name.
        breaker_state: ``"closed"``, ``"open"`` or ``"half-open"``.
        latency: Seconds the probe took, when one was made.
        degraded: The cache is serving from a fallback because the store is unavailable.
        detail: Why it is not ok, in words.
    """

    ok: bool
    backend: str
    breaker_state: str = "closed"
    latency: float | None = None
    degraded: bool = False
    detail: str = ""


@dataclass(frozen=True, slots=True)
class WarmReport:
    """What :meth:`Cache.warm` did.

    Attributes:
        loaded: Keys whose loader ran and whose value was stored.
        skipped: Keys already fresh in the cache (left alone unless ``force=True``).
        failed: Keys whose loader raised, with the exception.
        seconds: Wall time of the whole warm-up.
    """

    loaded: int
    skipped: int
    failed: dict[str, BaseException]
    seconds: float
