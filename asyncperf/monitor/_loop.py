"""Event-loop lag: a sleep-drift probe, and a heartbeat watchdog that sees every stall.

The probe sleeps ``interval`` seconds and records how late it woke up. It runs on any
event loop anyio supports (asyncio, uvloop, trio) and costs one timer per interval.

A stall that starts and ends between two of the probe's wake-ups is invisible to the
probe, however long it is. So the watchdog keeps a ticker of its own on the loop: it sleeps
``gap`` seconds (10 ms at the default 100 ms threshold) and times its own overshoot. A
stall of ``d`` seconds, whatever its phase, holds one tick for at least ``d - gap``; that
tick counts the stall, observes it in the lag histogram (and its max) and records the loop
thread's stack, which a daemon thread sampled while the tick was overdue, so the blocking
frame is named. A ticker costs a timer, not a thread wake-up and a pipe write per beat (we
measured a thread posting ``call_soon_threadsafe`` heartbeats at four times the CPU). No
loop internals are patched: it runs wherever anyio runs (asyncio, uvloop, trio).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Awaitable, Callable
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
        blocked_seconds: How long the watchdog's heartbeat waited for the loop: the
            stall's length, at most the watchdog's ``gap`` short of it.
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
        self._recent: deque[float] = deque(maxlen=max(1, int(window / interval)))
        #: Also given every lag (the OpenTelemetry export sets it; ``None``: nothing).
        self.mirror: Callable[[float], None] | None = None

    def record(self, lag: float) -> None:
        """Observe one lag measured elsewhere (a stall the watchdog saw); loop thread only."""
        self.histogram.observe(lag)
        self.last = lag
        self._recent.append(lag)
        if self.mirror is not None:
            self.mirror(lag)

    @property
    def max_recent(self) -> float:
        """The largest lag over the last ``window`` seconds (0.0 before any probe)."""
        return max(self._recent, default=0.0)

    async def run(self) -> None:
        """Probe until cancelled."""
        clock, interval, observe = self.clock, self.interval, self.histogram.observe
        while True:
            start = clock()
            await anyio.sleep(interval)
            lag = max(0.0, clock() - start - interval)
            observe(lag)
            self.last = lag
            self._recent.append(lag)
            if self.mirror is not None:
                self.mirror(lag)


class SlowCallbackWatchdog:
    """A ticker on the loop that times every stall, and a thread that names its frame.

    Args:
        probe: The :class:`LoopLagProbe` whose histogram and max also get each stall.
        counter: Incremented once per stall (``asyncperf_event_loop_slow_callbacks_total``).
        threshold: Seconds a tick may be late before it counts as a stall.
        keep: How many recent stalls to keep for the snapshot.
        gap: Seconds the ticker sleeps: a stall is measured at most ``gap`` short of its
            length (default: a tenth of the threshold, at most 20 ms).
    """

    def __init__(
        self,
        probe: LoopLagProbe,
        counter: CounterChild,
        *,
        threshold: float = 0.1,
        keep: int = 20,
        gap: float | None = None,
    ) -> None:
        self.probe = probe
        self.counter = counter
        self.threshold = threshold
        self.gap = gap if gap is not None else min(0.02, threshold / 10)
        self.recent: deque[SlowCallback] = deque(maxlen=keep)
        self.heartbeats = 0
        self.due: float | None = None
        self._sampled: list[traceback.FrameSummary] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop_thread = 0

    def start(self) -> None:
        """Start the sampling thread for the calling thread's loop (then run :meth:`run`)."""
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

    async def run(self) -> None:
        """Tick on the loop until cancelled, recording each tick later than the threshold."""
        clock, gap, threshold = self.probe.clock, self.gap, self.threshold
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep
        try:
            asyncio.get_running_loop()
            sleep = asyncio.sleep  # half anyio.sleep's cost a tick, measured: it adds up
        except RuntimeError:  # trio
            pass
        try:
            while True:
                start = clock()
                self.due = start + gap
                await sleep(gap)
                lag = clock() - start - gap
                self.heartbeats += 1
                if lag > threshold:
                    sampled, self._sampled = self._sampled, None
                    self.counter.inc()
                    self.probe.record(lag)
                    self.recent.append(self._describe(lag, sampled or []))
        finally:
            self.due = None

    def _watch(self) -> None:
        # Sample the loop thread's stack once a tick is overdue by half the threshold: the
        # loop is then stuck in the callback the record will name.
        clock, stop, half = self.probe.clock, self._stop, self.threshold / 2
        poll = max(self.threshold / 4, 0.002)
        sampled_for: float | None = None
        while not stop.wait(poll):
            due = self.due
            if due is not None and due != sampled_for and clock() - due > half:
                sampled_for = due
                self._sampled = self._frames()

    def _frames(self) -> list[traceback.FrameSummary]:
        frame = sys._current_frames().get(self._loop_thread)
        return list(traceback.extract_stack(frame, limit=40)) if frame is not None else []

    @staticmethod
    def _describe(lag: float, frames: list[traceback.FrameSummary]) -> SlowCallback:
        location = "unknown"
        for summary in reversed(frames):
            filename = summary.filename.replace("\\", "/")
            if not any(part in filename for part in _INTERNAL):
                location = f"{summary.filename}:{summary.lineno} in {summary.name}"
                break
        stack = tuple(f"{s.filename}:{s.lineno} in {s.name}" for s in frames[-8:])
        return SlowCallback(time.time(), lag, location, stack)
