"""Every stall of the loop longer than the threshold is seen, whatever its phase.

Stalls of 120, 150 and 400 ms, 20 each, start at random moments relative to the lag
probe's timer and the watchdog's heartbeats, on asyncio, trio and uvloop. Each one must be
counted, show in the lag histogram and its max, and name the blocking frame.
"""

from __future__ import annotations

import asyncio
import random
import time

import anyio
import pytest

from asyncperf.monitor import PerformanceMonitor

STALLS = (0.12, 0.15, 0.4)
TRIES = 20
GAP = 0.01  # the watchdog's default gap at the 100 ms threshold
SLACK = 0.02  # the heartbeat's own scheduling, on a shared machine

pytestmark = pytest.mark.slow


def block_the_loop(seconds: float) -> None:
    time.sleep(seconds)  # deliberately blocking: the frame the record must name


async def stall_everywhere() -> list[tuple[float, float, str]]:
    """Run the stalls under a default monitor; return (stall, recorded lag, location)."""
    monitor = PerformanceMonitor(cache_probe_interval=None)  # 100 ms threshold
    rng = random.Random(20261205)
    seen: list[tuple[float, float, str]] = []
    async with monitor:
        await anyio.sleep(0.05)
        for stall in [s for s in STALLS for _ in range(TRIES)]:
            before = monitor.slow_callbacks.value
            await anyio.sleep(rng.uniform(0.0, 0.3))  # a random phase
            block_the_loop(stall)
            for _ in range(200):  # the late heartbeat runs right after the stall
                if monitor.slow_callbacks.value > before:
                    break
                await anyio.sleep(0.005)
            assert monitor.slow_callbacks.value > before, f"a {stall * 1000:.0f} ms stall unseen"
            record = monitor._watchdog.recent[-1]
            seen.append((stall, record.blocked_seconds, record.location))
            assert monitor.snapshot()["loop"]["max_recent_seconds"] >= stall - GAP - SLACK
    assert monitor.loop_lag.quantile(1.0) >= max(STALLS) - GAP - SLACK
    return seen


def check(seen: list[tuple[float, float, str]]) -> None:
    assert len(seen) == len(STALLS) * TRIES
    for stall, lag, location in seen:
        assert lag >= stall - GAP - SLACK, (stall, lag)
        assert "block_the_loop" in location, location


async def test_every_stall_is_seen_on_asyncio_and_trio() -> None:
    check(await stall_everywhere())


def test_every_stall_is_seen_on_uvloop() -> None:
    import uvloop  # a dev dependency: missing means a broken install, not a skip

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert isinstance(runner.get_loop(), uvloop.Loop)
        check(runner.run(stall_everywhere()))
