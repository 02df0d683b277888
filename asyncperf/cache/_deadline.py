"""Deadlines for Redis commands: one timer for every operation in flight."""

from __future__ import annotations

import asyncio
import math
from typing import Any

__all__ = ["Watchdog"]


class Watchdog:
    """Cancel operations that outlive their deadline, with one timer for all of them.

    ``asyncio.timeout`` costs a timer per call (about 4.5 µs on 3.11, most of it keeping
    the loop's timer heap ordered); this keeps a dict of in-flight tasks and their
    deadlines, and a single timer at the nearest one.
    """

    __slots__ = ("_expired", "_loop", "_tasks", "_timer", "_timer_at")

    def __init__(self) -> None:
        self._tasks: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def watch(self, task: asyncio.Task[Any], budget: float) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (asyncio.run again): start over
            self._loop, self._timer, self._timer_at = loop, None, math.inf
            self._tasks.clear()
            self._expired.clear()
        deadline = loop.time() + budget
        self._tasks[task] = deadline
        if deadline < self._timer_at:
            self._arm(loop, deadline)

    def unwatch(self, task: asyncio.Task[Any]) -> None:
        self._tasks.pop(task, None)

    def expired(self, task: asyncio.Task[Any]) -> bool:
        """Whether ``task`` was cancelled for its deadline (and forget it)."""
        if task in self._expired:
            self._expired.discard(task)
            return True
        return False

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(when, self._fire)
        self._timer_at = when

    def _fire(self) -> None:
        self._timer, self._timer_at = None, math.inf
        loop = self._loop
        assert loop is not None
        now = loop.time()
        nearest = math.inf
        for task, deadline in list(self._tasks.items()):
            if deadline <= now:
                del self._tasks[task]
                self._expired.add(task)
                task.cancel()
            elif deadline < nearest:
                nearest = deadline
        if nearest < math.inf:
            self._arm(loop, nearest)
