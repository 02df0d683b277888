"""The blocking path (decorated sync functions), ttl()/expire(), and rarer facade paths."""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor

import anyio
import pytest

from asyncperf import (
    BackendError,
    Cache,
    Codec,
    ConfigurationError,
    LoadPolicy,
    MemoryStore,
    SerializationError,
)

from ..conftest import FakeClock

MISSING = object()


@pytest.fixture
def cache(clock: FakeClock) -> Cache:
    return Cache(MemoryStore(clock=clock))


def test_get_or_set_sync_coalesces_threads(cache: Cache) -> None:
    release = threading.Event()
    calls = 0

    def loader() -> str:
        nonlocal calls
        calls += 1
        release.wait(5)
        return "v"

    policy = LoadPolicy(ttl=60)
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(cache.get_or_set_sync, "k", loader, policy=policy) for _ in range(8)]
        while cache.in_flight() == 0:
            pass
        release.set()
        assert [f.result(5) for f in futures] == ["v"] * 8
    assert calls == 1
    assert cache.in_flight() == 0


def test_sync_without_lock_and_with_errors(cache: Cache) -> None:
    calls = 0

    def loader() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert cache.get_or_set_sync("k", loader, policy=LoadPolicy(lock=None)) == 1
    assert cache.get_or_set_sync("k", loader, policy=LoadPolicy(lock=None)) == 1

    def boom() -> int:
        raise KeyError("nope")

    with pytest.raises(KeyError):
        cache.get_or_set_sync("e", boom, policy=LoadPolicy())
    assert cache.in_flight() == 0


def test_sync_stale_while_revalidate_refreshes_in_a_thread(clock: FakeClock) -> None:
    cache = Cache(MemoryStore(clock=clock))
    version = 0
    done = threading.Event()

    def loader() -> int:
        nonlocal version
        version += 1
        if version > 1:
            done.set()
        return version

    policy = LoadPolicy(ttl=10, stale_ttl=100, early_refresh=False)
    assert cache.get_or_set_sync("k", loader, policy=policy) == 1
    clock.advance(11)
    assert cache.get_or_set_sync("k", loader, policy=policy) == 1, "stale, served at once"
    assert done.wait(5)
    for _ in range(500):
        if cache.in_flight() == 0:
            break
        threading.Event().wait(0.01)
    assert cache.get_or_set_sync("k", loader, policy=policy) == 2
    assert cache.statistics().background_refreshes == 1


def test_sync_stale_if_error(clock: FakeClock) -> None:
    cache = Cache(MemoryStore(clock=clock))
    policy = LoadPolicy(ttl=1, stale_if_error=True)
    assert cache.get_or_set_sync("k", lambda: "good", policy=policy) == "good"
    clock.advance(1.5)

    def boom() -> str:
        raise OSError("down")

    assert cache.get_or_set_sync("k", boom, policy=policy) == "good"
    assert cache.statistics().stale_served == 1


def test_sync_path_with_an_encoding_store() -> None:
    store = MemoryStore(codec=Codec())
    cache = Cache(store)
    with pytest.raises(SerializationError):
        cache.get_or_set_sync("k", object, policy=LoadPolicy())
    assert cache.in_flight() == 0
    assert cache.get_or_set_sync("k", lambda: [1], policy=LoadPolicy()) == [1]
    store._data["k"].value = b"junk"
    assert cache.get_or_set_sync("k", lambda: [2], policy=LoadPolicy()) == [2]
    assert cache.statistics().errors == 1


def test_refresh_sync_joins_a_running_load(cache: Cache) -> None:
    started, release = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        release.wait(5)
        return "slow"

    policy = LoadPolicy()
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(cache.get_or_set_sync, "k", slow, policy=policy)
        started.wait(5)
        joined = pool.submit(cache._refresh_sync, "k", lambda: "other", policy, ())
        release.set()
        assert first.result(5) == "slow"
        assert joined.result(5) == "slow"


