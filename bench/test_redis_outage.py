"""A hung Redis: connections are accepted, nothing is ever answered.

The "server" is an ``asyncio.start_server`` on loopback whose handler just waits (what a
SIGSTOPped Redis or a stuck host looks like: the kernel completes the TCP handshake, every
reply times out). asyncperf runs as ``Cache.from_url("redis://...?op_timeout=0.1")``,
its defaults otherwise (memory fallback, breaker opening after 3 failures, a probe after
1 s).

Groups:
    redis-hung-first-read (ms per read): asyncperf's first get on a fresh cache (target:
        within about ``op_timeout``, 100 ms), the read that probes once the breaker's
        ``recovery_time`` (1 s) has passed, and aiocache / cashews at their defaults on the
        same server. Peers take 1-5 s per read, so they get only ``PEER_READS`` reads
        each, on one client (showing that no peer remembers the failure), under an
        overall timeout.
    redis-hung-open (ns per read): once the breaker is open, reads answered by the memory
        fallback (keys written during the outage) and, without a fallback, misses;
        against a plain ``Cache(MemoryStore()).get`` hit. Target: at most +20 µs over it.

Behaviour asserted: the first read is a miss well within 1 s (not the 5 s socket timeout),
the breaker opens, and reads while open answer from memory.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import pytest
from aiocache import RedisCache
from cashews import Cache as CashewsCache

from asyncperf.cache import Cache, MemoryStore, RedisStore
from bench._data import KEYS, QUICK, VALUES
from bench._redis_support import HungServer, close_quietly

if TYPE_CHECKING:
    from bench.conftest import AsyncBench

pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning")

FIRST = "redis-hung-first-read"
OPEN = "redis-hung-open"
OP_TIMEOUT = 0.1
FIRST_ROUNDS = 2 if QUICK else 5
PEER_READS = 1 if QUICK else 2
PEER_DEADLINE = 12.0  # seconds, per peer read: far above their 1 s / 5 s timeouts
TTL = 300


def _url(server: HungServer) -> str:
    return f"{server.url}?op_timeout={OP_TIMEOUT}"


async def _open_breaker(cache: Cache) -> list[float]:
    """Read until the breaker opens; return each read's latency in ms."""
    store: Any = cache.store
    latencies = []
    for _ in range(10):
        started = time.perf_counter()
        assert await cache.get("missing") is None
        latencies.append((time.perf_counter() - started) * 1000)
        if store.breaker.state == "open":
            return latencies
    raise AssertionError(f"the breaker never opened: {store.breaker!r}")


def _record_ms(abench: AsyncBench, label: str, note: str = "") -> float | None:
    if not abench.enabled:
        return None
    data = abench.benchmark.stats.stats.data
    median_ms = statistics.median(data) * 1000
    abench.benchmark.extra_info.update(
        label=label, ms_per_read=round(median_ms, 2), ms_each=[round(s * 1000, 2) for s in data]
    )
    abench.record(label, median_ms, "ms", note=note)
    return median_ms


# -- one read against the hung server ----------------------------------------------------------


@pytest.mark.benchmark(group=FIRST)
def test_first_read_asyncperf(abench: AsyncBench) -> None:
    server = abench.run(HungServer().start())
    caches: list[Cache] = []
    results: list[Any] = []
    seconds: list[float] = []  # timed here too: --benchmark-disable keeps no stats

    def setup() -> tuple[tuple[Cache], dict[str, Any]]:
        cache = Cache.from_url(_url(server))
        caches.append(cache)
        return (cache,), {}

    def first_read(cache: Cache) -> None:
        started = time.perf_counter()
        results.append(abench.run(cache.get(KEYS[0])))
        seconds.append(time.perf_counter() - started)

    abench.benchmark.pedantic(first_read, setup=setup, rounds=FIRST_ROUNDS, iterations=1)
    label = f'asyncperf Cache.from_url("redis://hung?op_timeout={OP_TIMEOUT}"): first get'
    median = _record_ms(abench, label, note="miss")
    assert results
    assert all(result is None for result in results)
    assert max(seconds) < 1.0  # the deadline holds (not 5 s)
    if median is not None:
        abench.target(label, "max_value", OP_TIMEOUT * 1000 * 1.2, "<= op_timeout + 20 %")
    latencies = abench.run(_open_breaker(caches[-1]))
    abench.note(
        f"hung Redis: asyncperf reads until the breaker opened: {len(latencies) + 1} "
        f"(each ~op_timeout; the last ones here: {', '.join(f'{ms:.0f}' for ms in latencies)} ms)"
    )
    for cache in caches:
        abench.run(close_quietly(cache.aclose))
    abench.run(server.close())


@pytest.mark.benchmark(group=FIRST)
def test_probe_read_asyncperf(abench: AsyncBench) -> None:
    """Once ``recovery_time`` has passed, one caller's read is the half-open probe."""
    server = abench.run(HungServer().start())
    cache = Cache.from_url(_url(server))
    store: Any = cache.store
    abench.run(_open_breaker(cache))
    recovery = store.breaker.recovery_time
    results: list[Any] = []

    def setup() -> tuple[tuple[()], dict[str, Any]]:
        time.sleep(recovery + 0.01)  # untimed: wait until a probe is due
        return (), {}

    def probe_read() -> None:
        results.append(abench.run(cache.get(KEYS[0])))

    abench.benchmark.pedantic(probe_read, setup=setup, rounds=1, iterations=1)
    _record_ms(
        abench,
        f"asyncperf read that probes, every recovery_time ({recovery:g} s) while hung",
        note="miss",
    )
    assert results == [None]
    assert store.breaker.state == "open"
    abench.run(close_quietly(cache.aclose))
    abench.run(server.close())


