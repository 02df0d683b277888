"""AiocacheStore: aiocache's memory and Redis caches (and a Memcached stand-in) as stores."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis_asyncio
from aiocache import RedisCache, SimpleMemoryCache
from aiocache.base import BaseCache
from aiocache.serializers import JsonSerializer, PickleSerializer

from asyncperf import (
    BackendUnavailable,
    Cache,
    Codec,
    ConfigurationError,
    Entry,
    SerializationError,
)
from asyncperf.cache._aiocache import TAG_MARK, AiocacheStore

from ..conftest import FakeClock

MISSING = object()
REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiocache runs on asyncio only


# -- backends ------------------------------------------------------------------------------


class MemcachedBackend(BaseCache):
    """A dict that behaves like aiocache's Memcached backend (the class name tells the store).

    Like the real one: keys become bytes with spaces turned into underscores, str values
    are written as UTF-8 and read back decoded with the serializer's encoding, TTLs must be
    whole seconds, and nothing can be cleared by namespace.
    """

    NAME = "memcached"

    def __init__(self, serializer: object = None, **kwargs: object) -> None:
        super().__init__(serializer=serializer or JsonSerializer(), **kwargs)
        self.data: dict[bytes, bytes] = {}
        self.ttls: dict[bytes, int] = {}
        self.flushes = 0

    def _build_key(self, key, namespace=None):
        return super()._build_key(key, namespace=namespace).replace(" ", "_").encode()

    async def _get(self, key, encoding="utf-8", _conn=None):
        value = self.data.get(key)
        return value if value is None or encoding is None else value.decode(encoding)

    async def _multi_get(self, keys, encoding="utf-8", _conn=None):
        return [await self._get(key, encoding=encoding) for key in keys]

    async def _set(self, key, value, ttl=0, _cas_token=None, _conn=None):
        if ttl is not None and not isinstance(ttl, int):
            raise TypeError(f"aiomcache error: exptime not int: {ttl!r}")
        self.data[key] = value.encode() if isinstance(value, str) else value
        self.ttls[key] = ttl or 0
        return True

    async def _multi_set(self, pairs, ttl=0, _conn=None):
        for key, value in pairs:
            await self._set(key, value, ttl=ttl)
        return True

    async def _delete(self, key, _conn=None):
        return 1 if self.data.pop(key, None) is not None else 0

    async def _exists(self, key, _conn=None):
        return key in self.data

    async def _clear(self, namespace=None, _conn=None):
        if namespace:
            raise ValueError("MemcachedBackend doesnt support flushing by namespace")
        self.data.clear()
        self.flushes += 1
        return True


class BrokenMemoryCache(SimpleMemoryCache):
    """An aiocache cache whose every operation fails, like a server that went away."""

    async def _fail(self, *args: object, **kwargs: object) -> None:
        raise ConnectionError("aiocache backend is down")

    _get = _multi_get = _set = _multi_set = _delete = _exists = _clear = _fail  # type: ignore[assignment]


class SlowMemoryCache(SimpleMemoryCache):
    """Reads that take longer than aiocache's timeout."""

    async def _get(self, key, encoding="utf-8", _conn=None):
        await asyncio.sleep(1)
        return None


async def _delete_namespace(namespace: str) -> int:
    client = redis_asyncio.Redis(host=REDIS_HOST, port=REDIS_PORT)
    try:
        keys = [key async for key in client.scan_iter(match=f"{namespace}:*", count=1000)]
        removed = int(await client.unlink(*keys)) if keys else 0
        assert not [key async for key in client.scan_iter(match=f"{namespace}:*")]
        return removed
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def open_store(kind: str, clock: FakeClock) -> AsyncIterator[AiocacheStore]:
    """Yield an AiocacheStore on aiocache's memory or Redis cache, and clean up after it."""
    if kind == "memory":
        backend = SimpleMemoryCache()
    else:
        namespace = f"asyncperf-test-{uuid.uuid4().hex}"
        backend = RedisCache(endpoint=REDIS_HOST, port=REDIS_PORT, namespace=namespace)
    store = AiocacheStore(backend, clock=clock)
    health = await store.health()
    # A Redis that is down fails the test: CI never skips it.
    assert health.ok, f"Redis at {REDIS_HOST}:{REDIS_PORT} is not answering: {health.detail}"
    try:
        yield store
    finally:
        if kind == "redis":
            await _delete_namespace(backend.namespace)
        await store.aclose()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[AiocacheStore]:
    async with open_store(request.param, clock) as opened:
        yield opened


