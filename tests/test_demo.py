"""asyncperf.demo's seams: the load runs return what they measured and print nothing."""

from __future__ import annotations

import argparse

import pytest

from asyncperf import Cache
from asyncperf.demo.app import Stores, redact
from asyncperf.demo.load import CacheStep, make_plan, run_cache_load


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the demo runs under asyncio.run


async def test_the_cache_load_measures_and_prints_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = argparse.Namespace(requests=200, keys=20, concurrency=10, latency_ms=1.0, seed=3)
    stores = Stores(None)
    steps: list[CacheStep] = []
    ticks: list[tuple[int, int]] = []
    try:
        results = await run_cache_load(
            args, stores, announce=steps.append, progress=lambda *tick: ticks.append(tick)
        )
    finally:
        await stores.aclose()
    assert steps == ["plain", "cached", "stampede", "warm"]
    assert results.plain.loads == 200  # no cache: every request loads
    assert len(results.plain.latencies) == len(results.cached.latencies) == 200
    assert 0 < results.cached.loads <= 20  # at most one load per key
    assert results.stats.hits + results.stats.coalesced + results.cached.loads >= 200
    assert results.stampede_loads == 1
    assert results.warm.loaded == 200
    assert results.warm_loads == 200
    assert ticks[-1] == (200, 200)
    assert capsys.readouterr().out == ""


def test_the_app_load_plan_is_seeded_and_covers_its_routes() -> None:
    plan = make_plan(300, seed=5, with_db=True)
    assert plan == make_plan(300, seed=5, with_db=True)
    assert plan != make_plan(300, seed=6, with_db=True)
    assert {kind for kind, _ in plan} == {"products", "ask", "report"}
    assert all(url.startswith(f"/{kind}") for kind, url in plan)
    assert {kind for kind, _ in make_plan(300, seed=5, with_db=False)} == {"products", "ask"}


def test_urls_are_shown_without_their_password() -> None:
    assert redact("redis://user:s3cret@cache.local:6380/0") == "redis://user:***@cache.local:6380/0"
    assert redact("redis://:s3cret@cache.local/0") == "redis://:***@cache.local/0"
    assert redact("postgresql://postgres@127.0.0.1:5432/test") == (
        "postgresql://postgres@127.0.0.1:5432/test"
    )


@pytest.mark.redis
async def test_the_redis_stores_leave_no_key_even_when_a_clear_is_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # On a loaded machine a cache's clear() may be skipped (its breaker open after
    # operations past their deadline) and a late background write may land after it:
    # what is under the demo's prefix once every cache is closed is removed anyway.
    import redis.asyncio as redis

    url = "redis://127.0.0.1:6379/0"
    stores = Stores(url)
    cache = stores.make("llm")
    await cache.set("kept", b"v", ttl=60)
    raw = redis.Redis.from_url(url)
    try:
        await raw.ping()  # a Redis that is down fails the test, never skips it
        await raw.set(f"{stores.prefix}-llm:late", b"written after the clear", ex=60)
        await raw.set(f"{stores.prefix}-other:stray", b"no cache of its own", ex=60)

        async def skipped(self: Cache) -> int:  # the breaker-open case: reaches nothing
            return 0

        monkeypatch.setattr(Cache, "clear", skipped)
        await stores.aclose()
        assert [key async for key in raw.scan_iter(match=f"{stores.prefix}-*")] == []
    finally:
        await raw.aclose()