def _peer_reads(abench: AsyncBench, read: Callable[[], Awaitable[Any]], label: str) -> list[str]:
    outcomes: list[str] = []
    reads = 0  # PEER_READS when timed; one under --benchmark-disable

    async def bounded() -> None:
        nonlocal reads
        reads += 1
        try:
            async with asyncio.timeout(PEER_DEADLINE):
                value = await read()
            outcomes.append(f"returned {value!r}")
        except TimeoutError as exc:  # the peer's own timeout or our deadline
            outcomes.append(f"raised {type(exc).__name__}")
        except Exception as exc:
            outcomes.append(f"raised {type(exc).__name__}")

    abench.benchmark.pedantic(lambda: abench.run(bounded()), rounds=PEER_READS, iterations=1)
    outcome = ", ".join(sorted(set(outcomes)))
    abench.benchmark.extra_info.update(outcomes=outcomes)
    _record_ms(abench, label, note=f"{PEER_READS} read(s) on one client: {outcome}")
    assert reads >= 1
    assert len(outcomes) == reads  # every read ended, within the deadline
    return outcomes


@pytest.mark.benchmark(group=FIRST)
def test_first_read_aiocache(abench: AsyncBench) -> None:
    server = abench.run(HungServer().start())
    cache = RedisCache(endpoint="127.0.0.1", port=server.port)
    try:
        _peer_reads(
            abench, lambda: cache.get(KEYS[0]), "aiocache RedisCache.get (default timeout=5)"
        )
    finally:
        abench.run(close_quietly(cache.close))
        abench.run(server.close())


@pytest.mark.benchmark(group=FIRST)
def test_first_read_cashews(abench: AsyncBench) -> None:
    server = abench.run(HungServer().start())
    cache = CashewsCache()
    cache.setup(server.url)
    try:
        _peer_reads(abench, lambda: cache.get(KEYS[0]), 'cashews Cache().setup("redis://").get')
    finally:
        abench.run(close_quietly(cache.close))
        abench.run(server.close())


# -- reads while the breaker is open --------------------------------------------------------------


@pytest.mark.benchmark(group=OPEN)
def test_open_memory_floor(abench: AsyncBench) -> None:
    cache = Cache(MemoryStore())
    abench.run(cache.set_many(VALUES, ttl=TTL))

    async def body(keys: Sequence[str]) -> None:
        for key in keys:
            await cache.get(key)

    abench.measure(body, label="asyncperf Cache(MemoryStore()).get hit (L1 READ)", floor=True)
    assert cache.statistics().misses == 0


def _measure_open(abench: AsyncBench, cache: Cache, label: str, *, fallback: bool) -> None:
    store: Any = cache.store
    breaker = store.breaker
    abench.run(_open_breaker(cache))
    if fallback:
        abench.run(cache.set_many(VALUES, ttl=TTL))  # kept in memory during the outage
    failures_before = breaker.statistics().failures
    hits_before = cache.statistics().hits

    async def body(keys: Sequence[str]) -> None:
        for key in keys:
            await cache.get(key)

    abench.measure(body, label=label)
    probes = breaker.statistics().failures - failures_before
    stats = cache.statistics()
    abench.benchmark.extra_info.update(
        probes_during_timing=probes, breaker=breaker.statistics().state
    )
    if fallback:
        assert stats.hits > hits_before
        assert stats.misses == len(_PRE_READS)  # only the reads that opened the breaker
    else:
        assert stats.hits == 0
    if probes:
        abench.note(
            f"hung Redis: {label}: {probes} probe(s) of ~op_timeout fell inside the timed "
            "rounds (the medians absorb them)"
        )


_PRE_READS = ("missing",) * 3  # the default failure_threshold


@pytest.mark.benchmark(group=OPEN)
def test_open_asyncperf_fallback(abench: AsyncBench) -> None:
    server = abench.run(HungServer().start())
    cache = Cache.from_url(_url(server))
    label = "asyncperf from_url, breaker open: get from the memory fallback"
    _measure_open(abench, cache, label, fallback=True)
    abench.target(label, "max_over", 20_000, "<= +20 µs over an L1 read")
    abench.run(close_quietly(cache.aclose))
    abench.run(server.close())


@pytest.mark.benchmark(group=OPEN)
def test_open_asyncperf_no_fallback(abench: AsyncBench) -> None:
    server = abench.run(HungServer().start())
    cache = Cache(RedisStore(server.url, op_timeout=OP_TIMEOUT), fallback=None)
    label = "asyncperf Cache(RedisStore, fallback=None), breaker open: get (miss)"
    _measure_open(abench, cache, label, fallback=False)
    abench.target(label, "max_over", 20_000, "<= +20 µs over an L1 read")
    abench.run(close_quietly(cache.aclose))
    abench.run(server.close())
