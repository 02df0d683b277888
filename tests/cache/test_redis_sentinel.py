"""RedisStore behind Redis Sentinel: the cache keeps working through a master failover.

Real servers, started per test on free ports (see ``redis_servers``): a master, one
replica and one sentinel (quorum 1). The shared Redis on 6379 is not used.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio.sentinel import Sentinel

from asyncperf import BackendUnavailable, Cache
from asyncperf.cache import FallbackStore, RedisStore

from .redis_servers import (
    HOST,
    SentinelSetup,
    start_redis,
    start_sentinel,
    start_sentinel_setup,
    wait_replica_synced,
    wait_until,
)

pytestmark = [pytest.mark.redis, pytest.mark.slow]

FAILOVER_TIMEOUT = 30.0
RECOVERY_TIMEOUT = 30.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis.asyncio runs on asyncio only


@pytest.fixture
def sentinel_setup(tmp_path: Path) -> Iterator[SentinelSetup]:
    with start_sentinel_setup(tmp_path, down_after_ms=500, failover_timeout_ms=3000) as setup:
        yield setup


class Workload:
    """Sets and gets through the cache in a loop; whatever a call raises fails the test."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.operations = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            key = f"load:{i % 50}"
            await self.cache.set(key, i, ttl=60)
            await self.cache.get(key)
            await self.cache.get_many([f"load:{j}" for j in range(5)])
            self.operations += 3
            i += 1
            await asyncio.sleep(0.005)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def finish(self) -> None:
        """Stop the loop and re-raise whatever it raised."""
        self._stop.set()
        if self._task is not None:
            task, self._task = self._task, None
            await task

    async def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


async def wait_back_on_redis(cache: Cache, store: FallbackStore) -> None:
    """Write through the cache until it uses Redis again (journal replayed, breaker closed)."""
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    n = 0
    while True:
        n += 1
        await cache.set("probe", n, ttl=60)
        if store.available() and await cache.get("probe") == n:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the cache did not return to Redis within {RECOVERY_TIMEOUT:g}s after the "
                f"failover: {store.statistics()}"
            )
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("outage", ["sigkill", "sigstop", "sentinel-failover"])
async def test_cache_keeps_working_through_a_failover(
    sentinel_setup: SentinelSetup, outage: str
) -> None:
    setup = sentinel_setup
    sentinel = Sentinel(setup.sentinel_addresses, socket_timeout=0.5, socket_connect_timeout=0.5)
    client = sentinel.master_for(setup.name, socket_timeout=0.5, socket_connect_timeout=0.5)
    store = RedisStore(client, op_timeout=0.5)
    cache = Cache(store, default_ttl=300)
    fallback = cache.store
    assert isinstance(fallback, FallbackStore)  # Cache(RedisStore) puts memory behind it
    workload = Workload(cache)
    try:
        before = {f"before:{i}": {"n": i, "when": "pre-failover"} for i in range(50)}
        for key, value in before.items():
            await cache.set(key, value)
        assert await cache.get_many(list(before)) == before
        old = setup.master
        assert old.command("EXISTS", *(store.key(k) for k in before)) == len(before)
        # Replication is asynchronous: let the replica catch up before failing over.
        await asyncio.to_thread(setup.wait_replicated)

        workload.start()
        await asyncio.sleep(0.2)
        if outage == "sigkill":
            old.kill()
        elif outage == "sigstop":
            old.stop()  # frozen: its sockets stay open and nothing answers
        else:
            assert setup.sentinels[0].command("SENTINEL", "FAILOVER", setup.name) == "OK"
        new_master = await asyncio.to_thread(setup.wait_for_new_master, old.port, FAILOVER_TIMEOUT)
        assert new_master.port != old.port
        await wait_back_on_redis(cache, fallback)
        await asyncio.sleep(0.2)  # the workload runs on the new master for a while
        await workload.finish()  # re-raises anything a cache call raised during the switch

        # Values written after the failover land on the new master and read back.
        after = {f"after:{i}": [i, "post-failover"] for i in range(50)}
        for key, value in after.items():
            await cache.set(key, value)
        for key, value in after.items():
            assert await cache.get(key) == value, key
        assert await cache.get_many(list(after)) == after
        assert new_master.command("EXISTS", *(store.key(k) for k in after)) == len(after)
        # What was replicated before the failover survived it.
        assert await cache.get_many(list(before)) == before

        stats = cache.statistics()
        assert stats.errors == 0, stats  # no failure reached the caller
        assert workload.operations > 0
        assert stats.breaker_state == "closed", stats
        if outage != "sentinel-failover":
            # The outage was real, and the breaker and the memory fallback absorbed it.
            assert stats.backend_failures > 0, stats
            assert fallback.statistics().recoveries >= 1, fallback.statistics()
    finally:
        await workload.cancel()
        await cache.aclose()
        await client.aclose()
        for sentinel_client in sentinel.sentinels:
            await sentinel_client.aclose()


