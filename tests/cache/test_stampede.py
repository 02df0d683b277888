"""Single-flight, cancellation, stale-while-revalidate, stale-if-error, early refresh."""

from __future__ import annotations

import math

import anyio
import pytest

from asyncperf import Cache, ConfigurationError, MemoryStore

from ..conftest import FakeClock


@pytest.fixture
def cache(clock: FakeClock) -> Cache:
    return Cache(MemoryStore(clock=clock))


class Loader:
    """An async loader that blocks until released, counting its calls."""

    def __init__(self, value: object = "value", error: BaseException | None = None) -> None:
        self.value = value
        self.error = error
        self.calls = 0
        self.started = anyio.Event()
        self.release = anyio.Event()

    async def __call__(self) -> object:
        self.calls += 1
        self.started.set()
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return self.value


async def test_concurrent_misses_run_the_loader_once(cache: Cache) -> None:
    loader = Loader()
    results: list[object] = []

    async def call() -> None:
        results.append(await cache.get_or_set("k", loader, ttl=60))

    async with anyio.create_task_group() as group:
        for _ in range(1000):
            group.start_soon(call)
        await loader.started.wait()
        await anyio.sleep(0)
        assert cache.in_flight() == 1
        loader.release.set()
    assert loader.calls == 1
    assert results == ["value"] * 1000
    stats = cache.statistics()
    assert stats.coalesced == 999
    assert stats.loads == 1
    assert cache.in_flight() == 0


async def test_every_waiter_gets_the_exception_and_it_is_not_cached(cache: Cache) -> None:
    loader = Loader(error=LookupError("upstream said no"))
    errors: list[BaseException] = []

    async def call() -> None:
        try:
            await cache.get_or_set("k", loader)
        except LookupError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as group:
        for _ in range(50):
            group.start_soon(call)
        await loader.started.wait()
        loader.release.set()
    assert len(errors) == 50
    assert all(err is errors[0] for err in errors)
    assert cache.in_flight() == 0
    assert cache.statistics().load_errors == 1
    assert await cache.get_or_set("k", lambda: "recovered") == "recovered"


async def test_a_cancelled_leader_hands_over_to_a_waiter(cache: Cache) -> None:
    first = Loader("first")
    second_calls = 0

    async def second() -> str:
        nonlocal second_calls
        second_calls += 1
        return "second"

    results: list[object] = []

    async def waiter() -> None:
        results.append(await cache.get_or_set("k", second))

    leader_scope = anyio.CancelScope()

    async def leader() -> None:
        with leader_scope:
            await cache.get_or_set("k", first)

    async with anyio.create_task_group() as group:
        group.start_soon(leader)
        await first.started.wait()
        for _ in range(10):
            group.start_soon(waiter)
        await anyio.sleep(0)
        await anyio.sleep(0)
        assert cache.statistics().coalesced == 10
        leader_scope.cancel()
    assert first.calls == 1
    assert second_calls == 1, "exactly one waiter took over"
    assert results == ["second"] * 10
    assert cache.in_flight() == 0
    assert await cache.get("k") == "second"


async def test_cancelled_waiter_then_load_completes(cache: Cache) -> None:
    loader = Loader()
    got: list[object] = []

    async def waiter_then_cancelled(scope: anyio.CancelScope) -> None:
        with scope:
            await cache.get_or_set("k", loader)
        got.append("cancelled")

    async with anyio.create_task_group() as group:
        group.start_soon(lambda: cache.get_or_set("k", loader))
        await loader.started.wait()
        scope = anyio.CancelScope()
        group.start_soon(waiter_then_cancelled, scope)
        await anyio.sleep(0)
        scope.cancel()
        await anyio.sleep(0)
        loader.release.set()
    assert got == ["cancelled"]
    assert loader.calls == 1
    assert await cache.get("k") == "value"
    assert cache.in_flight() == 0


