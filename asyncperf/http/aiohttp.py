"""The response cache for aiohttp: ``response_cache_middleware(rc)``.

Same rules and options as the ASGI middleware (both drive one
:class:`~asyncperf.http.ResponseCache`). Buffered ``web.Response`` bodies are validated,
stored and encoded; ``StreamResponse`` and ``FileResponse`` pass through untouched.

Example:
    >>> from aiohttp import web
    >>> from asyncperf import Cache
    >>> from asyncperf.http import ResponseCache
    >>> from asyncperf.http.aiohttp import response_cache_middleware
    >>> app = web.Application(middlewares=[response_cache_middleware(ResponseCache(Cache()))])
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

try:
    from aiohttp import web
    from multidict import CIMultiDict
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "asyncperf.http.aiohttp needs aiohttp: pip install 'asyncperf[aiohttp]'"
    ) from exc

from ._cache import ResponseCache
from ._route import RoutePolicy, route_policy_of
from ._types import (
    BYPASS,
    FROM_CACHE,
    MISS,
    REVALIDATE,
    SAFE_METHODS,
    SERVER_ERRORS,
    Lookup,
    Reply,
    RequestView,
)

__all__ = ["response_cache_middleware"]

logger = logging.getLogger("asyncperf.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


def request_view(request: web.Request) -> RequestView:
    """Return the cache's view of an aiohttp request."""
    headers: dict[str, str] = {}
    for raw_name, value in request.headers.items():
        name = raw_name.lower()
        previous = headers.get(name)
        headers[name] = value if previous is None else f"{previous}, {value}"
    path, _, query = request.raw_path.partition("?")
    return RequestView(  # method, scheme, host, path, query, headers, params
        request.method.upper(),
        request.scheme,
        request.host,
        path or "/",
        query,
        headers,
        dict(request.match_info),
    )


def _to_response(reply: Reply) -> web.Response:
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in reply.headers:
        headers.add(name, value)
    empty = reply.status in (204, 304)
    if empty:
        headers.popall("content-length", None)
    # aiohttp leaves the body out for HEAD (and keeps this Content-Length).
    return web.Response(status=reply.status, body=None if empty else reply.body, headers=headers)


def _response_headers(response: web.StreamResponse) -> list[tuple[str, str]]:
    headers = [(name.lower(), value) for name, value in response.headers.items()]
    headers.extend(
        ("set-cookie", morsel.output(header="")[1:]) for morsel in response.cookies.values()
    )
    return headers


def _buffered_body(response: web.StreamResponse) -> bytes | None:
    """Return the whole body of a not-yet-sent ``web.Response``, else ``None`` (streamed)."""
    if not isinstance(response, web.Response) or response.prepared or response.compression:
        return None
    body = response.body
    if body is None:
        return b""
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    return None


def _mark(
    rc: ResponseCache,
    response: web.StreamResponse,
    label: str,
    *,
    cacheable: bool,
    route: RoutePolicy | None = None,
) -> None:
    if response.prepared:
        return
    headers = rc.pass_through_headers(
        _response_headers(response), label, cacheable=cacheable, route=route
    )
    response.headers.clear()
    for name, value in headers:
        if name != "set-cookie":  # kept in response.cookies, which aiohttp writes itself
            response.headers.add(name, value)


