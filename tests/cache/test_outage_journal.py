"""The outage journal on disk: invalidations made while Redis is down survive the process.

A child process caches two values on a Redis of its own (started here, on a free port,
with an fsync'd append-only file so its data survives a restart), the server is killed
(SIGKILL: connections refused), the child deletes one key and invalidates the other's tag
(Redis cannot hear it: both go to the journal file), and the child is SIGKILLed. Redis is
restarted on the same port and comes back holding both old values. A new cache with the
same configuration must replay the journal before it reads: it never serves them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from asyncperf import Cache, ConfigurationError
from asyncperf.cache import FallbackStore, MemoryStore, RedisStore

from .redis_servers import RedisServer, start_redis

pytestmark = [pytest.mark.redis]

PREFIX = "journal-test:"

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from asyncperf import Cache
    from asyncperf.cache import FallbackStore, MemoryStore, RedisStore

    async def main(url, journal):
        store = FallbackStore(
            RedisStore(url, prefix=sys.argv[3], op_timeout=0.2, failure_threshold=1),
            MemoryStore(),
            journal_path=journal,
        )
        cache = Cache(store)
        await cache.set("user:1", "old", ttl=300)
        await cache.set("user:2", "old-tagged", ttl=300, tags=["users"])
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # the parent kills Redis meanwhile
        await cache.delete("user:1")
        await cache.invalidate_tags("users")
        assert store.statistics().breaker_state == "open", store.statistics()
        print("journaled", flush=True)
        await asyncio.sleep(3600)  # killed here

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis.asyncio runs on asyncio only


def _restart(server: RedisServer) -> RedisServer:
    """Start the killed ``server`` again: same port, directory and options (its AOF)."""
    args = list(server.process.args)  # type: ignore[arg-type]
    with server.log_path.open("ab") as log:
        process = subprocess.Popen(
            args, cwd=server.directory, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
    again = RedisServer(port=server.port, directory=server.directory, process=process)
    again.wait_ready()
    return again


def _read_line(child: subprocess.Popen[str], want: str) -> None:
    assert child.stdout is not None
    line = child.stdout.readline().strip()
    if line != want:
        child.kill()
        _, err = child.communicate(timeout=10)
        raise AssertionError(f"child said {line!r}, not {want!r}; stderr:\n{err}")


async def test_invalidations_survive_a_process_killed_during_an_outage(tmp_path: Path) -> None:
    server = start_redis(tmp_path, "--appendonly", "yes", "--appendfsync", "always")
    journal = tmp_path / "outage.journal"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, server.url, str(journal), PREFIX],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        _read_line(child, "ready")
        server.kill()  # refused: the child's delete and invalidation cannot reach it
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
        _read_line(child, "journaled")
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=10)  # reaps it and closes its pipes
    server = _restart(server)
    try:
        # Redis never heard of the invalidations: read raw, both old values are there.
        assert server.command("GET", PREFIX + "user:1") is not None
        assert server.command("GET", PREFIX + "user:2") is not None
        assert journal.stat().st_size > 0

        store = FallbackStore(
            RedisStore(server.url, prefix=PREFIX), MemoryStore(), journal_path=journal
        )
        cache = Cache(store)
        try:
            assert await cache.get("user:1") is None
            assert await cache.get("user:2") is None
            assert server.command("EXISTS", PREFIX + "user:1", PREFIX + "user:2") == 0
            assert store.statistics().recoveries == 1
            assert journal.stat().st_size == 0  # replayed, so emptied
            await cache.set("user:1", "new", ttl=300)
            assert await cache.get("user:1") == "new"
        finally:
            await cache.aclose()
    finally:
        server.kill()


async def test_a_journal_is_not_replayed_by_another_store(tmp_path: Path) -> None:
    journal = tmp_path / "outage.journal"
    journal.write_text('{"journal":1,"store":"redis://elsewhere:6379/0 other:"}\n{"k":["a"]}\n')
    with pytest.raises(ConfigurationError, match="belongs to store"):
        FallbackStore(RedisStore(prefix=PREFIX), MemoryStore(), journal_path=journal)
    with pytest.raises(ConfigurationError, match="does not exist"):
        FallbackStore(
            RedisStore(prefix=PREFIX), MemoryStore(), journal_path=tmp_path / "no" / "file"
        )


async def test_the_journal_file_is_bounded(tmp_path: Path) -> None:
    """Past journal_size items the file collapses to one "clear everything" line."""
    server = start_redis(tmp_path)
    journal = tmp_path / "outage.journal"
    try:
        store = FallbackStore(
            RedisStore(server.url, prefix=PREFIX, op_timeout=0.2, failure_threshold=1),
            MemoryStore(),
            journal_size=5,
            journal_path=journal,
        )
        cache = Cache(store)
        await cache.set("keep-out", "old", ttl=300)
        server.stop()
        try:
            for i in range(50):
                await cache.delete(f"gone:{i}")
        finally:
            server.cont()
        lines = journal.read_text().splitlines()
        assert len(lines) <= 5 + 2, lines  # header + at most journal_size items + the marker
        assert lines[-1] == '{"all":true}'
        await cache.aclose()
        # A new process with the same configuration clears the prefix before reading.
        again = Cache(
            FallbackStore(
                RedisStore(server.url, prefix=PREFIX), MemoryStore(), journal_path=journal
            )
        )
        assert await again.get("keep-out") is None
        await again.aclose()
    finally:
        server.kill()


def test_journal_replays_in_a_fresh_event_loop(tmp_path: Path) -> None:
    """The load happens at construction, outside any loop; replay in the first loop."""
    journal = tmp_path / "outage.journal"
    journal.write_text(
        '{"journal":1,"store":"redis://127.0.0.1:6379/0 ' + PREFIX + '"}\n{"k":["x"]}\n'
    )
    store = FallbackStore(RedisStore(prefix=PREFIX), MemoryStore(), journal_path=journal)
    assert not store.available()  # pending replay

    async def run() -> None:
        raw = store.primary.client
        await raw.set(PREFIX + "x", b"stale")
        cache = Cache(store)
        assert await cache.get("x") is None
        assert await raw.exists(PREFIX + "x") == 0
        await cache.aclose()

    asyncio.run(run())


async def test_a_tiered_cache_replays_its_journal_file(tmp_path: Path) -> None:
    journal = tmp_path / "outage.journal"
    journal.write_text(
        '{"journal":1,"store":"redis://127.0.0.1:6379/0 ' + PREFIX + '"}\n{"t":["group"]}\n'
    )
    writer = Cache(RedisStore(prefix=PREFIX), fallback=None)
    await writer.set("member", "stale", ttl=300, tags=["group"])
    cache = Cache.tiered(l2=RedisStore(prefix=PREFIX), journal_path=journal)
    try:
        assert await cache.get("member") is None  # the tag invalidation was replayed first
        assert await writer.get("member") is None
    finally:
        await cache.aclose()
        await writer.aclose()
