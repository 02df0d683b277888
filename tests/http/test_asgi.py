"""The ASGI middleware driven in-process (asyncio and trio): streaming, replayed request
bodies, errors, FastAPI route options and the import surface."""

from __future__ import annotations

import random
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
from asyncperf.http._asgi import request_view
from asyncperf.http._policy import format_http_date
from asyncperf.http._types import Lookup, Reply, RequestView

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


def test_request_view_reads_any_header_iterable_and_buffer_type() -> None:
    def fields() -> object:  # read once: a generator, with memoryview and bytearray parts
        yield memoryview(b"Host"), bytearray(b"example.test")
        yield b"accept", b"text/html"
        yield bytearray(b"Accept"), memoryview(b"application/json")

    view = request_view(
        {"type": "http", "method": "get", "path": "/a", "query_string": b"x=1", "headers": fields()}
    )
    assert view.method == "GET"
    assert view.host == "example.test"
    assert view.target == "/a?x=1"
    assert dict(view.headers) == {
        "host": "example.test",
        "accept": "text/html, application/json",  # repeated fields joined, in order
    }


def test_a_request_view_keeps_credentials_out_of_its_repr_and_takes_params_none() -> None:
    from asyncperf.http._route import RoutePolicy

    view = RequestView(
        method="GET",
        scheme="http",
        host="test",
        path="/items/1",
        query="",
        headers={"authorization": "Bearer s3cret", "cookie": "sid=s3cret"},
        params=None,  # type: ignore[arg-type]
    )
    assert "s3cret" not in repr(view)
    assert RoutePolicy(tags=("item:{item}",)).expand_tags(view.params) == ("item:{item}",)


def _view(target: str) -> RequestView:
    path, _, query = target.partition("?")
    return RequestView(
        method="GET",
        scheme="http",
        host="test",
        path=path,
        query=query,
        headers={"accept-encoding": "zstd"},
    )


async def _answered(
    rc: ResponseCache, path: str, body: bytes, lookup: Lookup | None = None
) -> Reply:
    """A miss answered by the app, as the glue hands it over (nothing stored yet)."""
    view = _view(path)
    if lookup is None:
        lookup = await rc.lookup(view)
        assert lookup.leader == rc.coalesce  # nobody else asked for this URL
    assert lookup.action == "MISS"
    reply = await rc.complete(
        view,
        lookup,
        status=200,
        headers=[("content-type", "application/json"), ("cache-control", "max-age=60")],
        body=body,
        route=None,
        request_time=rc.now(),
        response_time=rc.now(),
    )
    await rc.release(lookup)  # as the glue does once the reply is sent
    return reply


async def test_a_lookup_waits_for_the_write_of_its_own_url() -> None:
    rc = ResponseCache(Cache(MemoryStore()))
    body = b'{"n": 1}' * 100
    reply = await _answered(rc, "/a", body)
    assert reply.write is not None
    assert ("x-cache", "MISS") in reply.headers
    assert "content-encoding" not in dict(reply.headers)  # small: as the app made it
    assert rc.statistics().stores == 0  # the store write runs after the reply is sent
    lookup = await rc.lookup(_view("/a"))  # ... or first, for a lookup of the same URL
    assert lookup.action == "HIT"
    assert lookup.entry is not None
    assert lookup.entry.coding == "zstd"
    assert rc.statistics().stores == 1
    await rc.store(reply)  # the request's own call after sending: already done
    assert rc.statistics().stores == 1


async def test_invalidation_and_flush_wait_for_unwritten_responses() -> None:
    rc = ResponseCache(Cache(MemoryStore()))
    first = await _answered(rc, "/users/1", b"x" * 600)
    await _answered(rc, "/users/2", b"y" * 600)
    # Answered before the invalidation: removed by it, never written after it.
    assert await rc.invalidate(prefix="/users") == 2
    await rc.store(first)
    assert (await rc.lookup(_view("/users/1"))).action == "MISS"
    await _answered(rc, "/users/3", b"z" * 600)
    await rc.flush()
    assert rc.statistics().stores == 3
    assert (await rc.lookup(_view("/users/3"))).action == "HIT"


