"""Less travelled RedisStore, FallbackStore, TieredStore and breaker paths."""

from __future__ import annotations

import asyncio
import logging

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
)
from asyncperf.cache import CircuitBreaker, FallbackStore, TieredStore

from ..conftest import FakeClock
from .conftest import REDIS_URL

DEAD_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1: refused at once
MISSING = object()

pytestmark = pytest.mark.redis


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- breaker -------------------------------------------------------------------------------


def test_breaker_cycle_with_an_injected_clock(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, recovery_time=10, clock=clock, name="x")
    changes: list[tuple[str, str]] = []
    breaker.listeners.append(lambda old, new: changes.append((old, new)))
    breaker.listeners.append(lambda old, new: 1 / 0)  # a broken listener is only logged
    assert breaker.allow()
    breaker.failure()
    assert breaker.state == "closed"
    breaker.success()
    breaker.failure()
    breaker.failure()
    assert breaker.state == "open"
    assert not breaker.would_allow()
    assert not breaker.allow()
    clock.advance(10)
    assert breaker.would_allow()
    assert breaker.allow(), "the probe"
    assert breaker.state == "half-open"
    assert not breaker.allow(), "one probe at a time"
    breaker.failure()
    assert breaker.state == "open"
    breaker.failure()  # while open: restarts the pause
    clock.advance(10)
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed"
    stats = breaker.statistics()
    assert (stats.opened, stats.closed, stats.rejected) == (2, 1, 2)
    assert changes == [
        ("closed", "open"),
        ("open", "half-open"),
        ("half-open", "open"),
        ("open", "half-open"),
        ("half-open", "closed"),
    ]
    breaker.failure()
    breaker.failure()
    breaker.reset()
    assert breaker.state == "closed"
    assert "breaker listener failed" in caplog.text
    assert "x" in repr(breaker)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"failure_threshold": True}, "failure_threshold"),
        ({"recovery_time": 0}, "recovery_time"),
        ({"recovery_time": float("inf")}, "recovery_time"),
    ],
)
def test_breaker_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        CircuitBreaker(**kwargs)


# -- RedisStore ------------------------------------------------------------------------------


def test_redis_store_more_argument_errors() -> None:
    with pytest.raises(ConfigurationError, match="op_timeout"):
        RedisStore(REDIS_URL, op_timeout=None)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="prefix"):
        RedisStore(REDIS_URL, prefix=5)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max_connections"):
        RedisStore(REDIS_URL, max_connections=0)
    assert "prefix='p:'" in repr(RedisStore(REDIS_URL, prefix="p"))


