"""The store contract: one set of behaviour tests that every store runs through ``Cache``.

In the style of cachetools' ``CacheTestMixin``: a store is added to ``STORES`` (a factory
and whether it encodes values) and gets the whole contract for free: get/set/delete,
batches, TTL expiry, tags, namespaces, clear, statistics and bad input. The Redis-backed
stores talk to the real server on 127.0.0.1:6379 under a prefix of the test's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
import redis.asyncio as redis_asyncio
from aiocache import SimpleMemoryCache

from asyncperf import Cache, ConfigurationError, MemoryStore, RedisStore, SerializationError
from asyncperf.cache import AiocacheStore, FallbackStore

from .conftest import REDIS_URL

MISSING = object()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis.asyncio and aiocache run on asyncio only


@dataclass(frozen=True)
class StoreCase:
    """How to build one store under test, and what it promises beyond the contract."""

    build: Callable[[str], Cache]
    encodes: bool  # values go through a codec: an unencodable value is refused
    remote: bool  # needs the Redis server


def _redis(prefix: str) -> RedisStore:
    return RedisStore(REDIS_URL, prefix=prefix, op_timeout=2.0)


STORES = {
    "memory": StoreCase(lambda prefix: Cache(MemoryStore()), encodes=False, remote=False),
    "redis": StoreCase(lambda prefix: Cache(_redis(prefix), fallback=None), True, True),
    "fallback": StoreCase(
        lambda prefix: Cache(FallbackStore(_redis(prefix), MemoryStore())), True, True
    ),
    "tiered": StoreCase(lambda prefix: Cache.tiered(l2=_redis(prefix)), True, True),
    "aiocache": StoreCase(
        lambda prefix: Cache(AiocacheStore(SimpleMemoryCache(), prefix=prefix)), True, False
    ),
}


@pytest.fixture(params=sorted(STORES))
def case(request: pytest.FixtureRequest) -> StoreCase:
    return STORES[request.param]


@pytest.fixture
async def cache(case: StoreCase, prefix: str, raw: redis_asyncio.Redis) -> AsyncIterator[Cache]:
    # ``raw`` makes the test fail (never skip) when Redis is down and removes the prefix's
    # keys afterwards; the in-process stores take it too, so every case runs alike.
    built = case.build(prefix)
    try:
        yield built
    finally:
        await built.aclose()


async def test_set_get_delete_round_trip(cache: Cache) -> None:
    value = {"id": 7, "name": "Ada", "tags": ["x", "y"], "price": 1.5, "none": None}
    assert await cache.get("user:7", MISSING) is MISSING
    await cache.set("user:7", value, ttl=60)
    assert await cache.get("user:7") == value
    assert await cache.exists("user:7")
    assert await cache.delete("user:7") is True
    assert await cache.delete("user:7") is False
    assert await cache.get("user:7", MISSING) is MISSING
    assert not await cache.exists("user:7")


async def test_none_is_a_value_and_overwrites_replace(cache: Cache) -> None:
    await cache.set("k", None, ttl=60)
    assert await cache.get("k", MISSING) is None
    await cache.set("k", "second", ttl=60)
    assert await cache.get("k") == "second"


async def test_batches(cache: Cache) -> None:
    await cache.set_many({f"b:{i}": i for i in range(20)}, ttl=60)
    got = await cache.get_many([f"b:{i}" for i in range(25)])
    assert got == {f"b:{i}": i for i in range(20)}
    assert await cache.delete_many([f"b:{i}" for i in range(0, 25, 2)]) == 10
    left = await cache.get_many([f"b:{i}" for i in range(20)])
    assert sorted(left) == sorted(f"b:{i}" for i in range(1, 20, 2))


async def test_ttl_expires(cache: Cache) -> None:
    await cache.set("short", "gone soon", ttl=0.5)
    await cache.set("long", "stays", ttl=60)
    assert await cache.get("short") == "gone soon"
    await asyncio.sleep(1.2)  # aiocache rounds a TTL up to whole seconds
    assert await cache.get("short", MISSING) is MISSING
    assert await cache.get("long") == "stays"


async def test_tags_invalidate_only_what_they_name(cache: Cache) -> None:
    await cache.set("p:1", 1, ttl=60, tags=["product:1", "catalog"])
    await cache.set("p:2", 2, ttl=60, tags=["product:2", "catalog"])
    await cache.set("other", 3, ttl=60)
    assert await cache.invalidate_tags("product:1") >= 1
    assert await cache.get("p:1", MISSING) is MISSING
    assert await cache.get("p:2") == 2
    assert await cache.invalidate_tags("catalog") >= 1
    assert await cache.get("p:2", MISSING) is MISSING
    assert await cache.get("other") == 3


async def test_namespaces_are_isolated_and_clear_their_own_keys(cache: Cache) -> None:
    users, orders = cache.namespace("users"), cache.namespace("orders")
    await users.set("1", "ada", ttl=60)
    await orders.set("1", "order-1", ttl=60)
    await cache.set("1", "root", ttl=60)
    assert await users.get("1") == "ada"
    assert await orders.get("1") == "order-1"
    assert await cache.get("1") == "root"
    assert await users.clear() >= 1
    assert await users.get("1", MISSING) is MISSING
    assert await orders.get("1") == "order-1"
    assert await cache.get("1") == "root"


async def test_clear_empties_the_cache(cache: Cache) -> None:
    await cache.set_many({f"c:{i}": i for i in range(5)}, ttl=60)
    await cache.namespace("ns").set("x", 1, ttl=60)
    assert await cache.clear() >= 5
    assert await cache.get_many([f"c:{i}" for i in range(5)]) == {}
    assert await cache.namespace("ns").get("x", MISSING) is MISSING


async def test_long_keys_round_trip(cache: Cache) -> None:
    long_a, long_b = "a" * 500, "a" * 499 + "b"
    await cache.set(long_a, "A", ttl=60)
    await cache.set(long_b, "B", ttl=60)
    assert await cache.get(long_a) == "A"
    assert await cache.get(long_b) == "B"


async def test_statistics_count_hits_misses_and_sets(cache: Cache) -> None:
    await cache.set("s", 1, ttl=60)
    await cache.get("s")
    await cache.get("s")
    await cache.get("absent")
    stats = cache.statistics()
    assert (stats.hits, stats.misses, stats.sets) == (2, 1, 1)


async def test_bad_input_gets_a_clear_error_and_loses_nothing(
    cache: Cache, case: StoreCase
) -> None:
    await cache.set("kept", "value", ttl=60)
    with pytest.raises(TypeError, match="cache keys must be str"):
        await cache.set(42, "x")  # type: ignore[arg-type]
    for ttl in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ConfigurationError, match="ttl"):
            await cache.set("kept", "replaced", ttl=ttl)
    if case.encodes:
        with pytest.raises(SerializationError):
            await cache.set("kept", object(), ttl=60)
    assert await cache.get("kept") == "value"
