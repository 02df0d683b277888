"""L1/L2 tiering: L1 hits stay local, every change reaches every other process's L1."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as redis_asyncio

from asyncperf import Cache, MemoryStore, RedisStore
from asyncperf.cache import TieredStore
from asyncperf.cache.internal import LATER, get_now, set_now

from .conftest import REDIS_URL

MISSING = object()

pytestmark = pytest.mark.redis


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def tiered(prefix: str, l1_ttl: float = 60.0) -> Cache:
    cache = Cache.tiered(l2=RedisStore(REDIS_URL, prefix=prefix, op_timeout=2.0), l1_ttl=l1_ttl)
    store = cache.store
    assert isinstance(store, TieredStore)
    assert await store.l2.ensure_listener(), "subscribed to the invalidation channel"
    return cache


def tier(cache: Cache) -> TieredStore:
    store = cache.store
    assert isinstance(store, TieredStore)
    return store


async def eventually(check: Callable[[], Awaitable[bool]], *, tries: int = 200) -> None:
    for _ in range(tries):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached within 2 s")


async def commands(raw: redis_asyncio.Redis, *names: str) -> int:
    stats = await raw.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in names)


async def test_l1_hits_never_touch_redis(prefix: str, raw: redis_asyncio.Redis) -> None:
    cache = await tiered(prefix)
    try:
        await cache.set("k", {"v": 1}, ttl=60)
        before = await commands(raw, "get", "mget")
        for _ in range(200):
            assert await cache.get("k") == {"v": 1}
        assert await commands(raw, "get", "mget") == before
    finally:
        await cache.aclose()


async def test_l1_keeps_what_l2_would_return(prefix: str) -> None:
    writer, reader = await tiered(prefix), await tiered(prefix)
    try:
        await writer.set("t", (1, 2), ttl=60)
        assert await writer.get("t") == [1, 2], "from L1, as JSON returns it"
        assert await reader.get("t") == [1, 2], "from L2"
        assert await reader.get("t") == [1, 2], "from the reader's L1"
        assert tier(reader).statistics().l1_fills == 1
    finally:
        await writer.aclose()
        await reader.aclose()


async def test_get_now_answers_from_l1_and_leaves_its_misses_to_redis(prefix: str) -> None:
    writer, reader = await tiered(prefix), await tiered(prefix)
    try:
        await writer.set("k", b"v", ttl=60)
        assert get_now(reader, "k") is LATER, "an L1 miss: only L2 can tell"
        assert await reader.get("k") == b"v"
        assert get_now(reader, "k") == b"v", "now in the reader's L1"
        assert not set_now(reader, "k", b"w", 60.0, ["u:/k"]), "a write must reach Redis"
    finally:
        await writer.aclose()
        await reader.aclose()


async def test_every_change_reaches_the_other_l1(prefix: str) -> None:
    a, b = await tiered(prefix), await tiered(prefix)
    try:
        await a.set_many({"k1": 1, "k2": 2, "k3": 3}, ttl=60)
        await a.set("tagged", "t", ttl=60, tags=["group"])
        await a.namespace("ns").set("x", "ns-value", ttl=60)
        for key in ("k1", "k2", "k3", "tagged"):
            await b.get(key)  # fill b's L1
        await b.namespace("ns").get("x")
        assert len(tier(b).l1) == 5

        await a.set("k1", "new", ttl=60)
        await eventually(lambda: _is(b, "k1", "new"))
        await a.delete("k2")
        await eventually(lambda: _is(b, "k2", MISSING))
        await a.invalidate_tags("group")
        await eventually(lambda: _is(b, "tagged", MISSING))
        await a.namespace("ns").clear()
        await eventually(lambda: _is(b.namespace("ns"), "x", MISSING))
        assert await b.get("k3") == 3, "untouched keys stay"
        assert tier(b).statistics().remote_invalidations >= 4
        # and the other way round
        await b.set("k3", "from b", ttl=60)
        await eventually(lambda: _is(a, "k3", "from b"))
    finally:
        await a.aclose()
        await b.aclose()


async def _is(cache: Cache, key: str, expected: object) -> bool:
    return await cache.get(key, default=MISSING) == expected


async def test_l1_ttl_caps_how_long_l1_keeps_an_entry(prefix: str) -> None:
    cache = await tiered(prefix, l1_ttl=0.05)
    try:
        await cache.set("k", 1, ttl=60)
        entry = tier(cache).l1.peek_entry("k")
        assert entry is not None
        assert entry.expires_at is not None
        assert entry.expires_at - tier(cache).clock() <= 0.05
        await asyncio.sleep(0.06)
        assert tier(cache).statistics().l1_fills == 0
        assert await cache.get("k") == 1, "still in L2"
        assert tier(cache).statistics().l1_fills == 1, "the L1 copy expired: read from L2"
    finally:
        await cache.aclose()


async def test_a_lost_subscription_flushes_l1(prefix: str, raw: redis_asyncio.Redis) -> None:
    cache = await tiered(prefix)
    store = tier(cache)
    try:
        await cache.set("k", 1, ttl=60)
        assert store.l1.peek_entry("k") is not None
        flushes = store.statistics().l1_flushes
        await raw.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        await eventually(lambda: _async(store.statistics().l1_flushes >= flushes + 2))
        assert len(store.l1) == 0, "flushed on the loss and again on reconnecting"
        await eventually(lambda: _async(store.coherent))
        assert await cache.get("k") == 1
    finally:
        await cache.aclose()


async def _async(value: bool) -> bool:
    return value


async def test_no_fill_while_not_subscribed(prefix: str) -> None:
    l2 = RedisStore(REDIS_URL, prefix=prefix)
    store = TieredStore(MemoryStore(), l2)
    cache = Cache(store)
    try:
        writer = await tiered(prefix)
        await writer.set("k", 1, ttl=60)
        await writer.aclose()
        # First read: the listener has only just been started, not subscribed yet.
        assert await cache.get("k") == 1
        assert store.statistics().l1_fills == 0
        assert await l2.ensure_listener()
        assert await cache.get("k") == 1
        assert store.statistics().l1_fills == 1
    finally:
        await cache.aclose()


CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    from asyncperf import Cache, RedisStore

    async def main(prefix):
        cache = Cache.tiered(l2=RedisStore("redis://127.0.0.1:6379/0", prefix=prefix))
        assert await cache.store.l2.ensure_listener()
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if not line or line == "quit":
                break
            value = await cache.get(line, default="<missing>")
            stats = cache.store.statistics()
            print(json.dumps({"value": value,
                              "invalidations": stats.remote_invalidations}), flush=True)
        await cache.aclose()

    asyncio.run(main(sys.argv[1]))
    """
)


