"""ResponseCacheMiddleware: the response cache as a pure ASGI middleware.

Like Starlette's ``GZipMiddleware`` it wraps ``send``: ``http.response.start`` is held
until the first body message shows whether the response is whole (then it is buffered,
validated, stored and encoded) or streamed (then it passes through, teed into a copy
only while it stays under the size cap). No ``BaseHTTPMiddleware``, no framework import.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

import anyio

from ._cache import ResponseCache
from ._route import route_policy_of
from ._types import (
    BYPASS,
    FROM_CACHE,
    MISS,
    NO_PARAMS,
    REVALIDATE,
    SAFE_METHODS,
    SERVER_ERRORS,
    Lookup,
    Reply,
    RequestView,
)

__all__ = ["ResponseCacheMiddleware"]

logger = logging.getLogger("asyncperf.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_WAITING: Final = 0
_BUFFER: Final = 1  # whole body collected, then validated, stored and encoded
_TEE: Final = 2  # streamed to the client, copied for storage while under the cap
_PASS: Final = 3  # streamed to the client untouched
_NOT_MODIFIED: Final = 4  # the app's 304 to our revalidation: answer from the entry
_ERROR_STALE: Final = 5  # the app failed; stale-if-error answers instead
_DISCARD: Final = 6  # background revalidation that cannot be stored


def _text(data: Any) -> str:
    """Decode a header name or value (ASGI gives ``bytes``; tolerate other buffers)."""
    return (data if type(data) is bytes else bytes(data)).decode("latin-1")


def _text_headers(raw: Any) -> list[tuple[str, str]]:
    """Decode ASGI header pairs to ``(lower-case name, value)`` text pairs.

    A plain comprehension: joining the pairs, decoding and splitting them again in C
    runs fewer bytecodes but takes twice the time (2.5 µs against 1.25 µs for a
    client's five fields here: the joined copy, the split and the slices allocate more
    than the loop's method calls cost).
    """
    if type(raw) is not list and type(raw) is not tuple:
        raw = list(raw)  # any iterable, read once (the fallback below reads it again)
    try:
        return [(name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in raw]
    except AttributeError:  # a buffer without .decode (memoryview)
        return [(_text(name).lower(), _text(value)) for name, value in raw]


def _raw_headers(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]


def request_view(scope: Scope) -> RequestView:
    """Return the cache's view of an ASGI HTTP scope."""
    pairs = _text_headers(scope.get("headers", ()))
    headers = dict(pairs)
    if len(headers) < len(pairs):  # repeated fields: join them (rare, so checked after)
        headers = {}
        for name, value in pairs:
            previous = headers.get(name)
            headers[name] = value if previous is None else f"{previous}, {value}"
    host = headers.get("host")
    if host is None:
        server = scope.get("server")
        host = f"{server[0]}:{server[1]}" if server else "localhost"
    raw_path = scope.get("raw_path")
    if not raw_path:
        path = scope.get("root_path", "") + scope.get("path", "/")
    else:
        path = (raw_path if type(raw_path) is bytes else bytes(raw_path)).decode("latin-1")
    query = scope.get("query_string")
    return RequestView(  # method, scheme, host, path, query, headers, params
        scope.get("method", "GET").upper(),
        scope.get("scheme", "http"),
        host,
        path,
        (query if type(query) is bytes else bytes(query)).decode("latin-1") if query else "",
        headers,
        NO_PARAMS,
    )


async def _send_reply(send: Send, reply: Reply, head: bool) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": reply.status,
            "headers": _raw_headers(reply.headers) if reply.raw is None else reply.raw,
        }
    )
    body = b"" if head or reply.status in (204, 304) else reply.body
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _discard(message: Message) -> None:
    """A ``send`` for background revalidations: the client already has its answer."""


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, finished: anyio.Event) -> Receive:
    """Return a ``receive`` that gives the buffered body again, then waits for the end."""
    given = False

    async def receive() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    return receive


