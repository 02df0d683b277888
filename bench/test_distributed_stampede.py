"""Distributed stampede: 4 processes x 250 concurrent callers on one cold key.

Each worker process (``bench/_stampede_worker.py``) holds one ``Cache.from_url`` on the
session's redis-server and, on a "go" from this process, starts 250 concurrent
``get_or_set(key, loader, ttl=60, lock=...)`` calls on a key no one has loaded yet. The
loader INCRs a per-wave counter in Redis and sleeps 50 ms, so loads are counted across
processes. The workers start (and connect) before the timed waves; one untimed wave runs
first, so the timed ones see warm pools and subscriptions (its wall time is printed too).

Group ``redis-stampede`` (ms from "go" to the last worker's answer):
    lock="distributed": a Redis lease; one process loads, the others wait for its release
        message and read the stored value. Asserted: exactly 1 load per wave, every caller
        gets the value, and no busy polling: the Redis commands of a wave
        (``INFO commandstats`` before/after) stay far below one per caller.
    lock="local": single-flight inside each process only, for comparison (one load per
        process; recorded, not asserted beyond 1 to 4).
"""

from __future__ import annotations

import contextlib
import os
import select
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from bench._data import QUICK
from bench._redis_support import RedisServer, command_diff

if TYPE_CHECKING:
    from bench.conftest import AsyncBench

GROUP = "redis-stampede"
PROCESSES = 4
CALLERS = 250  # per process
LOAD_SECONDS = 0.05
ROUNDS = 2 if QUICK else 5
ROOT = Path(__file__).resolve().parent.parent
READ_TIMEOUT = 30.0


class Worker:
    """One worker process and a line reader on its stdout (with a timeout)."""

    def __init__(self, url: str, lock: str, log: Path) -> None:
        self.log = log
        with log.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench._stampede_worker", url, str(CALLERS), lock],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        self._buffer = b""

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def readline(self, timeout: float = READ_TIMEOUT) -> str:
        stdout = self.process.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            ready = select.select([stdout], [], [], max(remaining, 0))[0] if remaining > 0 else []
            if not ready:
                raise AssertionError(f"worker silent for {timeout} s; stderr:\n{self.stderr()}")
            chunk = os.read(stdout.fileno(), 65536)
            if not chunk:
                raise AssertionError(f"worker exited; stderr:\n{self.stderr()}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            assert self.process.stdin is not None
            self.process.stdin.close()  # EOF: the worker closes its cache and exits
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@dataclass
class Wave:
    wall: float
    loads: int
    answers: list[dict[str, Any]]
    commands: dict[str, int] = field(default_factory=dict)

    @property
    def total_commands(self) -> int:
        return sum(self.commands.values())


def _stampede(
    abench: AsyncBench, redis_server: RedisServer, tmp_path: Path, lock: str, label: str
) -> list[Wave]:
    workers = [
        Worker(redis_server.url, lock, tmp_path / f"worker{i}.log") for i in range(PROCESSES)
    ]
    waves: list[Wave] = []
    try:
        for worker in workers:
            assert worker.readline() == "ready"
        with redis_server.client() as client:

            def run_wave() -> None:
                wave_id = f"{lock}-{len(waves)}"
                before = redis_server.command_counts()
                started = time.perf_counter()
                for worker in workers:
                    worker.send(f"go {wave_id}")
                answers = [orjson.loads(worker.readline()) for worker in workers]
                wall = time.perf_counter() - started
                commands = command_diff(before, redis_server.command_counts())
                loads = int(client.get(f"bench-stampede-loads:{wave_id}") or 0)
                waves.append(Wave(wall, loads, answers, commands))

            abench.benchmark.pedantic(run_wave, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    finally:
        for worker in workers:
            worker.stop()
    for wave in waves:
        assert sum(answer["ok"] for answer in wave.answers) == PROCESSES * CALLERS, wave
        assert wave.loads == sum(answer["loads"] for answer in wave.answers), wave
    timed = waves[1:] if len(waves) > ROUNDS else waves
    if abench.enabled:
        wall = statistics.median(abench.benchmark.stats.stats.data)
        loads = sorted({wave.loads for wave in timed})
        per_caller = statistics.median(wave.total_commands for wave in timed) / (
            PROCESSES * CALLERS
        )
        commands = max(timed, key=lambda wave: wave.total_commands).commands
        abench.benchmark.extra_info.update(
            label=label,
            processes=PROCESSES,
            callers_per_process=CALLERS,
            loader_seconds=LOAD_SECONDS,
            wall_ms=round(wall * 1000, 2),
            wall_ms_each=[round(wave.wall * 1000, 2) for wave in timed],
            wall_over_loader=round(wall / LOAD_SECONDS, 3),
            loader_calls=[wave.loads for wave in timed],
            redis_commands_per_wave=[wave.total_commands for wave in timed],
            redis_commands_per_caller=round(per_caller, 4),
            redis_commands_busiest_wave=commands,
            first_wave_ms=round(waves[0].wall * 1000, 2),
            lock_waits=[sum(a["lock_waits"] for a in wave.answers) for wave in timed],
            lock_timeouts=[sum(a["lock_timeouts"] for a in wave.answers) for wave in timed],
        )
        abench.record(
            label,
            wall * 1000,
            "ms",
            note=(
                f"loader calls {'/'.join(map(str, loads))}, "
                f"wall/loader {wall / LOAD_SECONDS:.2f}x, "
                f"Redis commands per caller {per_caller:.3f}"
            ),
        )
        abench.note(
            f"distributed stampede, {label}: first (untimed) wave {waves[0].wall * 1000:.0f} ms; "
            f"Redis commands in the busiest timed wave: {sum(commands.values())} "
            f"({', '.join(f'{name} {calls}' for name, calls in commands.items())})"
        )
    return waves


@pytest.mark.benchmark(group=GROUP)
def test_stampede_distributed(
    abench: AsyncBench, redis_server: RedisServer, tmp_path: Path
) -> None:
    waves = _stampede(
        abench,
        redis_server,
        tmp_path,
        "distributed",
        f'asyncperf get_or_set(lock="distributed"), {PROCESSES} proc x {CALLERS}',
    )
    for wave in waves:
        assert wave.loads == 1, wave  # exactly one loader call across all processes
        # No busy polling: waiting costs a few commands per process, not per caller.
        assert wave.total_commands < PROCESSES * 25, wave.commands
        assert not any(answer["lock_timeouts"] for answer in wave.answers), wave


@pytest.mark.benchmark(group=GROUP)
def test_stampede_local(abench: AsyncBench, redis_server: RedisServer, tmp_path: Path) -> None:
    waves = _stampede(
        abench,
        redis_server,
        tmp_path,
        "local",
        f'asyncperf get_or_set(lock="local"), {PROCESSES} proc x {CALLERS}',
    )
    for wave in waves:
        assert 1 <= wave.loads <= PROCESSES, wave