async def test_lock_none_does_not_coalesce(cache: Cache) -> None:
    calls = 0

    async def loader() -> int:
        nonlocal calls
        calls += 1
        await anyio.sleep(0)
        return calls

    async with anyio.create_task_group() as group:
        for _ in range(5):
            group.start_soon(lambda: cache.get_or_set("k", loader, lock=None))
    assert calls == 5
    assert cache.statistics().coalesced == 0


async def test_distributed_lock_on_a_memory_store_acts_local(cache: Cache) -> None:
    loader = Loader()
    async with anyio.create_task_group() as group:
        for _ in range(5):
            group.start_soon(lambda: cache.get_or_set("k", loader, lock="distributed"))
        await loader.started.wait()
        loader.release.set()
    assert loader.calls == 1


async def test_sync_loader_is_accepted(cache: Cache) -> None:
    assert await cache.get_or_set("k", lambda: 5) == 5


async def test_stale_while_revalidate_serves_stale_and_refreshes_once(
    cache: Cache, clock: FakeClock
) -> None:
    version = 0

    async def loader() -> int:
        nonlocal version
        version += 1
        return version

    opts = {"ttl": 10, "stale_ttl": 30, "early_refresh": False}
    assert await cache.get_or_set("k", loader, **opts) == 1
    clock.advance(15)  # stale, inside the stale window
    assert await cache.get("k") is None, "plain get never serves stale values"
    results = [await cache.get_or_set("k", loader, **opts) for _ in range(20)]
    assert results == [1] * 20
    await cache.wait_background()
    assert version == 2
    assert await cache.get_or_set("k", loader, **opts) == 2
    stats = cache.statistics()
    assert stats.stale_served == 20
    assert stats.background_refreshes == 1
    clock.advance(10 + 30)  # past the stale window too: a blocking load
    assert await cache.get_or_set("k", loader, **opts) == 3