@pytest.fixture
async def redis_store(clock: FakeClock) -> AsyncIterator[AiocacheStore]:
    async with open_store("redis", clock) as opened:
        yield opened


async def physical_ttl(store: AiocacheStore, key: str) -> float | None:
    """Return the seconds the backend itself keeps ``key`` (None: no expiry)."""
    backend = store.cache
    full = backend.build_key(store.prefix + key)
    if store.kind == "memory":
        handle = backend._handlers.get(full)
        # aiocache cancels the timer of an overwritten key but leaves it in _handlers.
        return (
            None
            if handle is None or handle.cancelled()
            else handle.when() - asyncio.get_running_loop().time()
        )
    millis = await backend.raw("pttl", full)
    assert millis != -2, f"{full!r} is not in Redis"
    return None if millis == -1 else millis / 1000


# -- the contract, through the Cache facade -------------------------------------------------


async def test_set_get_delete_exists(store: AiocacheStore) -> None:
    cache = Cache(store)
    assert await cache.get("k", default=MISSING) is MISSING
    await cache.set("k", {"a": [1, 2.5, "x"]}, ttl=60)
    assert await cache.get("k") == {"a": [1, 2.5, "x"]}
    assert await cache.exists("k") is True
    assert await store.exists("k") is True
    assert await cache.delete("k") is True
    assert await cache.delete("k") is False
    assert await cache.exists("k") is False
    assert await store.exists("k") is False


async def test_none_is_a_value_not_a_miss(store: AiocacheStore) -> None:
    cache = Cache(store)
    await cache.set("k", None)
    assert await cache.get("k", default=MISSING) is None
    calls = 0

    def loader() -> None:
        nonlocal calls
        calls += 1

    assert await cache.get_or_set("n", loader) is None
    assert await cache.get_or_set("n", loader) is None
    assert calls == 1


async def test_binary_and_compressed_values_round_trip(store: AiocacheStore) -> None:
    cache = Cache(store)
    blob = bytes(range(256)) * 4
    text = "é€ü" * 2000  # compressed by zstd: random-looking bytes on the wire
    await cache.set("blob", blob)
    await cache.set("text", text)
    assert await cache.get("blob") == blob
    assert await cache.get("text") == text


async def test_entry_metadata_round_trips(store: AiocacheStore, clock: FakeClock) -> None:
    entry = Entry("v", fresh_until=clock.now + 10, load_time=0.25, tags=("t1", "t2"))
    await store.set("k", entry, 60)
    got = await store.get("k")
    assert got is not None
    assert got.value == "v"
    assert got.expires_at == clock.now + 60
    assert got.fresh_until == clock.now + 10
    assert got.load_time == 0.25
    assert got.tags == ("t1", "t2")


async def test_ttl_expires_by_the_store_clock(store: AiocacheStore, clock: FakeClock) -> None:
    cache = Cache(store, default_ttl=5)
    await cache.set("default", 1)
    await cache.set("explicit", 2, ttl=50)
    clock.advance(5)
    assert await cache.get("default", default=MISSING) is MISSING
    assert await cache.get("explicit") == 2


async def test_physical_ttl_is_passed_through(store: AiocacheStore) -> None:
    cache = Cache(store)
    await cache.set("short", 1, ttl=2.5)
    await cache.set("forever", 2)
    short = await physical_ttl(store, "short")
    assert short is not None
    assert 2.3 < short <= 2.5
    assert await physical_ttl(store, "forever") is None


async def test_get_many_set_many_delete_many(store: AiocacheStore) -> None:
    cache = Cache(store)
    await cache.set_many({"a": 1, "b": None, "c": [3]}, ttl=30)
    assert await cache.get_many(["a", "b", "c", "missing"]) == {"a": 1, "b": None, "c": [3]}
    assert await cache.get_many([]) == {}
    stats = cache.statistics()
    assert (stats.hits, stats.misses) == (3, 1)
    assert await cache.delete_many(["a", "c", "missing"]) == 2
    assert await cache.get_many(["a", "b", "c"]) == {"b": None}


