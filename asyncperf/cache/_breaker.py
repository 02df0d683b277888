"""A circuit breaker: after N failures in a row, skip the backend until a probe succeeds."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from .._exceptions import ConfigurationError
from ._policy import check_positive_int

__all__ = ["BreakerStatistics", "CircuitBreaker"]

logger = logging.getLogger("asyncperf.cache")

BreakerState = Literal["closed", "open", "half-open"]
CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half-open"


@dataclass(frozen=True, slots=True)
class BreakerStatistics:
    """Counters of one breaker.

    Attributes:
        state: ``"closed"`` (calls go through), ``"open"`` (calls are refused at once) or
            ``"half-open"`` (one probe call is in flight).
        failures: Failed calls recorded in all.
        consecutive_failures: Failures since the last success.
        opened: Times the breaker opened.
        closed: Times it closed again after a successful probe.
        rejected: Calls refused because it was open.
    """

    state: str
    failures: int
    consecutive_failures: int
    opened: int
    closed: int
    rejected: int


class CircuitBreaker:
    """Count consecutive failures; open after ``failure_threshold``; probe after a pause.

    While open, :meth:`allow` answers ``False`` at once (a dead backend costs nothing).
    After ``recovery_time`` seconds one caller is let through as a probe (half-open): its
    success closes the breaker, its failure opens it for another ``recovery_time``. State
    changes are logged once each and reported to ``listeners``.

    Args:
        failure_threshold: Consecutive failures that open the breaker.
        recovery_time: Seconds to stay open before probing.
        name: Used in log lines.
        clock: Monotonic seconds; injected by tests.
    """

    __slots__ = (
        "_clock",
        "_closed",
        "_consecutive",
        "_failures",
        "_opened",
        "_opened_at",
        "_rejected",
        "failure_threshold",
        "listeners",
        "name",
        "recovery_time",
        "state",
    )

    def __init__(
        self,
        *,
        failure_threshold: int = 3,
        recovery_time: float = 1.0,
        name: str = "store",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        check_positive_int(failure_threshold, "failure_threshold")
        if (
            isinstance(recovery_time, bool)
            or not isinstance(recovery_time, int | float)
            or not 0 < recovery_time < float("inf")
        ):
            raise ConfigurationError(
                f"recovery_time must be a finite number of seconds > 0, got {recovery_time!r}"
            )
        self.failure_threshold = failure_threshold
        self.recovery_time = float(recovery_time)
        self.name = name
        self._clock = clock
        self.state: BreakerState = CLOSED
        self.listeners: list[Callable[[str, str], None]] = []
        self._consecutive = 0
        self._failures = 0
        self._opened = 0
        self._closed = 0
        self._rejected = 0
        self._opened_at = 0.0

    def __repr__(self) -> str:
        return f"CircuitBreaker(name={self.name!r}, state={self.state!r})"

    @property
    def is_open(self) -> bool:
        """Whether calls are being refused now (open, or half-open with a probe out)."""
        return self.state != CLOSED

    def would_allow(self) -> bool:
        """Return whether :meth:`allow` would let a call through now, changing nothing."""
        if self.state == CLOSED:
            return True
        return self.state == OPEN and self._clock() - self._opened_at >= self.recovery_time

    def allow(self) -> bool:
        """Return whether a call may go to the backend now."""
        state = self.state
        if state == CLOSED:
            return True
        if state == OPEN and self._clock() - self._opened_at >= self.recovery_time:
            self._change(HALF_OPEN)
            return True  # this caller is the probe
        self._rejected += 1
        return False

    def success(self) -> None:
        """Record a call that worked."""
        self._consecutive = 0
        if self.state != CLOSED:
            self._closed += 1
            self._change(CLOSED)

    def failure(self) -> None:
        """Record a call that failed (or timed out)."""
        self._failures += 1
        self._consecutive += 1
        if self.state == HALF_OPEN or (
            self.state == CLOSED and self._consecutive >= self.failure_threshold
        ):
            self._opened += 1
            self._opened_at = self._clock()
            self._change(OPEN)
        elif self.state == OPEN:
            self._opened_at = self._clock()

    def reset(self) -> None:
        """Close the breaker and forget failures (for tests and manual recovery)."""
        self._consecutive = 0
        if self.state != CLOSED:
            self._change(CLOSED)

    def _change(self, state: BreakerState) -> None:
        previous, self.state = self.state, state
        if state == OPEN and previous == CLOSED:
            logger.warning(
                "asyncperf: %s breaker opened after %d consecutive failures; "
                "skipping it for %.3g s",
                self.name,
                self._consecutive,
                self.recovery_time,
            )
        elif state == CLOSED:
            logger.warning("asyncperf: %s breaker closed: the backend answers again", self.name)
        for listener in list(self.listeners):
            try:
                listener(previous, state)
            except Exception:  # a listener must not break the breaker
                logger.exception("asyncperf: breaker listener failed")

    def statistics(self) -> BreakerStatistics:
        """Return a snapshot of the counters."""
        return BreakerStatistics(
            state=self.state,
            failures=self._failures,
            consecutive_failures=self._consecutive,
            opened=self._opened,
            closed=self._closed,
            rejected=self._rejected,
        )
