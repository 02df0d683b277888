"""aiohttp glue: a timing middleware and the metrics/snapshot/dashboard routes."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from time import perf_counter
from typing import Any

try:
    from aiohttp import web
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the aiohttp integration needs aiohttp: pip install 'asyncperf[aiohttp]'"
    ) from exc

import orjson

from ._asgi import DASHBOARD_CSP
from ._dashboard import dashboard_html
from ._exposition import OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE
from ._monitor import UNMATCHED_ROUTE, PerformanceMonitor

__all__ = ["AiohttpMiddleware", "add_routes"]

# aiohttp >= 3.12 wants typed keys for request storage (a plain str warns).
SKIP: Any = (
    web.RequestKey("asyncperf_skip", bool) if hasattr(web, "RequestKey") else "asyncperf.skip"
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _route_template(request: web.Request) -> str:
    try:
        resource = request.match_info.route.resource
    except AttributeError:
        return UNMATCHED_ROUTE
    if resource is None:
        return UNMATCHED_ROUTE
    return resource.canonical


class AiohttpMiddleware:
    """Times every request by method, route template (``resource.canonical``) and status.

    The duration runs until the handler returns (aiohttp sends a plain ``Response``
    after the middleware chain; a streamed response is timed to its end).
    """

    # A new-style middleware for aiohttp 3.x, without the decorator 4.x deprecates.
    __middleware_version__ = 1

    def __init__(self, monitor: PerformanceMonitor) -> None:
        self.monitor = monitor
        self._active = monitor.http_active._only()

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        active = self._active
        active.value += 1
        start = perf_counter()
        status = 500
        sent = 0
        # OpenTelemetry spans: one None check when no export is set up.
        otel = self.monitor.otel
        span = None if otel is None else otel.start_aiohttp_span(request)
        try:
            response = await handler(request)
            status = response.status
            length = response.content_length
            sent = length if length is not None else int(getattr(response, "body_length", 0))
            if span is not None:
                span.keep_fields(response.headers)
            return response
        except web.HTTPException as exc:
            status = exc.status
            sent = exc.content_length or 0
            raise
        except BaseException as exc:
            if span is not None:
                span.failed(exc)
            raise
        finally:
            duration = perf_counter() - start
            active.value -= 1
            route = _route_template(request)
            if SKIP not in request:
                series = self.monitor.series(request.method, route, status)
                series.record(duration, sent, request.content_length or 0)
            if span is not None:
                span.end(route, status, skipped=SKIP in request)


def add_routes(
    monitor: PerformanceMonitor,
    app: web.Application,
    prefix: str,
    *,
    dashboard: bool,
    token: str | None,
    guard: Callable[[web.Request], bool | Awaitable[bool]] | None,
    background: bool,
    refresh_seconds: float,
) -> None:
    """Register the monitor's routes under ``prefix`` (see ``add_aiohttp_routes``)."""
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""

    async def allowed(request: web.Request) -> None:
        request[SKIP] = True
        if token is not None:
            auth = request.headers.get("Authorization", "")
            offered = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
            offered = offered or request.query.get("token", "")
            if not hmac.compare_digest(offered.encode(), token.encode()):
                raise web.HTTPUnauthorized(headers={"WWW-Authenticate": "Bearer"})
        if guard is not None:
            verdict = guard(request)
            if inspect.isawaitable(verdict):
                verdict = await verdict
            if not verdict:
                raise web.HTTPForbidden()

    async def metrics(request: web.Request) -> web.Response:
        await allowed(request)
        openmetrics = "application/openmetrics-text" in request.headers.get("Accept", "")
        text = monitor.prometheus_text(openmetrics=openmetrics)
        kind = OPENMETRICS_CONTENT_TYPE if openmetrics else PROMETHEUS_CONTENT_TYPE
        return web.Response(
            body=text.encode(), headers={"Content-Type": kind, "Cache-Control": "no-store"}
        )

    async def snapshot(request: web.Request) -> web.Response:
        await allowed(request)
        return web.Response(
            body=orjson.dumps(monitor.snapshot()),
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    async def page(request: web.Request) -> web.Response:
        await allowed(request)
        return web.Response(
            text=dashboard_html(refresh_seconds=refresh_seconds),
            content_type="text/html",
            headers={"Content-Security-Policy": DASHBOARD_CSP, "Cache-Control": "no-store"},
        )

    async def redirect(request: web.Request) -> web.StreamResponse:
        await allowed(request)
        query = f"?{request.query_string}" if request.query_string else ""
        raise web.HTTPTemporaryRedirect(f"{prefix}/{query}")

    app.router.add_get(f"{prefix}/metrics", metrics)
    app.router.add_get(f"{prefix}/snapshot.json", snapshot)
    if dashboard:
        app.router.add_get(f"{prefix}/", page)
        if prefix:
            app.router.add_get(prefix, redirect)

    if background:

        async def run_probes(_app: web.Application) -> AsyncIterator[None]:
            if monitor.running:
                yield
                return
            task = asyncio.create_task(monitor.run())
            yield
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        app.cleanup_ctx.append(run_probes)