async def test_set_many_groups_items_by_ttl(store: AiocacheStore) -> None:
    await store.set_many(
        [
            ("a", Entry(1), 10.0),
            ("b", Entry(2), 100.0),
            ("c", Entry(3), 10.0),
            ("d", Entry(4), None),
        ]
    )
    entries = await store.get_many(["a", "b", "c", "d"])
    assert [entry.value for entry in entries if entry is not None] == [1, 2, 3, 4]
    ttls = [await physical_ttl(store, key) for key in "abcd"]
    assert all(ttl is not None and 9 < ttl <= 10 for ttl in (ttls[0], ttls[2]))
    assert ttls[1] is not None
    assert 99 < ttls[1] <= 100
    assert ttls[3] is None


async def test_unencodable_value_raises_and_stores_nothing(store: AiocacheStore) -> None:
    cache = Cache(store)
    with pytest.raises(SerializationError):
        await cache.set("k", {1, 2})
    with pytest.raises(SerializationError):
        await cache.set_many({"ok": 1, "bad": {3}})
    assert await cache.get_many(["k", "ok", "bad"]) == {}


async def test_tags(store: AiocacheStore) -> None:
    cache = Cache(store)
    await cache.set("a", 1, tags=["red"])
    await cache.set("b", 2, tags=["red", "blue"], ttl=60)
    await cache.set_many({"c": 3, "d": 4}, tags=["blue"])
    await cache.set("e", 5)
    assert await cache.invalidate_tags("red") == 2
    assert await cache.get_many(["a", "b", "c", "d", "e"]) == {"c": 3, "d": 4, "e": 5}
    # "b" is gone already: blue removes what is left of it
    assert await cache.invalidate_tags("blue", "unknown") == 2
    assert await cache.get_many(["a", "b", "c", "d", "e"]) == {"e": 5}
    assert await cache.invalidate_tags("red", "blue") == 0
    assert await store.exists(TAG_MARK + "red") is False


async def test_tag_index_drops_expired_keys_and_expires_with_its_last(
    store: AiocacheStore, clock: FakeClock
) -> None:
    await store.set("old", Entry(1, tags=("t",)), 5)
    clock.advance(10)
    await store.set("new", Entry(2, tags=("t",)), 30)
    assert set(await store._read_index("t")) == {"new"}
    ttl = await physical_ttl(store, TAG_MARK + "t")
    assert ttl is not None
    assert 29 < ttl <= 30
    await store.set("kept", Entry(3, tags=("t",)), None)
    assert set(await store._read_index("t")) == {"new", "kept"}
    assert await physical_ttl(store, TAG_MARK + "t") is None


async def test_concurrent_tagging_keeps_every_key(store: AiocacheStore) -> None:
    cache = Cache(store)
    await asyncio.gather(*(cache.set(f"k{i}", i, tags=["shared"]) for i in range(20)))
    assert len(await store._read_index("shared")) == 20
    assert await cache.invalidate_tags("shared") == 20
    assert store._tag_locks._slots == {}


async def test_namespaces_and_clear_of_one_namespace(store: AiocacheStore) -> None:
    root = Cache(store)
    users, orders = root.namespace("users"), root.namespace("orders")
    await users.set("1", "ann", tags=["people"])
    await users.set("2", "bob")
    await orders.set("1", "book", tags=["people"])
    await root.set("top", "level")
    assert await users.get("1") == "ann"
    assert await orders.get("1") == "book"
    assert await users.clear() == 2
    assert await users.get_many(["1", "2"]) == {}
    assert await orders.get("1") == "book"
    assert await root.get("top") == "level"
    assert await store.exists(TAG_MARK + "users:people") is False
    assert await store.exists(TAG_MARK + "orders:people") is True
    assert await orders.invalidate_tags("people") == 1
    assert await root.clear() == 1  # "top"; no tag index is counted
    assert await root.get("top") is None


async def test_clear_counts_entries_not_tag_indexes(store: AiocacheStore) -> None:
    cache = Cache(store)
    await cache.set_many({"a": 1, "b": 2}, tags=["t"])
    assert await cache.clear() == 2
    assert await store.exists(TAG_MARK + "t") is False
    assert await cache.invalidate_tags("t") == 0


