"""What the store holds and what a hit reads back.

A plain memory cache hands back the very bytes object it stored, so a hit decodes an
entry once and then reuses it from a bounded memo (``decoded_entries``, and at most
32 MB of stored bytes). Fields stripped before storing must never reach a hit, and
``max_bytes`` counts what is really stored.
"""

from __future__ import annotations

import gzip
import itertools
import os
from typing import Any

import pytest
import zstandard

from asyncperf import Cache, ConfigurationError, MemoryStore
from asyncperf.http import ResponseCache, ResponseCacheMiddleware, _base

pytestmark = pytest.mark.anyio

BODY = b'{"items": [' + b", ".join(b'{"n": %d}' % n for n in range(200)) + b"]}"


def _app(headers: list[tuple[bytes, bytes]], body: bytes = BODY) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def _pages() -> Any:
    """An app answering each path with a body of its own (cacheable for a minute)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        fields = [(b"cache-control", b"max-age=60"), (b"content-type", b"text/plain")]
        await send({"type": "http.response.start", "status": 200, "headers": fields})
        await send({"type": "http.response.body", "body": scope["path"].encode() * 40})

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


def _identity(body: bytes, coding: bytes) -> bytes:
    if coding == b"zstd":
        return zstandard.ZstdDecompressor().decompress(body, max_output_size=1 << 20)
    if coding == b"gzip":
        return gzip.decompress(body)
    assert coding == b"identity"
    return body


@pytest.mark.parametrize("coding", [b"identity", b"zstd", b"gzip"])
@pytest.mark.parametrize("vary", [False, True], ids=["plain", "varies"])
@pytest.mark.parametrize("miss_compress_size", [None, 1024], ids=["as-made", "compressed"])
async def test_fields_stripped_before_storing_never_reach_a_hit(
    coding: bytes, vary: bool, miss_compress_size: int | None
) -> None:
    # "compressed": the miss's reply is itself coded, built the way a hit's is (its
    # fields cached on the entry before the stripped ones are removed for storing).
    rc = ResponseCache(Cache(MemoryStore()), miss_compress_size=miss_compress_size)
    fields = [
        (b"content-type", b"application/json"),
        (b"cache-control", b'max-age=60, private="x-user"'),
        (b"x-user", b"alice"),
    ]
    if vary:  # the general way rather than the plain one
        fields.append((b"vary", b"accept-language"))
    middleware = ResponseCacheMiddleware(_app(fields), rc)
    asked = (b"accept-encoding", coding)
    first, _ = await _get(middleware, "/me", asked)
    await rc.flush()
    second, body = await _get(middleware, "/me", asked)
    assert first[b"x-user"] == b"alice"  # the app's own answer to the first client
    assert second[b"x-cache"] == b"HIT"
    assert b"x-user" not in second
    assert _identity(body, second.get(b"content-encoding", b"identity")) == BODY


@pytest.mark.parametrize(("limit", "stored"), [(4_000, False), (200_000, True)])
async def test_max_bytes_counts_what_is_stored(limit: int, stored: bool) -> None:
    noise = os.urandom(8_000)  # incompressible: stored at its full size
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


async def test_hits_over_thousands_of_urls_decode_each_entry_once(decodes: list[int]) -> None:
    # More URLs than the memo once held (512): each entry is decoded by its first hit only.
    rc = ResponseCache(Cache(MemoryStore()))
    middleware = ResponseCacheMiddleware(_pages(), rc)
    paths = [f"/page/{n}" for n in range(1500)]
    for path in paths:
        await _get(middleware, path)
    await rc.flush()
    before = decodes[0]
    for path in itertools.chain(paths, reversed(paths), paths):
        hit, body = await _get(middleware, path)
        assert hit[b"x-cache"] == b"HIT"
        assert body == path.encode() * 40
    assert decodes[0] - before == len(paths)
    assert rc.statistics().hits == 3 * len(paths)


async def test_decoded_entries_bounds_the_memo(decodes: list[int]) -> None:
    rc = ResponseCache(Cache(MemoryStore()), decoded_entries=10)
    middleware = ResponseCacheMiddleware(_pages(), rc)
    paths = [f"/page/{n}" for n in range(30)]
    for path in paths:
        await _get(middleware, path)
    await rc.flush()
    before = decodes[0]
    for path in paths * 2:  # cycling over more URLs than it holds: every hit decodes
        hit, body = await _get(middleware, path)
        assert (hit[b"x-cache"], body) == (b"HIT", path.encode() * 40)
    assert decodes[0] - before == 60
    assert len(rc._decoded) == 10
    for _ in range(3):  # the ten it holds are not decoded again
        await _get(middleware, paths[-1])
    assert decodes[0] - before == 60


async def test_no_decoded_entries_decodes_every_hit(decodes: list[int]) -> None:
    rc = ResponseCache(Cache(MemoryStore()), decoded_entries=0)
    middleware = ResponseCacheMiddleware(_pages(), rc)
    await _get(middleware, "/page/1")
    await rc.flush()
    before = decodes[0]
    for _ in range(5):
        hit, body = await _get(middleware, "/page/1")
        assert (hit[b"x-cache"], body) == (b"HIT", b"/page/1" * 40)
    assert decodes[0] - before == 5
    assert not rc._decoded


async def test_the_memo_keeps_at_most_its_byte_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_base, "_DECODED_BYTES", 20_000)
    rc = ResponseCache(Cache(MemoryStore()))
    fields = [(b"content-type", b"application/octet-stream"), (b"cache-control", b"max-age=60")]
    bodies = {f"/blob/{n}": os.urandom(900) for n in range(60)}  # under 20_000 >> 4 each

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": fields})
        await send({"type": "http.response.body", "body": bodies[scope["path"]]})

    middleware = ResponseCacheMiddleware(app, rc)
    for path in bodies:
        await _get(middleware, path)
    await rc.flush()
    for path, expected in bodies.items():
        hit, body = await _get(middleware, path)
        assert (hit[b"x-cache"], body) == (b"HIT", expected)
        held = sum(len(blob) for blob, _ in rc._decoded.values())
        assert rc._decoded_bytes == held <= 20_000
    assert 10 < len(rc._decoded) < 60
    await rc.invalidate(prefix="/blob")
    assert (len(rc._decoded), rc._decoded_bytes) == (0, 0)
    hit, _ = await _get(middleware, "/blob/1")
    assert hit[b"x-cache"] == b"MISS"


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10"])
def test_decoded_entries_must_be_a_count(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="decoded_entries"):
        ResponseCache(Cache(MemoryStore()), decoded_entries=bad)
