"""lock="distributed": one load across processes, woken by pub/sub, hits take no lock."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import redis.asyncio as redis_asyncio

from asyncperf import Cache, MemoryStore, RedisStore

from .conftest import REDIS_URL

pytestmark = pytest.mark.redis


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


WORKER = textwrap.dedent(
    """
    import asyncio, json, os, sys, time
    import redis.asyncio as redis_asyncio
    from asyncperf import Cache

    async def main(prefix, callers, load_seconds, lock_timeout):
        cache = Cache.from_url(
            f"redis://127.0.0.1:6379/0?prefix={prefix}&op_timeout=1&lock_timeout={lock_timeout}"
        )
        raw = redis_asyncio.Redis.from_url("redis://127.0.0.1:6379/0")

        async def loader():
            await raw.incr("counter-" + prefix)
            print("loading", flush=True)
            await asyncio.sleep(load_seconds)
            return {"pid": os.getpid()}

        print("ready", flush=True)
        sys.stdin.readline()  # start together
        results = await asyncio.gather(
            *(cache.get_or_set("cold", loader, ttl=60, lock="distributed")
              for _ in range(callers))
        )
        stats = cache.statistics()
        print(json.dumps({"pids": sorted({r["pid"] for r in results}), "loads": stats.loads,
                          "lock_waits": stats.lock_waits,
                          "lock_timeouts": stats.lock_timeouts}), flush=True)
        await raw.aclose()
        await cache.aclose()

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])))
    """
)


def spawn(prefix: str, callers: int, load_seconds: float, lock_timeout: float) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER, prefix, str(callers), str(load_seconds), str(lock_timeout)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def finish(process: subprocess.Popen) -> dict[str, object]:
    out, _ = process.communicate(timeout=60)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert process.returncode == 0, out
    return json.loads(lines[-1])


async def test_four_processes_load_a_cold_key_once(prefix: str, raw: redis_asyncio.Redis) -> None:
    before = await raw.info("commandstats")
    workers = [spawn(prefix, callers=50, load_seconds=0.3, lock_timeout=10) for _ in range(4)]
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    reports = [await asyncio.to_thread(finish, worker) for worker in workers]
    assert int(await raw.get("counter-" + prefix)) == 1, "one loader call in all"
    assert {pid for report in reports for pid in report["pids"]} == {reports_pid(reports)}
    assert sum(report["loads"] for report in reports) == 1
    assert sum(report["lock_waits"] for report in reports) == 3
    assert sum(report["lock_timeouts"] for report in reports) == 0
    after = await raw.info("commandstats")
    # No busy polling: per waiting process a lease try, a re-check and a read after the
    # wake-up; 200 callers in 4 processes stay far below one command per caller.
    sent = sum(
        int(after[name]["calls"]) - int(before.get(name, {}).get("calls", 0))
        for name in after
        if name.startswith("cmdstat_") and name not in ("cmdstat_info", "cmdstat_ping")
    )
    assert sent < 60, sent


def reports_pid(reports: list[dict[str, object]]) -> int:
    pids = {pid for report in reports for pid in report["pids"]}  # type: ignore[attr-defined]
    assert len(pids) == 1, pids
    return pids.pop()


async def test_a_dead_holders_lease_expires_and_another_process_takes_over(
    prefix: str, raw: redis_asyncio.Redis
) -> None:
    holder = spawn(prefix, callers=1, load_seconds=60, lock_timeout=0.5)
    assert holder.stdin is not None
    assert holder.stdout is not None
    holder.stdin.write("go\n")
    holder.stdin.flush()
    assert holder.stdout.readline().strip() == "loading"
    os.kill(holder.pid, signal.SIGKILL)  # dies holding the lease
    holder.communicate(timeout=10)
    assert await raw.exists(prefix[:-1] + "#lease:cold") == 1
    taker = spawn(prefix, callers=5, load_seconds=0.0, lock_timeout=0.5)
    assert taker.stdin is not None
    taker.stdin.write("go\n")
    taker.stdin.flush()
    report = await asyncio.to_thread(finish, taker)
    assert report["pids"] == [taker.pid]
    assert report["loads"] == 1
    assert int(await raw.get("counter-" + prefix)) == 2


async def test_hits_never_take_the_lease(prefix: str, raw: redis_asyncio.Redis) -> None:
    cache = Cache(RedisStore(REDIS_URL, prefix=prefix), fallback=None)
    try:
        await cache.get_or_set("k", lambda: "v", lock="distributed")
        before = await raw.info("commandstats")
        for _ in range(20):
            assert await cache.get_or_set("k", lambda: "other", lock="distributed") == "v"
        after = await raw.info("commandstats")
        assert int(after["cmdstat_set"]["calls"]) == int(before["cmdstat_set"]["calls"])
        assert await raw.exists(prefix[:-1] + "#lease:k") == 0
    finally:
        await cache.clear()
        await cache.aclose()


async def test_distributed_on_a_memory_store_is_local() -> None:
    cache = Cache(MemoryStore())
    calls = 0

    async def loader() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return calls

    results = await asyncio.gather(
        *(cache.get_or_set("k", loader, lock="distributed") for _ in range(20))
    )
    assert results == [1] * 20
    assert cache.statistics().lock_waits == 0


async def test_an_unavailable_redis_loads_locally(prefix: str) -> None:
    store = RedisStore(REDIS_URL, prefix=prefix, failure_threshold=1, recovery_time=3600)
    store.breaker.failure()
    cache = Cache(store)
    try:
        assert await cache.get_or_set("k", lambda: "local", lock="distributed") == "local"
        assert cache.statistics().lock_timeouts == 0
    finally:
        await cache.aclose()
