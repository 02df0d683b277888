"""Cold-key stampede: 1000 concurrent callers of one missing key, a loader that takes 50 ms.

Each round builds a fresh, empty cache, starts 1000 callers at once (``asyncio.gather``) and
times until all of them have the value. The round time is the wall time of the wave; the
report gives it in ms and as a multiple of the loader's 50 ms. Loader calls are counted per
round: asyncperf must call it exactly once (asserted, it is behaviour), the naive
get-then-load exactly once per caller; peers' counts are recorded, not asserted.

The floor is a reference single-flight (one Future per key, the ~25 lines any service could
write): the fixed cost of 1000 tasks waiting on one result.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from aiocache import cached, cached_stampede
from cashews import Cache as CashewsCache

from asyncperf.cache import Cache, MemoryStore
from bench._data import QUICK, VALUE

if TYPE_CHECKING:
    from bench.conftest import AsyncBench

GROUP = "stampede"
CALLERS = 1_000
LOAD_SECONDS = 0.05
TTL = 60
ROUNDS = 2 if QUICK else 5
KEY = "report:cold"

Call = Callable[[], Awaitable[Any]]
Close = Callable[[], Awaitable[Any]] | None


@dataclass
class Wave:
    """One round: the callers' entry point, the loader's call count, the results."""

    call: Call
    close: Close = None
    loads: int = 0
    results: list[Any] = field(default_factory=list)
    closed: bool = False

    async def loader(self) -> dict[str, object]:
        self.loads += 1
        await asyncio.sleep(LOAD_SECONDS)
        return VALUE


Make = Callable[[Wave], Awaitable[None]]


def _stampede(abench: AsyncBench, make: Make, *, label: str, floor: bool = False) -> list[int]:
    """Time ``ROUNDS`` waves of ``CALLERS`` concurrent calls; return loads per round."""
    loop = abench.loop
    waves: list[Wave] = []

    async def placeholder() -> None:
        raise AssertionError("make() must set wave.call")

    def setup() -> tuple[tuple[Wave], dict[str, Any]]:
        wave = Wave(call=placeholder)
        abench.run(make(wave))
        waves.append(wave)
        return (wave,), {}

    def run_wave(wave: Wave) -> None:
        async def all_callers() -> list[Any]:
            return await asyncio.gather(*(wave.call() for _ in range(CALLERS)))

        wave.results = loop.run_until_complete(all_callers())

    def teardown(wave: Wave) -> None:
        if wave.close is not None and not wave.closed:
            wave.closed = True
            abench.run(wave.close())

    abench.benchmark.pedantic(run_wave, setup=setup, teardown=teardown, rounds=ROUNDS, iterations=1)
    for wave in waves:  # --benchmark-disable runs one round without its teardown
        teardown(wave)
        assert len(wave.results) == CALLERS
        assert all(result == VALUE for result in wave.results)
    loads = [wave.loads for wave in waves]
    if abench.enabled:
        wall = statistics.median(abench.benchmark.stats.stats.data)
        ratio = wall / LOAD_SECONDS
        abench.benchmark.extra_info.update(
            label=label,
            callers=CALLERS,
            loader_seconds=LOAD_SECONDS,
            wall_ms=round(wall * 1000, 2),
            wall_over_loader=round(ratio, 3),
            loader_calls=loads,
            floor=floor,
        )
        calls = f"{loads[0]}" if len(set(loads)) == 1 else f"{min(loads)}-{max(loads)}"
        abench.record(
            label,
            wall * 1000,
            "ms",
            floor=floor,
            note=f"loader calls {calls:>4}, wall/loader {ratio:.2f}x",
        )
    return loads


@pytest.mark.benchmark(group=GROUP)
def test_reference_single_flight(abench: AsyncBench) -> None:
    async def make(wave: Wave) -> None:
        values: dict[str, Any] = {}
        pending: dict[str, asyncio.Future[Any]] = {}

        async def get_or_load(key: str) -> Any:
            if key in values:
                return values[key]
            future = pending.get(key)
            if future is not None:
                return await asyncio.shield(future)
            future = pending[key] = asyncio.get_running_loop().create_future()
            try:
                value = await wave.loader()
            except BaseException as exc:
                future.set_exception(exc)
                future.exception()  # retrieved: no "never retrieved" warning without waiters
                raise
            else:
                values[key] = value
                future.set_result(value)
                return value
            finally:
                del pending[key]

        wave.call = lambda: get_or_load(KEY)

    loads = _stampede(abench, make, label="reference single-flight (Future per key)", floor=True)
    assert set(loads) == {1}


@pytest.mark.benchmark(group=GROUP)
def test_asyncperf_get_or_set(abench: AsyncBench) -> None:
    caches: list[Cache] = []

    async def make(wave: Wave) -> None:
        cache = Cache(MemoryStore())
        caches.append(cache)
        wave.call = lambda: cache.get_or_set(KEY, wave.loader, ttl=TTL)
        wave.close = cache.aclose

    loads = _stampede(abench, make, label="asyncperf Cache.get_or_set (single-flight)")
    assert set(loads) == {1}
    for cache in caches:
        stats = cache.statistics()
        assert stats.loads == 1
        assert stats.coalesced == CALLERS - 1


@pytest.mark.benchmark(group=GROUP)
def test_naive_get_then_load(abench: AsyncBench) -> None:
    async def make(wave: Wave) -> None:
        cache = Cache(MemoryStore())

        async def get_or_load() -> Any:
            value = await cache.get(KEY)
            if value is None:
                value = await wave.loader()
                await cache.set(KEY, value, ttl=TTL)
            return value

        wave.call = get_or_load
        wave.close = cache.aclose

    loads = _stampede(abench, make, label="naive get-then-load (asyncperf get/set)")
    assert set(loads) == {CALLERS}


@pytest.mark.benchmark(group=GROUP)
def test_cashews_cache_protected(abench: AsyncBench) -> None:
    async def make(wave: Wave) -> None:
        cache = CashewsCache()
        cache.setup("mem://")

        @cache(ttl=TTL)  # protected=True is the default: in-process sharing of the load
        async def load_report() -> Any:
            return await wave.loader()

        wave.call = load_report
        wave.close = cache.close

    _stampede(abench, make, label='cashews @cache(ttl=60) ("mem://", protected)')


@pytest.mark.benchmark(group=GROUP)
def test_aiocache_cached(abench: AsyncBench) -> None:
    async def make(wave: Wave) -> None:
        @cached(ttl=TTL)
        async def load_report() -> Any:
            return await wave.loader()

        wave.call = load_report

    _stampede(abench, make, label="aiocache @cached(ttl=60) (memory)")


@pytest.mark.benchmark(group=GROUP)
def test_aiocache_cached_stampede(abench: AsyncBench) -> None:
    async def make(wave: Wave) -> None:
        @cached_stampede(ttl=TTL)
        async def load_report() -> Any:
            return await wave.loader()

        wave.call = load_report

    _stampede(abench, make, label="aiocache @cached_stampede(ttl=60) (memory)")
