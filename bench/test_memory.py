"""In-memory get hit and set with TTL: asyncperf against the floors and the peers.

Every variant uses the same 1000 keys, each holding the same kind of 5-field dict, and the
same loop shape (``for key in keys: await op(key)``), so only the operation differs. Peers
run at their defaults, as users run them. Sets after the warm-up round overwrite existing
keys, which is the steady state of a cache.

Groups:
    memory-get: reads of keys that are all present. asyncperf is measured twice: on
        entries stored without TTL (the fair match for cachetools ``LRUCache``) and on
        entries stored with ``ttl=300`` (the match for ``TTLCache``, aiocache, cashews).
    memory-set-ttl: writes with a 300 s TTL (the dict floors and ``LRUCache`` have no
        TTL to keep; they show the cost of the bare write).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pytest
from aiocache import SimpleMemoryCache
from cachetools import LRUCache, TTLCache
from cashews import Cache as CashewsCache

from asyncperf.cache import Cache, MemoryStore
from bench._data import KEYS, VALUE, VALUES

if TYPE_CHECKING:
    from bench.conftest import AsyncBench

GET = "memory-get"
SET = "memory-set-ttl"
TTL = 300.0
MAX_ENTRIES = 10_000  # MemoryStore's default, used for cachetools' mandatory maxsize too


def _cashews() -> CashewsCache:
    cache = CashewsCache()
    cache.setup("mem://")
    return cache


async def _fill_asyncperf(cache: Cache, ttl: float | None) -> None:
    for key, value in VALUES.items():
        await cache.set(key, value, ttl=ttl)


def _check_asyncperf_hits(cache: Cache) -> None:
    stats = cache.statistics()
    assert stats.misses == 0
    assert stats.hits > 0


# -- get hit ---------------------------------------------------------------------------------


@pytest.mark.benchmark(group=GET)
def test_get_dict_sync_floor(abench: AsyncBench) -> None:
    data = dict(VALUES)

    async def body(keys: Sequence[str]) -> None:
        for key in keys:
            data.get(key)

    abench.measure(body, label="dict.get (sync floor)")


@pytest.mark.benchmark(group=GET)
def test_get_async_floor(abench: AsyncBench) -> None:
    data = dict(VALUES)

    async def get(key: str) -> object:
        return data.get(key)

    async def body(keys: Sequence[str]) -> None:
        for key in keys:
            await get(key)

    abench.measure(body, label="async def around dict.get (ASYNC FLOOR)", floor=True)


@pytest.mark.benchmark(group=GET)
def test_get_asyncperf_no_ttl(abench: AsyncBench) -> None:
    cache = Cache(MemoryStore())
    abench.run(_fill_asyncperf(cache, None))

    async def body(keys: Sequence[str]) -> None:
        for key in keys:
            await cache.get(key)

    abench.measure(body, label="asyncperf Cache.get (no TTL)")
    _check_asyncperf_hits(cache)


@pytest.mark.benchmark(group=GET)
def test_get_asyncperf_ttl(abench: AsyncBench) -> None:
    cache = Cache(MemoryStore())
    abench.run(_fill_asyncperf(cache, TTL))

    async def body(keys: Sequence[str]) -> None:
        for key in keys:
            await cache.get(key)

    abench.measure(body, label="asyncperf Cache.get (ttl=300)")
    _check_asyncperf_hits(cache)


@pytest.mark.benchmark(group=GET)
def test_get_cachetools_lru(abench: AsyncBench) -> None:
    cache: LRUCache[str, object] = LRUCache(maxsize=MAX_ENTRIES)
    cache.update(VALUES)

    async def body(keys: Sequence[str]) -> None:
        for key in keys:
            cache.get(key)

    abench.measure(body, label="cachetools LRUCache.get (sync)")
    assert len(cache) == len(KEYS)


@pytest.mark.benchmark(group=GET)
def test_get_cachetools_ttl(abench: AsyncBench) -> None:
    cache: TTLCache[str, object] = TTLCache(maxsize=MAX_ENTRIES, ttl=TTL)
    cache.update(VALUES)

    async def body(keys: Sequence[str]) -> None:
        for key in keys:
            cache.get(key)

    abench.measure(body, label="cachetools TTLCache.get (sync)")
    assert len(cache) == len(KEYS)


@pytest.mark.parametrize(
    ("options", "label"),
    [
        pytest.param({}, "aiocache SimpleMemoryCache.get (default timeout=5)", id="default"),
        pytest.param(
            {"timeout": None}, "aiocache SimpleMemoryCache.get (timeout=None)", id="timeout-none"
        ),
    ],
)
@pytest.mark.benchmark(group=GET)
def test_get_aiocache(abench: AsyncBench, options: dict[str, Any], label: str) -> None:
    cache = SimpleMemoryCache(**options)
    abench.run(cache.multi_set(list(VALUES.items()), ttl=TTL))
    assert abench.run(cache.get(KEYS[-1])) == VALUES[KEYS[-1]]

    async def body(keys: Sequence[str]) -> None:
        for key in keys:
            await cache.get(key)

    abench.measure(body, label=label)
    abench.run(cache.close())


@pytest.mark.benchmark(group=GET)
def test_get_cashews(abench: AsyncBench) -> None:
    cache = _cashews()

    async def fill() -> None:
        for key, value in VALUES.items():
            await cache.set(key, value, expire=TTL)

    abench.run(fill())
    assert abench.run(cache.get(KEYS[0])) == VALUES[KEYS[0]]

    async def body(keys: Sequence[str]) -> None:
        for key in keys:
            await cache.get(key)

    abench.measure(body, label='cashews Cache("mem://").get')
    assert abench.run(cache.get(KEYS[0])) == VALUES[KEYS[0]]  # still all present (size 1000)
    abench.run(cache.close())


# -- set with TTL ---------------------------------------------------------------------------


@pytest.mark.benchmark(group=SET)
def test_set_dict_sync_floor(abench: AsyncBench) -> None:
    data: dict[str, object] = {}

    async def body(keys: Sequence[str]) -> None:
        for key in keys:
            data[key] = VALUE

    abench.measure(body, label="dict[k] = v (sync floor)")


@pytest.mark.benchmark(group=SET)
def test_set_async_floor(abench: AsyncBench) -> None:
    data: dict[str, object] = {}

    async def set_(key: str, value: object) -> None:
        data[key] = value

    async def body(keys: Sequence[str]) -> None:
        for key in keys:
            await set_(key, VALUE)

    abench.measure(body, label="async def around dict[k] = v (ASYNC FLOOR)", floor=True)


@pytest.mark.parametrize(
    ("max_bytes", "label"),
    [
        pytest.param(None, "asyncperf Cache.set(ttl=300.0)", id="default"),
        pytest.param(
            64 * 2**20, "asyncperf Cache.set(ttl=300.0), max_bytes=64 MiB", id="max-bytes"
        ),
    ],
)
@pytest.mark.benchmark(group=SET)
def test_set_asyncperf(abench: AsyncBench, max_bytes: int | None, label: str) -> None:
    cache = Cache(MemoryStore(max_bytes=max_bytes))

    async def body(keys: Sequence[str]) -> None:
        for key in keys:
            await cache.set(key, VALUE, ttl=300.0)

    abench.measure(body, label=label)
    assert len(cache.store) == len(KEYS)  # type: ignore[arg-type]


@pytest.mark.benchmark(group=SET)
def test_set_cachetools_lru(abench: AsyncBench) -> None:
    cache: LRUCache[str, object] = LRUCache(maxsize=MAX_ENTRIES)

    async def body(keys: Sequence[str]) -> None:
        for key in keys:
            cache[key] = VALUE

    abench.measure(body, label="cachetools LRUCache[k] = v (sync, no TTL)")


@pytest.mark.benchmark(group=SET)
def test_set_cachetools_ttl(abench: AsyncBench) -> None:
    cache: TTLCache[str, object] = TTLCache(maxsize=MAX_ENTRIES, ttl=TTL)

    async def body(keys: Sequence[str]) -> None:
        for key in keys:
            cache[key] = VALUE

    abench.measure(body, label="cachetools TTLCache[k] = v (sync)")


@pytest.mark.parametrize(
    ("options", "label"),
    [
        pytest.param(
            {}, "aiocache SimpleMemoryCache.set(ttl=300) (default timeout=5)", id="default"
        ),
        pytest.param(
            {"timeout": None},
            "aiocache SimpleMemoryCache.set(ttl=300) (timeout=None)",
            id="timeout-none",
        ),
    ],
)
@pytest.mark.benchmark(group=SET)
def test_set_aiocache(abench: AsyncBench, options: dict[str, Any], label: str) -> None:
    cache = SimpleMemoryCache(**options)

    async def body(keys: Sequence[str]) -> None:
        for key in keys:
            await cache.set(key, VALUE, ttl=300)

    abench.measure(body, label=label)
    abench.run(cache.close())


@pytest.mark.benchmark(group=SET)
def test_set_cashews(abench: AsyncBench) -> None:
    cache = _cashews()

    async def body(keys: Sequence[str]) -> None:
        for key in keys:
            await cache.set(key, VALUE, expire=300)

    abench.measure(body, label='cashews Cache("mem://").set(expire=300)')
    abench.run(cache.close())
