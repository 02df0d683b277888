"""Redis that dies, hangs and comes back: the cache must degrade, count and recover.

Each test starts its own redis-server on a free loopback port and then kills it
(SIGKILL), freezes it (SIGSTOP/SIGCONT) or restarts it mid-load. Time that matters (the
breaker's recovery pause) runs on an injected clock; nothing here asserts on wall time.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as redis_asyncio

from asyncperf import Cache, MemoryStore, RedisStore
from asyncperf.cache import FallbackStore, TieredStore

from ..conftest import FakeClock
from .redis_servers import RedisServer, _base_args, redis_binary, start_redis

pytestmark = pytest.mark.redis
MISSING = object()
OP_TIMEOUT = 0.15


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    server = start_redis(tmp_path)
    yield server
    server.shutdown()


def restart(server: RedisServer) -> RedisServer:
    """Start a fresh, empty redis-server on the same port (after a kill)."""
    server.kill()
    log = (server.directory / "redis.log").open("ab")
    process = subprocess.Popen(
        [redis_binary(), *_base_args(server.port, server.directory)],
        cwd=server.directory,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    revived = RedisServer(port=server.port, directory=server.directory, process=process)
    revived.wait_ready()
    return revived


def redis_cache(url: str, clock: FakeClock, **options: object) -> tuple[Cache, RedisStore]:
    store = RedisStore(
        url,
        prefix="faults:",
        op_timeout=OP_TIMEOUT,
        failure_threshold=3,
        recovery_time=5.0,
        breaker_clock=clock,
        **options,  # type: ignore[arg-type]
    )
    return Cache(store), store


class Loader:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> int:
        self.calls += 1
        return self.calls


async def test_killed_redis_degrades_to_memory_and_recovers_after_restart(
    server: RedisServer, clock: FakeClock
) -> None:
    cache, store = redis_cache(server.url, clock)
    loader = Loader()
    try:
        assert await cache.get_or_set("before", loader, ttl=60) == 1
        server.kill()
        # Mid-outage: every call answers, the loader keeps serving, nothing raises.
        values = [await cache.get_or_set(f"during{i}", loader, ttl=60) for i in range(10)]
        assert values == list(range(2, 12))
        breaker = store.breaker.statistics()
        assert breaker.state == "open"
        assert breaker.opened == 1
        assert breaker.failures == 3, "after three failures nothing more is sent"
        # Values loaded during the outage live in the fallback and are served from it.
        assert await cache.get("during0") == 2
        assert isinstance(cache.store, FallbackStore)
        stats = cache.statistics()
        assert stats.breaker_state == "open"
        assert stats.degraded_operations > 0
        assert not (await cache.health()).ok

        server = restart(server)
        # Still inside the recovery pause: no probe yet.
        assert await cache.get("during0") == 2
        clock.advance(5.0)
        assert await cache.get_or_set("after", loader, ttl=60) == 12
        assert store.breaker.state == "closed"
        assert store.breaker.statistics().closed == 1
        assert await cache.get("after") == 12
        # The fallback was dropped on recovery: the restarted Redis is the truth now.
        assert await cache.get("during0", default=MISSING) is MISSING
        assert (await cache.health()).ok
    finally:
        await cache.aclose()
        server.shutdown()


async def test_frozen_redis_costs_one_deadline_per_failure_then_nothing(
    server: RedisServer, clock: FakeClock
) -> None:
    cache, store = redis_cache(server.url, clock)
    try:
        await cache.set("k", "v")
        server.stop()
        results = await asyncio.gather(*(cache.get("k", default=MISSING) for _ in range(50)))
        assert results == [MISSING] * 50  # misses, never exceptions
        for _ in range(5):
            await cache.get("k")
        breaker = store.breaker.statistics()
        assert breaker.state == "open"
        assert breaker.failures == 3
        server.cont()
        clock.advance(5.0)
        assert await cache.get("k") == "v", "nothing changed meanwhile: Redis is read again"
        assert store.breaker.state == "closed"
    finally:
        server.cont()
        await cache.aclose()


async def test_values_invalidated_during_an_outage_are_not_served_after_it(
    server: RedisServer, clock: FakeClock
) -> None:
    cache, store = redis_cache(server.url, clock)
    raw = redis_asyncio.Redis.from_url(server.url)
    try:
        await cache.set("deleted", "old")
        await cache.set("tagged", "old", tags=["t"])
        await cache.set("rewritten", "old")
        await cache.namespace("ns").set("1", "old")
        server.stop()
        # Invalidations made while Redis hangs: none can reach it now.
        assert await cache.delete("deleted") is False
        assert await cache.invalidate_tags("t") == 0
        await cache.set("rewritten", "new, memory only")
        await cache.namespace("ns").clear()
        assert store.breaker.state == "open"
        assert await cache.get("rewritten") == "new, memory only"
        server.cont()
        # (A frozen server still buffers what was written to its socket, so some of the
        # commands that timed out may run now; the journal does not rely on either.)
        await raw.set("faults:tagged", "old value back in Redis")
        clock.advance(5.0)
        # The first operation after recovery replays the journal before reading.
        for key in ("deleted", "tagged", "rewritten"):
            assert await cache.get(key, default=MISSING) is MISSING, key
        assert await cache.namespace("ns").get("1", default=MISSING) is MISSING
        assert await raw.exists("faults:deleted", "faults:tagged", "faults:rewritten") == 0
        assert store.breaker.state == "closed"
        stats = cache.store.statistics()  # type: ignore[attr-defined]
        assert stats.recoveries == 1
    finally:
        server.cont()
        await raw.aclose()
        await cache.aclose()


async def test_journal_overflow_clears_the_whole_prefix(
    server: RedisServer, clock: FakeClock
) -> None:
    store = RedisStore(
        server.url,
        prefix="faults:",
        op_timeout=OP_TIMEOUT,
        failure_threshold=1,
        recovery_time=5.0,
        breaker_clock=clock,
    )
    cache = Cache(FallbackStore(store, MemoryStore(), journal_size=5))
    raw = redis_asyncio.Redis.from_url(server.url)
    try:
        for i in range(10):
            await cache.set(f"k{i}", i)
        await raw.set("other-app", "keep")
        server.stop()
        for i in range(10):
            await cache.delete(f"k{i}")
        server.cont()
        clock.advance(5.0)
        assert await cache.get("k0", default=MISSING) is MISSING
        assert [key async for key in raw.scan_iter(match="faults:*")] == []
        assert await raw.get("other-app") == b"keep"
    finally:
        server.cont()
        await raw.aclose()
        await cache.aclose()


async def test_tiered_serves_l1_during_outage_and_flushes_it_on_recovery(
    server: RedisServer, clock: FakeClock
) -> None:
    l2 = RedisStore(
        server.url,
        prefix="faults:",
        op_timeout=OP_TIMEOUT,
        failure_threshold=3,
        recovery_time=5.0,
        breaker_clock=clock,
    )
    cache = Cache.tiered(l2=l2, l1=MemoryStore(), l1_ttl=300)
    loader = Loader()
    try:
        # Subscribed first: a connection event arriving after the writes flushes L1.
        assert await l2.ensure_listener()
        await cache.set("hot", "cached")
        await cache.set("doomed", "old")
        server.stop()
        # L1 hits never touch Redis; misses run the loader; writes go to L1 only.
        assert await cache.get("hot") == "cached"
        assert await cache.get_or_set("cold", loader, ttl=60) == 1
        assert await cache.get("cold") == 1
        await cache.delete("doomed")
        for _ in range(3):
            await cache.get_or_set("cold2", loader, ttl=60)
        assert l2.breaker.state == "open"
        server.cont()
        clock.advance(5.0)
        assert await cache.get("doomed", default=MISSING) is MISSING
        store = cache.store
        assert isinstance(store, TieredStore)
        assert store.statistics().l1_flushes >= 1
        assert await cache.get("hot") == "cached", "re-read from Redis"
        assert await cache.get("cold", default=MISSING) is MISSING, "journaled, replayed"
    finally:
        server.cont()
        await cache.aclose()


async def test_password_and_acl_urls(tmp_path: Path) -> None:
    secured = start_redis(tmp_path)
    secured.command("CONFIG", "SET", "requirepass", "s3cret-pass")
    # A generous op_timeout where the server must answer: a first command (connect, AUTH,
    # SELECT) on a loaded CI machine can take longer than the default, and a write made
    # during that "outage" lands in the memory fallback only.
    base = f"127.0.0.1:{secured.port}/0"
    try:
        async with Cache.from_url(f"redis://:s3cret-pass@{base}?prefix=pw&op_timeout=5") as cache:
            await cache.set("k", "v")
            assert await cache.get("k") == "v"
        async with Cache.from_url(f"redis://:nope@{base}?op_timeout=0.5") as wrong:
            assert await wrong.get_or_set("k", lambda: "loaded") == "loaded"
            assert not (await wrong.health()).ok
            assert wrong.statistics().backend_failures >= 1

        admin = redis_asyncio.Redis(port=secured.port, password="s3cret-pass")
        await admin.execute_command(
            "ACL", "SETUSER", "app", "on", ">app-pass", "~pw-acl*", "&*", "+@all"
        )
        await admin.aclose()
        async with Cache.from_url(f"redis://app:app-pass@{base}?prefix=pw-acl&op_timeout=5") as acl:
            await acl.set("k", "acl")
            assert await acl.get("k") == "acl"
            assert (await acl.health()).ok
    finally:
        secured.shutdown()


def _make_certificates(directory: Path) -> None:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            "-out", "ca.crt", "-days", "2", "-subj", "/CN=asyncperf-test-ca")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
            "-out", "server.csr", "-subj", "/CN=127.0.0.1")  # fmt: skip
    (directory / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.crt", "-days", "2",
            "-extfile", "ext.cnf")  # fmt: skip


async def test_rediss_url_with_tls(tmp_path: Path) -> None:
    from .redis_servers import free_port

    _make_certificates(tmp_path)
    port = free_port()
    process = subprocess.Popen(
        [
            redis_binary(),
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            "server.crt",
            "--tls-key-file",
            "server.key",
            "--tls-ca-cert-file",
            "ca.crt",
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    ca = tmp_path / "ca.crt"
    try:
        url = f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={ca}&prefix=tls"
        for _ in range(100):  # wait until it accepts TLS connections
            probe = Cache.from_url(url, fallback_max_entries=0, op_timeout=1.0)
            ok = (await probe.health()).ok
            await probe.aclose()
            if ok:
                break
            await asyncio.sleep(0.05)
        cache = Cache.from_url(url, op_timeout=1.0)
        await cache.set("k", {"secure": True})
        assert await cache.get("k") == {"secure": True}
        assert (await cache.health()).ok
        await cache.aclose()
    finally:
        process.kill()
        process.wait(timeout=5)
