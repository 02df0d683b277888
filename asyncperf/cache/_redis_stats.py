"""What a RedisStore reports: its counters, and a summary of the server's INFO."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RedisInfo", "RedisStoreStatistics"]


@dataclass(frozen=True, slots=True)
class RedisStoreStatistics:
    """Counters of one RedisStore.

    Attributes:
        breaker_state: The breaker's state.
        failures: Operations that failed or timed out.
        rejected: Operations refused at once because the breaker was open.
        batches: Round trips that carried batched gets or sets.
        batched_keys: Keys carried by those round trips.
        decode_errors: Payloads that were not asyncperf's or were corrupt.
        invalidations_sent: Invalidation messages published (tiered mode).
        invalidations_received: Invalidation messages from other processes applied.
    """

    breaker_state: str
    failures: int
    rejected: int
    batches: int
    batched_keys: int
    decode_errors: int
    invalidations_sent: int
    invalidations_received: int


@dataclass(frozen=True, slots=True)
class RedisInfo:
    """A summary of ``INFO`` for dashboards and health pages.

    Attributes:
        version: The server's version.
        used_memory: Bytes of memory Redis uses.
        maxmemory: The configured cap (0: none).
        maxmemory_policy: What Redis evicts when full.
        keys: Keys in the selected database (all nodes, for a cluster).
        evicted_keys: Keys Redis evicted for memory since it started.
        expired_keys: Keys that expired since it started.
        connected_clients: Clients connected now.
        hit_rate: Keyspace hits / (hits + misses) since start, server-wide.
    """

    version: str
    used_memory: int
    maxmemory: int
    maxmemory_policy: str
    keys: int
    evicted_keys: int
    expired_keys: int
    connected_clients: int
    hit_rate: float
