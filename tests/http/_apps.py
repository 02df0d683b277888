"""The same small app in Starlette and in aiohttp, behind the response cache.

Each route answers in a way that exercises one caching rule; ``State`` counts the calls
the app really served and lets a test make routes fail.
"""

from __future__ import annotations

import asyncio
import gzip
from collections import Counter, defaultdict
from collections.abc import AsyncIterator

from aiohttp import web
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from asyncperf.http import ResponseCache, ResponseCacheMiddleware, cache_policy
from asyncperf.http.aiohttp import response_cache_middleware

PAD = "lorem ipsum dolor sit amet " * 60  # ~1.6 KB: compressible, above the raw threshold
LAST_MODIFIED = "Tue, 01 Jul 2025 10:00:00 GMT"
STREAM_CHUNKS = [f"chunk {i} {PAD[:200]}\n".encode() for i in range(5)]
BIG = b"x" * (200 * 1024)
SLOW_SECONDS = 0.3


class State:
    """What the app saw: calls per route, and switches tests flip."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.fail = False
        self.fail_status = 503
        self.version = 1  # of the "validated" representation: bump it to change it
        self.cache_control: dict[str, str] = {}  # per-route Cache-Control overrides
        self.ignore_conditionals = False  # answer 200 even when a validator matches
        # The conditional fields each request to a route carried.
        self.seen: defaultdict[str, list[dict[str, str | None]]] = defaultdict(list)
        self.bodies: list[bytes] = []
        self.inflight: Counter[str] = Counter()
        self.most_inflight: Counter[str] = Counter()

    async def slow(self, route: str) -> None:
        """Hold a ``slow`` route's request for a while, recording how many overlap."""
        if not route.startswith("slow"):
            return
        self.inflight[route] += 1
        self.most_inflight[route] = max(self.most_inflight[route], self.inflight[route])
        try:
            await asyncio.sleep(SLOW_SECONDS)
        finally:
            self.inflight[route] -= 1

    def count(self, route: str) -> int:
        self.calls[route] += 1
        return self.calls[route]


def body_of(route: str, n: int, extra: str = "") -> bytes:
    return f'{{"route": "{route}", "n": {n}, "extra": "{extra}", "pad": "{PAD}"}}'.encode()


GZIPPED = gzip.compress(PAD.encode(), mtime=0)


