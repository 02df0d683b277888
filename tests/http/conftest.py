"""Fixtures for the HTTP cache tests: the app per framework on a real loopback server."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as redis_asyncio

from asyncperf import Cache, MemoryStore
from asyncperf.http import ResponseCache, _base

from ._apps import State, aiohttp_app, starlette_app
from ._servers import ThreadServer

FRAMEWORKS = ["starlette", "aiohttp"]
REDIS_URL = "redis://127.0.0.1:6379/0"


class WallClock:
    """A wall clock tests move by hand (the cache's HTTP times are POSIX seconds)."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Served:
    """A running app: where it listens, what it saw, and its cache."""

    base_url: str
    state: State
    rc: ResponseCache
    clock: WallClock
    server: ThreadServer


@pytest.fixture(params=FRAMEWORKS)
def framework(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def serve(framework: str) -> Iterator[Callable[..., Served]]:
    """Start the test app behind a ResponseCache built with the given options."""
    servers: list[ThreadServer] = []

    def start(*, cache: Cache | None = None, cleanup: Any = None, **options: Any) -> Served:
        clock = WallClock()
        options.setdefault("max_body_size", 64 * 1024)
        rc = ResponseCache(cache or Cache(MemoryStore()), clock=clock, **options)
        state = State()
        build = starlette_app if framework == "starlette" else aiohttp_app
        server = ThreadServer(framework, build(rc, state), cleanup)
        servers.append(server)
        return Served(server.start(), state, rc, clock, server)

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A fresh key prefix on the real Redis; its keys are deleted afterwards."""
    prefix = f"asyncperf-test-http-{uuid.uuid4().hex[:8]}:"
    raw = redis_asyncio.Redis.from_url(REDIS_URL)
    await raw.ping()  # fail, never skip, when Redis is down
    try:
        yield prefix
    finally:
        # The store's own keys (tags, leases) use the prefix with "#" for its last ":".
        keys = [key async for key in raw.scan_iter(match=prefix[:-1] + "*")]
        if keys:
            await raw.delete(*keys)
        await raw.aclose()


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the entries the response cache decodes from stored bytes."""
    calls = [0]
    real = _base.decode

    def counted(data: Any) -> Any:
        calls[0] += 1
        return real(data)

    monkeypatch.setattr(_base, "decode", counted)
    return calls