async def test_no_write_reaches_the_old_master_after_switch_master(tmp_path: Path) -> None:
    """On ``+switch-master`` the store closes its connections to the old master at once.

    The old master here cannot be demoted (its REPLICAOF/SLAVEOF are renamed), so it keeps
    accepting writes on any connection left open to it, forever: exactly the window in
    which an unwatched pool loses writes. Every write the workload issues after the store
    handled the switch must be absent from the old master and present on the new one.
    """
    master = start_redis(
        tmp_path,
        *("--rename-command", "REPLICAOF", "replicaof-disabled-for-test"),
        *("--rename-command", "SLAVEOF", "slaveof-disabled-for-test"),
    )
    setup = SentinelSetup(master=master, replicas=[], sentinels=[])
    try:
        replica = start_redis(tmp_path, "--replicaof", HOST, str(master.port))
        setup.replicas.append(replica)
        wait_replica_synced(replica)
        setup.sentinels.append(start_sentinel(tmp_path, master))
        wait_until(lambda: setup.known_replicas() >= 1, what="the sentinel to find the replica")
        sentinel = Sentinel(setup.sentinel_addresses, socket_timeout=0.5)
        client = sentinel.master_for(setup.name, socket_timeout=0.5)
        store = RedisStore(client, op_timeout=0.5)
        cache = Cache(store, fallback=None)
        try:
            assert await store.watch_failovers()
            issued: list[tuple[int, int]] = []  # (n, failovers the store had seen before)
            stop = asyncio.Event()

            async def writer() -> None:
                n = 0
                while not stop.is_set():
                    issued.append((n, store.statistics().failovers))
                    await cache.set(f"w:{n}", n, ttl=300)
                    n += 1
                    await asyncio.sleep(0.002)

            async def idle_connections() -> None:
                # Other tasks keep pooled connections to the old master busy and idle.
                while not stop.is_set():
                    await asyncio.gather(*(cache.get(f"w:{i}") for i in range(5)))
                    await asyncio.sleep(0.001)

            tasks = [asyncio.create_task(writer()), asyncio.create_task(idle_connections())]
            await asyncio.sleep(0.3)
            assert setup.sentinels[0].command("SENTINEL", "FAILOVER", setup.name) == "OK"
            deadline = time.monotonic() + FAILOVER_TIMEOUT
            while store.statistics().failovers == 0 or sum(f > 0 for _, f in issued) < 50:
                assert time.monotonic() < deadline, "no +switch-master seen"
                await asyncio.sleep(0.05)
            stop.set()
            await asyncio.gather(*tasks)
        finally:
            await cache.aclose()
            await client.aclose()
            for sentinel_client in sentinel.sentinels:
                await sentinel_client.aclose()
        _, new_port = setup.master_address()
        assert new_port == replica.port
        assert master.info("replication")["role"] == "master"  # never demoted: still writable
        before = [n for n, seen in issued if seen == 0]
        after = [n for n, seen in issued if seen > 0]
        # The old master did take the writes made before the switch: the test can fail.
        assert master.command("EXISTS", *(store.key(f"w:{n}") for n in before[:20])) == 20
        on_old = master.command("EXISTS", *(store.key(f"w:{n}") for n in after))
        assert on_old == 0, f"{on_old} of {len(after)} writes after the switch hit the old master"
        on_new = replica.command("EXISTS", *(store.key(f"w:{n}") for n in after))
        assert on_new == len(after)
    finally:
        setup.close()


async def test_a_command_cut_by_the_switch_runs_again_and_is_no_breaker_failure() -> None:
    """A command in flight when the ``+switch-master`` handler closes its connection fails
    with ``ConnectionError``; it runs once more (on the new master) instead of counting
    towards the breaker. A connection error with no switch during it still counts."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from asyncperf.cache._sentinel import SentinelWatch

    class Watch:
        failovers = 0
        cut = SentinelWatch.cut  # the decision under test; it reads only ``failovers``

    store = RedisStore("redis://127.0.0.1:6379/0", prefix="asyncperf-test-cut:")
    store._sentinel = Watch()  # type: ignore[assignment]
    calls = 0

    async def cut_once() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            Watch.failovers += 1  # the handler ran while this command waited
            raise RedisConnectionError("Connection closed by server.")
        return "on the new master"

    async def refused() -> str:
        raise RedisConnectionError("Connection refused")

    try:
        assert await store._call("set", cut_once) == "on the new master"
        assert calls == 2
        assert store.breaker.statistics().failures == 0
        with pytest.raises(BackendUnavailable):
            await store._call("set", refused)
        assert store.breaker.statistics().failures == 1
    finally:
        store._sentinel = None
        await store.aclose()
