"""The response cache on Redis: entries written through the Cache, invalidation by URL,
prefix and tag seen by another process's cache (here: a second, independent client)."""

from __future__ import annotations

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from asyncperf import Cache, ConfigurationError, RedisStore
from asyncperf.http import ResponseCache, ResponseCacheMiddleware

REDIS_URL = "redis://127.0.0.1:6379/0"

pytestmark = [pytest.mark.redis, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # redis.asyncio


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    return redis_prefix


async def test_invalidation_reaches_another_process(prefix: str) -> None:
    calls = 0

    async def endpoint(request: Request) -> Response:
        nonlocal calls
        calls += 1
        return Response(
            ("payload " * 200).encode(),
            headers={"cache-control": "max-age=60", "cache-tag": "reports"},
        )

    app_cache = Cache(RedisStore(REDIS_URL, prefix=prefix), fallback=None)
    admin_cache = Cache(RedisStore(REDIS_URL, prefix=prefix), fallback=None)
    serving = ResponseCache(app_cache)
    admin = ResponseCache(admin_cache)
    app = ResponseCacheMiddleware(
        Starlette(routes=[Route("/reports/{n}", endpoint)]), response_cache=serving
    )
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:

            async def status(path: str) -> str:
                return (await http.get(path)).headers["x-cache"]

            assert [await status("/reports/1"), await status("/reports/1")] == ["MISS", "HIT"]
            hit = await http.get("/reports/1", headers={"accept-encoding": "gzip"})
            assert hit.content == ("payload " * 200).encode()
            assert await admin.invalidate(url="/reports/1") == 1
            assert await status("/reports/1") == "MISS"
            await http.get("/reports/2")
            assert await admin.invalidate(prefix="/reports") == 2
            assert [await status("/reports/1"), await status("/reports/2")] == ["MISS", "MISS"]
            assert await admin.invalidate(tags=["reports"]) == 2
            assert await status("/reports/2") == "MISS"
        assert calls == 6
    finally:
        await app_cache.aclose()
        await admin_cache.aclose()


async def test_redis_hits_decode_an_entry_once_until_it_changes(
    prefix: str, decodes: list[int]
) -> None:
    """Redis returns new bytes on every read: equal bytes are the same entry (decoded once,
    served from the memo); an entry another process replaced is decoded again."""
    version = {"n": 1}

    async def endpoint(request: Request) -> Response:
        body = f"{request.path_params['n']} v{version['n']} ".encode() * 100
        return Response(body, headers={"cache-control": "max-age=60"})

    app_cache = Cache(RedisStore(REDIS_URL, prefix=prefix), fallback=None)
    writer_cache = Cache(RedisStore(REDIS_URL, prefix=prefix), fallback=None)
    serving = ResponseCache(app_cache)
    routes = [Route("/pages/{n}", endpoint)]
    app = ResponseCacheMiddleware(Starlette(routes=routes), response_cache=serving)
    writer_rc = ResponseCache(writer_cache)
    writer = ResponseCacheMiddleware(Starlette(routes=routes), writer_rc)
    try:
        async with (
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=writer), base_url="http://t"
            ) as other,
        ):
            for n in range(3):
                assert (await http.get(f"/pages/{n}")).headers["x-cache"] == "MISS"
            await serving.flush()
            before = decodes[0]
            for _ in range(4):
                for n in range(3):
                    hit = await http.get(f"/pages/{n}")
                    assert hit.headers["x-cache"] == "HIT"
                    assert hit.content == f"{n} v1 ".encode() * 100
            assert decodes[0] - before == 3  # each entry's first hit only
            # Another process replaces /pages/0 with a new version: read, decoded, served.
            version["n"] = 2
            assert await writer_rc.invalidate(url="/pages/0") == 1
            assert (await other.get("/pages/0")).headers["x-cache"] == "MISS"
            await writer_rc.flush()
            fresh = await http.get("/pages/0")
            assert fresh.headers["x-cache"] == "HIT"
            assert fresh.content == b"0 v2 " * 100
            assert decodes[0] - before == 4
    finally:
        await app_cache.aclose()
        await writer_cache.aclose()


async def test_distributed_coalescing_asks_the_app_once_across_processes(prefix: str) -> None:
    calls = 0

    async def endpoint(request: Request) -> Response:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.2)
        return Response(b"report " * 200, headers={"cache-control": "max-age=60"})

    def process() -> tuple[httpx.AsyncClient, ResponseCache]:
        """One worker: its own Redis client, cache and ResponseCache (its own flights)."""
        rc = ResponseCache(
            Cache(RedisStore(REDIS_URL, prefix=prefix), fallback=None), coalesce="distributed"
        )
        app = ResponseCacheMiddleware(
            Starlette(routes=[Route("/report", endpoint)]), response_cache=rc
        )
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x")
        return client, rc

    workers = [process() for _ in range(3)]
    responses: list[httpx.Response] = []

    async def get(client: httpx.AsyncClient) -> None:
        responses.append(await client.get("/report"))

    async with anyio.create_task_group() as group:
        for client, _ in workers:
            for _ in range(4):
                group.start_soon(get, client)
    for client, rc in workers:
        await client.aclose()
        await rc.cache.aclose()
    assert calls == 1
    assert len(responses) == 12
    assert {response.content for response in responses} == {b"report " * 200}
    assert sorted(response.headers["x-cache"] for response in responses) == ["HIT"] * 11 + ["MISS"]
    assert sum(rc.statistics().coalesced for _, rc in workers) == 11


def test_distributed_coalescing_needs_redis() -> None:
    with pytest.raises(ConfigurationError, match="Redis-backed"):
        ResponseCache(Cache(), coalesce="distributed")
    with pytest.raises(ConfigurationError, match="coalesce"):
        ResponseCache(Cache(), coalesce="cluster")  # type: ignore[arg-type]


async def test_distributed_coalescing_degrades_to_this_process_when_redis_is_down() -> None:
    calls = 0

    async def endpoint(request: Request) -> Response:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.05)
        return Response(b"report " * 200, headers={"cache-control": "max-age=60"})

    # Nothing listens on port 1: every Redis call fails fast; the memory fallback serves.
    cache = Cache.from_url("redis://127.0.0.1:1/0?op_timeout=0.2")
    rc = ResponseCache(cache, coalesce="distributed")
    app = ResponseCacheMiddleware(Starlette(routes=[Route("/report", endpoint)]), response_cache=rc)
    responses: list[httpx.Response] = []
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as client,
        anyio.create_task_group() as group,
    ):
        for _ in range(5):

            async def get() -> None:
                responses.append(await client.get("/report"))

            group.start_soon(get)
    await cache.aclose()
    assert [response.status_code for response in responses] == [200] * 5
    assert calls == 1  # still coalesced within the process