async def test_get_or_set_single_flight(store: AiocacheStore) -> None:
    cache = Cache(store)
    calls = 0
    release = asyncio.Event()

    async def loader() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        return "loaded"

    tasks = [asyncio.create_task(cache.get_or_set("k", loader, ttl=60)) for _ in range(50)]
    async with asyncio.timeout(5):  # until every caller has missed and joined the flight
        while cache.statistics().misses < 50:
            await asyncio.sleep(0.001)
    assert cache.in_flight() == 1
    release.set()
    assert await asyncio.gather(*tasks) == ["loaded"] * 50
    assert calls == 1
    assert cache.statistics().coalesced == 49
    assert await cache.get("k") == "loaded"


async def test_corrupt_payload_reads_as_miss_and_is_counted(store: AiocacheStore) -> None:
    cache = Cache(store)
    await cache.set("k", {"a": 1})
    await cache.set("other", 2)
    # Written by someone else through aiocache's own serializer.
    await store.cache.set(store.prefix + "k", "garbage")
    assert await cache.get("k", default=MISSING) is MISSING
    assert cache.statistics().errors == 1
    assert store.statistics().decode_errors == 1
    assert await cache.get_many(["k", "other"]) == {"other": 2}
    assert store.statistics().decode_errors == 2
    with pytest.raises(SerializationError):
        await store.get("k")
    assert await cache.get_or_set("k", lambda: "reloaded") == "reloaded"
    assert await cache.get("k") == "reloaded"


async def test_health_reports_the_backend(store: AiocacheStore) -> None:
    health = await Cache(store).health()
    assert health.ok
    assert health.backend == f"aiocache-{store.cache.NAME}"
    assert health.latency is not None


async def test_custom_codec_through_the_facade(store: AiocacheStore) -> None:
    cache = Cache(store, codec=Codec(pickle=True, secret="s" * 32))
    await cache.set("k", {1: (2, 3)})
    assert await cache.get("k") == {1: (2, 3)}


# -- failures ---------------------------------------------------------------------------------


async def test_backend_failures_are_counted_misses_not_errors() -> None:
    store = AiocacheStore(BrokenMemoryCache())
    cache = Cache(store)
    assert await cache.get("k", default=MISSING) is MISSING
    await cache.set("k", 1)
    await cache.set("t", 1, tags=["x"])
    assert await cache.exists("k") is False
    assert await cache.delete("k") is False
    assert await cache.get_many(["a", "b"]) == {}
    await cache.set_many({"a": 1})
    assert await cache.delete_many(["a"]) == 0
    assert await cache.invalidate_tags("x") == 0
    assert await cache.clear() == 0
    assert await cache.get_or_set("k", lambda: "loaded") == "loaded"
    stats = cache.statistics()
    assert stats.errors == 12
    assert stats.loads == 1
    assert stats.backend_failures == store.statistics().failures == 12
    health = await cache.health()
    assert not health.ok
    assert "aiocache backend is down" in health.detail


async def test_backend_failure_is_backend_unavailable_from_the_original() -> None:
    store = AiocacheStore(BrokenMemoryCache())
    with pytest.raises(BackendUnavailable, match="get failed") as info:
        await store.get("k")
    assert isinstance(info.value.__cause__, ConnectionError)


async def test_aiocache_timeout_is_backend_unavailable() -> None:
    store = AiocacheStore(SlowMemoryCache(timeout=0.01))
    with pytest.raises(BackendUnavailable) as info:
        await store.get("k")
    assert isinstance(info.value.__cause__, TimeoutError)
    assert await Cache(store).get("k", default=MISSING) is MISSING


async def test_aiocache_disabled_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOCACHE_DISABLE", "1")
    cache = Cache(AiocacheStore(SimpleMemoryCache()))
    await cache.set("k", 1)
    assert await cache.get("k") is None
    assert await cache.get_many(["k", "j"]) == {}
    assert cache.statistics().errors == 0


# -- construction, transport, lifecycle -------------------------------------------------------


def test_module_import_does_not_import_aiocache() -> None:
    code = (
        "import sys, asyncperf.cache._aiocache; "
        "assert 'aiocache' not in sys.modules, 'aiocache imported eagerly'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_aiocache_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aiocache", None)
    with pytest.raises(ImportError, match=r"pip install 'asyncperf\[aiocache\]'"):
        AiocacheStore(object())