async def test_two_processes_share_one_redis_and_stay_coherent(prefix: str) -> None:
    cache = await tiered(prefix)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, prefix],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None
    assert child.stdout is not None

    def ask(key: str) -> dict[str, object]:
        child.stdin.write(key + "\n")  # type: ignore[union-attr]
        child.stdin.flush()  # type: ignore[union-attr]
        return json.loads(child.stdout.readline())  # type: ignore[union-attr]

    try:
        assert child.stdout.readline().strip() == "ready"
        await cache.set("shared", "v1", ttl=60)
        assert (await asyncio.to_thread(ask, "shared"))["value"] == "v1"  # L2 -> child's L1
        hit = await asyncio.to_thread(ask, "shared")
        assert hit["value"] == "v1"
        await cache.set("shared", "v2", ttl=60)
        for _ in range(200):
            answer = await asyncio.to_thread(ask, "shared")
            if answer["value"] == "v2":
                break
            await asyncio.sleep(0.01)
        assert answer["value"] == "v2"
        assert isinstance(answer["invalidations"], int)
        assert answer["invalidations"] >= 1
        await cache.delete("shared")
        for _ in range(200):
            answer = await asyncio.to_thread(ask, "shared")
            if answer["value"] == "<missing>":
                break
            await asyncio.sleep(0.01)
        assert answer["value"] == "<missing>"
    finally:
        child.stdin.write("quit\n")
        child.stdin.flush()
        child.wait(timeout=10)
        child.stdin.close()
        child.stdout.close()
        await cache.aclose()
