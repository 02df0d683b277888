"""Redis machinery for the benchmarks: a throwaway server, command counts, a hung server.

The session fixture ``redis_server`` (in ``conftest.py``) starts one ``redis-server`` on a
free loopback port with nothing on disk (``--save "" --appendonly no``), waits until it
answers PING and shuts it down after the run. The benchmarks never touch the shared
Redis on 6379. A missing ``redis-server`` binary fails the run: these figures are part of
the suite, not optional.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis

from bench._data import QUICK

if TYPE_CHECKING:
    from bench.conftest import AsyncBench

# Sequential Redis ops (the peer study used 2000 ops per sample).
REDIS_OPS = 200 if QUICK else 2_000
REDIS_ROUNDS = 3 if QUICK else 15
# 100 concurrent tasks x GETS_PER_TASK gets each (the peer study: 100 x 100).
TASKS = 100
GETS_PER_TASK = 20 if QUICK else 100
WAVE_ROUNDS = 3 if QUICK else 7

_START_TIMEOUT = 10.0


def free_port() -> int:
    """Return a loopback TCP port nobody listens on now (bind to port 0, read, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RedisServer:
    """A throwaway redis-server owned by this test session."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path
    version: str = "?"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        """A new sync client (close it after use)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5.0)

    def command_counts(self) -> dict[str, int]:
        """Calls per command since the server started (``INFO commandstats``)."""
        with contextlib.closing(self.client()) as client:
            return command_counts(client)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(Exception), contextlib.closing(self.client()) as client:
                client.shutdown(nosave=True)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_redis_server(directory: Path) -> RedisServer:
    """Start ``redis-server`` on a free loopback port; fail (never skip) if it cannot."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not installed; the Redis benchmarks need it "
            "(Debian: apt-get install -y redis-server)",
            pytrace=False,
        )
    log = directory / "redis.log"
    for _attempt in range(3):  # the port may be taken between probe and bind
        port = free_port()
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                    "--dir",
                    str(directory),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = RedisServer(port=port, process=process, log=log)
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with contextlib.closing(server.client()) as client:
                    if client.ping():
                        server.version = str(client.info("server").get("redis_version", "?"))
                        return server
            except redis.ConnectionError:
                time.sleep(0.02)
        server.stop()
    pytest.fail(f"redis-server did not answer PING; log:\n{log.read_text()}", pytrace=False)


def command_counts(client: redis.Redis) -> dict[str, int]:
    """Calls per command (``cmdstat_get`` -> ``get``) from ``INFO commandstats``."""
    info = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(stats["calls"])
        for name, stats in info.items()
        if isinstance(stats, dict)
    }


def command_diff(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Commands run between two snapshots, without the ``INFO`` calls that took them."""
    diff = {name: calls - before.get(name, 0) for name, calls in after.items()}
    return {name: calls for name, calls in sorted(diff.items()) if calls > 0 and name != "info"}


class HungServer:
    """A TCP server on loopback that accepts connections and never answers a byte.

    This is what a frozen Redis (SIGSTOP, a stuck host behind a live kernel) looks like
    to a client: connect succeeds, every reply times out.
    """

    def __init__(self) -> None:
        self._release = asyncio.Event()
        self._server: asyncio.Server | None = None
        self.connections = 0
        self.port = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await self._release.wait()
        writer.close()

    async def start(self) -> HungServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    async def close(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._server.wait_closed()
            self._server = None


async def close_quietly(close: Callable[[], Awaitable[Any]], timeout: float = 5.0) -> None:
    """Await a peer's close() with a bound (a hung server must not hang the teardown)."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout):
            await close()


@dataclass
class Variant:
    """One contender of a round-robin group: ``run()`` performs ``ops`` operations."""

    label: str
    run: Callable[[], Awaitable[None]]
    ops: int
    floor: bool = False


def round_robin(
    abench: AsyncBench, variants: Sequence[Variant], *, rounds: int, unit: str = "ns/op"
) -> dict[str, float] | None:
    """Run every variant in turn, ``rounds`` times, in one loop; record each one's median.

    This is the peer study's method: the variants run round-robin (the order reversed
    every other cycle), so drift of a noisy machine, or another job sharing it, hits all
    of them alike. One benchmark round is one cycle through all variants; a warm-up cycle
    runs first and is dropped. ``unit`` is ``"ns/op"`` (median block time / ops) or a
    rate such as ``"keys/s"`` (ops / median block time).
    """
    loop = abench.loop
    times: dict[str, list[float]] = {v.label: [] for v in variants}
    cycles = 0

    def one_cycle() -> None:
        nonlocal cycles
        cycles += 1
        for variant in variants if cycles % 2 else variants[::-1]:
            started = time.perf_counter()
            loop.run_until_complete(variant.run())
            times[variant.label].append(time.perf_counter() - started)

    abench.benchmark.pedantic(one_cycle, rounds=rounds, iterations=1, warmup_rounds=1)
    if not abench.enabled:
        return None
    values: dict[str, float] = {}
    for variant in variants:
        median = statistics.median(times[variant.label][1:])
        value = median / variant.ops * 1e9 if unit == "ns/op" else variant.ops / median
        values[variant.label] = value
        abench.record(variant.label, value, unit, floor=variant.floor)
    abench.benchmark.extra_info.update(
        method="round-robin",
        cycles=rounds,
        ops_per_block={v.label: v.ops for v in variants},
        unit=unit,
        medians={label: round(value, 1) for label, value in values.items()},
    )
    return values


async def wave(
    task: Callable[[Sequence[str]], Awaitable[None]], sequences: Sequence[Sequence[str]]
) -> None:
    """Start one task per key sequence at once and wait for all of them."""
    await asyncio.gather(*(task(sequence) for sequence in sequences))
