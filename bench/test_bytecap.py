"""Memory per MemoryStore entry, and the ``max_bytes`` bound under a random workload.

The timings here (a fill of many entries, one pass of the workload) are context; the
numbers that matter are in ``extra_info`` and in the session summary: the measured bytes
per entry (what ``ENTRY_OVERHEAD`` in ``asyncperf/cache/_memory.py`` should be) and how
the bytes the process really holds compare with the bytes the store accounts. See
``bench/measure_memory.py`` for the method.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

import pytest

from asyncperf.cache import MemoryStore
from bench._data import QUICK
from bench.measure_memory import (
    ENTRY_OVERHEAD,
    byte_cap_workload,
    describe_overhead,
    describe_workload,
    entry_overhead,
    fill,
)

if TYPE_CHECKING:
    from bench.conftest import AsyncBench

GROUP = "memory-bytes"
ENTRIES = 20_000 if QUICK else 100_000
WORKLOAD_OPS = 3_000 if QUICK else 20_000
MAX_BYTES = 2 * 2**20


@pytest.mark.benchmark(group=GROUP)
def test_entry_overhead(abench: AsyncBench) -> None:
    keys = [f"user:{i:08d}" for i in range(ENTRIES)]
    values = [1_000_000 + i for i in range(ENTRIES)]

    def setup() -> tuple[tuple[MemoryStore], dict[str, object]]:
        return (MemoryStore(max_entries=ENTRIES, max_bytes=2**40),), {}

    def fill_store(store: MemoryStore) -> None:
        fill(store, keys, values, 300.0)

    abench.benchmark.pedantic(fill_store, setup=setup, rounds=1 if QUICK else 3, iterations=1)

    result = entry_overhead(ENTRIES)
    # The accounting itself is exact: payload + sys.getsizeof(key) + ENTRY_OVERHEAD per entry.
    assert result.accounted_per_entry == result.value_size + result.key_size + ENTRY_OVERHEAD
    assert result.per_entry > 0
    abench.benchmark.extra_info.update(
        entries=ENTRIES,
        bytes_per_entry_beyond_key_and_value=round(result.per_entry, 1),
        key_size=result.key_size,
        key_len=result.key_len,
        value_size=result.value_size,
        real_bytes_per_entry=round(result.real_per_entry, 1),
        accounted_bytes_per_entry=result.accounted_per_entry,
        entry_overhead_constant=ENTRY_OVERHEAD,
        suggested_entry_overhead=result.suggested_constant,
    )
    if abench.enabled:
        per_entry_ns = statistics.median(abench.benchmark.stats.stats.data) / ENTRIES * 1e9
        abench.record(
            "MemoryStore.set_value, ttl=300, max_bytes set (fill of new keys)",
            per_entry_ns,
            "ns/op",
            note=f"{result.per_entry:.0f} B/entry beyond key+value",
        )
    abench.note(describe_overhead(result))


@pytest.mark.benchmark(group=GROUP)
def test_byte_cap_random_workload(abench: AsyncBench) -> None:
    results = []

    def run() -> None:
        results.append(byte_cap_workload(WORKLOAD_OPS, max_bytes=MAX_BYTES))

    abench.benchmark.pedantic(run, rounds=1, iterations=1)

    result = results[-1]
    assert result.max_accounted <= MAX_BYTES  # also checked after every single operation
    assert result.evictions > 0, "the workload should exceed the cap"
    assert result.expirations > 0, "the workload should outlive some TTLs"
    assert result.rejected > 0, "the workload includes values larger than the cap"
    abench.benchmark.extra_info.update(
        ops=result.ops,
        max_bytes=result.max_bytes,
        max_accounted=result.max_accounted,
        evictions=result.evictions,
        expirations=result.expirations,
        rejected=result.rejected,
        real_over_accounted_median=round(result.ratio_median, 3),
        real_over_accounted=[round(ratio, 3) for ratio in result.ratios],
        max_real_over_max_bytes=round(result.max_real / result.max_bytes, 3),
    )
    abench.note(describe_workload(result))
