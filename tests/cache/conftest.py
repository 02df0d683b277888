"""Fixtures for the tests that talk to the shared Redis on 127.0.0.1:6379."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis_asyncio

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test's own, so tests never see each other's keys."""
    return f"test-{uuid.uuid4().hex[:10]}:"


@pytest.fixture
async def raw(prefix: str) -> AsyncIterator[redis_asyncio.Redis]:
    """A plain client to the shared Redis; removes every key naming ``prefix`` after.

    Fails (never skips) when Redis does not answer: the tests need the real server.
    """
    client = redis_asyncio.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:
        pytest.fail(f"Redis is not answering on {REDIS_URL}: {exc!r} (run `make services`)")
    yield client
    keys = [key async for key in client.scan_iter(match=f"*{prefix[:-1]}*")]
    if keys:
        await client.unlink(*keys)
    await client.aclose()