async def test_prefix_invalidation_follows_segment_boundaries() -> None:
    rc = ResponseCache(Cache(MemoryStore()))
    targets = [
        "/users",
        "/users/1",
        "/users/1?full=1",
        "/users/1/",
        "/users/1/posts",
        "/usersettings",
        "/other",
    ]

    for target in targets:
        await rc.store(await _answered(rc, target, target.encode()))

    async def cached() -> set[str]:
        found = set()
        for target in targets:
            lookup = await rc.lookup(_view(target))
            await rc.release(lookup)
            if lookup.action == "HIT":
                found.add(target)
        return found

    assert await cached() == set(targets)
    # The prefix itself, its queries, a trailing slash and deeper paths; not /users.
    assert await rc.invalidate(prefix="/users/1/") == 4
    assert await cached() == {"/users", "/usersettings", "/other"}
    assert await rc.invalidate(prefix="/users") == 1  # not /usersettings
    assert await cached() == {"/usersettings", "/other"}
    assert await rc.invalidate(url="/other") == 1
    assert await cached() == {"/usersettings"}


async def test_a_failed_store_write_is_counted_and_the_client_still_answered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def item(request: Request) -> Response:
        return Response(b"x" * 800, headers={"cache-control": "max-age=60"})

    app, rc = wrap(Starlette(routes=[Route("/item", item)]))

    def broken(*args: object) -> list[str]:
        raise RuntimeError("store exploded")

    rc._tags = broken  # type: ignore[method-assign]  # both ways to the store use it
    async with client(app) as http:
        first = await http.get("/item")
        second = await http.get("/item")
    assert first.status_code == second.status_code == 200
    assert first.content == second.content == b"x" * 800
    assert second.headers["x-cache"] == "MISS"
    assert rc.statistics().errors == 2
    assert "storing the response to http://test/item failed" in caplog.text


async def test_large_misses_are_sent_compressed_with_the_stored_bytes() -> None:
    body = b'{"row": "a fairly repetitive json row"}, ' * 1000  # 41 KB

    async def item(request: Request) -> Response:
        return Response(body, headers={"cache-control": "max-age=60"})

    app, rc = wrap(Starlette(routes=[Route("/big", item)]))
    async with client(app) as http:
        miss = await http.get("/big", headers={"accept-encoding": "zstd"})
        hit = await http.get("/big", headers={"accept-encoding": "zstd"})
    assert rc.statistics().bytes_saved > len(body)  # both answers compressed
    assert miss.headers["content-encoding"] == hit.headers["content-encoding"] == "zstd"
    assert miss.content == hit.content == body
    assert miss.headers["content-length"] == hit.headers["content-length"]
    assert miss.headers["etag"] == hit.headers["etag"]
    assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")


async def test_a_streamed_leader_does_not_hold_back_requests_for_its_url() -> None:
    finish = anyio.Event()
    calls = 0

    async def feed(request: Request) -> StreamingResponse:
        nonlocal calls
        calls += 1

        async def chunks():
            yield b"first chunk "
            await finish.wait()
            yield b"and the rest"

        return StreamingResponse(chunks(), headers={"cache-control": "max-age=60"})

    app, rc = wrap(Starlette(routes=[Route("/feed", feed)]))

    async def until(count: int) -> None:
        with anyio.fail_after(5):  # coalesce_timeout is 10 s: waiting on the leader fails
            while calls < count:
                await anyio.sleep(0.005)

    async with client(app) as http, anyio.create_task_group() as group:
        group.start_soon(http.get, "/feed")
        await until(1)  # the leader streams, and stays open
        group.start_soon(http.get, "/feed")
        await until(2)  # the second request reached the app meanwhile
        finish.set()
    assert rc.statistics().coalesced == 0


async def test_two_unwritten_responses_for_one_url_are_both_invalidated() -> None:
    rc = ResponseCache(Cache(MemoryStore()), coalesce=False)
    # Two concurrent misses (not coalesced), answered one after the other.
    first, second = await rc.lookup(_view("/page")), await rc.lookup(_view("/page"))
    older = await _answered(rc, "/page", b"o" * 600, first)
    newer = await _answered(rc, "/page", b"n" * 600, second)
    assert await rc.invalidate(url="/page") == 1  # both written first, then removed
    await rc.store(older)  # their own requests' calls come too late to bring them back
    await rc.store(newer)
    assert (await rc.lookup(_view("/page"))).action == "MISS"
    assert rc.statistics().stores == 2


