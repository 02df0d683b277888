"""Deadlines and admission for Redis commands: one timer for every operation in flight,
and a limit on how many run at once whose free path never suspends.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from typing import Any

__all__ = ["Limiter", "Watchdog", "current_task"]

# The running task of a loop. CPython 3.11's asyncio.current_task() is a Python function
# over this C dict (a quarter of a microsecond per call); use the dict when it is there.
_TASKS: dict[asyncio.AbstractEventLoop, asyncio.Task[Any]] | None = getattr(
    asyncio.tasks, "_current_tasks", None
)


def current_task(loop: asyncio.AbstractEventLoop) -> asyncio.Task[Any] | None:
    """The task running on ``loop`` now (``loop`` must be the running loop)."""
    if _TASKS is not None:
        return _TASKS.get(loop)
    return asyncio.current_task(loop)


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

    def watch(
        self,
        task: asyncio.Task[Any],
        budget: float,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """Cancel ``task`` if it is still watched ``budget`` seconds from now."""
        if loop is None:
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


class Limiter:
    """At most ``limit`` holders at once, first come first served.

    ``asyncio.Semaphore`` costs a coroutine per acquire even when a slot is free; here a
    free slot is taken with :meth:`try_acquire`, a plain call, and only a caller that
    must queue awaits :meth:`acquire`. A released slot goes straight to the oldest waiter.
    """

    __slots__ = ("_free", "_waiters")

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._waiters: deque[asyncio.Future[None]] = deque()

    def try_acquire(self) -> bool:
        """Take a free slot if there is one and nobody queues for it."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def acquire(self) -> None:
        """Take a slot, queueing until one is released."""
        if self.try_acquire():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future  # release() hands its slot over by resolving this
        except BaseException:
            if future.done() and not future.cancelled():
                self.release()  # handed a slot, then cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(future)
            raise

    def release(self) -> None:
        """Give the slot back, to the oldest waiter still waiting if any."""
        waiters = self._waiters
        while waiters:
            future = waiters.popleft()
            if not future.done():
                future.set_result(None)
                return
        self._free += 1
