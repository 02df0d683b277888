"""RedisStore and Redis-backed caches against the real Redis on 127.0.0.1:6379."""

from __future__ import annotations

import asyncio
import math
import pickle
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis_asyncio

from asyncperf import (
    BackendUnavailable,
    Cache,
    Codec,
    ConfigurationError,
    Entry,
    MemoryStore,
    RedisStore,
    SerializationError,
)
from asyncperf.cache import FallbackStore, TieredStore

REDIS_URL = "redis://127.0.0.1:6379/0"
MISSING = object()

pytestmark = pytest.mark.redis


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis.asyncio runs on asyncio only


@pytest.fixture
async def raw() -> AsyncIterator[redis_asyncio.Redis]:
    client = redis_asyncio.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:  # a needed service is missing: fail, never skip
        pytest.fail(f"Redis is not answering on {REDIS_URL}: {exc!r} (run `make services`)")
    yield client
    await client.aclose()


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:10]}:"


@pytest.fixture
async def store(raw: redis_asyncio.Redis, prefix: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(REDIS_URL, prefix=prefix, op_timeout=2.0)
    yield store
    await store.clear()
    await store.aclose()
    leftovers = [key async for key in raw.scan_iter(match=prefix[:-1] + "*")]
    if leftovers:
        await raw.unlink(*leftovers)


@pytest.fixture
def cache(store: RedisStore) -> Cache:
    return Cache(store, fallback=None)


async def test_basic_operations(cache: Cache, raw: redis_asyncio.Redis, prefix: str) -> None:
    assert await cache.get("k", default=MISSING) is MISSING
    await cache.set("k", {"a": [1, 2]}, ttl=60)
    assert await cache.get("k") == {"a": [1, 2]}
    assert await raw.exists(prefix + "k") == 1
    await cache.set("none", None)
    assert await cache.get("none", default=MISSING) is None
    assert await cache.exists("k") is True
    assert await cache.delete("k") is True
    assert await cache.delete("k") is False
    assert await cache.exists("k") is False


async def test_tuples_come_back_as_lists_bytes_as_bytes(cache: Cache) -> None:
    await cache.set("t", (1, 2))
    await cache.set("b", b"\x00\xff raw")
    assert await cache.get("t") == [1, 2]
    assert await cache.get("b") == b"\x00\xff raw"


async def test_ttl_reaches_redis_and_expire_changes_it(
    cache: Cache, raw: redis_asyncio.Redis, prefix: str
) -> None:
    await cache.set("k", 1, ttl=30)
    assert 29_000 < await raw.pttl(prefix + "k") <= 30_000
    left = await cache.ttl("k")
    assert left is not None
    assert 29 < left <= 30
    assert await cache.expire("k", 100) is True
    assert 99_000 < await raw.pttl(prefix + "k") <= 100_000
    assert await cache.expire("k", None) is True
    assert await cache.ttl("k") == math.inf
    assert await cache.ttl("absent") is None
    assert await cache.expire("absent", 5) is False


async def test_many_operations(cache: Cache) -> None:
    await cache.set_many({"a": 1, "b": 2, "c": None}, ttl=60)
    assert await cache.get_many(["a", "b", "c", "zz"]) == {"a": 1, "b": 2, "c": None}
    assert await cache.delete_many(["a", "b", "zz"]) == 2
    assert await cache.get_many(["a", "b"]) == {}


async def test_tags_and_tag_set_lifetimes(
    cache: Cache, store: RedisStore, raw: redis_asyncio.Redis
) -> None:
    await cache.set("u1", 1, ttl=10, tags=["user:1", "users"])
    await cache.set("u2", 2, ttl=100, tags=["users"])
    tag_key = store.tag_key("users")
    assert await raw.scard(tag_key) == 2
    assert 99_000 < await raw.pttl(tag_key) <= 100_000, "as long as its longest member"
    await cache.set("u3", 3, tags=["users"])  # no ttl: the set must outlive it
    assert await raw.pttl(tag_key) == -1
    assert await cache.invalidate_tags("users") == 3
    assert await cache.get_many(["u1", "u2", "u3"]) == {}
    assert await raw.exists(tag_key) == 0
    assert await cache.invalidate_tags("user:1") == 0  # u1 already gone
    await cache.get_or_set("loaded", lambda: "v", tags=["x"])
    assert await cache.invalidate_tags("x") == 1


async def test_namespace_clear_uses_scan_and_spares_everything_else(
    cache: Cache, raw: redis_asyncio.Redis, prefix: str
) -> None:
    foreign = f"foreign-{uuid.uuid4().hex}"
    await raw.set(foreign, "keep me")
    try:
        users = cache.namespace("users")
        orders = cache.namespace("orders")
        for i in range(1500):  # more than one SCAN page and one UNLINK chunk
            await users.set(str(i), i)
        await users.set("tagged", 1, tags=["t"])
        await orders.set("1", "order")
        await cache.set("root", "r")
        assert await users.clear() == 1501
        assert await users.get("5", default=MISSING) is MISSING
        assert await orders.get("1") == "order"
        assert await cache.get("root") == "r"
        assert await raw.get(foreign) == b"keep me"
        assert await cache.clear() == 2
        assert await raw.get(foreign) == b"keep me"
    finally:
        await raw.delete(foreign)


async def test_prefix_with_glob_characters_is_escaped(raw: redis_asyncio.Redis) -> None:
    base = f"glob-{uuid.uuid4().hex[:6]}"
    star = RedisStore(REDIS_URL, prefix=f"{base}*:")
    other = RedisStore(REDIS_URL, prefix=f"{base}x:")
    try:
        await star.set("k", Entry(1), None)
        await other.set("k", Entry(2), None)
        assert await star.clear() == 1
        assert (await other.get("k")).value == 2  # type: ignore[union-attr]
    finally:
        await other.clear()
        await star.aclose()
        await other.aclose()


async def test_concurrent_gets_are_batched_into_mget(cache: Cache, store: RedisStore) -> None:
    await cache.set_many({f"k{i}": i for i in range(200)})
    values = await asyncio.gather(*(cache.get(f"k{i % 250}") for i in range(500)))
    assert values == [i % 250 if i % 250 < 200 else None for i in range(500)]
    stats = store.statistics()
    assert stats.batches >= 1
    assert stats.batched_keys >= 250
    before = store.statistics().batches
    await asyncio.gather(*(cache.set(f"s{i}", i) for i in range(50)))
    assert store.statistics().batches == before + 1, "50 same-turn sets: one pipeline"
    assert await cache.get_many([f"s{i}" for i in range(50)]) == {f"s{i}": i for i in range(50)}


async def test_a_lone_get_is_not_batched(cache: Cache, store: RedisStore) -> None:
    await cache.set("solo", 1)
    before = store.statistics().batches
    assert await cache.get("solo") == 1
    assert store.statistics().batches == before


async def test_pool_exhaustion_queues_instead_of_failing(prefix: str) -> None:
    store = RedisStore(REDIS_URL, prefix=prefix, max_connections=2, batching=False, op_timeout=5)
    cache = Cache(store, fallback=None)
    try:
        await cache.set("k", "v")
        results = await asyncio.gather(*(cache.get("k") for _ in range(500)))
        assert results == ["v"] * 500
        assert cache.statistics().errors == 0
        assert store.statistics().failures == 0
    finally:
        await store.clear()
        await store.aclose()


async def test_corrupt_and_foreign_payloads_read_as_counted_misses(
    cache: Cache, store: RedisStore, raw: redis_asyncio.Redis, prefix: str
) -> None:
    await raw.set(prefix + "garbage", b"\xa7\x01\x00not json at all")
    await raw.set(prefix + "pickle", pickle.dumps({"evil": True}))
    await raw.set(prefix + "text", "plain text from another app")
    for key in ("garbage", "pickle", "text"):
        assert await cache.get(key, default=MISSING) is MISSING
    assert cache.statistics().errors == 3
    assert store.statistics().decode_errors == 3
    assert await cache.get_or_set("garbage", lambda: "fixed") == "fixed"
    assert await cache.get("garbage") == "fixed"


async def test_unencodable_value_raises_and_sends_nothing(
    cache: Cache, raw: redis_asyncio.Redis, prefix: str
) -> None:
    with pytest.raises(SerializationError, match="'bad'"):
        await cache.set("bad", object())
    assert await raw.exists(prefix + "bad") == 0
    with pytest.raises(SerializationError):
        await cache.set_many({"ok": 1, "bad": {1, 2}})
    assert await raw.exists(prefix + "ok") == 0


async def test_pickle_codec_through_redis(prefix: str) -> None:
    store = RedisStore(REDIS_URL, prefix=prefix, codec=Codec(pickle=True, secret="s" * 32))
    cache = Cache(store, fallback=None)
    try:
        await cache.set("t", (1, {2, 3}))
        assert await cache.get("t") == (1, {2, 3})
        other = Cache(
            RedisStore(REDIS_URL, prefix=prefix, codec=Codec(pickle=True, secret="x" * 32)),
            fallback=None,
        )
        assert await other.get("t", default=MISSING) is MISSING, "a foreign signature is refused"
        await other.aclose()
    finally:
        await store.clear()
        await store.aclose()


async def test_info_and_health(cache: Cache, store: RedisStore) -> None:
    await cache.set("k", 1)
    info = await store.redis_info()
    assert info.version.startswith(("6.", "7.", "8."))
    assert info.used_memory > 0
    assert info.keys >= 1
    assert 0.0 <= info.hit_rate <= 1.0
    health = await cache.health()
    assert health.ok
    assert health.backend == "redis"
    assert health.latency is not None


async def test_get_or_set_and_decorator_on_redis(cache: Cache) -> None:
    calls = 0

    async def loader() -> dict[str, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return {"n": calls}

    results = await asyncio.gather(*(cache.get_or_set("k", loader, ttl=30) for _ in range(100)))
    assert calls == 1
    assert results == [{"n": 1}] * 100
    assert await cache.get("k") == {"n": 1}


async def test_from_url_builds_redis_with_fallback(prefix: str) -> None:
    cache = Cache.from_url(f"{REDIS_URL}?prefix={prefix}&op_timeout=0.5&failure_threshold=2")
    store = cache.store
    assert isinstance(store, FallbackStore)
    assert store.primary.prefix == prefix
    assert store.primary.op_timeout == 0.5
    assert store.primary.breaker.failure_threshold == 2
    assert store.fallback.max_entries == 1000
    await cache.set("k", 1)
    assert await cache.get("k") == 1
    await cache.clear()
    await cache.aclose()
    bare = Cache.from_url(f"{REDIS_URL}?prefix={prefix}&fallback_max_entries=0")
    assert isinstance(bare.store, RedisStore)
    await bare.aclose()
    tiered = Cache.from_url(
        f"tiered+{REDIS_URL}?prefix={prefix}&l1_max_entries=50&l1_ttl=5&client_name=t"
    )
    assert isinstance(tiered.store, TieredStore)
    assert tiered.store.l1.max_entries == 50
    assert tiered.store.l1_ttl == 5
    await tiered.aclose()


@pytest.mark.parametrize(
    ("url", "match"),
    [
        (f"{REDIS_URL}?op_timout=1", "op_timout"),
        (f"{REDIS_URL}?op_timeout=-1", "op_timeout"),
        (f"{REDIS_URL}?max_connections=0", "max_connections"),
        (f"{REDIS_URL}?batching=perhaps", "batching"),
        (f"tiered+{REDIS_URL}?l1_ttl=0", "l1_ttl"),
        (f"{REDIS_URL}?l1_ttl=5", "l1_ttl"),
    ],
)
def test_from_url_rejects_bad_redis_options(url: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        Cache.from_url(url)


def test_redis_store_argument_errors() -> None:
    with pytest.raises(ConfigurationError, match="redis://"):
        RedisStore("http://localhost")
    with pytest.raises(ConfigurationError, match="client"):
        RedisStore(42)
    with pytest.raises(ConfigurationError, match="op_timeout"):
        RedisStore(REDIS_URL, op_timeout=0)
    with pytest.raises(ConfigurationError, match="fallback"):
        Cache(MemoryStore(), fallback=MemoryStore())


async def test_user_supplied_client_is_not_closed(prefix: str) -> None:
    client = redis_asyncio.Redis.from_url(REDIS_URL)
    store = RedisStore(client, prefix=prefix)
    await store.set("k", Entry(1), 5)
    await store.aclose()
    assert await client.ping()
    await client.unlink(prefix + "k")
    await client.aclose()


async def test_breaker_open_fails_fast_without_touching_redis(prefix: str) -> None:
    store = RedisStore(REDIS_URL, prefix=prefix, failure_threshold=1, recovery_time=3600)
    store.breaker.failure()
    assert store.breaker.state == "open"
    with pytest.raises(BackendUnavailable, match="breaker is open"):
        await store.get("k")
    cache = Cache(store, fallback=MemoryStore())
    await cache.set("k", "kept in memory")
    assert await cache.get("k") == "kept in memory"
    stats = cache.statistics()
    assert stats.breaker_state == "open"
    assert stats.degraded_operations == 2
    await store.aclose()
