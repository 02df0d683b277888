"""Real servers on loopback, each in a thread with its own event loop.

The server runs on asyncio in its thread (uvicorn, aiohttp's ``TestServer``); the test
drives it with httpx from its own loop, so the client side runs on asyncio and on trio.
Start-up and shut-down are bounded; the thread is always joined.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from aiohttp import web
from aiohttp.test_utils import TestServer

START_TIMEOUT = 10.0

Cleanup = Callable[[], Awaitable[None]] | None


class ThreadServer:
    """One server in a thread: ``start()`` returns the base URL, ``stop()`` joins."""

    def __init__(self, kind: str, app: Any, cleanup: Cleanup = None) -> None:
        self.kind = kind
        self.app = app
        self.cleanup = cleanup
        self.base_url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"{kind}-server", daemon=True)

    def start(self) -> str:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise RuntimeError(f"{self.kind} server did not start in {START_TIMEOUT} s")
        if self._error is not None:
            raise RuntimeError(f"{self.kind} server failed to start") from self._error
        return self.base_url

    def run_in_loop(self, coro: Awaitable[Any]) -> Any:
        """Run a coroutine in the server's loop (for objects bound to it) and wait."""
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        return future.result(START_TIMEOUT)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(START_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError(f"{self.kind} server did not stop in {START_TIMEOUT} s")

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            if self.kind == "starlette":
                await self._uvicorn()
            else:
                await self._aiohttp()
        finally:
            if self.cleanup is not None:
                await self.cleanup()

    async def _uvicorn(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="off", ws="none", http="h11"
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.005)
            self.base_url = f"http://127.0.0.1:{port}"
            self._ready.set()
            assert self._stop is not None
            await self._stop.wait()
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, START_TIMEOUT)
            sock.close()

    async def _aiohttp(self) -> None:
        assert isinstance(self.app, web.Application)
        server = TestServer(self.app, host="127.0.0.1")
        await server.start_server()
        try:
            self.base_url = f"http://127.0.0.1:{server.port}"
            self._ready.set()
            assert self._stop is not None
            await self._stop.wait()
        finally:
            await server.close()
