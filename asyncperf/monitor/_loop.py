"""Event-loop lag: a sleep-drift probe, and a watchdog thread that names slow callbacks.

The probe sleeps ``interval`` seconds and records how late it woke up. It runs on any
event loop anyio supports (asyncio, uvloop, trio) and costs one timer per interval.

The watchdog finds slow callbacks without asyncio debug mode: a daemon thread checks
whether the probe's wake-up is overdue by more than ``threshold``; if so the loop is
stuck in one callback (or badly overloaded), and the thread records the loop thread's
current stack, which names the culprit. No loop internals are patched, so it works on
uvloop and trio too.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from ._metrics import CounterChild, Histogram

__all__ = ["LoopLagProbe", "SlowCallback", "SlowCallbackWatchdog"]

_INTERNAL = ("/asyncio/", "/anyio/", "/trio/", "/selectors.py", "/threading.py", "/uvloop/")


@dataclass(frozen=True, slots=True)
class SlowCallback:
    """One stall of the event loop the watchdog caught.

    Attributes:
        at: Wall-clock time (``time.time()``) when it was caught.
        blocked_seconds: How long the loop had been stuck when caught (at least the
            threshold; the full stall shows in the lag histogram).
        location: ``file:line in function`` of the innermost frame outside asyncio,
            anyio and trio internals.
        stack: The loop thread's innermost frames, formatted, outermost first.
    """

    at: float
    blocked_seconds: float
    location: str
    stack: tuple[str, ...]


class LoopLagProbe:
    """Sleeps ``interval`` seconds in a loop and records the overshoot as lag.

    Args:
        histogram: Where each lag is observed (``asyncperf_event_loop_lag_seconds``).
        interval: Seconds between probes.
        window: Seconds over which :attr:`max_recent` is kept.
        clock: A monotonic clock.
    """

    def __init__(
        self,
        histogram: Histogram,
        *,
        interval: float = 0.25,
        window: float = 60.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.histogram = histogram
        self.interval = interval
        self.clock = clock
        self.last = 0.0
        self.due: float | None = None
        self._recent: deque[float] = deque(maxlen=max(1, int(window / interval)))

    @property
    def max_recent(self) -> float:
        """The largest lag over the last ``window`` seconds (0.0 before any probe)."""
        return max(self._recent, default=0.0)

    async def run(self) -> None:
        """Probe until cancelled."""
        clock, interval, observe = self.clock, self.interval, self.histogram.observe
        try:
            while True:
                start = clock()
                self.due = start + interval
                await anyio.sleep(interval)
                lag = max(0.0, clock() - start - interval)
                observe(lag)
                self.last = lag
                self._recent.append(lag)
        finally:
            self.due = None


class SlowCallbackWatchdog:
    """A daemon thread that notices when the probe's wake-up is overdue.

    Args:
        probe: The running :class:`LoopLagProbe` whose ``due`` time is watched.
        counter: Incremented once per stall (``asyncperf_event_loop_slow_callbacks_total``).
        threshold: Seconds overdue that count as a slow callback.
        keep: How many recent stalls to keep for the snapshot.
    """

    def __init__(
        self,
        probe: LoopLagProbe,
        counter: CounterChild,
        *,
        threshold: float = 0.1,
        keep: int = 20,
    ) -> None:
        self.probe = probe
        self.counter = counter
        self.threshold = threshold
        self.recent: deque[SlowCallback] = deque(maxlen=keep)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop_thread = 0

    def start(self) -> None:
        """Start watching the calling thread's event loop."""
        self._loop_thread = threading.get_ident()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._watch, name="asyncperf-loop-watchdog", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _watch(self) -> None:
        probe, clock = self.probe, self.probe.clock
        step = max(self.threshold / 4, 0.002)
        flagged: float | None = None
        while not self._stop.wait(step):
            due = probe.due
            if due is None or due == flagged:
                continue
            overdue = clock() - due
            if overdue > self.threshold:
                flagged = due
                self.counter.inc()
                self.recent.append(self._capture(overdue))

    def _capture(self, overdue: float) -> SlowCallback:
        frame = sys._current_frames().get(self._loop_thread)
        frames = traceback.extract_stack(frame, limit=40) if frame is not None else []
        location = "unknown"
        for summary in reversed(frames):
            filename = summary.filename.replace("\\", "/")
            if not any(part in filename for part in _INTERNAL):
                location = f"{summary.filename}:{summary.lineno} in {summary.name}"
                break
        stack = tuple(f"{s.filename}:{s.lineno} in {s.name}" for s in frames[-8:])
        return SlowCallback(time.time(), overdue, location, stack)