async def test_refused_connections_degrade_without_raising(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = Cache.from_url(f"{DEAD_URL}?failure_threshold=2&recovery_time=3600")
    with caplog.at_level(logging.WARNING, logger="asyncperf.cache"):
        for i in range(5):
            assert await cache.get_or_set(f"k{i}", lambda i=i: i) == i
    assert cache.statistics().breaker_state == "open"
    assert cache.statistics().backend_failures == 2
    assert "breaker opened" in caplog.text
    assert await cache.get("k3") == 3, "kept in the fallback"
    store = cache.store
    assert isinstance(store, FallbackStore)
    assert await store.get_many(["k1", "zz"]) == [store.fallback.get_entry("k1"), None]
    await store.set_many([("m", Entry("many"), None)])
    assert await cache.get("m") == "many"
    health = await cache.health()
    assert not health.ok
    assert health.breaker_state == "open"
    await cache.aclose()


async def test_store_level_odds_and_ends(prefix: str, raw: redis_asyncio.Redis) -> None:
    store = RedisStore(REDIS_URL, prefix=prefix, batching=False)
    try:
        assert await store.get_many([]) == []
        assert await store.delete_many([]) == 0
        assert await store.invalidate_tags([]) == 0
        await store.set("a", Entry(1), 10)
        assert (await store.get("a")).value == 1  # type: ignore[union-attr]
        assert await store.exists("a")
        assert await store.ttl("nope") == -1.0
        await raw.set(prefix + "bad", b"garbage")
        got = await store.get_many(["a", "bad"])
        assert got[0] is not None
        assert got[1] is None
        assert store.key("x") == prefix + "x"
        assert store.lease_key("x").endswith("#lease:x")
        assert await store.expire("nope", None) is False
    finally:
        await store.clear()
        await store.aclose()


async def test_batcher_sends_a_lone_call_at_once_and_batches_the_rest() -> None:
    from asyncperf.cache._batching import Batcher as _Batcher

    sent: list[list[str]] = []
    gate = asyncio.Event()

    async def flush(items: list[str]) -> list[str]:
        sent.append(items)
        await gate.wait()
        return [item.upper() for item in items]

    batcher: _Batcher[str, str] = _Batcher(flush)
    first = asyncio.ensure_future(batcher.submit("a"))
    await asyncio.sleep(0)  # "a" is in flight, alone
    rest = [asyncio.ensure_future(batcher.submit(x)) for x in "bcd"]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    gate.set()
    assert await first == "A"
    assert await asyncio.gather(*rest) == ["B", "C", "D"]
    assert sent == [["a"], ["b", "c", "d"]]


async def test_a_cancelled_batch_leader_hands_its_followers_over() -> None:
    from asyncperf.cache._batching import Batcher as _Batcher

    gate = asyncio.Event()

    async def flush(items: list[str]) -> list[str]:
        await gate.wait()
        return [item.upper() for item in items]

    batcher: _Batcher[str, str] = _Batcher(flush)
    busy = asyncio.ensure_future(batcher.submit("busy"))
    await asyncio.sleep(0)  # something is in flight: the next calls batch
    leader = asyncio.ensure_future(batcher.submit("x"))
    followers = [asyncio.ensure_future(batcher.submit(f"f{i}")) for i in range(3)]
    await asyncio.sleep(0)  # the leader opened a batch and yielded; the followers joined
    leader.cancel()  # before it resumes to send the batch
    gate.set()
    assert await asyncio.gather(*followers) == ["F0", "F1", "F2"]
    assert await busy == "BUSY"
    with pytest.raises(asyncio.CancelledError):
        await leader


async def test_batch_failures_reach_every_follower() -> None:
    store = RedisStore(DEAD_URL, failure_threshold=100)
    results = await asyncio.gather(*(store.get(f"k{i}") for i in range(5)), return_exceptions=True)
    assert all(isinstance(result, BackendUnavailable) for result in results)
    await store.aclose()


async def test_foreign_messages_on_the_channel_are_ignored(prefix: str) -> None:
    a = Cache.tiered(l2=RedisStore(REDIS_URL, prefix=prefix))
    b = Cache.tiered(l2=RedisStore(REDIS_URL, prefix=prefix))
    try:
        store_b = b.store
        assert isinstance(store_b, TieredStore)
        assert await store_b.l2.ensure_listener()
        assert await a.store.l2.ensure_listener()  # type: ignore[attr-defined]
        publisher = redis_asyncio.Redis.from_url(REDIS_URL)
        await publisher.publish(store_b.l2.channel, b"not json")
        await publisher.publish(store_b.l2.channel, b"[1, 2]")
        await publisher.aclose()
        await a.set("k", 1)
        for _ in range(200):
            if store_b.statistics().remote_invalidations:
                break
            await asyncio.sleep(0.01)
        assert store_b.statistics().remote_invalidations == 1
    finally:
        await a.aclose()
        await b.aclose()


async def test_distributed_lock_between_two_caches_in_one_process(prefix: str) -> None:
    one = Cache(RedisStore(REDIS_URL, prefix=prefix), fallback=None)
    two = Cache(RedisStore(REDIS_URL, prefix=prefix), fallback=None)
    calls = 0

    async def loader() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.1)
        return "once"

    try:
        results = await asyncio.gather(
            one.get_or_set("k", loader, lock="distributed"),
            two.get_or_set("k", loader, lock="distributed"),
        )
        assert results == ["once", "once"]
        assert calls == 1
        assert one.statistics().lock_waits + two.statistics().lock_waits == 1
    finally:
        await one.clear()
        await one.aclose()
        await two.aclose()


