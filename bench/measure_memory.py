"""Measure what a MemoryStore entry really costs, and whether ``max_bytes`` holds.

Two probes, both with :mod:`tracemalloc` (which reports the bytes Python asked the allocator
for; pymalloc rounds small blocks up to 16 bytes, so RSS can be a little higher):

``entry_overhead``
    Fills a store with ``count`` entries whose keys and int values were created *before*
    tracing starts, so the traced growth is only what the store adds per entry: the
    ``Entry`` object, its OrderedDict slot and node, the expiry float, the size int and the
    key's slot in the expiry wheel. That is the quantity ``ENTRY_OVERHEAD`` stands for.
    The store accounts the key string itself with ``sys.getsizeof(key)``, so
    ``suggested_constant`` is that per-entry figure.

``byte_cap_workload``
    Random keys, random values (strings, lists and dicts of random sizes), random TTLs
    (some none), gets, deletes and an occasional value larger than the cap, on a fake
    clock that moves so entries expire and the sweep runs. After every operation it checks
    ``statistics().bytes <= max_bytes``; at checkpoints it compares the memory the process
    really holds for the store (tracemalloc growth) with the bytes the store accounts.

Run ``python -m bench.measure_memory`` from the repository root for a printed report.
"""

from __future__ import annotations

import gc
import random
import statistics
import sys
import tracemalloc
from dataclasses import dataclass
from typing import Any

from asyncperf.cache import MemoryStore
from asyncperf.cache._memory import ENTRY_OVERHEAD

__all__ = [
    "ENTRY_OVERHEAD",
    "Overhead",
    "Workload",
    "byte_cap_workload",
    "entry_overhead",
    "fill",
    "main",
]

STR_HEADER = sys.getsizeof("") - len("")  # bytes of an empty ASCII str: 49 on CPython 3.11


@dataclass(frozen=True)
class Overhead:
    """Bytes per entry measured by :func:`entry_overhead`."""

    count: int
    ttl: float | None
    max_bytes: int | None
    per_entry: float  # traced growth per entry: what the store adds beyond key and value
    key_size: float  # sys.getsizeof of a key (owned by the store once stored)
    key_len: float  # len(key), for reference
    value_size: int  # sys.getsizeof of a value
    accounted_per_entry: float  # statistics().bytes / count (0 without max_bytes)

    @property
    def real_per_entry(self) -> float:
        """Bytes one entry holds when the store owns its key and value."""
        return self.per_entry + self.key_size + self.value_size

    @property
    def suggested_constant(self) -> int:
        """``ENTRY_OVERHEAD`` that makes the accounting match (the store accounts the key
        string with ``sys.getsizeof``, so the constant is the per-entry figure itself)."""
        return round(self.per_entry)


def fill(store: MemoryStore, keys: list[str], values: list[int], ttl: float | None) -> None:
    """Store ``values[i]`` under ``keys[i]``, the way ``Cache.set`` does."""
    set_value = store.set_value
    for key, value in zip(keys, values, strict=True):
        set_value(key, value, ttl)


def entry_overhead(
    count: int = 100_000, *, ttl: float | None = 300.0, max_bytes: int | None = 2**40
) -> Overhead:
    """Measure the bytes a store adds per entry of a small int value (see the module doc).

    ``max_bytes`` defaults to a cap that never binds, so that sizes are accounted (the
    only case where ``ENTRY_OVERHEAD`` matters; it also stores one size int per entry).
    """
    keys = [f"user:{i:08d}" for i in range(count)]
    values = [1_000_000 + i for i in range(count)]  # distinct ints, no small-int sharing
    store = MemoryStore(max_entries=count, max_bytes=max_bytes)
    gc.collect()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fill(store, keys, values, ttl)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        if not was_tracing:
            tracemalloc.stop()
    assert len(store) == count
    return Overhead(
        count=count,
        ttl=ttl,
        max_bytes=max_bytes,
        per_entry=grown / count,
        key_size=statistics.fmean(sys.getsizeof(key) for key in keys),
        key_len=statistics.fmean(len(key) for key in keys),
        value_size=sys.getsizeof(values[0]),
        accounted_per_entry=store.statistics().bytes / count,
    )


class _FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Workload:
    """What :func:`byte_cap_workload` saw."""

    ops: int
    max_bytes: int
    max_accounted: int  # the most bytes the store ever accounted
    entries_at_end: int
    evictions: int
    expirations: int
    rejected: int
    ratios: list[float]  # real (traced) bytes / accounted bytes, at each full checkpoint
    max_real: int  # the most traced bytes seen at a checkpoint

    @property
    def ratio_median(self) -> float:
        return statistics.median(self.ratios) if self.ratios else float("nan")


