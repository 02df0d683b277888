"""Pure ASGI glue: the timing middleware and the app serving metrics and the dashboard."""

from __future__ import annotations

import hmac
import inspect
from collections.abc import Awaitable, Callable, MutableMapping
from time import perf_counter
from typing import Any
from urllib.parse import parse_qs

import anyio
import orjson

from ._dashboard import dashboard_html
from ._exposition import OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE
from ._monitor import UNMATCHED_ROUTE, HttpSeries, PerformanceMonitor

__all__ = ["ASGIApp", "MonitorApp", "TimingMiddleware", "route_template"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SKIP = "asyncperf.skip"
DASHBOARD_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:"
)


def route_template(scope: Scope, entry_root_path: str = "") -> str:
    """Return the route template Starlette/FastAPI matched, with mount prefixes joined.

    Starlette's router stores the matched route in ``scope["route"]`` (the same dict the
    middleware holds); under a ``Mount`` the prefix is what ``root_path`` grew by.
    Unmatched requests share one value, ``"unmatched"``.
    """
    route = scope.get("route")
    # path_format drops converters: "/items/{id}" rather than "/items/{id:int}".
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(path, str):
        return UNMATCHED_ROUTE
    root = scope.get("root_path", "")
    prefix = root[len(entry_root_path) :] if root.startswith(entry_root_path) else ""
    if hasattr(route, "routes"):  # a Mount matched last: it owns everything below it
        return (prefix or path) + "/{path}"
    return prefix + path


def _route_before_routing(scope: Scope) -> None:
    """Put in ``scope["route"]`` the route the app's router would match, without running it.

    A response answered before the router runs (a response-cache hit) leaves no route in
    the scope; it is recorded under the template the router would have chosen, so a route's
    traffic and latency include the hits the cache served. Starlette sets ``scope["app"]``
    before its middleware stack runs, and each route's ``matches`` is pure.
    """
    routes = getattr(getattr(scope.get("app"), "router", None), "routes", None)
    if not routes:
        return
    for route in routes:
        matches = getattr(route, "matches", None)
        if matches is None:
            continue
        try:
            match, _ = matches(scope)
        except Exception:  # a route type this reading does not understand: not this one
            continue
        if getattr(match, "name", "") == "FULL":
            scope["route"] = route
            return


class TimingMiddleware:
    """Pure ASGI middleware: duration, sizes and in-flight count of every HTTP request.

    Records ``asyncperf_http_server_request_duration_seconds`` (and body sizes) by
    method, route template and status class. The duration runs from the call to the
    last body message sent. It never buffers and never builds Request objects.

    Args:
        app: The ASGI app to wrap.
        monitor: Where to record (a new :class:`PerformanceMonitor` by default).
        lifespan: Run the monitor's background probes for the app's lifespan.

    Example:
        >>> from starlette.applications import Starlette
        >>> monitor = PerformanceMonitor()
        >>> app = Starlette()
        >>> app.add_middleware(monitor.asgi_middleware)
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        monitor: PerformanceMonitor | None = None,
        lifespan: bool = True,
    ) -> None:
        self.app = app
        self.monitor = monitor if monitor is not None else PerformanceMonitor()
        self.lifespan = lifespan
        self._active = self.monitor.http_active._only()
        self._series: dict[tuple[int, str, Any, str, int], HttpSeries] = {}
        self._max_cached = 4 * self.monitor.registry.max_label_sets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan" and self.lifespan:
                await self._lifespan(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        active = self._active
        active.value += 1
        start = perf_counter()
        entry_root = scope.get("root_path", "")
        method = scope["method"]
        status = 500
        sent = 0

        async def timed_send(message: Message) -> None:
            nonlocal status, sent
            kind = message["type"]
            if kind == "http.response.body":
                sent += len(message.get("body", b""))
            elif kind == "http.response.start":
                status = message["status"]
            await send(message)

        # A GET rarely has a body: not wrapping receive saves a closure per request.
        counter = None if method in _BODYLESS else _ReceiveCounter(receive)
        # OpenTelemetry spans: one None check when no export is set up.
        otel = self.monitor.otel
        span = None if otel is None or SKIP in scope else otel.start_http_span(scope)
        if span is not None:
            send = span.wrap_send(send)
        try:
            await self.app(scope, receive if counter is None else counter, timed_send)
        except BaseException as exc:
            if span is not None:
                span.failed(exc)
            raise
        finally:
            duration = perf_counter() - start
            active.value -= 1
            if SKIP not in scope:
                if "route" not in scope and status != 404:
                    _route_before_routing(scope)
                # One dict lookup per request: the matched route (by identity: routes
                # live as long as the app and are unhashable), the mount prefixes,
                # method and status map straight to the series to record into.
                key = (id(scope.get("route")), entry_root, scope.get("root_path"), method, status)
                series = self._series.get(key)
                if series is None:
                    series = self._resolve(scope, key)
                series.record(duration, sent, 0 if counter is None else counter.received)
            if span is not None:
                span.end(route_template(scope, entry_root), status, skipped=SKIP in scope)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the monitor's probes from startup until the app reports its shutdown."""
        monitor = self.monitor
        async with anyio.create_task_group() as group:
            started = not monitor.running
            if started:
                await group.start(monitor.run)

            async def lifespan_send(message: Message) -> None:
                if started and message["type"].startswith("lifespan.shutdown"):
                    await monitor.stop()  # before the server is told it may exit
                await send(message)

            await self.app(scope, receive, lifespan_send)
            if started:
                await monitor.stop()

    def _resolve(self, scope: Scope, key: tuple[int, str, Any, str, int]) -> HttpSeries:
        _, entry_root, _, method, status = key
        series = self.monitor.series(method, route_template(scope, entry_root), status)
        if len(self._series) < self._max_cached:
            self._series[key] = series
        return series


