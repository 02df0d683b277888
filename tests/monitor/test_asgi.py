"""The timing middleware and the monitor app on a real uvicorn server, driven by httpx."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from asyncperf.monitor import PerformanceMonitor, TimingMiddleware
from tests.monitor._support import families, samples, serve


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn runs on asyncio


COUNT = "asyncperf_http_server_request_duration_seconds_count"


def count(parsed: dict, method: str, route: str, status_class: str) -> float:
    key = frozenset({("method", method), ("route", route), ("status_class", status_class)})
    return parsed.get((COUNT, key), 0.0)


def starlette_app(monitor: PerformanceMonitor, gate: asyncio.Event | None = None) -> Starlette:
    async def item(request: Request) -> Response:
        return PlainTextResponse("x" * 100)

    async def upload(request: Request) -> Response:
        body = await request.body()
        return PlainTextResponse(str(len(body)))

    async def boom(request: Request) -> Response:
        raise RuntimeError("boom")

    async def slow(request: Request) -> Response:
        assert gate is not None
        await gate.wait()
        return PlainTextResponse("done")

    inner = Starlette(routes=[Route("/users/{user_id}", item)])
    app = Starlette(
        routes=[
            Route("/items/{item_id:int}", item),
            Route("/upload", upload, methods=["POST"]),
            Route("/boom", boom),
            Route("/slow", slow),
            Mount("/api", app=inner),
            Mount("/_asyncperf", app=monitor.asgi_app()),
        ]
    )
    app.add_middleware(monitor.asgi_middleware)
    return app


async def test_middleware_times_requests_by_route_template_on_a_real_server() -> None:
    monitor = PerformanceMonitor(loop_lag_interval=0.01)
    gate = asyncio.Event()
    app = starlette_app(monitor, gate)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        assert monitor.running  # the lifespan started the probes
        for index in range(5):
            assert (await client.get(f"/items/{index}")).status_code == 200
        await client.get("/api/users/7")
        await client.get("/no/such/path/123")
        assert (await client.get("/boom")).status_code == 500
        assert (await client.post("/upload", content=b"a" * 300)).text == "300"
        slow = asyncio.create_task(client.get("/slow"))
        while monitor.http_active.value < 1:
            await asyncio.sleep(0.01)
        snapshot = (await client.get("/_asyncperf/snapshot.json")).json()
        assert snapshot["http"]["in_flight"] == 2  # /slow and the snapshot request
        gate.set()
        assert (await slow).status_code == 200
        response = await client.get("/_asyncperf/metrics")
    assert not monitor.running  # stopped with the lifespan
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    parsed = samples(response.text)
    assert count(parsed, "GET", "/items/{item_id}", "2xx") == 5
    assert count(parsed, "GET", "/api/users/{user_id}", "2xx") == 1
    assert count(parsed, "GET", "unmatched", "4xx") == 1
    assert count(parsed, "GET", "/boom", "5xx") == 1
    assert count(parsed, "POST", "/upload", "2xx") == 1
    assert count(parsed, "GET", "/slow", "2xx") == 1
    # the monitor's own endpoints are not timed, raw paths never become labels
    assert not any("_asyncperf" in dict(labels).get("route", "") for _, labels in parsed)
    assert not any("/items/3" in dict(labels).get("route", "") for _, labels in parsed)
    upload = frozenset({("method", "POST"), ("route", "/upload"), ("status_class", "2xx")})
    assert parsed[("asyncperf_http_server_request_body_size_bytes_sum", upload)] == 300
    assert parsed[("asyncperf_http_server_response_body_size_bytes_sum", upload)] == 3
    assert parsed[("asyncperf_http_server_active_requests", frozenset())] == 1  # the scrape
    assert families(response.text)["asyncperf_http_server_request_duration_seconds"] == "histogram"


async def test_fastapi_and_the_explicit_middleware_class() -> None:
    monitor = PerformanceMonitor(loop_lag_interval=None)
    api = FastAPI()

    @api.get("/orders/{order_id}")
    async def order(order_id: int) -> dict[str, int]:
        return {"id": order_id}

    app = TimingMiddleware(api, monitor=monitor)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        for index in range(3):
            assert (await client.get(f"/orders/{index}")).json() == {"id": index}
    parsed = samples(monitor.prometheus_text())
    assert count(parsed, "GET", "/orders/{order_id}", "2xx") == 3


async def test_token_guard_and_dashboard_routes() -> None:
    monitor = PerformanceMonitor(loop_lag_interval=None)

    async def deny_bots(scope: dict) -> bool:
        return dict(scope["headers"]).get(b"user-agent") != b"bot"

    app = Starlette(routes=[Mount("/m", app=monitor.asgi_app(token="s3cret", guard=deny_bots))])
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/m/metrics")).status_code == 401
        assert (await client.get("/m/metrics?token=wrong")).status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        assert (await client.get("/m/metrics", headers=auth)).status_code == 200
        bot = {**auth, "User-Agent": "bot"}
        assert (await client.get("/m/metrics", headers=bot)).status_code == 403
        page = await client.get("/m/?token=s3cret")
        assert page.status_code == 200
        assert "<canvas" in page.text
        assert "http://" not in page.text
        assert "https://" not in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        redirect = await client.get("/m?token=s3cret")
        assert redirect.status_code == 307
        assert redirect.headers["location"].endswith("/m/?token=s3cret")
        assert (await client.get("/m/snapshot.json?token=s3cret")).json()["version"] == 1
        assert (await client.get("/m/nothing?token=s3cret")).status_code == 404
        assert (await client.post("/m/metrics?token=s3cret")).status_code == 405
        om = await client.get(
            "/m/metrics", headers={**auth, "Accept": "application/openmetrics-text"}
        )
        assert om.text.endswith("# EOF\n")


async def test_dashboard_can_be_left_off() -> None:
    monitor = PerformanceMonitor(loop_lag_interval=None)
    app = Starlette(routes=[Mount("/m", app=monitor.asgi_app(dashboard=False))])
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/m/")).status_code == 404
        assert (await client.get("/m/metrics")).status_code == 200


async def test_unknown_methods_and_label_cap_stay_bounded() -> None:
    monitor = PerformanceMonitor(loop_lag_interval=None, max_label_sets=3)
    for index in range(10):
        monitor.record_request("GET", f"/route/{index}", 200, 0.001)
    monitor.record_request("BREW", "/pot", 418, 0.001)
    routes = {labels[1] for labels, _ in monitor.http_duration.children()}
    assert "other" in routes
    assert len(list(monitor.http_duration.children())) == 4
    assert monitor.http_duration.folded >= 7


async def test_response_cache_hits_are_recorded_under_their_route() -> None:
    from asyncperf import Cache
    from asyncperf.http import ResponseCache, ResponseCacheMiddleware

    async def product(request: Request) -> Response:
        return PlainTextResponse(
            f"product {request.path_params['product_id']}", headers={"cache-control": "max-age=60"}
        )

    monitor = PerformanceMonitor(loop_lag_interval=None)
    rc = ResponseCache(Cache())
    monitor.watch(rc, name="responses")  # also watches the namespace view it reads through
    app = Starlette(routes=[Route("/products/{product_id}", product)])
    app.add_middleware(ResponseCacheMiddleware, response_cache=rc)
    app.add_middleware(monitor.asgi_middleware)  # added last: outside the response cache
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        for index in range(200):
            assert (await client.get(f"/products/{index % 10}")).status_code == 200
        await client.get("/no/such/page")
    assert rc.statistics().hits == 190  # the router never ran for these
    parsed = samples(monitor.prometheus_text())
    assert count(parsed, "GET", "/products/{product_id}", "2xx") == 200
    assert count(parsed, "GET", "unmatched", "2xx") == 0
    assert count(parsed, "GET", "unmatched", "4xx") == 1
    # The Caches table counts what the response cache served (its namespace view's row).
    view = frozenset({("cache", "responses"), ("namespace", "http")})
    assert parsed[("asyncperf_cache_hits_total", view)] == rc.statistics().hits
    snapshot_caches = {c["name"]: c for c in monitor.snapshot()["caches"]}
    assert snapshot_caches["responses"]["statistics"]["hits"] == 190