async def _concurrently(app, paths: list[str], **headers: str) -> list[httpx.Response]:
    responses: list[httpx.Response] = []
    async with client(app) as http, anyio.create_task_group() as group:
        for path in paths:

            async def get(path: str = path) -> None:
                responses.append(await http.get(path, headers=headers))

            group.start_soon(get)
    return responses


async def test_concurrent_misses_make_one_call_to_the_app() -> None:
    calls = 0

    async def item(request: Request) -> Response:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.05)
        return Response(b"x" * 800, headers={"cache-control": "max-age=60"})

    app, rc = wrap(Starlette(routes=[Route("/item", item)]))
    responses = await _concurrently(app, ["/item"] * 5)
    assert calls == 1
    assert sorted(response.headers["x-cache"] for response in responses) == ["HIT"] * 4 + ["MISS"]
    assert rc.statistics().coalesced == 4
    # Requests with Authorization never lead (their response is rarely shared) nor wait.
    calls = 0
    await _concurrently(app, ["/item?auth"] * 3, authorization="Bearer a")
    assert calls == 3


class _Held:
    """An app behind a ResponseCache whose handler counts its calls and waits for ``gate``."""

    def __init__(self, **options: object) -> None:
        self.calls = 0
        self.gate = anyio.Event()

        async def item(request: Request) -> Response:
            self.calls += 1
            await self.gate.wait()
            return Response(b"x" * 800, headers={"cache-control": "max-age=60"})

        self.app, self.rc = wrap(Starlette(routes=[Route("/item", item)]), **options)

    async def calls_reach(self, count: int) -> None:
        with anyio.fail_after(5):  # coalesce_timeout is 10 s: waiting on the leader fails this
            while self.calls < count:
                await anyio.sleep(0.005)


async def test_a_cancelled_leader_lets_its_waiters_ask_the_app() -> None:
    held = _Held()
    leader = anyio.CancelScope()
    async with client(held.app) as http, anyio.create_task_group() as group:

        async def lead() -> None:
            with leader:
                await http.get("/item")

        group.start_soon(lead)
        await held.calls_reach(1)
        group.start_soon(http.get, "/item")  # waits on the leader
        await anyio.sleep(0.05)
        assert held.calls == 1
        leader.cancel()  # the leader's client goes away
        await held.calls_reach(2)  # the waiter asks the app itself
        held.gate.set()
    assert held.rc.statistics().coalesced == 0


async def test_a_waiter_asks_the_app_after_coalesce_timeout() -> None:
    held = _Held(coalesce_timeout=0.1)
    async with client(held.app) as http, anyio.create_task_group() as group:
        group.start_soon(http.get, "/item")
        await held.calls_reach(1)
        group.start_soon(http.get, "/item")
        await held.calls_reach(2)
        held.gate.set()
    assert held.rc.statistics().coalesced == 0


def test_options_are_validated() -> None:
    cache = Cache(MemoryStore())
    with pytest.raises(ConfigurationError, match="compression_level"):
        ResponseCache(cache, compression_level=20)
    with pytest.raises(ConfigurationError, match="default_ttl"):
        ResponseCache(cache, default_ttl=0)
    for bad in (-1, 1.5, True, "16k"):
        with pytest.raises(ConfigurationError, match="miss_compress_size"):
            ResponseCache(cache, miss_compress_size=bad)  # type: ignore[arg-type]
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


async def test_an_outer_middleware_changing_the_sent_fields_does_not_change_later_hits() -> None:
    # Hits of one entry in the same second reuse its built fields: each reply must get a
    # list of its own, since middleware outside (CORS, custom) appends to what it is sent.
    async def app(scope, receive, send) -> None:
        await Response(b"x" * 64, headers={"cache-control": "max-age=60"})(scope, receive, send)

    inner, _ = wrap(app)

    async def outer(scope, receive, send) -> None:
        async def tagging(message) -> None:
            if message["type"] == "http.response.start":
                message["headers"].append((b"x-outer", b"1"))
            await send(message)

        await inner(scope, receive, tagging)

    async with client(outer) as http:
        responses = [
            await http.get("/a", headers={"accept-encoding": "identity"}) for _ in range(4)
        ]
    assert [r.headers["x-cache"] for r in responses] == ["MISS", "HIT", "HIT", "HIT"]
    assert [r.headers.get_list("x-outer") for r in responses] == [["1"]] * 4


