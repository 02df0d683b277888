"""A sketch, not a cache: about the least Python a miss of a full-featured cache could run.

The second reference of the miss target (``http-direct``, ``bench/instructions.py``),
beside the essential miss work. Where that reference does only what no cache can skip,
this one also does, in straight-line code, the core of what this cache's miss does:
request directives, a coalescing flight, the response's freshness from a memoised
Cache-Control decision and its age, the reply's fields, a JSON header and a zstd body
stored with an expiry bucket and two tag-index entries, the flight released. It has none
of the rest (Vary, conditional requests, revalidation, stale answers, routes, HEAD,
streaming, write-behind, a pluggable store), so it is a floor, not a target: what a miss
path redesigned as a few straight-line functions could approach.
"""

from __future__ import annotations

import functools
import hashlib
import time
from typing import Any

import orjson
import zstandard

from bench._asgi import ASGIApp, Message, Receive, Scope, Send


@functools.lru_cache(maxsize=256)
def _lifetime(cache_control: str | None) -> float | None:
    """Seconds of freshness a Cache-Control value gives a shared cache (``None``: no store)."""
    if not cache_control:
        return None
    directives: dict[str, str | None] = {}
    for part in cache_control.split(","):
        name, _, argument = part.strip().partition("=")
        directives[name.lower()] = argument or None
    if "no-store" in directives or "private" in directives:
        return None
    try:
        return float(directives.get("s-maxage") or directives["max-age"] or "")
    except (KeyError, ValueError):
        return None


class LeanMiss:
    """The sketch as an ASGI middleware (every request is expected to be a new URL)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.kept: dict[str, bytes] = {}
        self.tags: dict[str, Any] = {}
        self.wheel: dict[int, list[str]] = {}
        self.flights: dict[str, list[Any]] = {}
        self.packer = zstandard.ZstdCompressor(level=3)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        pairs = [(n.decode("latin-1").lower(), v.decode("latin-1")) for n, v in scope["headers"]]
        headers = dict(pairs)
        request_cc = headers.get("cache-control")
        if request_cc and ("no-store" in request_cc or "no-cache" in request_cc):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        key = f"{scope['scheme']}://{headers.get('host')}{path}"
        assert key not in self.kept
        flight = self.flights[key] = [time.monotonic() + 10.0, None]
        requested = time.time()
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            else:
                chunks.append(message.get("body", b""))

        try:
            await self.app(scope, receive, capture)
            responded = time.time()
            body = b"".join(chunks)
            fields = [
                (n.decode("latin-1").lower(), v.decode("latin-1")) for n, v in start["headers"]
            ]
            field_map = dict(fields)
            lifetime = _lifetime(field_map.get("cache-control"))
            etag = field_map.get("etag") or f'"{hashlib.sha1(body).hexdigest()[:32]}"'
            kept = [(n, v) for n, v in fields if n != "content-length"]
            raw = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in kept]
            raw.append((b"vary", b"Accept-Encoding"))
            raw.append((b"etag", etag.encode("latin-1")))
            raw.append((b"x-cache", b"MISS"))
            raw.append((b"cache-status", b"asyncperf; fwd=uri-miss"))
            raw.append((b"content-length", b"%d" % len(body)))
            await send({"type": "http.response.start", "status": start["status"], "headers": raw})
            await send({"type": "http.response.body", "body": body})
            if lifetime is not None and start["status"] == 200:
                age = max(0.0, responded - requested)
                meta = orjson.dumps(
                    {
                        "s": start["status"],
                        "h": kept,
                        "e": etag,
                        "rq": requested,
                        "p": [lifetime, age],
                    }
                )
                self.kept[key] = meta + self.packer.compress(body)
                self.wheel.setdefault(int(responded + lifetime), []).append(key)
                for tag in ("u:" + path, "p:" + path.rsplit("/", 1)[0]):
                    keys = self.tags.get(tag)
                    if keys is None:
                        self.tags[tag] = key
                    elif isinstance(keys, str):
                        self.tags[tag] = {keys, key}
                    else:
                        keys.add(key)
        finally:
            if self.flights.get(key) is flight:
                del self.flights[key]
