"""PoolMonitor: acquire waits, utilisation, timeouts and advice."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from asyncperf import ConfigurationError
from asyncperf.db import PoolMonitor
from tests.db.conftest import DSN

pytestmark = pytest.mark.postgres


async def test_a_starved_pool_is_told_to_grow() -> None:
    pool = await asyncpg.create_pool(DSN, min_size=2, max_size=2)
    try:
        monitor = PoolMonitor(pool, window=30.0)

        async def work() -> None:
            async with monitor.acquire() as conn:
                await conn.execute("SELECT pg_sleep(0.05)")

        await asyncio.gather(*(work() for _ in range(8)))
        async with monitor.acquire() as held, monitor.acquire() as held2:
            assert held is not held2
            with pytest.raises(TimeoutError):
                async with monitor.acquire(timeout=0.05):
                    pass
        stats = monitor.statistics()
        assert stats.acquisitions == 10
        assert stats.timeouts == 1
        assert stats.peak_in_use == 2 == stats.max_size
        assert stats.wait_max_seconds >= 0.04  # the later tasks queued behind the first two
        assert stats.wait_p95_seconds > 0
        assert stats.hold_mean_seconds > 0
        assert 0 < stats.utilisation <= 1
        assert stats.in_use == 0
        assert stats.waiting == 0
        advice = await monitor.advice()
        sizing = next(a for a in advice if a.action == "size_up")
        assert "max_size from 2" in sizing.message
        assert "1 acquire timeouts" in sizing.reason
        stats.to_dict()
    finally:
        await pool.close()


async def test_an_idle_pool_is_told_to_shrink_and_headroom_is_checked() -> None:
    pool = await asyncpg.create_pool(DSN, min_size=1, max_size=10)
    try:
        clock_now = [0.0]
        monitor = PoolMonitor(pool, window=60.0, clock=lambda: clock_now[0])
        for _ in range(20):
            async with monitor.acquire() as conn:
                clock_now[0] += 0.01
                await conn.fetchval("SELECT 1")
            clock_now[0] += 1.0
        stats = monitor.statistics()
        assert stats.utilisation == pytest.approx(0.01 * 20 / (10 * stats.window_seconds))
        assert stats.peak_in_use == 1
        actions = {a.action: a for a in await monitor.advice()}
        assert "size_down" in actions
        # 1000 processes x 10 connections cannot fit in max_connections
        crowded = {a.action for a in await monitor.advice(processes=1000)}
        assert "max_connections" in crowded
        # events older than the window drop out
        clock_now[0] += 120
        assert monitor.statistics().acquisitions == 0
    finally:
        await pool.close()


async def test_idle_in_transaction_sessions_are_reported() -> None:
    pool = await asyncpg.create_pool(DSN, min_size=1, max_size=2)
    other = await asyncpg.connect(DSN)
    try:
        transaction = other.transaction()
        await transaction.start()
        await other.execute("SELECT 1")
        await asyncio.sleep(1.2)
        actions = {a.action for a in await PoolMonitor(pool).advice()}
        assert "idle_in_transaction" in actions
        await transaction.rollback()
    finally:
        await other.close()
        await pool.close()


async def test_bad_window() -> None:
    with pytest.raises(ConfigurationError):
        PoolMonitor(object(), window=0)
