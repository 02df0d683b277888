"""RedisStore on Redis Cluster: multi-slot batching, many-key ops, tags, clear, leases, L1/L2.

One three-master cluster (no replicas) is started for the module on free ports (see
``redis_servers``); every test uses its own key prefix on it. The shared Redis on 6379 is
not used. Caches here are ``strict`` with no memory fallback, so a failing Redis command
fails the test with its own error instead of turning into a silent miss.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from asyncperf import Cache
from asyncperf.cache import Entry, MemoryStore, RedisStore, TieredStore

from .redis_servers import ClusterSetup, start_cluster

pytestmark = [pytest.mark.redis, pytest.mark.slow]

POLL_TIMEOUT = 5.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis.asyncio runs on asyncio only


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterSetup]:
    tmp: Path = tmp_path_factory.mktemp("cluster")
    with start_cluster(tmp, n=3) as cluster:
        yield cluster


@asynccontextmanager
async def cluster_client(cluster: ClusterSetup) -> AsyncIterator[RedisCluster]:
    client = RedisCluster(host=cluster.host, port=cluster.port)
    try:
        yield client
    finally:
        await client.aclose()


@asynccontextmanager
async def cluster_store(cluster: ClusterSetup, **options: Any) -> AsyncIterator[RedisStore]:
    """A RedisStore on its own cluster client, under a prefix no other test uses."""
    options.setdefault("prefix", f"t{uuid.uuid4().hex[:10]}:")
    options.setdefault("op_timeout", 2.0)
    async with cluster_client(cluster) as client:
        store = RedisStore(client, **options)
        try:
            yield store
        finally:
            await store.aclose()


def strict_cache(store: Any, **options: Any) -> Cache:
    return Cache(store, fallback=None, strict=True, **options)


def nodes_of(cluster: ClusterSetup, store: RedisStore, keys: list[str]) -> set[int]:
    """The ports of the nodes holding ``keys`` (cache keys, before the store prefix)."""
    owners = cluster.slot_owners()
    return {owners[key_slot(store.key(key).encode())].port for key in keys}


async def poll(
    check: Callable[[], Awaitable[bool] | bool], what: str, timeout: float = POLL_TIMEOUT
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.02)


def scan_node(node: Any, pattern: str) -> list[str]:
    """SCAN one node to the end (independently of redis-py's cluster scan)."""
    found: list[str] = []
    cursor = "0"
    while True:
        cursor, keys = node.command("SCAN", cursor, "MATCH", pattern, "COUNT", "1000")
        found.extend(keys)
        if cursor == "0":
            return found


# -- basic operations --------------------------------------------------------------------


async def test_get_set_delete_directly_and_through_the_cache(cluster: ClusterSetup) -> None:
    async with cluster_store(cluster) as store:
        keys = [f"direct:{i}" for i in range(12)]
        assert len(nodes_of(cluster, store, keys)) == 3
        for i, key in enumerate(keys):
            await store.set(key, Entry({"i": i}), 60)
        for i, key in enumerate(keys):
            entry = await store.get(key)
            assert entry is not None
            assert entry.value == {"i": i}
            assert await store.exists(key)
            ttl = await store.ttl(key)
            assert ttl is not None
            assert 0 < ttl <= 60
        assert await store.delete(keys[0]) is True
        assert await store.delete(keys[0]) is False
        assert await store.get(keys[0]) is None

        cache = strict_cache(store)
        for i in range(12):
            await cache.set(f"c:{i}", [i, "x"], ttl=60)
        for i in range(12):
            assert await cache.get(f"c:{i}") == [i, "x"]
        assert await cache.exists("c:3")
        assert await cache.delete("c:3") is True
        assert await cache.get("c:3", "missing") == "missing"
        assert cache.statistics().errors == 0


def _spread_prefix(keys: list[str]) -> str:
    """A fresh prefix under which ``keys`` fall in nearly 200 distinct slots.

    CRC16 of keys that differ only in their last characters collides more under some
    prefixes than others (110 to 200 distinct slots for these keys): pick one that spreads.
    """
    while True:
        prefix = f"t{uuid.uuid4().hex[:10]}:"
        if len({key_slot((prefix + key).encode()) for key in keys}) > 190:
            return prefix


async def test_concurrent_gets_are_batched_across_slots(cluster: ClusterSetup) -> None:
    keys = [f"batch:{i}" for i in range(200)]
    async with cluster_store(cluster, prefix=_spread_prefix(keys)) as store:
        cache = strict_cache(store)
        assert len({key_slot(store.key(key).encode()) for key in keys}) > 190
        assert len(nodes_of(cluster, store, keys)) == 3
        await cache.set_many({key: i for i, key in enumerate(keys)}, ttl=60)

        before = store.statistics()
        results = await asyncio.gather(*(cache.get(key) for key in keys))
        assert results == list(range(200))
        after = store.statistics()
        assert after.batches > before.batches, after
        # the first get goes out alone, the 199 made while it is in flight as one batch
        assert after.batched_keys - before.batched_keys == 199, after

        # Directly on the store, with misses mixed in.
        wanted = [*keys[:100], *(f"absent:{i}" for i in range(20))]
        entries = await asyncio.gather(*(store.get(key) for key in wanted))
        assert [e.value if e is not None else None for e in entries] == [
            *range(100),
            *([None] * 20),
        ]
        assert store.statistics().batches > after.batches
        assert store.statistics().failures == 0


async def test_many_key_operations_across_slots(cluster: ClusterSetup) -> None:
    async with cluster_store(cluster) as store:
        keys = [f"many:{i}" for i in range(100)]
        assert len(nodes_of(cluster, store, keys)) == 3
        await store.set_many([(key, Entry(i), 60) for i, key in enumerate(keys)])
        entries = await store.get_many([*keys, "many:absent"])
        assert [e.value if e is not None else None for e in entries] == [*range(100), None]
        assert await store.delete_many([*keys[:50], "many:absent"]) == 50
        entries = await store.get_many(keys)
        assert [e is None for e in entries] == [True] * 50 + [False] * 50

        cache = strict_cache(store, namespace="c")
        mapping = {f"k{i}": {"n": i} for i in range(100)}
        await cache.set_many(mapping, ttl=60)
        assert await cache.get_many([*mapping, "nope"]) == mapping
        assert await cache.delete_many([*mapping, "nope"]) == 100
        assert await cache.get_many(mapping) == {}
        assert cache.statistics().errors == 0


# -- tags ---------------------------------------------------------------------------------


async def test_tags_whose_members_span_slots(cluster: ClusterSetup) -> None:
    async with cluster_store(cluster) as store:
        cache = strict_cache(store)
        tagged = [f"tagged:{i}" for i in range(30)]
        assert len(nodes_of(cluster, store, tagged)) == 3
        for key in tagged:
            await cache.set(key, key, ttl=60, tags=["group"])
        await cache.set_many({f"bulk:{i}": i for i in range(30)}, ttl=60, tags=["group"])
        await cache.set("untagged", "stays", ttl=60)
        await cache.set("other-tag", "stays", ttl=60, tags=["other"])

        assert await cache.invalidate_tags("group") == 60
        assert await cache.get_many([*tagged, *(f"bulk:{i}" for i in range(30))]) == {}
        assert await cache.get("untagged") == "stays"
        assert await cache.get("other-tag") == "stays"
        assert await store.client.exists(store.tag_key("group")) == 0
        assert await store.client.exists(store.tag_key("other")) == 1


async def test_invalidate_tags_removes_members_stored_in_other_slots(
    cluster: ClusterSetup,
) -> None:
    # The invalidation side alone: the tag set is filled with plain SADDs, so this does
    # not depend on how RedisStore.set maintains tag sets.
    async with cluster_store(cluster) as store:
        client = store.client
        keys = [store.key(f"member:{i}") for i in range(40)]
        for i, key in enumerate(keys):
            await client.set(key, str(i))
        await client.sadd(store.tag_key("g1"), *keys[:20])
        await client.sadd(store.tag_key("g2"), *keys[20:30])
        assert len({cluster.node_for_key(key).port for key in keys[:20]}) == 3
        assert await store.invalidate_tags(["g1", "g2"]) == 30
        assert await client.exists(*keys[:30]) == 0
        assert await client.exists(*keys[30:]) == 10
        assert await client.exists(store.tag_key("g1"), store.tag_key("g2")) == 0


# -- clear --------------------------------------------------------------------------------


async def test_namespace_clear_scans_every_node(cluster: ClusterSetup) -> None:
    async with cluster_store(cluster) as store:
        root = strict_cache(store)
        users, orders = root.namespace("users"), root.namespace("usersx")
        # More keys than one UNLINK chunk (500), on all three nodes.
        await users.set_many({f"u{i}": i for i in range(600)}, ttl=60)
        await orders.set_many({f"o{i}": i for i in range(100)}, ttl=60)
        await root.set("top", "level", ttl=60)
        await store.client.set("foreign:key", "not ours")
        pattern = store.key("users:*")
        per_node = {node.port: len(scan_node(node, pattern)) for node in cluster.nodes}
        assert sum(per_node.values()) == 600
        assert all(count > 0 for count in per_node.values()), per_node

        assert await users.clear() == 600
        per_node = {node.port: len(scan_node(node, pattern)) for node in cluster.nodes}
        assert per_node == dict.fromkeys(per_node, 0)
        assert await users.get_many([f"u{i}" for i in range(600)]) == {}
        assert len(await orders.get_many([f"o{i}" for i in range(100)])) == 100
        assert await root.get("top") == "level"
        assert await store.client.get("foreign:key") == b"not ours"

        assert await root.clear() == 101
        remaining = [key for node in cluster.nodes for key in scan_node(node, store.key("*"))]
        assert remaining == []
        assert await store.client.get("foreign:key") == b"not ours"
        await store.client.delete("foreign:key")


# -- distributed single-flight -------------------------------------------------------------


async def test_get_or_set_with_a_distributed_lock(cluster: ClusterSetup) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    async with (
        cluster_store(cluster, prefix=prefix) as store_a,
        cluster_store(cluster, prefix=prefix) as store_b,
    ):
        # Two "processes": separate clients, one shared key space.
        cache_a = strict_cache(store_a, lock_timeout=5.0)
        cache_b = strict_cache(store_b, lock_timeout=5.0)
        release = asyncio.Event()
        calls: list[str] = []

        async def loader(name: str) -> dict[str, str]:
            calls.append(name)
            await release.wait()
            return {"loaded_by": name}

        first = asyncio.create_task(
            cache_a.get_or_set("report", lambda: loader("a"), ttl=60, lock="distributed")
        )
        try:
            await poll(
                lambda: store_a.client.exists(store_a.lease_key("report")),  # type: ignore[arg-type]
                "the lease to be taken",
            )
            second = asyncio.create_task(
                cache_b.get_or_set("report", lambda: loader("b"), ttl=60, lock="distributed")
            )
            await asyncio.sleep(0.3)
            assert calls == ["a"]
            assert not second.done()
            release.set()
            started = time.monotonic()
            results = await asyncio.wait_for(asyncio.gather(first, second), timeout=10)
            waited = time.monotonic() - started
        finally:
            release.set()
            for task in (first, locals().get("second")):
                if task is not None and not task.done():
                    task.cancel()
        assert results == [{"loaded_by": "a"}, {"loaded_by": "a"}]
        assert calls == ["a"]
        assert cache_b.statistics().lock_waits == 1
        assert cache_b.statistics().lock_timeouts == 0
        # Woken by the release message on the cluster pub/sub, not by the lease running out.
        assert waited < 2.0, f"the waiter needed {waited:.2f}s: no release message?"
        assert await store_a.client.exists(store_a.lease_key("report")) == 0


# -- tiered (L1 in front of the cluster) -----------------------------------------------------


async def test_listener_subscribes_on_a_fresh_cluster_client(cluster: ClusterSetup) -> None:
    # A tiered cache built on a RedisCluster client that has not sent a command yet: the
    # event subscription must come up on its own.
    async with cluster_store(cluster) as store:
        cache = Cache.tiered(l2=store)
        tiered = cache.store
        assert isinstance(tiered, TieredStore)
        try:
            await poll(store.ensure_listener, "the invalidation subscription")
        except AssertionError as exc:
            # The listener retries silently: show what subscribing on this client does.
            probe = store.client.pubsub()
            try:
                await probe.subscribe(store.channel)
                detail = "succeeds now"
            except Exception as error:
                detail = f"raises {error!r}"
            finally:
                await probe.aclose()
            raise AssertionError(f"{exc}; a direct SUBSCRIBE on the client {detail}") from None
        assert tiered.coherent


@asynccontextmanager
async def tiered_pair(cluster: ClusterSetup) -> AsyncIterator[tuple[Cache, Cache]]:
    """Two tiered caches on separate cluster clients over one key space, both subscribed."""
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    async with (
        cluster_store(cluster, prefix=prefix, op_timeout=1.0) as l2_a,
        cluster_store(cluster, prefix=prefix, op_timeout=1.0) as l2_b,
    ):
        # Initialize the clients first, so these tests do not depend on the listener
        # coming up on a fresh client (test_listener_subscribes_on_a_fresh_cluster_client).
        await l2_a.client.initialize()
        await l2_b.client.initialize()
        a = Cache.tiered(l2=l2_a, l1=MemoryStore(max_entries=1000))
        b = Cache.tiered(l2=l2_b, l1=MemoryStore(max_entries=1000))
        await poll(l2_a.ensure_listener, "the first store's subscription")
        await poll(l2_b.ensure_listener, "the second store's subscription")
        yield a, b


def l1_of(cache: Cache) -> MemoryStore:
    store = cache.store
    assert isinstance(store, TieredStore)
    return store.l1


async def read_into_l1(cache: Cache, key: str) -> None:
    """Read ``key`` until the tiered cache keeps it in L1.

    A read does not fill L1 while invalidation messages are still arriving (they might
    concern the key), so the other store's recent writes can take a moment to settle.
    """

    async def in_l1() -> bool:
        await cache.get(key)
        return l1_of(cache).get_entry(key) is not None

    await poll(in_l1, f"{key!r} to be cached in L1")


async def test_tiered_second_store_drops_l1_entries_the_first_one_sets(
    cluster: ClusterSetup,
) -> None:
    async with tiered_pair(cluster) as (a, b):
        keys = [f"shared:{i}" for i in range(10)]
        for i, key in enumerate(keys):
            await a.set(key, {"v": 1, "i": i}, ttl=60)
        stats_a = a.store.statistics()
        if stats_a.degraded_writes:
            # TieredStore absorbed the failures: show what Redis said.
            l2 = a.store.l2  # type: ignore[attr-defined]
            try:
                await l2.set("probe", Entry(1), 60)
                cause = "a direct L2 set succeeds"
            except Exception as exc:
                error = exc.__cause__ or exc
                cause = f"a direct L2 set raises {type(error).__name__}: {error}"
            raise AssertionError(f"a's writes did not reach Redis ({cause}): {stats_a}")
        for i, key in enumerate(keys):
            assert await b.get(key) == {"v": 1, "i": i}, key
            await read_into_l1(b, key)
        assert a.statistics().errors == 0

        await a.set(keys[0], {"v": 2, "i": 0}, ttl=60)
        await poll(lambda: l1_of(b).get_entry(keys[0]) is None, "b's L1 to drop the key")
        assert await b.get(keys[0]) == {"v": 2, "i": 0}

        await a.set_many({key: {"v": 3} for key in keys[1:]}, ttl=60)
        await poll(
            lambda: all(l1_of(b).get_entry(key) is None for key in keys[1:]),
            "b's L1 to drop the keys of set_many",
        )
        assert await b.get_many(keys[1:]) == {key: {"v": 3} for key in keys[1:]}
        stats = b.store.statistics()
        assert stats.remote_invalidations >= 2, stats
        assert stats.degraded_writes == stats.degraded_reads == 0, stats


async def test_tiered_second_store_sees_deletes_and_clears(cluster: ClusterSetup) -> None:
    async with tiered_pair(cluster) as (a, b):
        store_b = b.store
        assert isinstance(store_b, TieredStore)
        # Seed L2 without publishing, then let b read (and cache) the values.
        seed = RedisStore(store_b.l2.client, prefix=store_b.l2.prefix)
        keys = [f"ns:k{i}" for i in range(20)]
        await seed.set_many([(key, Entry(i), 60) for i, key in enumerate(keys)])
        await seed.set_many([("solo", Entry("solo"), 60)])
        assert await b.get("solo") == "solo"
        assert await b.get_many(keys) == {key: i for i, key in enumerate(keys)}
        assert all(l1_of(b).get_entry(key) is not None for key in [*keys, "solo"])

        assert await a.delete("solo") is True
        await poll(lambda: l1_of(b).get_entry("solo") is None, "b's L1 to drop a deleted key")
        assert await b.get("solo") is None

        assert await a.namespace("ns").clear() == 20
        await poll(
            lambda: all(l1_of(b).get_entry(key) is None for key in keys),
            "b's L1 to drop a cleared namespace",
        )
        assert await b.get_many(keys) == {}


# -- info ---------------------------------------------------------------------------------


async def test_redis_info_sums_every_node(cluster: ClusterSetup) -> None:
    async with cluster_store(cluster) as store:
        await store.set_many([(f"info:{i}", Entry(i), 60) for i in range(30)])
        info = await store.redis_info()
        total_keys = sum(int(node.command("DBSIZE")) for node in cluster.nodes)
        clients = sum(int(node.info("clients")["connected_clients"]) for node in cluster.nodes)
        assert info.keys == total_keys, info
        assert info.connected_clients >= clients - 3, info  # every node's clients