async def test_failed_background_refresh_keeps_serving_and_is_logged(
    cache: Cache, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    async def loader() -> str:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise RuntimeError("refresh failed")
        return "v1"

    await cache.get_or_set("k", loader, ttl=10, stale_ttl=100)
    clock.advance(11)
    assert await cache.get_or_set("k", loader, ttl=10, stale_ttl=100) == "v1"
    await cache.wait_background()
    assert "refresh failed" in caplog.text
    assert cache.statistics().load_errors == 1
    assert await cache.get_or_set("k", loader, ttl=10, stale_ttl=100) == "v1"


async def test_stale_if_error_serves_the_old_value(cache: Cache, clock: FakeClock) -> None:
    fail = False

    async def loader() -> str:
        if fail:
            raise ConnectionError("origin down")
        return "good"

    assert await cache.get_or_set("k", loader, ttl=10, stale_if_error=True) == "good"
    clock.advance(12)
    fail = True
    assert await cache.get_or_set("k", loader, ttl=10, stale_if_error=True) == "good"
    assert cache.statistics().stale_served == 1
    clock.advance(10)  # kept one extra ttl (20 s in all); now gone
    with pytest.raises(ConnectionError):
        await cache.get_or_set("k", loader, ttl=10, stale_if_error=True)


async def test_stale_if_error_with_explicit_window(cache: Cache, clock: FakeClock) -> None:
    await cache.get_or_set("k", lambda: "v", ttl=1, stale_if_error=100)
    clock.advance(50)

    def boom() -> str:
        raise ValueError("x")

    assert await cache.get_or_set("k", boom, ttl=1, stale_if_error=100) == "v"


async def test_without_stale_options_an_error_propagates(cache: Cache, clock: FakeClock) -> None:
    await cache.get_or_set("k", lambda: "v", ttl=1)
    clock.advance(2)

    def boom() -> str:
        raise ValueError("x")

    with pytest.raises(ValueError, match="x"):
        await cache.get_or_set("k", boom, ttl=1)


async def test_xfetch_refreshes_early_with_rising_probability(
    cache: Cache, clock: FakeClock
) -> None:
    loads = 0

    async def slow_loader() -> int:
        nonlocal loads
        loads += 1
        clock.advance(2.0)  # the loader "takes" 2 s: delta = 2
        return loads

    await cache.get_or_set("k", slow_loader, ttl=100)
    assert loads == 1
    # u = 0.5: refresh when now + 2 * 1.0 * ln 2 (1.386 s) >= expiry
    cache._random = lambda: 0.5
    clock.advance(100 - 1.5)  # 1.5 s before expiry: not yet
    assert await cache.get_or_set("k", slow_loader, ttl=100) == 1
    await cache.wait_background()
    assert loads == 1
    clock.advance(0.3)  # 1.2 s before expiry: inside the window
    assert await cache.get_or_set("k", slow_loader, ttl=100) == 1, "serves current value"
    await cache.wait_background()
    assert loads == 2
    assert cache.statistics().early_refreshes == 1
    assert await cache.get_or_set("k", slow_loader, ttl=100) == 2


async def test_xfetch_beta_and_disabling(cache: Cache, clock: FakeClock) -> None:
    async def loader() -> int:
        clock.advance(1.0)
        return 1

    await cache.get_or_set("k", loader, ttl=100)
    cache._random = lambda: 1 - math.exp(-1)  # -ln(1-u) = 1: window = delta * beta
    clock.advance(100 - 1 - 5)  # 5 s before expiry
    await cache.get_or_set("k", loader, ttl=100, early_refresh=False)
    await cache.get_or_set("k", loader, ttl=100)  # beta 1: window 1 s
    assert cache.statistics().early_refreshes == 0
    await cache.get_or_set("k", loader, ttl=100, early_refresh=10.0)  # window 10 s
    await cache.wait_background()
    assert cache.statistics().early_refreshes == 1


async def test_values_set_directly_are_not_refreshed_early(cache: Cache, clock: FakeClock) -> None:
    await cache.set("k", "v", ttl=10)
    cache._random = lambda: 0.999999
    clock.advance(9.99)
    assert await cache.get_or_set("k", lambda: "new", ttl=10) == "v"
    assert cache.statistics().early_refreshes == 0


async def test_a_burst_of_stale_hits_spawns_one_refresh(cache: Cache, clock: FakeClock) -> None:
    loader = Loader("fresh")
    await cache.set("k", "stale", ttl=1)
    # make it a loaded entry with a stale window
    await cache.refresh("k", lambda: "stale", ttl=1)
    await cache.get_or_set("k", loader, ttl=1, stale_ttl=60)
    clock.advance(2)
    async with anyio.create_task_group() as group:
        for _ in range(100):
            group.start_soon(lambda: cache.get_or_set("k", loader, ttl=1, stale_ttl=60))
        await loader.started.wait()
        loader.release.set()
    await cache.wait_background()
    assert loader.calls == 1
    assert await cache.get("k") == "fresh"


async def test_aclose_cancels_background_refreshes(clock: FakeClock) -> None:
    cache = Cache(MemoryStore(clock=clock))
    loader = Loader("fresh")
    await cache.get_or_set("k", lambda: "old", ttl=1, stale_ttl=60)
    clock.advance(2)
    assert await cache.get_or_set("k", loader, ttl=1, stale_ttl=60) == "old"
    await loader.started.wait()
    assert cache.in_flight() == 1
    await cache.aclose()
    assert cache.in_flight() == 0
    assert loader.calls == 1


async def test_store_if_skips_storing(cache: Cache) -> None:
    assert await cache.get_or_set("k", list, store_if=bool) == []
    assert await cache.get("k", default="absent") == "absent"
    assert await cache.get_or_set("k", lambda: [1], store_if=bool) == [1]
    assert await cache.get("k") == [1]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("stale_ttl", 0),
        ("stale_ttl", -5),
        ("stale_if_error", -1.0),
        ("stale_if_error", math.nan),
        ("early_refresh", -1.0),
        ("early_refresh", 0.0),
        ("lock", "global"),
        ("store_if", 5),
    ],
)
async def test_bad_get_or_set_options(cache: Cache, option: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=option):
        await cache.get_or_set("k", lambda: 1, **{option: value})
