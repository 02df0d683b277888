"""Loop lag and slow-callback detection (asyncio and trio)."""

from __future__ import annotations

import asyncio
import time

import anyio

from asyncperf.monitor import PerformanceMonitor


def block_the_loop(seconds: float) -> None:
    time.sleep(seconds)  # deliberately blocking: this is the culprit the watchdog names


async def test_a_100ms_block_shows_as_lag_and_a_slow_callback() -> None:
    monitor = PerformanceMonitor(
        loop_lag_interval=0.01, slow_callback_threshold=0.05, cache_probe_interval=None
    )
    async with monitor:
        await anyio.sleep(0.05)  # the probe is sleeping when the block starts
        block_the_loop(0.1)
        while monitor.loop_lag._only().count < 10:
            await anyio.sleep(0.01)
        snapshot = monitor.snapshot()
    # The probe was due at most one interval (10 ms) into the 100 ms block.
    assert snapshot["loop"]["max_recent_seconds"] >= 0.05
    assert snapshot["loop"]["lag"]["count"] >= 10
    assert monitor.loop_lag.quantile(1.0) >= 0.05
    assert snapshot["loop"]["slow_callbacks"] >= 1
    slow = snapshot["loop"]["recent_slow_callbacks"][0]
    assert "block_the_loop" in slow["location"]
    assert snapshot["loop"]["tasks"] >= 1
    assert not monitor.running


async def test_probes_start_and_stop_cleanly() -> None:
    monitor = PerformanceMonitor(loop_lag_interval=0.01, cache_probe_interval=0.01)
    async with monitor:
        assert monitor.running
        await anyio.sleep(0.05)
    assert not monitor.running
    async with anyio.create_task_group() as group:
        await group.start(monitor.run)
        assert monitor.running
        await monitor.stop()
    assert not monitor.running


def test_the_lag_probe_and_watchdog_work_on_uvloop() -> None:
    uvloop = __import__("uvloop")

    async def scenario() -> dict:
        monitor = PerformanceMonitor(
            loop_lag_interval=0.01, slow_callback_threshold=0.05, cache_probe_interval=None
        )
        async with monitor:
            await anyio.sleep(0.05)
            block_the_loop(0.1)
            while monitor.loop_lag._only().count < 10:
                await anyio.sleep(0.01)
            return monitor.snapshot()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert isinstance(runner.get_loop(), uvloop.Loop)
        snapshot = runner.run(scenario())
    assert snapshot["loop"]["max_recent_seconds"] >= 0.05
    assert snapshot["loop"]["slow_callbacks"] >= 1
    assert "block_the_loop" in snapshot["loop"]["recent_slow_callbacks"][0]["location"]
