"""The OpenTelemetry export: same numbers as the registry, spans, and the optional import.

Metrics are read with the SDK's ``InMemoryMetricReader``, spans with its
``InMemorySpanExporter``; the traffic is real (a Cache, a Starlette app on uvicorn or
through httpx's ASGI transport, the loop-lag probe).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from asyncperf import Cache, ConfigurationError, MemoryStore
from asyncperf.http import ResponseCache, ResponseCacheMiddleware
from asyncperf.monitor import OpenTelemetryExport, PerformanceMonitor
from asyncperf.monitor._otel import cache_status, key_hash, otel_name
from tests.monitor._support import samples, serve


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn runs on asyncio


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def monitor() -> PerformanceMonitor:
    return PerformanceMonitor(loop_lag_interval=None, cache_probe_interval=None)


@pytest.fixture
def export(
    monitor: PerformanceMonitor, reader: InMemoryMetricReader, spans: InMemorySpanExporter
) -> Iterator[OpenTelemetryExport]:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider(metric_readers=[reader])
    export = monitor.instrument_otel(meter_provider, tracer_provider=tracer_provider)
    yield export
    export.close()
    meter_provider.shutdown()
    tracer_provider.shutdown()


def metrics(reader: InMemoryMetricReader) -> dict[str, Any]:
    """Collect now: {OpenTelemetry name: the SDK's Metric}."""
    data = reader.get_metrics_data()
    assert data is not None
    return {
        metric.name: metric
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


def points(metric: Any) -> list[Any]:
    return list(metric.data.data_points)


def by_attributes(metric: Any) -> dict[frozenset[tuple[str, Any]], Any]:
    return {frozenset(p.attributes.items()): p for p in points(metric)}


# -- the import stays optional -----------------------------------------------------------


def test_importing_the_monitor_does_not_import_opentelemetry() -> None:
    code = (
        "import sys, asyncperf.monitor; from asyncperf.monitor import PerformanceMonitor; "
        "m = PerformanceMonitor(); m.record_request('GET', '/x', 200, 0.01); m.prometheus_text(); "
        "print(sorted(n for n in sys.modules if n.startswith('opentelemetry')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_missing_opentelemetry_names_the_extra(
    monitor: PerformanceMonitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in sys.modules if n.startswith("opentelemetry")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # import raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'asyncperf\[otel\]'"):
        monitor.instrument_otel()
    assert monitor.otel is None
    monitor.record_request("GET", "/x", 200, 0.01)  # recording still works without it


# -- numbers agree with the registry -----------------------------------------------------


async def test_cache_counters_and_gauges_match_the_prometheus_text(
    monitor: PerformanceMonitor, export: OpenTelemetryExport, reader: InMemoryMetricReader
) -> None:
    cache = Cache(MemoryStore(max_entries=100))
    monitor.watch(cache, name="users")  # after instrumenting: the new families get instruments
    for index in range(10):
        await cache.get_or_set(f"user:{index % 3}", lambda: {"id": 1}, ttl=60)
    await cache.get("absent")
    found = metrics(reader)
    parsed = samples(monitor.prometheus_text())
    labels = frozenset({("cache", "users"), ("namespace", "")})
    attributes = frozenset({("asyncperf.cache.name", "users"), ("asyncperf.cache.namespace", "")})
    assert parsed[("asyncperf_cache_hits_total", labels)] == 7
    assert parsed[("asyncperf_cache_misses_total", labels)] == 4
    assert by_attributes(found["asyncperf.cache.hits"])[attributes].value == 7
    assert by_attributes(found["asyncperf.cache.misses"])[attributes].value == 4
    assert by_attributes(found["asyncperf.cache.hit_ratio"])[attributes].value == pytest.approx(
        parsed[("asyncperf_cache_hit_ratio", labels)]
    )
    assert found["asyncperf.cache.hits"].data.is_monotonic
    assert found["asyncperf.cache.store.entries"].unit == "{entry}"
    assert found["asyncperf.cache.load_time"].unit == "s"
    breaker = by_attributes(found["asyncperf.cache.breaker_state"])
    assert breaker[attributes | {("asyncperf.cache.breaker.state", "closed")}].value == 1


async def test_every_counter_and_gauge_is_exported_with_the_same_values(
    monitor: PerformanceMonitor, export: OpenTelemetryExport, reader: InMemoryMetricReader
) -> None:
    cache = Cache(MemoryStore())
    monitor.watch(cache)
    await cache.set("a", 1)
    await cache.get("a")
    await cache.get("b")
    monitor.queries.record("SELECT * FROM t WHERE id = 1", 0.01, ValueError("x"))
    found = metrics(reader)
    volatile = ("asyncperf_python_gc_",)  # the collector may run between the two reads
    for family in monitor.collect():
        if family.type not in ("counter", "gauge") or family.name.startswith(volatile):
            continue
        name, _ = otel_name(family.name)
        assert name in found, f"{family.name} -> {name} not exported"
        ours = Counter(sample.value for sample in family.samples)
        theirs = Counter(point.value for point in points(found[name]))
        assert ours == theirs, family.name


async def test_http_histograms_match_the_registry_on_a_real_server(
    monitor: PerformanceMonitor, export: OpenTelemetryExport, reader: InMemoryMetricReader
) -> None:
    async def item(request: Request) -> Response:
        created = request.query_params.get("created") == "1"
        return PlainTextResponse("x" * 100, status_code=201 if created else 200)

    async def upload(request: Request) -> Response:
        return PlainTextResponse(str(len(await request.body())))

    async def boom(request: Request) -> Response:
        raise RuntimeError("boom")

    app = Starlette(
        routes=[
            Route("/items/{item_id:int}", item),
            Route("/upload", upload, methods=["POST"]),
            Route("/boom", boom),
            Mount("/_asyncperf", app=monitor.asgi_app()),
        ]
    )
    app.add_middleware(monitor.asgi_middleware)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        for index in range(30):
            await client.get(f"/items/{index}", params={"created": "1" if index % 3 == 0 else "0"})
        await client.post("/upload", content=b"y" * 5000)
        await client.get("/boom")
        await client.get("/missing")
        text = (await client.get("/_asyncperf/metrics")).text
    found = metrics(reader)
    duration = found["http.server.request.duration"]
    assert duration.unit == "s"
    # OpenTelemetry keeps the exact status; the registry its class: sum per class.
    merged: dict[tuple[str, str, str], tuple[int, float, list[int]]] = {}
    for point in points(duration):
        attributes = point.attributes
        assert list(point.explicit_bounds) == list(monitor.http_duration.bounds)
        key = (
            attributes["http.request.method"],
            attributes.get("http.route", "unmatched"),
            f"{attributes['http.response.status_code'] // 100}xx",
        )
        count, total, buckets = merged.get(key, (0, 0.0, [0] * len(point.bucket_counts)))
        merged[key] = (
            count + point.count,
            total + point.sum,
            [a + b for a, b in zip(buckets, point.bucket_counts, strict=True)],
        )
    registry = dict(monitor.http_duration.children())
    assert set(merged) == set(registry)
    assert ("GET", "/items/{item_id}", "2xx") in merged
    assert ("GET", "/boom", "5xx") in merged
    for key, (count, total, buckets) in merged.items():
        child = registry[key]
        assert count == child.count, key
        assert total == pytest.approx(child.sum), key
        assert buckets == child.counts, key
    parsed = samples(text)
    prometheus = frozenset(
        {("method", "GET"), ("route", "/items/{item_id}"), ("status_class", "2xx")}
    )
    items = merged[("GET", "/items/{item_id}", "2xx")][0]
    assert items == parsed[("asyncperf_http_server_request_duration_seconds_count", prometheus)]
    assert items == 30
    statuses = {
        point.attributes["http.response.status_code"]
        for point in points(duration)
        if point.attributes.get("http.route") == "/items/{item_id}"
    }
    assert statuses == {200, 201}
    boom = next(p for p in points(duration) if p.attributes.get("http.route") == "/boom")
    assert boom.attributes["error.type"] == "500"
    uploads = points(found["http.server.request.body.size"])
    assert [(p.count, p.sum) for p in uploads] == [(1, 5000)]
    responses = sum(p.count for p in points(found["http.server.response.body.size"]))
    assert responses == sum(child.count for _, child in monitor.http_response_size.children())


async def test_loop_lag_matches_the_registry(
    reader: InMemoryMetricReader, spans: InMemorySpanExporter
) -> None:
    monitor = PerformanceMonitor(
        loop_lag_interval=0.01, slow_callback_threshold=0.05, cache_probe_interval=None
    )
    export = monitor.instrument_otel(MeterProvider(metric_readers=[reader]), spans=False)
    async with monitor:
        await anyio.sleep(0.05)
        time.sleep(0.1)  # block the loop: a lag sample and a slow callback
        await anyio.sleep(0.05)
    found = metrics(reader)
    (lag,) = points(found["asyncperf.event_loop.lag"])
    child = monitor.loop_lag._only()
    assert lag.count == child.count
    assert lag.count > 3
    assert lag.sum == pytest.approx(child.sum)
    assert list(lag.bucket_counts) == child.counts
    assert lag.max >= 0.05
    (slow,) = points(found["asyncperf.event_loop.slow_callbacks"])
    assert slow.value == monitor.slow_callbacks.value
    assert slow.value >= 1
    assert export.tracer is None


async def test_statements_and_the_cache_probe_are_exported(
    monitor: PerformanceMonitor, export: OpenTelemetryExport, reader: InMemoryMetricReader
) -> None:
    monitor.queries.record("SELECT * FROM users WHERE id = 1", 0.004)
    monitor.queries.record("SELECT * FROM users WHERE id = 2", 0.006)
    monitor.queries.record("UPDATE users SET a = 1", 0.02, TimeoutError())
    cache = Cache(MemoryStore())
    monitor.watch(cache, name="c")
    await monitor.probe_caches()
    found = metrics(reader)
    db = by_attributes(found["db.client.operation.duration"])
    select = next(p for k, p in db.items() if ("db.operation.name", "SELECT") in k)
    assert select.count == 2
    assert select.sum == pytest.approx(0.01)
    assert select.attributes["db.system.name"] == "postgresql"
    update = next(p for k, p in db.items() if ("db.operation.name", "UPDATE") in k)
    assert update.attributes["error.type"] == "TimeoutError"
    (errors,) = points(found["asyncperf.db.client.operation.errors"])
    assert errors.value == 1
    assert errors.attributes["error.type"] == "TimeoutError"
    latency = by_attributes(found["asyncperf.cache.operation.duration"])
    hits = next(p for k, p in latency.items() if ("asyncperf.cache.status", "hit") in k)
    assert hits.count == monitor.cache_latency.labels("c", "get", "hit").count == 5


async def test_close_stops_the_export_and_allows_a_new_one(
    monitor: PerformanceMonitor, reader: InMemoryMetricReader
) -> None:
    provider = MeterProvider(metric_readers=[reader])
    export = monitor.instrument_otel(provider, spans=False)
    with pytest.raises(ConfigurationError, match="already exported"):
        monitor.instrument_otel(provider)
    monitor.record_request("GET", "/a", 200, 0.01)
    export.close()
    assert monitor.otel is None
    assert monitor.queries.mirror is None
    monitor.record_request("GET", "/a", 200, 0.01)
    found = metrics(reader)
    (point,) = points(found["http.server.request.duration"])
    assert point.count == 1  # the second request came after close()
    assert "asyncperf.event_loop.slow_callbacks" not in found  # observable ones go quiet
    again = monitor.instrument_otel(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    assert monitor.otel is again


def test_component_statistics_are_exported_under_their_kind(
    monitor: PerformanceMonitor, export: OpenTelemetryExport, reader: InMemoryMetricReader
) -> None:
    class JobQueue:
        monitor_kind = "job_queue"

        def statistics(self) -> dict[str, Any]:
            return {"enqueued": 42, "pending": 3}

    monitor.watch(JobQueue())
    found = metrics(reader)
    (enqueued,) = points(found["asyncperf.job_queue.enqueued"])
    assert enqueued.value == 42
    assert dict(enqueued.attributes) == {"asyncperf.component.name": "job_queue"}
    assert points(found["asyncperf.job_queue.pending"])[0].value == 3


# -- spans -------------------------------------------------------------------------------


async def test_spans_carry_the_response_cache_decision_and_cache_operations(
    monitor: PerformanceMonitor, export: OpenTelemetryExport, spans: InMemorySpanExporter
) -> None:
    cache = Cache(MemoryStore())
    traced = export.trace_cache(cache, name="products")

    async def product(request: Request) -> Response:
        product_id = request.path_params["product_id"]
        value = await traced.get_or_set(f"product:{product_id}", lambda: "p", ttl=60)
        return PlainTextResponse(value, headers={"cache-control": "max-age=60"})

    async def fail(request: Request) -> Response:
        raise RuntimeError("boom")

    rc = ResponseCache(cache)
    app = Starlette(
        routes=[
            Route("/products/{product_id}", product),
            Route("/fail", fail),
            Mount("/_asyncperf", app=monitor.asgi_app()),
        ]
    )
    app.add_middleware(ResponseCacheMiddleware, response_cache=rc)
    app.add_middleware(monitor.asgi_middleware)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        first = await client.get("/products/7", headers={"traceparent": parent})
        second = await client.get("/products/7")
        assert "hit" in second.headers["cache-status"]
        await client.get("/fail")
        await client.get("/_asyncperf/metrics")
    finished = spans.get_finished_spans()
    servers = [s for s in finished if s.kind == SpanKind.SERVER]
    assert [s.name for s in servers] == ["GET /products/{product_id}"] * 2 + ["GET /fail"]
    miss, hit, failed = servers
    assert first.headers["cache-status"]
    assert miss.attributes["asyncperf.cache.status"] == "miss"
    assert hit.attributes["asyncperf.cache.status"] == "hit"
    assert hit.attributes["http.route"] == "/products/{product_id}"
    assert hit.attributes["http.response.status_code"] == 200
    assert hit.attributes["http.response.header.cache-status"] == (second.headers["cache-status"],)
    assert format(miss.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert miss.parent is not None
    assert miss.parent.is_remote
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.attributes["http.response.status_code"] == 500
    (operation,) = [s for s in finished if s.kind == SpanKind.INTERNAL]
    assert operation.name == "get_or_set products"
    assert operation.parent is not None
    assert operation.parent.span_id == miss.context.span_id  # only the miss reached the app
    assert operation.attributes["asyncperf.cache.status"] == "miss"
    assert operation.attributes["asyncperf.cache.key_hash"] == key_hash("product:7")
    assert "product:7" not in str(dict(operation.attributes))


async def test_aiohttp_spans_carry_the_route_and_the_response_cache_decision(
    monitor: PerformanceMonitor, export: OpenTelemetryExport, spans: InMemorySpanExporter
) -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from asyncperf.http.aiohttp import response_cache_middleware

    rc = ResponseCache(Cache(MemoryStore()))

    async def product(request: web.Request) -> web.Response:
        return web.Response(text="p", headers={"cache-control": "max-age=60"})

    async def fail(request: web.Request) -> web.Response:
        raise RuntimeError("boom")

    app = web.Application(middlewares=[monitor.aiohttp_middleware(), response_cache_middleware(rc)])
    app.router.add_get("/products/{product_id}", product)
    app.router.add_get("/fail", fail)
    monitor.add_aiohttp_routes(app, "/_asyncperf")
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/products/7", headers={"traceparent": parent})).status == 200
        second = await client.get("/products/7")
        assert "hit" in second.headers["cache-status"]
        assert (await client.get("/fail")).status == 500
        assert (await client.get("/_asyncperf/metrics")).status == 200
    servers = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert [s.name for s in servers] == ["GET /products/{product_id}"] * 2 + ["GET /fail"]
    miss, hit, failed = servers
    assert miss.attributes["asyncperf.cache.status"] == "miss"
    assert hit.attributes["asyncperf.cache.status"] == "hit"
    assert hit.attributes["http.route"] == "/products/{product_id}"
    assert hit.attributes["http.response.status_code"] == 200
    assert hit.attributes["http.response.header.cache-status"] == (second.headers["cache-status"],)
    assert format(miss.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.attributes["error.type"] == "RuntimeError"


async def test_traced_cache_operations(
    export: OpenTelemetryExport, spans: InMemorySpanExporter
) -> None:
    cache = Cache(MemoryStore())
    traced = export.trace_cache(cache)
    await traced.set("a", 1)
    assert await traced.get("a") == 1
    assert await traced.get("b", "fallback") == "fallback"
    assert await traced.get_many(["a", "b"]) == {"a": 1}
    await traced.set_many({"c": 3})
    assert await traced.delete("c")
    assert traced.statistics().hits == cache.statistics().hits  # everything else forwards
    found = {
        (s.name, s.attributes.get("asyncperf.cache.status")) for s in spans.get_finished_spans()
    }
    assert found == {
        ("set default", None),
        ("get default", "hit"),
        ("get default", "miss"),
        ("get_many default", None),
        ("set_many default", None),
        ("delete default", None),
    }
    many = next(s for s in spans.get_finished_spans() if s.name == "get_many default")
    assert many.attributes["asyncperf.cache.keys"] == 2
    assert many.attributes["asyncperf.cache.hits"] == 1


def test_trace_cache_needs_spans(monitor: PerformanceMonitor) -> None:
    export = monitor.instrument_otel(MeterProvider(), spans=False)
    with pytest.raises(ConfigurationError, match="spans=False"):
        export.trace_cache(Cache())


@pytest.mark.parametrize(
    ("field", "label", "expected"),
    [
        ("asyncperf; hit; ttl=59", "HIT", "hit"),
        ("asyncperf; hit; ttl=-3", "STALE", "stale"),
        ("asyncperf; fwd=stale; fwd-status=304", "HIT", "revalidated"),
        ("asyncperf; fwd=stale; detail=app-error", "STALE", "stale"),
        ("asyncperf; fwd=stale; fwd-status=200", "MISS", "miss"),
        ("asyncperf; fwd=uri-miss", "MISS", "miss"),
        ("asyncperf; fwd=bypass", "BYPASS", "bypass"),
        ("cdn; hit, asyncperf; fwd=miss", None, "miss"),  # the last member is ours
        (None, "HIT", "hit"),
        (None, None, None),
    ],
)
def test_cache_status_decisions(field: str | None, label: str | None, expected: str) -> None:
    assert cache_status(field, label) == expected


def test_names_follow_the_conventions_and_drop_units() -> None:
    assert otel_name("asyncperf_cache_hits_total") == ("asyncperf.cache.hits", "")
    assert otel_name("asyncperf_process_cpu_seconds_total") == ("process.cpu.time", "s")
    assert otel_name("asyncperf_http_cache_bytes_saved_total", ["http_cache"]) == (
        "asyncperf.http_cache.bytes_saved",
        "",
    )
    assert otel_name("asyncperf_llm_cache_hit_ratio", ["llm_cache"]) == (
        "asyncperf.llm_cache.hit_ratio",
        "1",
    )
    assert otel_name("asyncperf_http_server_active_requests")[0] == "http.server.active_requests"