@pytest.mark.parametrize("bad", [object(), {}, "redis://127.0.0.1"])
def test_non_aiocache_objects_are_refused(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="aiocache cache object"):
        AiocacheStore(bad)


def test_bad_prefix_and_serializer_encoding_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="prefix"):
        AiocacheStore(SimpleMemoryCache(), prefix=1)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="UTF-8"):
        AiocacheStore(MemcachedBackend(serializer=JsonSerializer(encoding="latin-1")))


def test_prefix_gets_a_separator_and_transport_follows_the_serializer() -> None:
    assert AiocacheStore(SimpleMemoryCache(), prefix="app").prefix == "app:"
    assert AiocacheStore(SimpleMemoryCache(), prefix="app:").prefix == "app:"
    assert AiocacheStore(SimpleMemoryCache())._text is False
    assert AiocacheStore(MemcachedBackend())._text is True
    assert AiocacheStore(MemcachedBackend(serializer=PickleSerializer()))._text is False
    assert "MemcachedBackend" in repr(AiocacheStore(MemcachedBackend(), prefix="p"))


async def test_store_prefix_lives_inside_the_aiocache_namespace() -> None:
    backend = SimpleMemoryCache(namespace="ns-")
    other = SimpleMemoryCache(namespace="ns-")
    store = AiocacheStore(backend, prefix="app")
    cache = Cache(store)
    await cache.set("k", 1, tags=["t"])
    await other.set("mine", "untouched")  # the user's own keys, next to ours
    assert set(backend._cache) == {"ns-app:k", f"ns-app:{TAG_MARK}t"}
    await backend.set("foreign", "x")
    assert await cache.clear() == 1
    assert set(backend._cache) == {"ns-foreign"}


async def test_whole_memory_cache_clear_without_prefix_or_namespace() -> None:
    backend = SimpleMemoryCache()
    cache = Cache(AiocacheStore(backend))
    await cache.set_many({"a": 1, "b": 2}, tags=["t"])
    assert await cache.clear() == 2
    assert backend._cache == {}


async def test_memory_store_keeps_bytes_not_objects() -> None:
    backend = SimpleMemoryCache()
    cache = Cache(AiocacheStore(backend))
    value = {"list": [1]}
    await cache.set("k", value)
    value["list"].append(2)  # the stored copy is encoded: no aliasing
    assert isinstance(backend._cache["k"], bytes)
    assert await cache.get("k") == {"list": [1]}


async def test_aclose_closes_the_aiocache_cache() -> None:
    closed = []

    class Closing(SimpleMemoryCache):
        async def _close(self, *args: object, **kwargs: object) -> None:
            closed.append(True)

    async with AiocacheStore(Closing()):
        pass
    assert closed == [True]


# -- Memcached semantics (a stand-in: no memcached server or aiomcache here) ----------------------


async def test_memcached_ttls_are_whole_seconds_rounded_up(clock: FakeClock) -> None:
    backend = MemcachedBackend()
    store = AiocacheStore(backend, clock=clock)
    cache = Cache(store)
    await cache.set("a b", "spaced", ttl=1.2)
    await cache.set("long", 1, ttl=40 * 24 * 3600)
    await cache.set_many({"x": 1, "y": 2}, ttl=0.4)
    await cache.set("none", 3)
    assert backend.ttls[b"a_b"] == 2
    assert backend.ttls[b"x"] == backend.ttls[b"y"] == 1
    assert backend.ttls[b"none"] == 0
    # Beyond 30 days Memcached reads the expiry as a Unix time.
    assert abs(backend.ttls[b"long"] - (time.time() + 40 * 24 * 3600)) < 5
    assert await cache.get("a b") == "spaced"
    assert await cache.get_many(["x", "y", "none"]) == {"x": 1, "y": 2, "none": 3}


async def test_memcached_round_trips_binary_as_text(clock: FakeClock) -> None:
    backend = MemcachedBackend()
    cache = Cache(AiocacheStore(backend, clock=clock))
    blob = bytes(range(256))
    await cache.set("blob", blob, tags=["t"])
    assert await cache.get("blob") == blob
    assert await cache.invalidate_tags("t") == 1
    assert await cache.get("blob") is None