class ResponseCacheMiddleware:
    """Serve GET and HEAD from a :class:`~asyncperf.http.ResponseCache` (pure ASGI).

    Args:
        app: The ASGI application.
        response_cache: The cache and its options.

    Example:
        >>> from starlette.applications import Starlette
        >>> from asyncperf import Cache
        >>> from asyncperf.http import ResponseCache, ResponseCacheMiddleware
        >>> app = Starlette()
        >>> app.add_middleware(ResponseCacheMiddleware, response_cache=ResponseCache(Cache()))
    """

    def __init__(self, app: ASGIApp, response_cache: ResponseCache) -> None:
        if not isinstance(response_cache, ResponseCache):
            raise TypeError(
                f"response_cache must be a ResponseCache, got {type(response_cache).__name__}"
            )
        self.app = app
        self.response_cache = response_cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rc = self.response_cache
        request = request_view(scope)
        method = request.method
        if method not in ("GET", "HEAD"):
            rc.count_bypass()
            if method in SAFE_METHODS:
                await self._pass_through(scope, receive, send)
            else:
                await self._unsafe(scope, receive, send, request)
            return
        lookup = rc.lookup_now(request)
        if not isinstance(lookup, Lookup):
            lookup = await rc.lookup(request, lookup)
        head = method == "HEAD"
        if lookup.action in FROM_CACHE:
            reply = rc.cached_reply_now(request, lookup)
            if reply is not None:
                await _send_reply(send, reply, head)  # the common hit
                return
            revalidate = rc.revalidates_after(lookup)
            body = await _read_body(receive) if revalidate else b""
            reply = await rc.cached_reply(request, lookup)
            assert reply is not None
            await _send_reply(send, reply, head)
            if revalidate:
                # The client has its whole answer; the revalidation runs after it, in this
                # call (as Starlette's background tasks do), on a replayed request body.
                try:
                    finished = anyio.Event()
                    await self._fetch(
                        scope, _replay(body, finished), _discard, request, lookup, finished
                    )
                except Exception:
                    rc.count_error()
                    logger.warning(
                        "background revalidation of %s failed", request.target, exc_info=True
                    )
                finally:
                    rc.release_revalidation(lookup)
        elif lookup.action == BYPASS:
            await self._pass_through(scope, receive, send)
        else:
            try:
                if lookup.action == MISS and not lookup.stale_if_error and not head:
                    # The common miss: the plain capture (a _Capture only if it must).
                    capture = _PlainCapture(rc, scope, request, lookup, send)
                    await self.app(scope, receive, capture)
                    if not capture.done:
                        await capture.close()
                else:
                    await self._fetch(scope, receive, send, request, lookup, None)
            finally:
                # Requests waiting on this URL look again (or ask the app); only a
                # cross-process lease needs a coroutine.
                if rc.release_now(lookup):
                    await rc.release(lookup)

    async def _pass_through(self, scope: Scope, receive: Receive, send: Send) -> None:
        rc = self.response_cache

        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = rc.pass_through_headers(
                    _text_headers(message.get("headers", ())), BYPASS, cacheable=False
                )
                message = {**message, "headers": _raw_headers(headers)}
            await send(message)

        await self.app(scope, receive, send_marked)

    async def _unsafe(
        self, scope: Scope, receive: Receive, send: Send, request: RequestView
    ) -> None:
        rc = self.response_cache

        async def send_invalidating(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = _text_headers(message.get("headers", ()))
                # Before the client hears back, so its next GET cannot see the old entry.
                await rc.invalidate_after_unsafe(request, int(message["status"]), headers)
                headers = rc.pass_through_headers(headers, BYPASS, cacheable=False)
                message = {**message, "headers": _raw_headers(headers)}
            await send(message)

        await self.app(scope, receive, send_invalidating)

    async def _fetch(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        request: RequestView,
        lookup: Lookup,
        finished: anyio.Event | None,
    ) -> None:
        """Ask the app (conditionally when revalidating) and answer from what it sends."""
        rc = self.response_cache
        validating = lookup.entry is not None and (
            lookup.action == REVALIDATE or finished is not None
        )
        app_scope = scope
        if validating:
            assert lookup.entry is not None
            extra = rc.revalidation_headers(lookup.entry)
            headers = [
                (name, value)
                for name, value in scope.get("headers", ())
                if bytes(name).lower() not in (b"if-none-match", b"if-modified-since")
            ]
            headers.extend(_raw_headers(extra))
            app_scope = {**scope, "headers": headers}
        capture = _Capture(rc, app_scope, request, lookup, send, validating, finished)
        try:
            await self.app(app_scope, receive, capture)
        except Exception:
            if capture.mode == _ERROR_STALE and capture.sent:
                # The app sent its 500 (Starlette's ServerErrorMiddleware does), then raised;
                # the client already has the stale answer instead.
                logger.warning("%s failed; answered from stale", request.target, exc_info=True)
                return
            if not capture.sent and lookup.stale_if_error and lookup.entry is not None:
                logger.warning("%s failed; answered from stale", request.target, exc_info=True)
                capture.mode = _ERROR_STALE
                await capture.answer_stale("asyncperf; fwd=stale; detail=app-error")
                return
            raise
        await capture.close()


class _PlainCapture:
    """The ``send`` given to the app on a GET's miss: a plain response (one whole body
    message, see ``_plain.py``) is answered and stored at once; anything else is handed,
    with what came before it, to a :class:`_Capture` made then."""

    start: Message | None
    headers: list[tuple[str, str]] | None  # the start's, once decoded
    full: _Capture | None
    done: bool

    def __init__(
        self, rc: ResponseCache, scope: Scope, request: RequestView, lookup: Lookup, send: Send
    ) -> None:
        self.rc = rc
        self.scope = scope
        self.request = request
        self.lookup = lookup
        self.downstream = send
        self.request_time = self.response_time = rc.clock()
        # Set here, not as class defaults: CPython 3.11 specialises reading an instance's
        # own attribute, not a class attribute read through the instance.
        self.start = self.headers = self.full = None
        self.done = False

    async def __call__(self, message: Message) -> None:
        full = self.full
        if full is None:
            start = self.start
            kind = message["type"]
            if start is None:
                if kind == "http.response.start" and not self.done:
                    self.start = message
                    self.response_time = self.rc.clock()
                    return
            elif kind == "http.response.body" and not message.get("more_body", False):
                rc, scope, request = self.rc, self.scope, self.request
                request.params = scope.get("path_params") or NO_PARAMS
                headers = self.headers = _text_headers(start.get("headers", ()))
                reply = rc.plain_reply(
                    request,
                    self.lookup,
                    int(start["status"]),
                    headers,
                    message.get("body", b""),
                    route_policy_of(scope.get("endpoint")),
                    self.request_time,
                    self.response_time,
                )
                if reply is not None:
                    self.done = True
                    self.start = None  # what follows is dropped (see below)
                    try:
                        await _send_reply(self.downstream, reply, False)
                    finally:
                        write = reply.write
                        if not write.run_now():  # the client has its answer (or has gone)
                            await write.run()
                    return
            if self.done:
                return  # after the reply (trailers, say): dropped, as a buffering _Capture does
            full = self._general()
        await full(message)

    def _general(self) -> _Capture:
        """Hand the response to a :class:`_Capture`, as if it had had it from the start."""
        full = self.full = _Capture(
            self.rc, self.scope, self.request, self.lookup, self.downstream, False, None
        )
        full.request_time, full.response_time = self.request_time, self.response_time
        if self.start is not None:
            full.start = self.start
            # Decoded once: the app's headers may be an iterable that reads only once.
            full.headers = self.headers or _text_headers(self.start.get("headers", ()))
        return full

    async def close(self) -> None:
        """Finish a response the app ended without a final body message."""
        await (self.full or self._general()).close()


class _Capture:
    """The ``send`` given to the app on a miss or revalidation (one response)."""

    # What every capture starts with, as class attributes: an instance sets only what
    # changes (made once per miss, it is on the hot path).
    start: Message | None = None
    headers: list[tuple[str, str]]  # the app's fields, set with start
    mode = _WAITING
    size = 0
    sent = False
    done = False

    def __init__(
        self,
        rc: ResponseCache,
        scope: Scope,
        request: RequestView,
        lookup: Lookup,
        send: Send,
        validating: bool,
        finished: anyio.Event | None,
    ) -> None:
        self.rc = rc
        self.scope = scope
        self.request = request
        self.lookup = lookup
        self.downstream = send
        self.validating = validating
        self.finished = finished
        self.background = finished is not None
        self.chunks: list[bytes] = []
        self.request_time = self.response_time = rc.clock()

    def _route(self) -> Any:
        self.request.params = self.scope.get("path_params") or NO_PARAMS
        return route_policy_of(self.scope.get("endpoint"))

    async def _send(self, message: Message) -> None:
        self.sent = True
        if not self.background:
            await self.downstream(message)

    async def _send_start(self, label: str, *, cacheable: bool) -> None:
        assert self.start is not None
        headers = self.rc.pass_through_headers(
            self.headers, label, cacheable=cacheable, route=self._route()
        )
        await self._send({**self.start, "headers": _raw_headers(headers)})

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.start = message
            self.headers = _text_headers(message.get("headers", ()))
            self.response_time = self.rc.clock()
            return
        if kind != "http.response.body":
            # pathsend, trailers and other extensions: nothing to cache, pass them on.
            if self.mode == _WAITING and self.start is not None:
                await self._send_start(MISS, cacheable=False)
                self.mode = _PASS
            if self.mode == _TEE:
                self.mode = _PASS
            if self.mode == _PASS:
                await self._send(message)
            return
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        if self.mode == _WAITING:
            if (
                # The common response, decided without a coroutine: whole in its first
                # message, small enough, a GET that is no revalidation (nor can be answered
                # from stale on error). Anything else is weighed by _decide.
                not more
                and not self.validating
                and not self.lookup.stale_if_error
                and self.start is not None
                and self.request.method == "GET"
                and len(body) <= self.rc.max_body_size
            ):
                self.mode = _BUFFER
            else:
                await self._decide(more, len(body))
        mode = self.mode
        if mode == _BUFFER:
            self.chunks.append(body)
            self.size += len(body)
            if self.size > self.rc.max_body_size and more:
                await self._overflow()
        elif mode == _TEE:
            await self._send({"type": "http.response.body", "body": body, "more_body": more})
            self.chunks.append(body)
            self.size += len(body)
            if self.size > self.rc.max_body_size:
                self.chunks = []
                self.mode = _PASS
        elif mode == _PASS:
            await self._send(message)
        if not more:
            await self._end()

    async def _decide(self, more: bool, first_size: int) -> None:
        if self.start is None:
            raise RuntimeError("ASGI app sent a response body before http.response.start")
        try:
            await self._choose(more, first_size)
        finally:
            if self.mode != _BUFFER and self.mode != _NOT_MODIFIED:
                # Streamed or not stored: requests waiting on this URL need not wait for
                # the end of the stream (a 304 releases them once the entry is refreshed).
                await self.rc.release(self.lookup)

    async def _choose(self, more: bool, first_size: int) -> None:
        assert self.start is not None
        status = int(self.start["status"])
        rc, lookup = self.rc, self.lookup
        if self.validating and status == 304:
            self.mode = _NOT_MODIFIED
        elif lookup.stale_if_error and lookup.entry is not None and status in SERVER_ERRORS:
            self.mode = _ERROR_STALE
        elif self.request.method == "HEAD":
            if self.validating:  # a HEAD that revalidated a stored GET (RFC 9111 §4.3.5)
                await rc.update_from_head(
                    self.request,
                    lookup,
                    status=status,
                    headers=self.headers,
                    route=self._route(),
                    request_time=self.request_time,
                    response_time=self.response_time,
                )
            self.mode = _DISCARD if self.background else _PASS
            if not self.background:
                await self._send_start(MISS, cacheable=True)
        elif not more and first_size <= rc.max_body_size:
            self.mode = _BUFFER
        elif not more:
            # Already whole, but over the cap: neither validated nor stored, sent as is.
            self.mode = _DISCARD if self.background else _PASS
            if not self.background:
                await self._send_start(MISS, cacheable=True)
        else:
            fields = dict(self.headers)
            length = fields.get("content-length", "")
            streamed_events = fields.get("content-type", "").startswith("text/event-stream")
            if streamed_events or (length.isdigit() and int(length) > rc.max_body_size):
                self.mode = _DISCARD if self.background else _PASS
                if not self.background:
                    await self._send_start(MISS, cacheable=not streamed_events)
            elif length.isdigit() or self.background:
                self.mode = _BUFFER
            else:
                self.mode = _TEE
                await self._send_start(MISS, cacheable=True)

    async def _overflow(self) -> None:
        """A body announced (or assumed) small grew past the cap: stream the rest."""
        await self.rc.release(self.lookup)  # not stored: waiters need not sit through the stream
        if self.background:
            self.mode, self.chunks = _DISCARD, []
            return
        await self._send_start(MISS, cacheable=True)
        buffered, self.chunks = b"".join(self.chunks), []
        await self._send({"type": "http.response.body", "body": buffered, "more_body": True})
        self.mode = _PASS

    async def _end(self) -> None:
        self.done = True
        try:
            rc, lookup, request = self.rc, self.lookup, self.request
            assert self.start is not None
            mode = self.mode
            if mode == _BUFFER:
                status = int(self.start["status"])
                body = b"".join(self.chunks)
                route = self._route()
                reply = rc.plain_reply(
                    request,
                    lookup,
                    status,
                    self.headers,
                    body,
                    route,
                    self.request_time,
                    self.response_time,
                ) or await rc.complete(
                    request,
                    lookup,
                    status=status,
                    headers=self.headers,
                    body=body,
                    route=route,
                    request_time=self.request_time,
                    response_time=self.response_time,
                )
                try:
                    if not self.background:
                        await self._send_reply(reply)
                finally:
                    write = reply.write
                    # The client has its answer (or has gone): store it, without a
                    # coroutine when nothing is in the way.
                    if write is not None and not write.run_now():
                        await write.run()
            elif mode == _TEE:
                await rc.store_streamed(
                    request,
                    lookup,
                    status=int(self.start["status"]),
                    headers=self.headers,
                    body=b"".join(self.chunks),
                    route=self._route(),
                    request_time=self.request_time,
                    response_time=self.response_time,
                )
            elif mode == _NOT_MODIFIED:
                confirmed = await rc.not_modified(
                    request,
                    lookup,
                    headers=self.headers,
                    route=self._route(),
                    request_time=self.request_time,
                    response_time=self.response_time,
                    background=self.background,
                )
                if confirmed is not None:
                    await self._send_reply(confirmed)
            elif mode == _ERROR_STALE:
                await self.answer_stale(
                    f"asyncperf; fwd=stale; fwd-status={int(self.start['status'])}"
                )
        finally:
            if self.finished is not None:
                self.finished.set()

    async def _send_reply(self, reply: Reply) -> None:
        self.sent = True
        await _send_reply(self.downstream, reply, self.request.method == "HEAD")

    async def answer_stale(self, cache_status: str) -> None:
        """Answer with the stale entry instead of the app's error (stale-if-error)."""
        if self.background:
            return
        reply = await self.rc.stale_instead(self.request, self.lookup, cache_status)
        await self._send_reply(reply)

    async def close(self) -> None:
        """Finish a response the app ended without a final body message."""
        if self.done:
            return
        if self.start is None:
            raise RuntimeError("ASGI app returned without starting a response")
        await self({"type": "http.response.body", "body": b"", "more_body": False})
