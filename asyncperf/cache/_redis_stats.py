"""What a RedisStore reports: its counters, and a summary of the server's INFO."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["RedisInfo", "RedisStoreStatistics", "summarize_info"]


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
        failovers: Sentinel master switches seen (each closed every connection to the
            old master at once).
    """

    breaker_state: str
    failures: int
    rejected: int
    batches: int
    batched_keys: int
    decode_errors: int
    invalidations_sent: int
    invalidations_received: int
    failovers: int = 0


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


def summarize_info(nodes: list[dict[str, Any]]) -> RedisInfo:
    """Sum ``INFO`` of one server, or of every primary of a cluster, into a RedisInfo."""

    def total(name: str) -> int:
        return sum(int(node.get(name, 0) or 0) for node in nodes)

    keys = 0
    for node in nodes:
        for field, value in node.items():
            if field.startswith("db") and isinstance(value, dict):
                keys += int(value.get("keys", 0))
    hits, misses = total("keyspace_hits"), total("keyspace_misses")
    first = nodes[0]
    return RedisInfo(
        version=str(first.get("redis_version", "?")),
        used_memory=total("used_memory"),
        maxmemory=total("maxmemory"),
        maxmemory_policy=str(first.get("maxmemory_policy", "?")),
        keys=keys,
        evicted_keys=total("evicted_keys"),
        expired_keys=total("expired_keys"),
        connected_clients=total("connected_clients"),
        hit_rate=hits / (hits + misses) if hits + misses else 0.0,
    )