_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS"})


class _ReceiveCounter:
    """Wraps ``receive`` to count request body bytes."""

    __slots__ = ("receive", "received")

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.received = 0

    async def __call__(self) -> Message:
        message = await self.receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
        return message


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: str,
    extra: list[tuple[bytes, bytes]] | None = None,
    *,
    head: bool = False,
) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


class MonitorApp:
    """The ASGI app behind :meth:`PerformanceMonitor.asgi_app`.

    Serves ``/metrics`` (Prometheus text; OpenMetrics when the ``Accept`` header asks),
    ``/snapshot.json`` and ``/`` (the dashboard). Mount it where you like; requests to
    it are not timed by :class:`TimingMiddleware`.
    """

    def __init__(
        self,
        monitor: PerformanceMonitor,
        *,
        dashboard: bool = True,
        token: str | None = None,
        guard: Callable[[dict[str, Any]], bool | Awaitable[bool]] | None = None,
        refresh_seconds: float = 2.0,
    ) -> None:
        self.monitor = monitor
        self.dashboard = dashboard
        self.token = token
        self.guard = guard
        self.refresh_seconds = refresh_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        scope[SKIP] = True
        head = scope["method"] == "HEAD"
        if scope["method"] not in ("GET", "HEAD"):
            await _respond(
                send, 405, b"method not allowed\n", "text/plain", [(b"allow", b"GET, HEAD")]
            )
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if not await self._allowed(scope, headers, query, send):
            return
        root, path = scope.get("root_path", ""), scope["path"]
        if root and path.startswith(root):
            path = path[len(root) :]
        if path == "/metrics":
            openmetrics = "application/openmetrics-text" in headers.get("accept", "")
            text = self.monitor.prometheus_text(openmetrics=openmetrics)
            kind = OPENMETRICS_CONTENT_TYPE if openmetrics else PROMETHEUS_CONTENT_TYPE
            await _respond(send, 200, text.encode(), kind, head=head)
        elif path == "/snapshot.json":
            body = orjson.dumps(self.monitor.snapshot())
            await _respond(send, 200, body, "application/json", head=head)
        elif path in ("", "/") and self.dashboard:
            if path == "":
                qs = scope.get("query_string", b"")
                location = (root + "/" + ("?" + qs.decode("latin-1") if qs else "")).encode()
                await _respond(send, 307, b"", "text/plain", [(b"location", location)])
                return
            html = dashboard_html(refresh_seconds=self.refresh_seconds).encode()
            csp = [(b"content-security-policy", DASHBOARD_CSP.encode())]
            await _respond(send, 200, html, "text/html; charset=utf-8", csp, head=head)
        else:
            await _respond(send, 404, b"not found\n", "text/plain", head=head)

    async def _allowed(
        self, scope: Scope, headers: dict[str, str], query: dict[str, list[str]], send: Send
    ) -> bool:
        if self.token is not None:
            offered = ""
            auth = headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                offered = auth[7:].strip()
            elif query.get("token"):
                offered = query["token"][0]
            if not hmac.compare_digest(offered.encode(), self.token.encode()):
                await _respond(
                    send, 401, b"unauthorized\n", "text/plain", [(b"www-authenticate", b"Bearer")]
                )
                return False
        if self.guard is not None:
            verdict = self.guard(dict(scope))
            if inspect.isawaitable(verdict):
                verdict = await verdict
            if not verdict:
                await _respond(send, 403, b"forbidden\n", "text/plain")
                return False
        return True
