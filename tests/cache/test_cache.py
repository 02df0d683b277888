"""The Cache facade on a MemoryStore and on stores that fail."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import anyio
import pytest

from asyncperf import (
    BackendError,
    BaseStore,
    Cache,
    Codec,
    ConfigurationError,
    Entry,
    MemoryStore,
    SerializationError,
)

from ..conftest import FakeClock

MISSING = object()


@pytest.fixture
def cache(clock: FakeClock) -> Cache:
    return Cache(MemoryStore(max_entries=1000, clock=clock))


class BrokenStore(BaseStore):
    """A store whose every operation raises, like a Redis that went away."""

    backend_name = "broken"

    def __init__(self) -> None:
        self.clock = lambda: 0.0
        self.calls = 0

    def _fail(self) -> None:
        self.calls += 1
        raise ConnectionError("store is down")

    async def get(self, key: str) -> Entry | None:
        self._fail()
        return None

    async def set(self, key: str, entry: Entry, ttl: float | None) -> None:
        self._fail()

    async def delete(self, key: str) -> bool:
        self._fail()
        return False

    async def invalidate_tags(self, tags: Sequence[str]) -> int:
        self._fail()
        return 0

    async def clear(self, prefix: str = "") -> int:
        self._fail()
        return 0

    async def health(self):  # type: ignore[override]
        self._fail()


class EncodingStore(MemoryStore):
    """A MemoryStore in codec mode that goes through the generic (awaited) path."""


async def test_set_get_delete_exists(cache: Cache) -> None:
    assert await cache.get("k") is None
    assert await cache.get("k", default=MISSING) is MISSING
    await cache.set("k", {"a": 1}, ttl=60)
    assert await cache.get("k") == {"a": 1}
    assert await cache.exists("k") is True
    assert await cache.delete("k") is True
    assert await cache.delete("k") is False
    assert await cache.exists("k") is False


async def test_none_is_a_value_not_a_miss(cache: Cache) -> None:
    await cache.set("k", None)
    assert await cache.get("k", default=MISSING) is None
    assert await cache.exists("k")
    calls = 0

    def loader() -> None:
        nonlocal calls
        calls += 1

    assert await cache.get_or_set("n", loader) is None
    assert await cache.get_or_set("n", loader) is None
    assert calls == 1


async def test_ttl_and_default_ttl(clock: FakeClock) -> None:
    cache = Cache(MemoryStore(clock=clock), default_ttl=5)
    await cache.set("default", 1)
    await cache.set("explicit", 2, ttl=50)
    await cache.set("int-ttl", 3, ttl=7)
    clock.advance(5)
    assert await cache.get("default") is None
    assert await cache.get("explicit") == 2
    assert await cache.get("int-ttl") == 3
    clock.advance(2)
    assert await cache.get("int-ttl") is None


async def test_overwrite_resets_ttl_both_ways(cache: Cache, clock: FakeClock) -> None:
    await cache.set("k", 1, ttl=10)
    await cache.set("k", 2, ttl=100)
    clock.advance(50)
    assert await cache.get("k") == 2
    await cache.set("k", 3)  # no ttl, no default: never expires
    clock.advance(10_000)
    assert await cache.get("k") == 3
    await cache.set("k", 4, ttl=1)
    clock.advance(1)
    assert await cache.get("k") is None


@pytest.mark.parametrize("bad", [0, -1, -0.5, math.nan, math.inf, -math.inf, True, "5", [1]])
async def test_bad_ttl_is_a_configuration_error(cache: Cache, bad: object) -> None:
    with pytest.raises(ConfigurationError, match="ttl"):
        await cache.set("k", 1, ttl=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="ttl"):
        await cache.get_or_set("k", lambda: 1, ttl=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="default_ttl"):
        Cache(default_ttl=bad)  # type: ignore[arg-type]
    assert await cache.get("k") is None


@pytest.mark.parametrize("bad", [1, b"k", None, ("a",)])
async def test_non_str_keys_are_type_errors(cache: Cache, bad: object) -> None:
    with pytest.raises(TypeError, match="str"):
        await cache.get(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="str"):
        await cache.set(bad, 1)  # type: ignore[arg-type]


async def test_long_keys_are_hashed_and_still_distinct(cache: Cache) -> None:
    base = "x" * 300
    await cache.set(base + "1", 1)
    await cache.set(base + "2", 2)
    assert await cache.get(base + "1") == 1
    assert await cache.get(base + "2") == 2
    keys = cache.store.keys()  # type: ignore[attr-defined]
    assert all(len(key) <= 200 for key in keys)


async def test_get_many_set_many_delete_many(cache: Cache, clock: FakeClock) -> None:
    await cache.set_many({"a": 1, "b": None, "c": [3]}, ttl=10)
    assert await cache.get_many(["a", "b", "c", "zz"]) == {"a": 1, "b": None, "c": [3]}
    clock.advance(10)
    assert await cache.get_many(["a"]) == {}
    await cache.set_many({"a": 1, "b": 2})
    assert await cache.delete_many(["a", "b", "zz"]) == 2
    stats = cache.statistics()
    assert stats.sets == 5
    assert stats.deletes == 2


async def test_tags_and_invalidation(cache: Cache) -> None:
    await cache.set("u1", 1, tags=["user:1", "users"])
    await cache.set("u2", 2, tags=["users"])
    await cache.get_or_set("u3", lambda: 3, tags=["user:3"])
    assert await cache.invalidate_tags("user:1") == 1
    assert await cache.get("u1") is None
    assert await cache.get("u2") == 2
    assert await cache.invalidate_tags("users", "user:3") == 2
    assert await cache.get_many(["u2", "u3"]) == {}
    assert await cache.invalidate_tags() == 0


@pytest.mark.parametrize("bad", ["single", [1], [""], [None]])
async def test_bad_tags(cache: Cache, bad: object) -> None:
    with pytest.raises(ConfigurationError, match="tag"):
        await cache.set("k", 1, tags=bad)  # type: ignore[arg-type]


async def test_namespaces_isolate_keys_tags_clear_and_statistics(cache: Cache) -> None:
    users = cache.namespace("users")
    orders = cache.namespace("orders")
    await users.set("1", "alice", tags=["t"])
    await orders.set("1", "order", tags=["t"])
    await cache.set("1", "root")
    assert await users.get("1") == "alice"
    assert await orders.get("1") == "order"
    assert await cache.get("1") == "root"
    assert users.name == "users"
    assert users.namespace("admins").name == "users:admins"
    assert await users.invalidate_tags("t") == 1
    assert await orders.get("1") == "order"
    await users.set("2", "bob")
    assert await users.clear() == 1
    assert await orders.get("1") == "order"
    assert users.statistics().hits == 1
    assert orders.statistics().hits == 3
    assert await cache.clear() == 2  # the root clears the whole store
    with pytest.raises(ConfigurationError):
        cache.namespace("")


async def test_statistics_count_what_happened(cache: Cache, clock: FakeClock) -> None:
    assert cache.statistics().hit_rate == 0.0
    await cache.set("a", 1, ttl=1)
    await cache.get("a")
    await cache.get("b")
    clock.advance(1)
    await cache.get("a")
    await cache.get_or_set("c", lambda: 3)
    stats = cache.statistics()
    assert (stats.hits, stats.misses, stats.sets, stats.loads) == (1, 3, 2, 1)
    assert stats.hit_rate == pytest.approx(0.25)
    assert stats.expirations == 1
    assert stats.breaker_state == "closed"
    assert stats.to_dict()["hits"] == 1


async def test_evictions_show_in_statistics(clock: FakeClock) -> None:
    cache = Cache(MemoryStore(max_entries=2, clock=clock))
    for key in "abcd":
        await cache.set(key, key)
    assert cache.statistics().evictions == 2


async def test_ttl_jitter_spreads_expiry(clock: FakeClock) -> None:
    cache = Cache(MemoryStore(clock=clock), ttl_jitter=0.5)
    for i in range(200):
        await cache.set(f"k{i}", i, ttl=100)
    expiries = {entry.expires_at - clock.now for entry in cache.store._data.values()}  # type: ignore[attr-defined]
    assert len(expiries) > 100
    assert min(expiries) >= 50
    assert max(expiries) <= 150


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2, True, "0.1"])
def test_bad_jitter(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="ttl_jitter"):
        Cache(ttl_jitter=bad)  # type: ignore[arg-type]


def test_bad_store_and_codec_arguments() -> None:
    with pytest.raises(ConfigurationError, match="Store protocol"):
        Cache(store={})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="codec"):
        Cache(MemoryStore(), codec=Codec())
    with pytest.raises(ConfigurationError, match="namespace"):
        Cache(namespace=5)  # type: ignore[arg-type]


async def test_warm_fills_keys_with_bounded_concurrency(cache: Cache) -> None:
    running = peak = 0
    progress: list[tuple[int, int]] = []

    def make(i: int):
        async def load() -> int:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await anyio.sleep(0)
            await anyio.sleep(0)
            running -= 1
            if i == 7:
                raise RuntimeError("boom")
            return i * 10

        return load

    await cache.set("k3", "already")
    report = await cache.warm(
        {f"k{i}": make(i) for i in range(20)},
        concurrency=4,
        ttl=60,
        progress=lambda done, total: progress.append((done, total)),
    )
    assert peak <= 4
    assert report.loaded == 18
    assert report.skipped == 1
    assert list(report.failed) == ["k7"]
    assert isinstance(report.failed["k7"], RuntimeError)
    assert progress[-1] == (20, 20)
    assert len(progress) == 20
    assert await cache.get("k5") == 50
    assert await cache.get("k3") == "already"
    forced = await cache.warm({"k3": lambda: "new"}, force=True)
    assert forced.loaded == 1
    assert await cache.get("k3") == "new"


async def test_warm_accepts_async_progress_and_rejects_bad_concurrency(cache: Cache) -> None:
    seen = []

    async def progress(done: int, total: int) -> None:
        seen.append(done)

    await cache.warm({"a": lambda: 1}, progress=progress)
    assert seen == [1]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigurationError, match="concurrency"):
            await cache.warm({}, concurrency=bad)  # type: ignore[arg-type]


async def test_refresh_reloads_whatever_is_cached(cache: Cache) -> None:
    await cache.set("k", "old")
    assert await cache.refresh("k", lambda: "new", ttl=10) == "new"
    assert await cache.get("k") == "new"


async def test_health_of_memory_store(cache: Cache) -> None:
    report = await cache.health()
    assert report.ok
    assert report.backend == "memory"
    assert report.breaker_state == "closed"
    assert not report.degraded


async def test_context_manager_and_aclose_are_idempotent() -> None:
    async with Cache() as cache:
        await cache.set("k", 1)
    await cache.aclose()


async def test_failing_store_degrades_to_misses_and_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = BrokenStore()
    cache = Cache(store)
    with caplog.at_level(logging.WARNING, logger="asyncperf.cache"):
        assert await cache.get("k", default=MISSING) is MISSING
        await cache.set("k", 1)
        assert await cache.delete("k") is False
        assert await cache.exists("k") is False
        assert await cache.get_many(["a", "b"]) == {}
        await cache.set_many({"a": 1})
        assert await cache.delete_many(["a"]) == 0
        assert await cache.invalidate_tags("t") == 0
        assert await cache.clear() == 0
        for _ in range(5):
            assert await cache.get_or_set("k", lambda: "loaded") == "loaded"
    stats = cache.statistics()
    assert stats.errors == 19
    assert stats.loads == 5
    # rate-limited: one line per operation kind, not one per failure
    get_lines = [r for r in caplog.records if "cache get failed" in r.getMessage()]
    assert len(get_lines) == 1
    health = await cache.health()
    assert not health.ok
    assert "store is down" in health.detail


async def test_strict_mode_raises_backend_error() -> None:
    cache = Cache(BrokenStore(), strict=True)
    with pytest.raises(BackendError, match="store is down") as info:
        await cache.get("k")
    assert isinstance(info.value.__cause__, ConnectionError)
    with pytest.raises(BackendError):
        await cache.get_or_set("k", lambda: 1)


async def test_corrupt_payload_reads_as_miss_and_is_counted(clock: FakeClock) -> None:
    store = EncodingStore(codec=Codec(), clock=clock)
    cache = Cache(store)
    await cache.set("k", {"a": 1})
    assert await cache.get("k") == {"a": 1}
    store._data["k"].value = b"\xa7\x01\x00{not json"
    assert await cache.get("k", default=MISSING) is MISSING
    assert cache.statistics().errors == 1
    assert store.statistics().decode_errors == 1
    assert await cache.get_or_set("k", lambda: "reloaded") == "reloaded"
    assert await cache.get("k") == "reloaded"


async def test_unencodable_value_raises_and_stores_nothing() -> None:
    cache = Cache(EncodingStore(codec=Codec()))
    with pytest.raises(SerializationError, match="'k'") as info:
        await cache.set("k", {1, 2})
    assert "set" in str(info.value)
    assert await cache.get("k", default=MISSING) is MISSING
    with pytest.raises(SerializationError):
        await cache.get_or_set("j", lambda: object())
    assert await cache.get("j", default=MISSING) is MISSING
    assert cache.in_flight() == 0
    with pytest.raises(SerializationError):
        await cache.set_many({"a": 1, "b": object()})


def test_from_url_memory() -> None:
    cache = Cache.from_url("memory://?max_entries=10000&max_bytes=1_000_000&default_ttl=30")
    store = cache.store
    assert isinstance(store, MemoryStore)
    assert store.max_entries == 10_000
    assert store.max_bytes == 1_000_000
    cache = Cache.from_url("memory://", namespace="app", ttl_jitter="0.1", strict="false")
    assert cache.name == "app"


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("memcached://localhost", "scheme"),
        ("localhost:6379", "scheme"),
        ("memory://?max_entires=5", "max_entires"),
        ("memory://?max_entries=lots", "max_entries"),
        ("memory://?max_entries=0", "max_entries"),
        ("memory://?default_ttl=-1", "default_ttl"),
        ("memory://?strict=maybe", "strict"),
        ("memory://?ttl_jitter=nan", "ttl_jitter"),
        ("memory://host/path", "no host"),
        ("memory://?max_entries=1&max_entries=2", "twice"),
    ],
)
def test_from_url_errors_name_the_problem(url: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        Cache.from_url(url)


def test_from_url_needs_a_str() -> None:
    with pytest.raises(ConfigurationError, match="str"):
        Cache.from_url(None)  # type: ignore[arg-type]


def test_repr() -> None:
    assert "namespace='x'" in repr(Cache(namespace="x"))