async def test_tiered_many_operations_and_info(prefix: str) -> None:
    cache = Cache.tiered(l2=f"{REDIS_URL}", l1=MemoryStore(), l1_ttl=60)
    cache = cache.namespace(prefix.rstrip(":"))
    try:
        store = cache.store
        assert isinstance(store, TieredStore)
        assert await store.l2.ensure_listener()
        await cache.set_many({"a": 1, "b": 2}, ttl=30)
        store.l1.clear_sync()
        assert await cache.get_many(["a", "b", "c"]) == {"a": 1, "b": 2}
        assert await cache.get_many(["a", "b"]) == {"a": 1, "b": 2}, "now from L1"
        assert store.statistics().l1_fills == 2
        info = await store.redis_info()
        assert info.keys >= 2
        assert "TieredStore" in repr(store)
        assert await cache.expire("a", 100) is True
        assert 99 < (await cache.ttl("a") or 0) <= 100
    finally:
        await cache.clear()
        await cache.aclose()


async def test_tiered_outage_for_batches() -> None:
    clock = FakeClock()
    l2 = RedisStore(DEAD_URL, failure_threshold=1, recovery_time=3600, breaker_clock=clock)
    cache = Cache.tiered(l2=l2)
    await cache.set_many({"a": 1, "b": 2})
    assert await cache.get_many(["a", "b", "c"]) == {"a": 1, "b": 2}
    store = cache.store
    assert isinstance(store, TieredStore)
    assert store.statistics().degraded_writes == 2
    store.l1.clear_sync()
    assert await cache.get_many(["a"]) == {}
    assert await cache.get("a", default=MISSING) is MISSING
    await cache.aclose()


def test_fallback_and_tiered_argument_errors() -> None:
    l2 = RedisStore(REDIS_URL)
    with pytest.raises(ConfigurationError, match="MemoryStore"):
        FallbackStore(l2, {})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="journal_size"):
        FallbackStore(l2, MemoryStore(), journal_size=0)
    with pytest.raises(ConfigurationError, match="l2"):
        TieredStore(MemoryStore(), MemoryStore())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="codec"):
        TieredStore(MemoryStore(codec=Codec()), l2)
    with pytest.raises(ConfigurationError, match="l1_ttl"):
        TieredStore(MemoryStore(), l2, l1_ttl=None)  # type: ignore[arg-type]


class _HangingClient:
    """A redis client stand-in whose commands never answer."""

    def register_script(self, script: str) -> None:
        return None

    async def execute_command(self, *args: object) -> None:
        await asyncio.sleep(3600)

    async def get(self, key: str) -> bytes:
        await asyncio.sleep(3600)
        return b""


async def test_the_deadline_turns_a_hang_into_backend_unavailable() -> None:
    store = RedisStore(_HangingClient(), op_timeout=0.02, failure_threshold=5)
    for _ in range(2):
        with pytest.raises(BackendUnavailable, match=r"timed out after 0\.02 s"):
            await store.get("k")
    assert store.breaker.statistics().failures == 2
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_callers_own_cancellation_is_not_a_backend_failure() -> None:
    store = RedisStore(_HangingClient(), op_timeout=60, failure_threshold=5, batching=False)
    task = asyncio.ensure_future(store.get("k"))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert store.breaker.statistics().failures == 0
    # and an outer timeout around a call still works as the caller expects
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await store.get("k")
    assert store.breaker.statistics().failures == 0


async def test_deadlines_of_different_lengths_each_fire_on_time() -> None:
    store = RedisStore(_HangingClient(), op_timeout=0.05, bulk_timeout=0.02, batching=False)
    slow = asyncio.ensure_future(store.get("a"))  # 50 ms deadline, armed first
    fast = asyncio.ensure_future(store._call("bulk", lambda: asyncio.sleep(3600), 0.02))
    results = await asyncio.gather(slow, fast, return_exceptions=True)
    assert all(isinstance(result, BackendUnavailable) for result in results)
    assert "0.02 s" in str(results[1])
    assert "0.05 s" in str(results[0])