def _random_value(rng: random.Random, max_bytes: int) -> Any:
    kind = rng.random()
    if kind < 0.002:
        return "x" * (max_bytes + 1)  # alone larger than the cap: must be rejected
    if kind < 0.35:
        return "v" * rng.randint(0, 2_000)
    if kind < 0.6:
        return [rng.getrandbits(40) for _ in range(rng.randint(0, 120))]
    if kind < 0.85:
        return {f"field{i}": rng.random() for i in range(rng.randint(0, 30))}
    return {
        "id": rng.getrandbits(40),
        "name": "n" * rng.randint(1, 80),
        "tags": [f"t{rng.randint(0, 10**6)}" for _ in range(rng.randint(0, 10))],
        "scores": {f"s{i}": rng.getrandbits(20) for i in range(rng.randint(0, 10))},
    }


def byte_cap_workload(
    ops: int = 20_000,
    *,
    max_bytes: int = 2 * 2**20,
    key_space: int = 5_000,
    seed: int = 20_24,
    checkpoints: int = 20,
) -> Workload:
    """Run a random workload against a byte-capped store; raise if the cap is ever exceeded.

    Raises:
        AssertionError: ``statistics().bytes`` went over ``max_bytes``, or the accounted
            total drifted from the sum of the entries' sizes.
    """
    rng = random.Random(seed)
    clock = _FakeClock()
    gc.collect()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        store = MemoryStore(max_entries=10 * key_space, max_bytes=max_bytes, clock=clock)
        every = max(ops // checkpoints, 1)
        ratios: list[float] = []
        max_accounted = max_real = 0
        for op in range(1, ops + 1):
            clock.now += rng.uniform(0.0, 0.01)
            key = f"item:{rng.randrange(key_space)}"
            action = rng.random()
            if action < 0.7:
                ttl = None if rng.random() < 0.2 else rng.uniform(0.05, 30.0)
                store.set_value(key, _random_value(rng, max_bytes), ttl)
            elif action < 0.95:
                store.get_entry(key)
            else:
                store.delete_entry(key)
            accounted = store.statistics().bytes
            assert accounted <= max_bytes, f"op {op}: {accounted} bytes > max_bytes {max_bytes}"
            max_accounted = max(max_accounted, accounted)
            if op % every == 0:
                entries = store._data.values()
                assert accounted == sum(entry.size for entry in entries), "accounting drifted"
                real = tracemalloc.get_traced_memory()[0] - baseline
                max_real = max(max_real, real)
                if accounted >= max_bytes // 2:  # skip the fill-up: fixed costs dominate
                    ratios.append(real / accounted)
        final = store.statistics()
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return Workload(
        ops=ops,
        max_bytes=max_bytes,
        max_accounted=max_accounted,
        entries_at_end=final.entries,
        evictions=final.evictions,
        expirations=final.expirations,
        rejected=final.rejected,
        ratios=ratios,
        max_real=max_real,
    )


def describe_overhead(result: Overhead) -> str:
    """One line for a report."""
    return (
        f"MemoryStore per entry ({result.count:,} int entries, ttl={result.ttl}, "
        f"max_bytes={'set' if result.max_bytes else 'None'}): "
        f"{result.per_entry:.1f} B beyond key+value (tracemalloc); key str "
        f"{result.key_size:.0f} B of which len(key)={result.key_len:.0f} is accounted; "
        f"real/accounted per entry {result.real_per_entry:.0f}/{result.accounted_per_entry:.0f} B"
        f" -> ENTRY_OVERHEAD now {ENTRY_OVERHEAD}, suggested {result.suggested_constant}"
    )


def describe_workload(result: Workload) -> str:
    """One line for a report."""
    ratios = result.ratios
    spread = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "n/a"
    return (
        f"byte cap: {result.ops:,} random ops, max_bytes={result.max_bytes:,}: accounted "
        f"never above the cap (max {result.max_accounted:,}); evictions {result.evictions:,}, "
        f"expirations {result.expirations:,}, rejected {result.rejected}; real (tracemalloc) / "
        f"accounted = {result.ratio_median:.2f} median ({spread}); "
        f"max real {result.max_real:,} = {result.max_real / result.max_bytes:.2f}x max_bytes"
    )


def main() -> None:
    """Print the per-entry overhead at a few sizes and run the byte-cap workload."""
    print(f"CPython {sys.version.split()[0]}, ENTRY_OVERHEAD = {ENTRY_OVERHEAD}")
    for count in (10_000, 50_000, 100_000, 200_000):
        print(describe_overhead(entry_overhead(count)))
    for ttl, max_bytes in ((300.0, None), (None, None)):
        result = entry_overhead(100_000, ttl=ttl, max_bytes=max_bytes)
        print(f"  without a byte cap, ttl={ttl}: {result.per_entry:.1f} B beyond key+value")
    print(describe_workload(byte_cap_workload()))


if __name__ == "__main__":
    main()