def response_cache_middleware(response_cache: ResponseCache) -> Middleware:
    """Return an aiohttp middleware serving GET and HEAD from ``response_cache``.

    Args:
        response_cache: The cache and its options (shared with any ASGI app).

    Returns:
        A new-style aiohttp middleware (``__middleware_version__ = 1``).

    Raises:
        TypeError: ``response_cache`` is not a ResponseCache.
    """
    if not isinstance(response_cache, ResponseCache):
        raise TypeError(
            f"response_cache must be a ResponseCache, got {type(response_cache).__name__}"
        )
    rc = response_cache

    async def response_cache_middleware(
        request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        view = request_view(request)
        method = view.method
        if method not in ("GET", "HEAD"):
            rc.count_bypass()
            if method in SAFE_METHODS:
                response = await handler(request)
            else:
                try:
                    response = await handler(request)
                except web.HTTPException as exc:
                    await rc.invalidate_after_unsafe(view, exc.status, exc.headers.items())
                    raise
                await rc.invalidate_after_unsafe(view, response.status, response.headers.items())
            _mark(rc, response, BYPASS, cacheable=False)
            return response
        route = route_policy_of(request.match_info.handler)
        if route is not None and not route.enabled:
            rc.count_bypass()
            response = await handler(request)
            _mark(rc, response, BYPASS, cacheable=False)
            return response
        lookup = rc.lookup_now(view)
        if not isinstance(lookup, Lookup):
            lookup = await rc.lookup(view, lookup)
        if lookup.action in FROM_CACHE:
            reply = rc.cached_reply_now(view, lookup) or await rc.cached_reply(view, lookup)
            assert reply is not None
            answer = _to_response(reply)
            if rc.revalidates_after(lookup):
                # Send the stale answer first, then revalidate within this request.
                await answer.prepare(request)
                await answer.write_eof()
                try:
                    await _fetch(rc, request, handler, view, lookup, route, background=True)
                except Exception:
                    rc.count_error()
                    logger.warning(
                        "background revalidation of %s failed", view.target, exc_info=True
                    )
                finally:
                    rc.release_revalidation(lookup)
            return answer
        if lookup.action == BYPASS:
            response = await handler(request)
            _mark(rc, response, BYPASS, cacheable=False)
            return response
        try:
            result = await _fetch(rc, request, handler, view, lookup, route, background=False)
        finally:
            await rc.release(lookup)  # requests waiting on this URL look again (or ask the app)
        assert result is not None
        return result

    setattr(response_cache_middleware, "__middleware_version__", 1)  # noqa: B010
    return response_cache_middleware


async def _answer_stale(
    rc: ResponseCache, view: RequestView, lookup: Lookup, cache_status: str
) -> web.Response:
    return _to_response(await rc.stale_instead(view, lookup, cache_status))


async def _fetch(
    rc: ResponseCache,
    request: web.Request,
    handler: Handler,
    view: RequestView,
    lookup: Lookup,
    route: RoutePolicy | None,
    *,
    background: bool,
) -> web.StreamResponse | None:
    """Ask the handler (conditionally when revalidating) and answer from its response."""
    entry = lookup.entry
    validating = entry is not None and (lookup.action == REVALIDATE or background)
    forwarded = request
    if validating:
        assert entry is not None
        headers: CIMultiDict[str] = CIMultiDict(request.headers)
        headers.popall("If-None-Match", None)
        headers.popall("If-Modified-Since", None)
        for name, value in rc.revalidation_headers(entry):
            headers.add(name, value)
        forwarded = request.clone(headers=headers)
    request_time = rc.now()
    can_replace = lookup.stale_if_error and entry is not None and not background
    try:
        response = await handler(forwarded)
    except web.HTTPException as exc:
        if validating and exc.status == 304:
            response = exc
        elif can_replace and exc.status in SERVER_ERRORS:
            return await _answer_stale(
                rc, view, lookup, f"asyncperf; fwd=stale; fwd-status={exc.status}"
            )
        else:
            raise
    except Exception:
        if can_replace:
            return await _answer_stale(rc, view, lookup, "asyncperf; fwd=stale; detail=app-error")
        raise
    response_time = rc.now()
    status = response.status
    if validating and status == 304:
        reply = await rc.not_modified(
            view,
            lookup,
            headers=_response_headers(response),
            route=route,
            request_time=request_time,
            response_time=response_time,
            background=background,
        )
        return None if reply is None else _to_response(reply)
    if can_replace and status in SERVER_ERRORS:
        return await _answer_stale(rc, view, lookup, f"asyncperf; fwd=stale; fwd-status={status}")
    if validating and view.method == "HEAD":  # a HEAD that revalidated a stored GET
        await rc.update_from_head(
            view,
            lookup,
            status=status,
            headers=_response_headers(response),
            route=route,
            request_time=request_time,
            response_time=response_time,
        )
    body = _buffered_body(response) if view.method == "GET" else None
    if body is None or len(body) > rc.max_body_size:
        if not background:
            _mark(rc, response, MISS, cacheable=True, route=route)
        return response
    reply = await rc.complete(
        view,
        lookup,
        status=status,
        headers=_response_headers(response),
        body=body,
        route=route,
        request_time=request_time,
        response_time=response_time,
    )
    if background:
        await rc.store(reply)
        return None
    await rc.store_later(reply)  # aiohttp sends the response after we return
    return _to_response(reply)
