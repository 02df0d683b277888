"""The aiohttp middleware and routes on aiohttp's test server, driven by aiohttp's client."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from asyncperf.monitor import PerformanceMonitor
from tests.monitor._support import samples


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiohttp runs on asyncio


async def test_aiohttp_middleware_and_routes() -> None:
    monitor = PerformanceMonitor(loop_lag_interval=0.01)

    async def item(request: web.Request) -> web.Response:
        return web.Response(text="x" * 50)

    async def missing(request: web.Request) -> web.Response:
        raise web.HTTPNotFound()

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("boom")

    app = web.Application(middlewares=[monitor.aiohttp_middleware()])
    app.router.add_get("/items/{item_id}", item)
    app.router.add_post("/items/{item_id}", item)
    app.router.add_get("/missing", missing)
    app.router.add_get("/boom", boom)
    monitor.add_aiohttp_routes(app, "/_asyncperf", token="t")
    async with TestClient(TestServer(app)) as client:
        assert monitor.running  # started by the app's cleanup_ctx
        for index in range(4):
            assert (await client.get(f"/items/{index}")).status == 200
        assert (await client.post("/items/1", data=b"z" * 20)).status == 200
        assert (await client.get("/missing")).status == 404
        assert (await client.get("/nowhere")).status == 404
        assert (await client.get("/boom")).status == 500
        assert (await client.get("/_asyncperf/metrics")).status == 401
        response = await client.get("/_asyncperf/metrics", headers={"Authorization": "Bearer t"})
        text = await response.text()
        page = await client.get("/_asyncperf/?token=t")
        assert "<canvas" in await page.text()
        snapshot = await (await client.get("/_asyncperf/snapshot.json?token=t")).json()
        assert snapshot["http"]["overall"]["count"] == 8
    assert not monitor.running
    parsed = samples(text)
    key = "asyncperf_http_server_request_duration_seconds_count"

    def count(method: str, route: str, status_class: str) -> float:
        labels = {("method", method), ("route", route), ("status_class", status_class)}
        return parsed.get((key, frozenset(labels)), 0.0)

    assert count("GET", "/items/{item_id}", "2xx") == 4
    assert count("POST", "/items/{item_id}", "2xx") == 1
    assert count("GET", "/missing", "4xx") == 1
    assert count("GET", "/boom", "5xx") == 1
    assert count("GET", "unmatched", "4xx") == 1
    assert not any("_asyncperf" in dict(labels).get("route", "") for _, labels in parsed)
    post = frozenset({("method", "POST"), ("route", "/items/{item_id}"), ("status_class", "2xx")})
    assert parsed[("asyncperf_http_server_request_body_size_bytes_sum", post)] == 20
    assert parsed[("asyncperf_http_server_response_body_size_bytes_sum", post)] == 50


async def test_response_cache_hits_are_recorded_under_their_route() -> None:
    from asyncperf import Cache
    from asyncperf.http import ResponseCache
    from asyncperf.http.aiohttp import response_cache_middleware

    monitor = PerformanceMonitor(loop_lag_interval=None)
    rc = ResponseCache(Cache())
    monitor.watch(rc, name="responses")  # also watches the namespace view it reads through

    async def product(request: web.Request) -> web.Response:
        return web.Response(
            text=f"product {request.match_info['product_id']}",
            headers={"cache-control": "max-age=60"},
        )

    # The timing middleware first: outside the response cache, it sees every hit.
    app = web.Application(middlewares=[monitor.aiohttp_middleware(), response_cache_middleware(rc)])
    app.router.add_get("/products/{product_id}", product)
    async with TestClient(TestServer(app)) as client:
        for index in range(200):
            assert (await client.get(f"/products/{index % 10}")).status == 200
    assert rc.statistics().hits == 190
    parsed = samples(monitor.prometheus_text())
    route = frozenset(
        {("method", "GET"), ("route", "/products/{product_id}"), ("status_class", "2xx")}
    )
    assert parsed[("asyncperf_http_server_request_duration_seconds_count", route)] == 200
    assert not any(
        dict(labels).get("route") == "unmatched"
        for name, labels in parsed
        if name == "asyncperf_http_server_request_duration_seconds_count"
    )
    view = frozenset({("cache", "responses"), ("namespace", "http")})
    assert parsed[("asyncperf_cache_hits_total", view)] == 190
