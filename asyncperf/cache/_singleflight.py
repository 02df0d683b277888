"""One load per key at a time: the others wait for its outcome (asyncio, trio, threads)."""

from __future__ import annotations

import threading
from typing import Any, Final, Protocol

import anyio

__all__ = ["ABANDONED", "Flight", "SyncFlight"]


class _Abandoned:
    def __repr__(self) -> str:
        return "<abandoned>"


#: What ``outcome()`` returns when the leader gave up: look again, and maybe lead.
ABANDONED: Final[Any] = _Abandoned()


class _Signal(Protocol):
    def set(self) -> None: ...
    def is_set(self) -> bool: ...


class _Outcome:
    """The outcome of one in-flight load, shared by the callers that did not run it.

    Exactly one of three endings: ``value`` (loaded), ``error`` (the loader raised: every
    waiter raises it too) or ``abandoned`` (the leader was cancelled or interrupted before
    the loader finished: waiters start over and one of them takes the lead).
    """

    __slots__ = ("abandoned", "error", "signal", "value")

    def __init__(self, signal: _Signal) -> None:
        self.signal = signal
        self.value: Any = None
        self.error: BaseException | None = None
        self.abandoned = False

    def resolve(self, value: Any) -> None:
        self.value = value
        self.signal.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.signal.set()

    def abandon(self) -> None:
        if not self.signal.is_set():
            self.abandoned = True
            self.signal.set()

    def ending(self) -> Any:
        """The ending once signalled: the value, the error raised, or :data:`ABANDONED`."""
        if self.abandoned:
            return ABANDONED
        if self.error is not None:
            raise self.error
        return self.value


class Flight(_Outcome):
    """A load awaited by coroutines (asyncio or trio)."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = anyio.Event()
        super().__init__(self.event)

    async def outcome(self) -> Any:
        """Wait for the load to end: its value, its error raised, or :data:`ABANDONED`."""
        await self.event.wait()
        return self.ending()


class SyncFlight(_Outcome):
    """A load awaited by threads (decorated sync functions)."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = threading.Event()
        super().__init__(self.event)

    def outcome(self) -> Any:
        """Block until the load ends: its value, its error raised, or :data:`ABANDONED`."""
        self.event.wait()
        return self.ending()
