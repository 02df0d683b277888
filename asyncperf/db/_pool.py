"""Pool monitoring for asyncpg and SQLAlchemy: acquire waits, utilisation, timeouts, and
sizing advice.

asyncpg's pool exposes sizes but no waiter count and no acquire latency, so the monitor
times the acquisitions that go through :meth:`PoolMonitor.acquire`. A SQLAlchemy
``AsyncEngine``'s pool is watched whole: every checkout, sessions' included.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from .._exceptions import ConfigurationError
from ._connection import Connection
from ._engine import PoolHooks, engine_pool, is_async_engine
from ._results import Result
from ._sql import MARKER

__all__ = ["PoolAdvice", "PoolMonitor", "PoolStatistics"]


@dataclass(frozen=True)
class PoolStatistics(Result):
    """What the monitor measured over its window (times in seconds).

    Attributes:
        window_seconds: The span the figures cover.
        acquisitions: Successful acquisitions in the window.
        timeouts: Acquisitions that gave up waiting in the window.
        wait_mean_seconds: Mean wait for a connection.
        wait_p95_seconds: 95th percentile wait.
        wait_max_seconds: Longest wait.
        hold_mean_seconds: Mean time a connection was held.
        utilisation: Time-weighted share of ``max_size`` held (0-1).
        peak_in_use: Most connections held at once.
        in_use: Connections held through the monitor now.
        waiting: Tasks waiting in :meth:`PoolMonitor.acquire` now.
        size: Connections open in the pool.
        idle: Idle connections in the pool.
        min_size: The pool's ``min_size``.
        max_size: The pool's ``max_size``.
    """

    window_seconds: float
    acquisitions: int
    timeouts: int
    wait_mean_seconds: float
    wait_p95_seconds: float
    wait_max_seconds: float
    hold_mean_seconds: float
    utilisation: float
    peak_in_use: int
    in_use: int
    waiting: int
    size: int
    idle: int
    min_size: int
    max_size: int


@dataclass(frozen=True)
class PoolAdvice(Result):
    """One piece of pool advice.

    Attributes:
        action: ``size_up``, ``size_down``, ``idle_in_transaction``, ``max_connections``
            or ``ok``.
        message: What to do.
        reason: The measurements behind it.
        numbers: The figures.
    """

    action: str
    message: str
    reason: str
    numbers: dict[str, float] = field(default_factory=dict)


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


class PoolMonitor:
    """Measure an asyncpg pool through the acquisitions made with :meth:`acquire`, or
    every checkout of a SQLAlchemy ``AsyncEngine``'s pool.

    With an engine (asyncpg driver, a sized pool such as the default
    ``AsyncAdaptedQueuePool``), ``max_size`` is ``pool_size + max_overflow`` and
    ``min_size`` is ``pool_size`` (what the pool keeps open); holds and levels come from
    the pool's ``checkout``/``checkin`` events, waits and timeouts from a wrapper around
    the pool's ``connect()``. :meth:`close` removes them.

    Args:
        pool: The ``asyncpg.Pool``, or a ``sqlalchemy.ext.asyncio.AsyncEngine``.
        window: Seconds of history the statistics and advice look at.
        clock: Monotonic clock (injected by tests).

    Example:
        >>> monitor = PoolMonitor(pool)                      # doctest: +SKIP
        >>> async with monitor.acquire(timeout=2.0) as conn:  # doctest: +SKIP
        ...     await conn.fetchval("SELECT 1")
        >>> await monitor.advice()                            # doctest: +SKIP
    """

    monitor_kind = "db_pool"  # the metric prefix PerformanceMonitor.watch uses

    def __init__(
        self, pool: Any, *, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not window > 0 or math.isinf(window):
            raise ConfigurationError(f"window must be a positive number of seconds, got {window}")
        self.pool = pool
        self.window = window
        self._clock = clock
        self._started = clock()
        self._waits: deque[tuple[float, float]] = deque()  # (when, seconds)
        self._timeouts: deque[float] = deque()
        self._holds: deque[tuple[float, float]] = deque()
        # (when, in_use after the change): enough to integrate utilisation over the window.
        self._levels: deque[tuple[float, int]] = deque([(self._started, 0)])
        self._in_use = 0
        self._waiting = 0
        self._hooks: PoolHooks | None = None
        self._out: dict[int, float] = {}  # engine checkouts: id(record) -> when
        self._runner: Any = pool
        self._knob = "max_size"
        if is_async_engine(pool):
            self._runner = engine_pool(pool)
            self._hooks = PoolHooks(pool, self)
            self._knob = "pool_size + max_overflow"

    def close(self) -> None:
        """Stop watching an engine's pool (nothing to do for an asyncpg pool)."""
        if self._hooks is not None:
            self._hooks.close()

    # -- what the engine hooks report ---------------------------------------------------------

    def _waited(self, started: float) -> None:
        acquired = self._clock()
        self._waits.append((acquired, acquired - started))

    def _timed_out(self) -> None:
        self._timeouts.append(self._clock())

    def _checked_out(self, record: int) -> None:
        self._out[record] = self._clock()
        self._level(+1)

    def _checked_in(self, record: int) -> None:
        acquired = self._out.pop(record, None)
        if acquired is not None:
            released = self._clock()
            self._holds.append((released, released - acquired))
            self._level(-1)

    def _sizes(self) -> tuple[int, int, int, int]:
        if self._hooks is not None:
            return self._hooks.sizes()
        return (
            int(self.pool.get_size()),
            int(self.pool.get_idle_size()),
            int(self.pool.get_min_size()),
            int(self.pool.get_max_size()),
        )

    def _trim(self, now: float) -> None:
        horizon = now - self.window
        for events in (self._waits, self._holds):
            while events and events[0][0] < horizon:
                events.popleft()
        while self._timeouts and self._timeouts[0] < horizon:
            self._timeouts.popleft()
        # Keep the last level before the horizon: it holds until the next change.
        while len(self._levels) > 1 and self._levels[1][0] <= horizon:
            self._levels.popleft()

    def _level(self, delta: int) -> None:
        self._in_use += delta
        self._levels.append((self._clock(), self._in_use))

    @asynccontextmanager
    async def acquire(
        self,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - mirrors asyncpg's Pool.acquire()
    ) -> AsyncIterator[Connection]:
        """Acquire a connection from the pool, timing the wait and the hold.

        Args:
            timeout: Seconds to wait for a connection (``None``: as long as it takes).

        With an engine, this yields an ``AsyncConnection`` (the hooks do the timing; the
        wait is bounded by ``create_async_engine(pool_timeout=...)``, so ``timeout`` must
        stay ``None``).

        Raises:
            TimeoutError: No connection became free in time (counted as a timeout).
            ConfigurationError: ``timeout`` given with an engine.
        """
        if self._hooks is not None:
            if timeout is not None:
                raise ConfigurationError(
                    "with an AsyncEngine the wait is bounded by create_async_engine"
                    "(pool_timeout=...); acquire() takes no timeout"
                )
            try:
                conn = await self.pool.connect()
            except self._hooks._timeout_error as exc:
                raise TimeoutError(str(exc)) from exc
            try:
                yield conn
            finally:
                await conn.close()
            return
        started = self._clock()
        self._waiting += 1
        try:
            conn = await self.pool.acquire(timeout=timeout)
        except TimeoutError:
            self._timeouts.append(self._clock())
            raise
        finally:
            self._waiting -= 1
        acquired = self._clock()
        self._waits.append((acquired, acquired - started))
        self._level(+1)
        try:
            yield conn
        finally:
            released = self._clock()
            self._holds.append((released, released - acquired))
            self._level(-1)
            await self.pool.release(conn)

    def statistics(self) -> PoolStatistics:
        """Return the figures of the last ``window`` seconds."""
        now = self._clock()
        self._trim(now)
        start = max(now - self.window, self._started)
        span = now - start
        busy = 0.0
        peak = 0
        for (when, level), following in zip(
            self._levels, [*list(self._levels)[1:], (now, 0)], strict=True
        ):
            begin, end = max(when, start), min(following[0], now)
            if end > begin:
                busy += level * (end - begin)
            if following[0] >= start:
                peak = max(peak, level)
        waits = [w for _, w in self._waits]
        holds = [h for _, h in self._holds]
        size, idle, min_size, max_size = self._sizes()
        return PoolStatistics(
            window_seconds=span,
            acquisitions=len(waits),
            timeouts=len(self._timeouts),
            wait_mean_seconds=sum(waits) / len(waits) if waits else 0.0,
            wait_p95_seconds=_percentile(waits, 0.95),
            wait_max_seconds=max(waits, default=0.0),
            hold_mean_seconds=sum(holds) / len(holds) if holds else 0.0,
            utilisation=busy / (max_size * span) if span > 0 and max_size else 0.0,
            peak_in_use=peak,
            in_use=self._in_use,
            waiting=self._waiting,
            size=size,
            idle=idle,
            min_size=min_size,
            max_size=max_size,
        )

    def local_advice(self, stats: PoolStatistics | None = None) -> list[PoolAdvice]:
        """Return sizing advice from the measurements alone (no server round trip)."""
        s = stats or self.statistics()
        advice: list[PoolAdvice] = []
        numbers = {
            "utilisation": s.utilisation,
            "wait_p95_seconds": s.wait_p95_seconds,
            "timeouts": float(s.timeouts),
            "max_size": float(s.max_size),
            "peak_in_use": float(s.peak_in_use),
        }
        rate = s.acquisitions / s.window_seconds if s.window_seconds > 0 else 0.0
        # Little's law: connections busy on average = arrival rate x hold time.
        needed = rate * s.hold_mean_seconds
        numbers["littles_law_connections"] = needed
        starved = s.peak_in_use >= s.max_size and s.wait_p95_seconds > 0.005
        if s.timeouts or (starved and s.utilisation > 0.7):
            target = max(s.max_size + 1, math.ceil(max(needed * 1.5, s.max_size * 1.5)))
            numbers["suggested_max_size"] = float(target)
            advice.append(
                PoolAdvice(
                    "size_up",
                    f"raise {self._knob} from {s.max_size} to about {target} (if the server has "
                    "headroom; otherwise shorten how long connections are held)",
                    f"{s.timeouts} acquire timeouts, p95 wait {s.wait_p95_seconds * 1000:.1f} ms, "
                    f"{s.utilisation:.0%} utilisation, all {s.max_size} connections in use at peak",
                    numbers,
                )
            )
        elif s.acquisitions >= 10 and s.utilisation < 0.25 and s.peak_in_use * 2 <= s.max_size:
            target = max(s.peak_in_use + 1, 2)
            numbers["suggested_max_size"] = float(target)
            advice.append(
                PoolAdvice(
                    "size_down",
                    f"lower {self._knob} from {s.max_size} to about {target} "
                    f"(and {'pool_size' if self._hooks else 'min_size'} to at most {target})",
                    f"{s.utilisation:.0%} utilisation, at most {s.peak_in_use} of {s.max_size} "
                    f"connections in use over {s.window_seconds:.0f} s: idle connections "
                    "cost server memory in every process",
                    numbers,
                )
            )
        return advice

    async def advice(self, *, processes: int = 1) -> tuple[PoolAdvice, ...]:
        """Return sizing advice plus server-side checks.

        Args:
            processes: How many processes run a pool like this one (for the
                ``max_connections`` headroom check).
        """
        stats = self.statistics()
        advice = self.local_advice(stats)
        row = await self._runner.fetchrow(
            f"""{MARKER}
            SELECT current_setting('max_connections')::int AS max_connections,
                   current_setting('superuser_reserved_connections')::int AS reserved,
                   current_setting('idle_in_transaction_session_timeout') AS idle_timeout,
                   (SELECT count(*) FROM pg_stat_activity
                    WHERE backend_type = 'client backend')::int AS connections,
                   (SELECT count(*) FROM pg_stat_activity
                    WHERE state LIKE 'idle in transaction%'
                      AND now() - state_change > interval '1 second')::int AS idle_in_tx"""
        )
        if row["idle_in_tx"]:
            advice.append(
                PoolAdvice(
                    "idle_in_transaction",
                    "do not hold a connection inside a transaction across other awaits; set "
                    "idle_in_transaction_session_timeout (now "
                    f"{row['idle_timeout']}) to cut such sessions off",
                    f"{row['idle_in_tx']} sessions idle in transaction for over a second: they "
                    "hold locks and block VACUUM",
                    {"idle_in_transaction": float(row["idle_in_tx"])},
                )
            )
        planned = processes * stats.max_size + row["reserved"]
        others = max(row["connections"] - stats.size, 0)
        if planned + others > row["max_connections"]:
            advice.append(
                PoolAdvice(
                    "max_connections",
                    f"{processes} processes x {self._knob} {stats.max_size} + {row['reserved']} "
                    f"reserved + {others} other connections exceed max_connections "
                    f"{row['max_connections']}: lower {self._knob} or put PgBouncer in front",
                    "at peak, connection attempts will fail with 'too many clients'",
                    {
                        "max_connections": float(row["max_connections"]),
                        "planned": float(planned + others),
                    },
                )
            )
        if not advice:
            advice.append(
                PoolAdvice(
                    "ok",
                    "no change needed",
                    f"{stats.utilisation:.0%} utilisation, p95 wait "
                    f"{stats.wait_p95_seconds * 1000:.1f} ms, no timeouts",
                    {"utilisation": stats.utilisation},
                )
            )
        return tuple(advice)
