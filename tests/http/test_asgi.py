"""The ASGI middleware driven in-process (asyncio and trio): streaming, replayed request
bodies, errors, FastAPI route options and the import surface."""

from __future__ import annotations

import subprocess
import sys

import anyio
import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

import asyncperf.http
from asyncperf import Cache, ConfigurationError, MemoryStore
from asyncperf.http import ResponseCache, ResponseCacheMiddleware, cache_policy

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now


def wrap(app, **options) -> tuple[ResponseCacheMiddleware, ResponseCache]:
    rc = ResponseCache(Cache(MemoryStore()), **options)
    return ResponseCacheMiddleware(app, response_cache=rc), rc


def client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_event_stream_is_forwarded_chunk_by_chunk() -> None:
    release = anyio.Event()

    async def app(scope, receive, send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"max-age=60"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        await release.wait()  # deadlocks (and times out) if the middleware buffers
        await send({"type": "http.response.body", "body": b"data: 2\n\n", "more_body": False})

    middleware, rc = wrap(app)
    sent: list[dict] = []

    async def send(message) -> None:
        sent.append(message)
        if message.get("body") == b"data: 1\n\n":
            release.set()

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/events",
        "raw_path": b"/events",
        "query_string": b"",
        "headers": [(b"host", b"test")],
        "scheme": "http",
    }
    with anyio.fail_after(5):
        await middleware(scope, receive, send)
    assert [m.get("body") for m in sent[1:]] == [b"data: 1\n\n", b"data: 2\n\n"]
    assert rc.statistics().stores == 0


async def test_unbounded_stream_over_the_cap_passes_through_unstored() -> None:
    async def chunks():
        for _ in range(10):
            yield b"y" * 1000

    async def endpoint(request: Request) -> StreamingResponse:
        return StreamingResponse(chunks(), headers={"cache-control": "max-age=60"})

    app, rc = wrap(Starlette(routes=[Route("/s", endpoint)]), max_body_size=4000)
    async with client(app) as http:
        first = await http.get("/s")
        second = await http.get("/s")
    assert first.content == second.content == b"y" * 10_000
    assert second.headers["x-cache"] == "MISS"
    assert rc.statistics().stores == 0


async def test_background_revalidation_gets_the_request_body_again() -> None:
    clock = Clock()
    seen: list[bytes] = []

    async def endpoint(request: Request) -> Response:
        seen.append(await request.body())
        return Response(
            f"v{len(seen)}".encode(),
            headers={"cache-control": "max-age=1, stale-while-revalidate=60"},
        )

    app, _rc = wrap(Starlette(routes=[Route("/r", endpoint)]), clock=clock)
    async with client(app) as http:
        await http.request("GET", "/r", content=b"query-body")
        clock.now += 10
        stale = await http.request("GET", "/r", content=b"query-body")
        fresh = await http.get("/r")
    assert stale.headers["x-cache"] == "STALE"
    assert stale.content == b"v1"
    assert fresh.headers["x-cache"] == "HIT"
    assert fresh.content == b"v2"
    assert seen == [b"query-body", b"query-body"]


async def test_app_exception_is_replaced_by_stale_if_error() -> None:
    clock = Clock()
    calls = 0

    async def endpoint(request: Request) -> Response:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise RuntimeError("database down")
        return Response(b"ok", headers={"cache-control": "max-age=1"})

    app, _rc = wrap(Starlette(routes=[Route("/e", endpoint)]), clock=clock, stale_if_error=300)
    async with client(app) as http:
        await http.get("/e")
        clock.now += 10
        stale = await http.get("/e")
    assert stale.status_code == 200
    assert stale.content == b"ok"
    assert stale.headers["x-cache"] == "STALE"
    assert "fwd=stale" in stale.headers["cache-status"]


async def test_must_revalidate_never_serves_stale() -> None:
    clock = Clock()
    calls = 0

    async def endpoint(request: Request) -> Response:
        nonlocal calls
        calls += 1
        return Response(
            f"v{calls}".encode(),
            headers={"cache-control": "max-age=1, must-revalidate, stale-while-revalidate=60"},
        )

    app, _ = wrap(Starlette(routes=[Route("/m", endpoint)]), clock=clock)
    async with client(app) as http:
        await http.get("/m")
        clock.now += 10
        late = await http.get("/m")
    assert late.content == b"v2"
    assert late.headers["x-cache"] == "MISS"


async def test_vary_star_is_never_stored() -> None:
    async def endpoint(request: Request) -> Response:
        return Response(b"x", headers={"cache-control": "max-age=60", "vary": "*"})

    app, rc = wrap(Starlette(routes=[Route("/v", endpoint)]))
    async with client(app) as http:
        await http.get("/v")
        second = await http.get("/v")
    assert second.headers["x-cache"] == "MISS"
    assert rc.statistics().stores == 0


async def test_fastapi_route_policy_and_targeted_cache_control() -> None:
    api = FastAPI()
    calls = {"user": 0, "edge": 0}

    @api.get("/users/{user_id}")
    @cache_policy(ttl=60, tags=["user:{user_id}"], stale_while_revalidate=5)
    async def get_user(user_id: int) -> dict:
        calls["user"] += 1
        return {"id": user_id, "name": "ada" * 200}

    @api.get("/edge")
    async def edge() -> Response:
        calls["edge"] += 1
        return JSONResponse(
            {"ok": True},
            headers={"cache-control": "no-cache", "asyncperf-cache-control": "max-age=600"},
        )

    app, rc = wrap(api)
    async with client(app) as http:
        first = await http.get("/users/1")
        second = await http.get("/users/1")
        edge_first = await http.get("/edge")
        edge_second = await http.get("/edge")
        removed = await rc.invalidate(tags=["user:1"])
        third = await http.get("/users/1")
    assert first.json()["id"] == 1
    assert second.headers["x-cache"] == "HIT"
    assert "cache-control" not in second.headers  # the route TTL is not sent downstream
    assert edge_second.headers["x-cache"] == "HIT"
    assert calls["edge"] == 1
    assert edge_second.headers["cache-control"] == "no-cache"
    assert "asyncperf-cache-control" not in edge_first.headers
    assert removed == 1
    assert third.headers["x-cache"] == "MISS"
    assert calls["user"] == 2


async def test_non_http_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope, receive, send) -> None:
        seen.append(scope["type"])

    middleware, _ = wrap(app)

    async def nothing():
        return {"type": "lifespan.startup"}

    async def ignore(message) -> None:
        return None

    await middleware({"type": "lifespan"}, nothing, ignore)
    assert seen == ["lifespan"]


def test_options_are_validated() -> None:
    cache = Cache(MemoryStore())
    with pytest.raises(ConfigurationError, match="compression_level"):
        ResponseCache(cache, compression_level=20)
    with pytest.raises(ConfigurationError, match="default_ttl"):
        ResponseCache(cache, default_ttl=0)
    with pytest.raises(ConfigurationError):
        ResponseCache("not a cache")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="tags"):
        cache_policy(tags="single")
    with pytest.raises(TypeError):
        ResponseCacheMiddleware(lambda *a: None, response_cache=object())  # type: ignore[arg-type]


def test_public_surface_is_sorted_and_light() -> None:
    names = list(asyncperf.http.__all__)
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))
    assert all(hasattr(asyncperf.http, name) for name in names)
    code = (
        "import sys, asyncperf, asyncperf.http; "
        "print(','.join(m for m in ('starlette', 'aiohttp', 'fastapi') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
