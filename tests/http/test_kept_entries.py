"""A plain memory cache keeps each stored response as the object, not its byte form.

Nothing is encoded on a miss or decoded on a hit (a hit over more URLs than the decoded
memo holds used to decode every time); what the store holds must still be exactly what
the byte form says, sized honestly for ``max_bytes``, and free of what the miss's own
reply was built from (fields stripped before storing).
"""

from __future__ import annotations

import gzip
import itertools
import os
from typing import Any

import pytest
import zstandard

from asyncperf import Cache, MemoryStore
from asyncperf.http import ResponseCache, ResponseCacheMiddleware
from asyncperf.http._stored import StoredResponse, decode

pytestmark = pytest.mark.anyio

BODY = b'{"items": [' + b", ".join(b'{"n": %d}' % n for n in range(200)) + b"]}"


def _app(headers: list[tuple[bytes, bytes]], body: bytes = BODY) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


async def _get(
    middleware: ResponseCacheMiddleware, path: str, *headers: tuple[bytes, bytes]
) -> tuple[dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"t"), *headers],
        "server": ("t", 80),
    }
    await middleware(scope, receive, send)
    start, body = sent[0], sent[1]
    return dict(start["headers"]), body["body"]


def _decoded(body: bytes, coding: bytes) -> bytes:
    if coding == b"zstd":
        return zstandard.ZstdDecompressor().decompress(body, max_output_size=1 << 20)
    if coding == b"gzip":
        return gzip.decompress(body)
    assert coding == b"identity"
    return body


def _kept(store: MemoryStore) -> list[Any]:
    return [entry.value for entry in store._data.values()]


@pytest.mark.parametrize("coding", [b"identity", b"zstd", b"gzip"])
@pytest.mark.parametrize("vary", [False, True], ids=["plain", "varies"])
@pytest.mark.parametrize("miss_compress_size", [None, 1024], ids=["as-made", "compressed"])
async def test_fields_stripped_before_storing_never_reach_a_hit(
    coding: bytes, vary: bool, miss_compress_size: int | None
) -> None:
    store = MemoryStore()
    # "compressed": the miss's reply itself is coded, built the way a hit's is (its fields
    # cached on the entry, before the stripped ones are removed for storing).
    rc = ResponseCache(Cache(store), miss_compress_size=miss_compress_size)
    fields = [
        (b"content-type", b"application/json"),
        (b"cache-control", b'max-age=60, private="x-user"'),
        (b"x-user", b"alice"),
    ]
    if vary:  # the general way: its reply's caches are built before the fields are stripped
        fields.append((b"vary", b"accept-language"))
    middleware = ResponseCacheMiddleware(_app(fields), rc)
    asked = (b"accept-encoding", coding)
    first, _ = await _get(middleware, "/me", asked)
    await rc.flush()
    second, body = await _get(middleware, "/me", asked)
    assert first[b"x-user"] == b"alice"  # the app's own answer to the first client
    assert second[b"x-cache"] == b"HIT"
    assert b"x-user" not in second
    assert _decoded(body, second.get(b"content-encoding", b"identity")) == BODY
    for value in _kept(store):
        if isinstance(value, StoredResponse):
            assert "x-user" not in dict(value.headers)


async def test_a_kept_entry_is_what_its_byte_form_decodes_to() -> None:
    store = MemoryStore()
    rc = ResponseCache(Cache(store))
    fields = [
        (b"content-type", b"application/json"),
        (b"cache-control", b"max-age=60"),
        (b"etag", b'"v1"'),
    ]
    middleware = ResponseCacheMiddleware(_app(fields), rc)
    await _get(middleware, "/items/1")
    await rc.flush()
    (kept,) = _kept(store)
    assert type(kept) is StoredResponse  # the object, not bytes
    again = decode(kept.encode())
    assert isinstance(again, StoredResponse)
    assert again.encode() == kept.encode()
    assert (again.status, again.etag, again.coding, again.size) == (200, '"v1"', "zstd", len(BODY))
    hit, body = await _get(middleware, "/items/1")
    assert (hit[b"x-cache"], body) == (b"HIT", BODY)


async def test_a_redis_like_store_still_gets_the_byte_form() -> None:
    # A codec makes the memory store encode values: the cache must hand it bytes.
    from asyncperf import Codec

    store = MemoryStore(codec=Codec())
    rc = ResponseCache(Cache(store))
    middleware = ResponseCacheMiddleware(_app([(b"cache-control", b"max-age=60")]), rc)
    await _get(middleware, "/items/1")
    await rc.flush()
    hit, body = await _get(middleware, "/items/1")
    assert (hit[b"x-cache"], body) == (b"HIT", BODY)


@pytest.mark.parametrize(("limit", "stored"), [(4_000, False), (200_000, True)])
async def test_max_bytes_counts_a_kept_entry_s_body(limit: int, stored: bool) -> None:
    noise = os.urandom(8_000)  # incompressible: kept at its full size
    store = MemoryStore(max_bytes=limit)
    rc = ResponseCache(Cache(store))
    fields = [(b"content-type", b"application/octet-stream"), (b"cache-control", b"max-age=60")]
    middleware = ResponseCacheMiddleware(_app(fields, noise), rc)
    await _get(middleware, "/blob")
    await rc.flush()
    hit, body = await _get(middleware, "/blob")
    assert body == noise
    assert (hit[b"x-cache"] == b"HIT") is stored
    assert store.statistics().bytes <= limit


async def test_hits_over_many_urls_serve_each_one_s_own_entry() -> None:
    # More URLs than the decoded-entry memo holds (512): each hit is its own entry's.
    store = MemoryStore()
    rc = ResponseCache(Cache(store))

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        fields = [(b"cache-control", b"max-age=60"), (b"content-type", b"text/plain")]
        await send({"type": "http.response.start", "status": 200, "headers": fields})
        await send({"type": "http.response.body", "body": scope["path"].encode() * 40})

    middleware = ResponseCacheMiddleware(app, rc)
    paths = [f"/page/{n}" for n in range(700)]
    for path in paths:
        await _get(middleware, path)
    await rc.flush()
    for path in itertools.chain(paths, reversed(paths)):
        hit, body = await _get(middleware, path)
        assert hit[b"x-cache"] == b"HIT"
        assert body == path.encode() * 40
    assert rc.statistics().hits == 2 * len(paths)
    assert not rc._decoded  # nothing was decoded: every hit read the entry itself
