"""Run fire-and-forget work (background refreshes) on asyncio or trio, and stop it."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable

import anyio

__all__ = ["BackgroundTasks"]

logger = logging.getLogger("asyncperf.cache")


class BackgroundTasks:
    """Tasks owned by a cache: spawned without a task group, cancelled by :meth:`aclose`.

    Asyncio tasks are kept referenced until done (a bare ``create_task`` can be garbage
    collected mid-flight). On trio, a system task runs the work inside a cancel scope that
    ``aclose`` cancels. Exceptions are logged, never propagated: background work must not
    crash the application.
    """

    def __init__(self) -> None:
        self._scopes: dict[anyio.CancelScope, anyio.Event] = {}
        self._closed = False

    def __len__(self) -> int:
        return len(self._scopes)

    def spawn(self, work: Callable[[], Awaitable[None]], *, name: str) -> bool:
        """Start ``work()`` in the background; return False once closed."""
        if self._closed:
            return False
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        # Registered before the task starts, so that aclose() right after spawn() sees it.
        scope = anyio.CancelScope()
        done = anyio.Event()
        self._scopes[scope] = done
        if loop is not None:
            loop.create_task(self._run(work, name, scope, done), name=name)
        else:
            trio = sys.modules.get("trio")
            if trio is None:  # pragma: no cover - anyio supports only asyncio and trio
                raise RuntimeError("background work needs a running asyncio or trio loop")
            trio.lowlevel.spawn_system_task(self._run, work, name, scope, done, name=name)
        return True

    async def _run(
        self,
        work: Callable[[], Awaitable[None]],
        name: str,
        scope: anyio.CancelScope,
        done: anyio.Event,
    ) -> None:
        with scope:
            try:
                await work()
            except Exception:
                logger.exception("asyncperf background task %s failed", name)
            finally:
                self._scopes.pop(scope, None)
                done.set()

    async def aclose(self) -> None:
        """Cancel every running task and wait for them to finish."""
        self._closed = True
        while self._scopes:
            pending = list(self._scopes.items())
            for scope, _ in pending:
                scope.cancel()
            for _, done in pending:
                await done.wait()

    async def wait_idle(self) -> None:
        """Wait until no background task is running (for tests and graceful shutdown)."""
        while self._scopes:
            await next(iter(self._scopes.values())).wait()
