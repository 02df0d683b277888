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