@pytest.mark.parametrize(
    "headers",
    [
        [("Content-Type", "text/plain"), ("Cache-Control", "max-age=60")],  # mixed case
        [("content-type", "text/plain"), ("x-extra", "1"), ("x-extra", "2")],  # repeated
        [("content-type", "text/plain"), ("cache-tag", "a b"), ("x-cache", "HIT")],  # ours
        (("content-type", "text/plain"), ("cache-control", "max-age=60")),  # not a list
        [["content-type", "text/plain"], ["cache-control", "max-age=60"]],  # lists, not pairs
    ],
)
def test_response_fields_split_alike_on_the_fast_path_and_the_field_by_field_one(
    headers,
) -> None:
    rc = ResponseCache(Cache(MemoryStore()))
    kept, fields, tags, targeted = rc._split_internal(headers)
    # What the field-by-field path gives (the fast one only takes lower-case, unrepeated
    # lists without the cache's own fields, and must give the same for those).
    expected: list[tuple[str, str]] = []
    expected_map: dict[str, str] = {}
    for name, value in headers:
        name = name.lower()
        if name in ("cache-tag", "x-cache", "cache-status", "asyncperf-cache-control"):
            continue
        expected.append((name, value))
        expected_map[name] = f"{expected_map[name]}, {value}" if name in expected_map else value
    assert kept == expected
    assert all(type(pair) is tuple for pair in kept)
    assert fields == expected_map
    assert tags == (["a", "b"] if ("cache-tag", "a b") in headers else [])
    assert targeted is None
    plain = [("content-type", "text/plain"), ("cache-control", "max-age=60")]
    kept, fields, _, _ = rc._split_internal(plain)
    assert kept == plain
    assert kept is not plain  # the caller's list is never handed back to be changed


@pytest.mark.parametrize("path", ["/", "//a//b/", "/a/b"])
async def test_paths_of_any_shape_are_stored_under_their_url_and_prefix_tags(path: str) -> None:
    rc = ResponseCache(Cache(MemoryStore()))
    await rc.store(await _answered(rc, path, b"x" * 600))
    lookup = await rc.lookup(_view(path))
    await rc.release(lookup)
    assert lookup.action == "HIT"
    assert await rc.invalidate(url=path) == 1  # its URL tag
    await rc.store(await _answered(rc, path, b"x" * 600))
    # A prefix invalidation reaches it (prefix "/" clears the namespace instead).
    assert await rc.invalidate(prefix="/a" if "a" in path else "/") == 1


async def test_an_incompressible_body_is_stored_as_it_came() -> None:
    rc = ResponseCache(Cache(MemoryStore()))
    body = random.Random(0).randbytes(1024)  # zstd cannot shrink it by an eighth
    await rc.store(await _answered(rc, "/noise", body))
    lookup = await rc.lookup(_view("/noise"))
    await rc.release(lookup)
    assert lookup.entry is not None
    assert lookup.entry.coding == "identity"
    assert lookup.entry.body == body


async def test_a_response_dated_without_last_modified_is_dated_by_its_date() -> None:
    clock = Clock()
    rc = ResponseCache(Cache(MemoryStore()), clock=clock)
    view = _view("/dated")
    lookup = await rc.lookup(view)
    date = format_http_date(clock.now - 5)  # made 5 s before it arrived
    clock.now += 0.25  # ... and the app took a quarter of a second
    reply = await rc.complete(
        view,
        lookup,
        status=200,
        headers=[("cache-control", "max-age=60"), ("date", date)],
        body=b"dated",
        route=None,
        request_time=rc.now(),
        response_time=rc.now(),
    )
    await rc.store(reply)
    await rc.release(lookup)
    found = await rc.lookup(_view("/dated"))
    assert found.entry is not None
    assert found.entry.last_modified == clock.now - 5.25  # the Date, not the receive time
    assert found.age >= 5.0  # and the Date dates it (apparent age, RFC 9111 §4.2.3)


async def test_a_request_with_pragma_no_cache_asks_the_app() -> None:
    rc = ResponseCache(Cache(MemoryStore()))
    await rc.store(await _answered(rc, "/p", b"x" * 600))
    view = _view("/p")
    view.headers["pragma"] = "no-cache"
    lookup = await rc.lookup(view)
    await rc.release(lookup)
    assert lookup.action == "REVALIDATE"
    view.headers["cache-control"] = "max-stale"  # Pragma counts only without Cache-Control
    lookup = await rc.lookup(view)
    await rc.release(lookup)
    assert lookup.action == "HIT"