async def test_memcached_clear_is_whole_cache_only(clock: FakeClock) -> None:
    backend = MemcachedBackend()
    root = Cache(AiocacheStore(backend, clock=clock))
    users = root.namespace("users")
    await users.set("1", "ann")
    assert await users.clear() == 0  # not supported: a counted error
    assert users.statistics().errors == 1
    assert await users.get("1") == "ann"
    assert await root.clear() == 0  # flush_all: count unknown
    assert backend.flushes == 1
    assert backend.data == {}
    prefixed = Cache(AiocacheStore(MemcachedBackend(), prefix="app"))
    assert await prefixed.clear() == 0
    assert prefixed.statistics().errors == 1


# -- Redis specifics --------------------------------------------------------------------------


@pytest.mark.redis
async def test_redis_with_a_bytes_serializer_and_no_timeout(clock: FakeClock) -> None:
    namespace = f"asyncperf-test-{uuid.uuid4().hex}"
    backend = RedisCache(
        endpoint=REDIS_HOST,
        port=REDIS_PORT,
        namespace=namespace,
        serializer=PickleSerializer(),
        timeout=None,
    )
    store = AiocacheStore(backend, clock=clock, prefix="app")
    assert store._text is False
    cache = Cache(store)
    try:
        assert (await cache.health()).ok, "Redis at 127.0.0.1:6379 is not answering"
        blob = bytes(range(256))
        await cache.set("blob", blob, ttl=30, tags=["t"])
        raw = await backend.raw("get", f"{namespace}:app:blob")
        assert raw[:2] == b"\xa7\x01"  # raw asyncperf payload, no text mapping
        assert await cache.get("blob") == blob
        assert await cache.invalidate_tags("t") == 1
        await cache.set_many({"a": 1, "b": 2})
        assert await cache.clear() == 2
    finally:
        await _delete_namespace(namespace)
        await cache.aclose()


@pytest.mark.redis
async def test_redis_clear_never_touches_other_namespaces(redis_store: AiocacheStore) -> None:
    store = redis_store
    neighbour = f"{store.cache.namespace}-neighbour"
    client = redis_asyncio.Redis(host=REDIS_HOST, port=REDIS_PORT)
    try:
        await client.set(f"{neighbour}:k", b"x", ex=60)
        cache = Cache(store)
        await cache.set("k", 1)
        assert await cache.clear() == 1
        assert await client.get(f"{neighbour}:k") == b"x"
    finally:
        await client.unlink(f"{neighbour}:k")
        await client.aclose()


async def test_foreign_values_are_serialization_errors(clock: FakeClock) -> None:
    memory = SimpleMemoryCache()
    store = AiocacheStore(memory, clock=clock)
    await memory.set("object", {"not": "bytes"})
    await memory.set("truncated", bytearray(b"\xa7\x01\x00"))
    for key in ("object", "truncated"):
        with pytest.raises(SerializationError):
            await store.get(key)
    text = AiocacheStore(MemcachedBackend(), clock=clock)
    await text.cache.set("euro", "€ is not one byte")
    with pytest.raises(SerializationError, match="not an asyncperf payload"):
        await text.get("euro")


async def test_unreadable_tag_index_is_dropped_and_rebuilt(
    store: AiocacheStore, caplog: pytest.LogCaptureFixture
) -> None:
    cache = Cache(store)
    await cache.set("a", 1, tags=["t"])
    await store.cache.set(TAG_MARK + "t", "garbage")
    assert await cache.invalidate_tags("t") == 0  # the index is lost: nothing to remove
    assert "unreadable index" in caplog.text
    assert store.statistics().decode_errors == 1
    await cache.set("b", 2, tags=["t"])
    assert await cache.invalidate_tags("t") == 1
    assert await cache.get("a") == 1


async def test_clear_by_prefix_refuses_a_key_builder_that_hides_prefixes() -> None:
    backend = SimpleMemoryCache(key_builder=lambda key, namespace=None: key[::-1])
    cache = Cache(AiocacheStore(backend, prefix="app"))
    await cache.set("k", 1)
    assert await cache.get("k") == 1
    assert await cache.clear() == 0
    assert cache.statistics().errors == 1
    assert await cache.get("k") == 1