def answer(state: State, route: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """Return (status, headers, body) for ``route`` given the request headers."""
    n = state.count(route)
    state.seen[route].append(
        {name: headers.get(name) for name in ("if-none-match", "if-modified-since", "range")}
    )
    json = {"content-type": "application/json"}
    if route == "slow-validated" and state.fail:
        return state.fail_status, {"content-type": "text/plain"}, b"down"
    if route == "etag-only":  # a validator without Last-Modified
        fields = {"etag": '"e1"', "cache-control": state.cache_control.get(route, "max-age=1")}
        if headers.get("if-none-match") == '"e1"':
            return 304, fields, b""
        return 200, {**json, **fields}, body_of(route, 1)
    if route in ("validated", "slow-validated"):
        etag = f'"v{state.version}"'
        fields = {
            "etag": etag,
            "last-modified": LAST_MODIFIED,
            "cache-control": state.cache_control.get(route, "max-age=1"),
            "x-version": str(state.version),
        }
        if headers.get("if-none-match") == etag and not state.ignore_conditionals:
            return 304, {**fields, "x-refreshed": str(n)}, b""
        return 200, {**json, **fields}, body_of(route, state.version)
    if route == "aged":
        # From an upstream cache: older (Age) than its max-age, so stale on arrival.
        fields = {"etag": '"aged"', "age": "7200", "cache-control": "max-age=3600"}
        if headers.get("if-none-match") == '"aged"':
            return 304, fields, b""
        return 200, {**json, **fields}, body_of(route, n)
    if route == "error-fresh":
        return 503, {"content-type": "text/plain", "cache-control": "max-age=60"}, b"maintenance"
    if route == "lastmod":  # no explicit freshness: heuristic from Last-Modified
        return 200, {**json, "last-modified": LAST_MODIFIED}, body_of(route, n)
    if route == "lang":
        language = headers.get("accept-language", "none")
        return (
            200,
            {**json, "cache-control": "max-age=60", "vary": "Accept-Language"},
            body_of(route, n, language),
        )
    if route == "coded":  # the app negotiates and compresses by itself
        if "gzip" in headers.get("accept-encoding", ""):
            fields = {"content-encoding": "gzip", "vary": "Accept-Encoding"}
            return (
                200,
                {"content-type": "text/plain", "cache-control": "max-age=60", **fields},
                GZIPPED,
            )
        return (
            200,
            {
                "content-type": "text/plain",
                "cache-control": "max-age=60",
                "vary": "Accept-Encoding",
            },
            PAD.encode(),
        )
    if route == "public":
        return 200, {**json, "cache-control": "max-age=60"}, body_of(route, n)
    if route == "me":
        user = headers.get("authorization", "anonymous")
        return 200, json, body_of(route, n, user)
    if route == "cookie":
        return 200, {**json, "cache-control": "max-age=60"}, body_of(route, n, "cookie")
    if route == "vary":
        lang = headers.get("x-lang", "none")
        return (
            200,
            {**json, "cache-control": "max-age=60", "vary": "X-Lang"},
            body_of(route, n, lang),
        )
    if route == "etag":
        extra_headers = {
            "etag": '"v1"',
            "last-modified": LAST_MODIFIED,
            "cache-control": "max-age=60",
        }
        if headers.get("if-none-match") == '"v1"':
            return 304, extra_headers, b""
        return 200, {**json, **extra_headers}, body_of(route, 1)
    if route == "swr":
        return (
            200,
            {**json, "cache-control": "max-age=1, stale-while-revalidate=30"},
            body_of(route, n),
        )
    if route == "sie":
        if state.fail:
            if state.fail_status == 0:
                raise RuntimeError("the app failed")
            return state.fail_status, {"content-type": "text/plain"}, b"down"
        return 200, {**json, "cache-control": "max-age=1, stale-if-error=60"}, body_of(route, n)
    if route == "private":
        return 200, {**json, "cache-control": "private, max-age=60"}, body_of(route, 1)
    if route == "nostore":
        return 200, {**json, "cache-control": "no-store"}, body_of(route, n)
    if route == "error":
        return 500, {"content-type": "text/plain"}, b"boom"
    if route == "tagged":
        return (
            200,
            {**json, "cache-control": "max-age=60", "cache-tag": "team-a, reports"},
            body_of(route, n),
        )
    if route == "big":
        return 200, {"content-type": "application/octet-stream", "cache-control": "max-age=60"}, BIG
    if route == "small":
        return 200, {"content-type": "text/plain", "cache-control": "max-age=60"}, b"tiny"
    if route == "slow":
        return 200, {**json, "cache-control": "max-age=60"}, body_of(route, n)
    if route == "slow-nostore":
        return 200, {**json, "cache-control": "no-store"}, body_of(route, n)
    raise AssertionError(route)


ROUTES = [
    "public",
    "me",
    "cookie",
    "vary",
    "etag",
    "swr",
    "sie",
    "private",
    "nostore",
    "error",
    "tagged",
    "big",
    "small",
    "slow",
    "slow-nostore",
    "validated",
    "slow-validated",
    "etag-only",
    "aged",
    "error-fresh",
    "lastmod",
    "lang",
    "coded",
]


# -- Starlette -----------------------------------------------------------------------------


def starlette_app(rc: ResponseCache, state: State) -> Starlette:
    def endpoint(route: str):
        async def handler(request: Request) -> Response:
            await state.slow(route)
            status, headers, body = answer(state, route, dict(request.headers))
            response = Response(body, status_code=status, headers=headers)
            if route == "cookie":
                response.set_cookie("sid", "secret-of-first-user")
            return response

        return handler

    async def public_post(request: Request) -> Response:
        state.bodies.append(await request.body())
        return Response(b"created", status_code=201)

    async def update(request: Request) -> Response:
        item = request.path_params["item"]
        return Response(status_code=204, headers={"content-location": f"/items/{item}"})

    @cache_policy(ttl=60, tags=["item:{item}"])
    async def item(request: Request) -> Response:
        n = state.count("item")
        return Response(
            body_of("item", n, request.path_params["item"]), media_type="application/json"
        )

    @cache_policy(transcode=False)
    async def raw(request: Request) -> Response:
        state.count("raw")
        return Response(PAD.encode(), headers={"cache-control": "max-age=60"})

    @cache_policy(enabled=False, ttl=60)
    async def opted_out(request: Request) -> Response:
        n = state.count("opted-out")
        return Response(body_of("opted-out", n), headers={"cache-control": "max-age=60"})

    async def stream(request: Request) -> StreamingResponse:
        state.count("stream")

        async def chunks() -> AsyncIterator[bytes]:
            for chunk in STREAM_CHUNKS:
                await asyncio.sleep(0)
                yield chunk

        return StreamingResponse(
            chunks(), media_type="text/plain", headers={"cache-control": "max-age=60"}
        )

    routes = [Route(f"/{name}", endpoint(name)) for name in ROUTES]
    routes += [
        Route("/public", public_post, methods=["POST"]),
        Route("/items/{item}", item),
        Route("/items/{item}", update, methods=["PUT"]),
        Route("/opted-out", opted_out),
        Route("/raw", raw),
        Route("/stream", stream),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(ResponseCacheMiddleware, response_cache=rc)
    return app


# -- aiohttp -------------------------------------------------------------------------------


def aiohttp_app(rc: ResponseCache, state: State) -> web.Application:
    def endpoint(route: str):
        async def handler(request: web.Request) -> web.Response:
            await state.slow(route)
            headers = {name.lower(): value for name, value in request.headers.items()}
            status, response_headers, body = answer(state, route, headers)
            response = web.Response(status=status, body=body or None, headers=response_headers)
            if route == "cookie":
                response.set_cookie("sid", "secret-of-first-user")
            return response

        return handler

    async def public_post(request: web.Request) -> web.Response:
        state.bodies.append(await request.read())
        return web.Response(status=201, body=b"created")

    async def update(request: web.Request) -> web.Response:
        item = request.match_info["item"]
        return web.Response(status=204, headers={"content-location": f"/items/{item}"})

    @cache_policy(ttl=60, tags=["item:{item}"])
    async def item(request: web.Request) -> web.Response:
        n = state.count("item")
        return web.Response(
            body=body_of("item", n, request.match_info["item"]), content_type="application/json"
        )

    @cache_policy(transcode=False)
    async def raw(request: web.Request) -> web.Response:
        state.count("raw")
        return web.Response(body=PAD.encode(), headers={"cache-control": "max-age=60"})

    @cache_policy(enabled=False, ttl=60)
    async def opted_out(request: web.Request) -> web.Response:
        n = state.count("opted-out")
        return web.Response(body=body_of("opted-out", n), headers={"cache-control": "max-age=60"})

    async def stream(request: web.Request) -> web.StreamResponse:
        state.count("stream")
        response = web.StreamResponse(
            headers={"cache-control": "max-age=60", "content-type": "text/plain"}
        )
        await response.prepare(request)
        for chunk in STREAM_CHUNKS:
            await response.write(chunk)
        await response.write_eof()
        return response

    app = web.Application(middlewares=[response_cache_middleware(rc)])
    for name in ROUTES:
        app.router.add_get(f"/{name}", endpoint(name))
    app.router.add_post("/public", public_post)
    app.router.add_get("/items/{item}", item)
    app.router.add_put("/items/{item}", update)
    app.router.add_get("/opted-out", opted_out)
    app.router.add_get("/raw", raw)
    app.router.add_get("/stream", stream)
    return app