async def test_aclose_stops_the_refresh_executor(clock: FakeClock) -> None:
    cache = Cache(MemoryStore(clock=clock))
    policy = LoadPolicy(ttl=1, stale_ttl=10)
    cache.get_or_set_sync("k", lambda: 1, policy=policy)
    clock.advance(2)
    cache.get_or_set_sync("k", lambda: 2, policy=policy)
    await cache.aclose()
    assert cache._shared.executor is not None
    assert cache._shared.executor._shutdown
    clock.advance(20)
    assert cache.get_or_set_sync("k", lambda: 3, policy=policy) == 3


async def test_ttl_and_expire_on_memory(cache: Cache, clock: FakeClock) -> None:
    await cache.set("k", 1, ttl=30)
    assert await cache.ttl("k") == 30
    clock.advance(10)
    assert await cache.ttl("k") == 20
    assert await cache.expire("k", 100) is True
    assert await cache.ttl("k") == 100
    assert await cache.expire("k", None) is True
    assert await cache.ttl("k") == math.inf
    assert await cache.ttl("absent") is None
    assert await cache.expire("absent", 5) is False
    with pytest.raises(ConfigurationError):
        await cache.expire("k", 0)


async def test_jitter_applies_to_overwrites_too(clock: FakeClock) -> None:
    cache = Cache(MemoryStore(clock=clock), ttl_jitter=0.5)
    seen = set()
    for _ in range(50):
        await cache.set("k", 1, ttl=100.0)
        seen.add(round(await cache.ttl("k"), 6))  # type: ignore[arg-type]
    assert len(seen) > 10
    assert all(50 <= s <= 150 for s in seen)


async def test_strict_mode_keeps_backend_errors_as_they_are() -> None:
    class Failing(MemoryStore):
        async def get(self, key: str):  # type: ignore[override]
            raise BackendError("explicit")

    cache = Cache(Failing(codec=Codec()), strict=True)
    with pytest.raises(BackendError, match="explicit"):
        await cache.get("k")


async def test_warm_joins_a_load_already_running(cache: Cache) -> None:
    started, release = anyio.Event(), anyio.Event()
    calls = 0

    async def slow() -> str:
        nonlocal calls
        calls += 1
        started.set()
        await release.wait()
        return "slow"

    async with anyio.create_task_group() as group:
        group.start_soon(lambda: cache.get_or_set("k", slow))
        await started.wait()
        warm = None

        async def run_warm() -> None:
            nonlocal warm
            warm = await cache.warm({"k": lambda: "other"}, force=True)

        group.start_soon(run_warm)
        flight = cache._shared.flights["k"]
        while flight.event.statistics().tasks_waiting < 1:  # warm joined the load
            await anyio.sleep(0)
        release.set()
    assert calls == 1
    assert warm is not None
    assert warm.loaded == 1
    assert await cache.get("k") == "slow"


async def test_a_load_cancelled_while_storing_still_answers_waiters() -> None:
    class SlowStore(MemoryStore):
        def __init__(self) -> None:
            super().__init__(codec=Codec())
            self.gate = anyio.Event()

        async def set(self, key, entry, ttl) -> None:  # type: ignore[no-untyped-def]
            await self.gate.wait()
            await super().set(key, entry, ttl)

    store = SlowStore()
    cache = Cache(store)
    results: list[object] = []
    scope = anyio.CancelScope()

    async def leader() -> None:
        with scope:
            await cache.get_or_set("k", lambda: "v")

    async def waiter() -> None:
        results.append(await cache.get_or_set("k", lambda: "w"))

    async with anyio.create_task_group() as group:
        group.start_soon(leader)
        await anyio.sleep(0)
        group.start_soon(waiter)
        await anyio.sleep(0)
        scope.cancel()
    assert results == ["v"]
    assert cache.in_flight() == 0
