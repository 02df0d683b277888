"""The plain miss (``_plain.py``) answers and stores exactly what the general way does.

Every shape below is sent twice, through a cache that takes the plain way where it can and
through one where ``plain_reply`` always declines, on the same clock: the replies (status,
fields, body), what the store holds afterwards, the statistics and a second request's reply
must be identical, whichever way a shape went. The shapes cover what the plain way takes and
what it must decline.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from asyncperf import Cache, MemoryStore
from asyncperf.http import ResponseCache, ResponseCacheMiddleware, cache_policy
from asyncperf.http._types import FROM_CACHE

pytestmark = pytest.mark.anyio

NOW = 1_750_000_000.0


@cache_policy(ttl=30, tags=["items"])
async def _policed() -> None: ...


@cache_policy(enabled=False)
async def _disabled() -> None: ...


@cache_policy(transcode=False)
async def _as_sent() -> None: ...


ROUTES: dict[str, Any] = {
    "none": None,
    "policy": _policed,
    "disabled": _disabled,
    "as-sent": _as_sent,
}

RESPONSES: list[tuple[int, list[tuple[bytes, bytes]]]] = [
    (200, [(b"content-type", b"application/json")]),
    (200, [(b"content-type", b"text/plain"), (b"cache-control", b"max-age=60")]),
    (200, [(b"cache-control", b"max-age=60"), (b"etag", b'"v1"')]),
    (200, [(b"cache-control", b"max-age=60, no-transform")]),
    (200, [(b"cache-control", b"no-store")]),
    (200, [(b"cache-control", b"private")]),
    (200, [(b"cache-control", b'no-cache="x-secret"'), (b"x-secret", b"s")]),
    (200, [(b"cache-control", b"s-maxage=5, max-age=60")]),
    (200, [(b"cache-control", b"max-age=0")]),
    (200, [(b"last-modified", b"Sun, 01 Jun 2025 00:00:00 GMT")]),
    (200, [(b"date", b"Sun, 15 Jun 2025 00:00:00 GMT"), (b"cache-control", b"max-age=60")]),
    (200, [(b"expires", b"Sun, 15 Jun 2025 01:00:00 GMT")]),
    (200, [(b"cache-control", b"max-age=60"), (b"vary", b"Accept-Language")]),
    (200, [(b"cache-control", b"max-age=60"), (b"content-encoding", b"gzip")]),
    (200, [(b"cache-control", b"max-age=60"), (b"connection", b"x-hop"), (b"x-hop", b"1")]),
    (200, [(b"cache-control", b"max-age=60"), (b"age", b"10")]),
    (200, [(b"cache-control", b"max-age=60"), (b"set-cookie", b"a=b")]),
    (200, [(b"cache-control", b"max-age=60"), (b"x-cache-tags", b"one two")]),
    (200, [(b"Cache-Control", b"max-age=60"), (b"Content-Type", b"text/plain")]),
    (200, [(b"cache-control", b"max-age=60"), (b"x-a", b"1"), (b"x-a", b"2")]),
    (200, [(b"cache-control", b"max-age=60"), (b"transfer-encoding", b"chunked")]),
    (404, [(b"content-type", b"text/plain")]),
    (500, [(b"cache-control", b"max-age=60")]),
    (201, [(b"cache-control", b"max-age=60")]),
]

BODIES = [b"", b"short", b'{"k": "' + b"v" * 3000 + b'"}', b"z" * 70_000]

REQUESTS: list[list[tuple[bytes, bytes]]] = [
    [(b"host", b"t"), (b"accept-encoding", b"gzip, br, zstd")],
    [(b"host", b"t")],
    [(b"host", b"t"), (b"if-none-match", b'"v1"')],
    [(b"host", b"t"), (b"cache-control", b"no-cache")],
    [(b"host", b"t"), (b"authorization", b"Bearer x")],
]

OPTIONS: list[dict[str, Any]] = [
    {},
    {"transcode": False},
    {"miss_compress_size": 1000},
    {"store_set_cookie": True, "default_ttl": 10},
    {"status_header": None, "cache_status": False, "heuristic": None},
]


def _app(status: int, headers: list[tuple[bytes, bytes]], body: bytes, route: Any) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if route is not None:
            scope["endpoint"] = route
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


async def _exchange(
    middleware: ResponseCacheMiddleware, path: str, headers: list[tuple[bytes, bytes]]
) -> list[Any]:
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        fields = list(message.get("headers", []))
        sent.append((message["type"], message.get("status"), fields, message.get("body")))

    scope = {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "server": ("t", 80),
    }
    await middleware(scope, receive, send)
    return sent


async def _run(
    plain: bool,
    options: dict[str, Any],
    route: str,
    status: int,
    fields: Any,
    body: bytes,
    request: list[tuple[bytes, bytes]],
) -> tuple[tuple[Any, ...], int]:
    """One shape through one cache: what was seen, and how many replies went the plain way."""
    store = MemoryStore()
    rc = ResponseCache(Cache(store), clock=lambda: NOW, **options)
    taken = 0
    plain_reply = rc.plain_reply

    def counted(*args: Any) -> Any:
        nonlocal taken
        reply = plain_reply(*args) if plain else None
        taken += reply is not None
        return reply

    rc.plain_reply = counted  # type: ignore[method-assign]
    middleware = ResponseCacheMiddleware(_app(status, fields, body, ROUTES[route]), rc)
    first = await _exchange(middleware, "/items/1", request)
    await rc.flush()
    held = sorted(
        (key, entry.value, entry.tags, entry.expires_at is None)
        for key, entry in store._data.items()
    )
    tags = dict(store._tags)
    second = await _exchange(middleware, "/items/1", request)
    return (first, held, tags, second, rc.statistics()), taken


@pytest.mark.parametrize("option", range(len(OPTIONS)))
async def test_the_plain_way_answers_and_stores_as_the_general_way(option: int) -> None:
    taken = shapes = 0
    for route, response, body, request in itertools.product(
        ROUTES, range(len(RESPONSES)), range(len(BODIES)), range(len(REQUESTS))
    ):
        status, fields = RESPONSES[response]
        args = (OPTIONS[option], route, status, fields, BODIES[body], REQUESTS[request])
        plain, took = await _run(True, *args)
        general, _ = await _run(False, *args)
        assert plain == general, (option, route, response, body, request)
        taken += took > 0
        shapes += 1
    # The comparison means something only if many shapes did go the plain way (none does
    # without transcoding: the app's coding and Vary are kept as sent, the general way).
    if OPTIONS[option].get("transcode", True):
        assert taken >= shapes // 10, (taken, shapes)
    else:
        assert taken == 0


# -- lookup_now: the same decision and the same counts as lookup --------------------------

STORED: list[tuple[str, list[tuple[bytes, bytes]]]] = [
    ("nothing", []),
    ("fresh", [(b"cache-control", b"max-age=60")]),
    ("stale", [(b"cache-control", b"max-age=1"), (b"etag", b'"e"')]),
    ("stale-while", [(b"cache-control", b"max-age=1, stale-while-revalidate=60")]),
    ("no-cache", [(b"cache-control", b"max-age=60, no-cache"), (b"etag", b'"e"')]),
    ("varies", [(b"cache-control", b"max-age=60"), (b"vary", b"Accept-Language")]),
]

LOOKUP_REQUESTS: list[list[tuple[bytes, bytes]]] = [
    [(b"host", b"t")],
    [(b"host", b"t"), (b"accept-language", b"fr")],
    [(b"host", b"t"), (b"cache-control", b"max-age=0")],
    [(b"host", b"t"), (b"range", b"bytes=0-1")],
    [(b"host", b"t"), (b"authorization", b"Bearer x")],
]


async def _decide(now_first: bool, stored: Any, request: Any) -> tuple[Any, ...]:
    from asyncperf.http._asgi import request_view
    from asyncperf.http._types import Lookup

    clock = [NOW]
    cache = Cache(MemoryStore())
    rc = ResponseCache(cache, clock=lambda: clock[0], retain=300)
    if stored:
        middleware = ResponseCacheMiddleware(_app(200, stored, b"body", None), rc)
        await _exchange(middleware, "/items/1", [(b"host", b"t")])
        await rc.flush()
    clock[0] += 2  # max-age=1 entries are stale now
    view = request_view(
        {
            "type": "http",
            "method": "GET",
            "path": "/items/1",
            "headers": request,
            "query_string": b"",
        }
    )
    if now_first:
        found = rc.lookup_now(view)
        lookup = found if isinstance(found, Lookup) else await rc.lookup(view, found)
    else:
        lookup = await rc.lookup(view)
    if lookup.action in FROM_CACHE:
        now = rc.cached_reply_now(view, lookup) if now_first else None
        reply = now or await rc.cached_reply(view, lookup)
        assert reply is not None
        replied: tuple[Any, ...] = (reply.status, reply.label, reply.body, reply.raw, now is None)
    else:
        replied = ()
    decided = (
        lookup.action,
        lookup.primary,
        lookup.key,
        lookup.entry is None,
        lookup.age,
        lookup.forward,
        lookup.stale_if_error,
        lookup.flight is None,
    )
    return decided, replied[:-1], rc.statistics(), cache.statistics(), replied[-1:]


@pytest.mark.parametrize("stored", [name for name, _ in STORED])
async def test_lookup_now_decides_and_counts_as_lookup(stored: str) -> None:
    fields = dict(STORED)[stored]
    for request in LOOKUP_REQUESTS:
        # The same decision, reply and counts (the last item: who made the reply).
        assert (await _decide(True, fields, request))[:-1] == (
            await _decide(False, fields, request)
        )[:-1]


async def test_cached_reply_now_answers_the_common_hit_only() -> None:
    fresh = dict(STORED)["fresh"]
    plain, ranged = LOOKUP_REQUESTS[0], LOOKUP_REQUESTS[3]
    assert (await _decide(True, fresh, plain))[-1] == (False,)  # made without awaiting
    assert (await _decide(True, fresh, ranged))[-1] == (True,)  # a 206: cached_reply's
    stale = dict(STORED)["stale-while"]
    assert (await _decide(True, stale, plain))[-1] == (True,)


def test_a_route_policy_is_found_again_once_a_seen_handler_is_decorated() -> None:
    import functools

    from asyncperf.http._route import route_policy_of

    async def handler() -> None: ...

    @functools.wraps(handler)
    async def wrapper() -> None: ...

    assert route_policy_of(wrapper) is None  # seen (and remembered) without a policy
    cache_policy(ttl=5)(handler)
    policy = route_policy_of(wrapper)  # found through __wrapped__, not the memo
    assert policy is not None
    assert policy.ttl == 5
    assert route_policy_of(wrapper) is policy
    assert route_policy_of([]) is None  # unhashable handlers are looked up every time


# -- the plain capture's edges ----------------------------------------------------------


async def test_headers_sent_as_a_one_shot_iterable_reach_the_client_whole() -> None:
    # ASGI allows any iterable of pairs; the plain capture decodes it once and hands the
    # decoded fields to the general way when it declines (here: a redirect, and Vary).
    calls = 0

    def shaped(status: int, fields: list[tuple[bytes, bytes]]) -> Any:
        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            nonlocal calls
            calls += 1
            start = {"type": "http.response.start", "status": status}
            start["headers"] = (pair for pair in fields)  # readable once
            await send(start)
            await send({"type": "http.response.body", "body": b"body"})

        return app

    redirect = [(b"location", b"/x"), (b"cache-control", b"max-age=60")]
    rc = ResponseCache(Cache(MemoryStore()), clock=lambda: NOW)
    sent = await _exchange(
        ResponseCacheMiddleware(shaped(302, redirect), rc), "/r", [(b"host", b"t")]
    )
    assert sent[0][1] == 302
    assert (b"location", b"/x") in sent[0][2]

    varies = [
        (b"content-type", b"text/plain"),
        (b"cache-control", b"max-age=60"),
        (b"vary", b"Accept-Language"),
    ]
    middleware = ResponseCacheMiddleware(shaped(200, varies), rc)
    calls = 0
    first = await _exchange(middleware, "/v", [(b"host", b"t"), (b"accept-language", b"fr")])
    assert (b"content-type", b"text/plain") in first[0][2]
    assert any(name == b"vary" and b"Accept-Language" in value for name, value in first[0][2])
    await rc.flush()
    await _exchange(middleware, "/v", [(b"host", b"t"), (b"accept-language", b"de")])
    assert calls == 2  # another language is another variant: not the French one


async def test_a_message_after_a_plain_reply_is_dropped_not_sent() -> None:
    # Trailers after the final body (a server offering the extension): the client already
    # has its reply; nothing more is sent, nothing fails, and the response is stored.
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        fields = [(b"cache-control", b"max-age=60")]
        await send({"type": "http.response.start", "status": 200, "headers": fields})
        await send({"type": "http.response.body", "body": b"body"})
        await send({"type": "http.response.trailers", "headers": [], "more_trailers": False})

    rc = ResponseCache(Cache(MemoryStore()), clock=lambda: NOW)
    middleware = ResponseCacheMiddleware(app, rc)
    first = await _exchange(middleware, "/t", [(b"host", b"t")])
    assert [message[0] for message in first] == ["http.response.start", "http.response.body"]
    await rc.flush()
    again = await _exchange(middleware, "/t", [(b"host", b"t")])
    assert (b"x-cache", b"HIT") in again[0][2]


async def test_a_store_only_cache_set_writes_packs_a_plain_miss_once() -> None:
    # A store the HTTP layer cannot write without Cache.set (a codec here; Redis, tiered)
    # goes straight to the awaited job: planned and compressed once, not twice.
    from asyncperf.cache import Codec

    rc = ResponseCache(Cache(MemoryStore(codec=Codec())), clock=lambda: NOW)
    packs = 0
    pack = rc.codings.pack

    def counted(body: bytes, minimum: int) -> Any:
        nonlocal packs
        packs += 1
        return pack(body, minimum)

    rc.codings.pack = counted  # type: ignore[method-assign]
    fields = [(b"cache-control", b"max-age=60"), (b"content-type", b"application/json")]
    middleware = ResponseCacheMiddleware(_app(200, fields, b"x" * 4000, None), rc)
    await _exchange(middleware, "/p", [(b"host", b"t")])
    await rc.flush()
    assert packs == 1
    again = await _exchange(middleware, "/p", [(b"host", b"t")])
    assert (b"x-cache", b"HIT") in again[0][2]
    assert again[1][3] == b"x" * 4000
