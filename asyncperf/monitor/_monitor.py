"""PerformanceMonitor: the registry front, HTTP series, watched components, background probes.

The multiprocess publish and merge live in ``_multiprocess.py``, the JSON snapshot in
``_snapshot.py``; this module wires them together.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from .._exceptions import ConfigurationError
from ..cache import Cache
from ._exposition import render
from ._loop import LoopLagProbe, SlowCallbackWatchdog
from ._metrics import (
    BYTES_BUCKETS,
    DEFAULT_MAX_LABEL_SETS,
    FAST_SECONDS_BUCKETS,
    SECONDS_BUCKETS,
    Family,
    HistogramChild,
    MetricsRegistry,
    Sample,
)
from ._multiprocess import WorkerFiles
from ._process import ProcessCollector, ProcessSample
from ._queries import QueryRecorder
from ._snapshot import build_snapshot
from ._watch import CacheWatcher, ComponentWatcher

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from ._aiohttp import AiohttpMiddleware
    from ._asgi import ASGIApp, MonitorApp, TimingMiddleware
    from ._otel import OpenTelemetryExport

__all__ = ["PerformanceMonitor"]

KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
UNMATCHED_ROUTE = "unmatched"
_STATUS_CLASSES = {code: f"{code // 100}xx" for code in range(100, 600)}


class HttpSeries:
    """The children one (method, route, status) triple records into."""

    __slots__ = (
        "duration",
        "method",
        "monitor",
        "request_size",
        "response_size",
        "route",
        "status",
    )

    def __init__(
        self,
        duration: HistogramChild,
        request_size: HistogramChild,
        response: HistogramChild,
        *,
        monitor: PerformanceMonitor | None = None,
        method: str = "",
        route: str = "",
        status: int = 0,
    ) -> None:
        self.duration = duration
        self.request_size = request_size
        self.response_size = response
        self.monitor = monitor
        self.method = method
        self.route = route
        self.status = status

    def record(self, duration: float, response_bytes: int, request_bytes: int = 0) -> None:
        """Record one request (a request body size only when there was a body)."""
        self.duration.observe(duration)
        self.response_size.observe(response_bytes)
        if request_bytes:
            self.request_size.observe(request_bytes)
        # The OpenTelemetry mirror: one None check when no export is set up.
        monitor = self.monitor
        if monitor is not None and monitor.otel is not None:
            monitor.otel.record_http(self, duration, response_bytes, request_bytes)


class PerformanceMonitor:
    """Metrics for an async app: HTTP timings, asyncperf components, loop lag, resources.

    Nothing is served until you mount :meth:`asgi_app` (or call
    :meth:`add_aiohttp_routes`), and nothing runs in the background until the monitor is
    running (``async with monitor:``, :meth:`run`, or the ASGI lifespan through
    :attr:`asgi_middleware`). Without the background probes, timings, watched components
    and process resources (read when scraped, at most once per ``process_interval``)
    still work; loop lag and cache hit latency need them.

    Args:
        worker: This process's ``worker`` label value (every series gets it). Default: the
            ``ASYNCPERF_WORKER`` environment variable; else the process id when
            ``multiprocess_dir`` is set; else no label.
        multiprocess_dir: A directory shared by the worker processes of one app. Each
            worker writes its series there every ``publish_interval`` seconds, and a
            scrape of any worker returns every live worker's series, each under its own
            ``worker`` label.
        max_label_sets: Cap on distinct label sets per metric (route templates, statement
            fingerprints...); more fold into ``"other"``.
        http_buckets: Upper bounds of the HTTP (and query) duration histograms.
        loop_lag_interval: Seconds between loop-lag probes (``None``: no probe).
        slow_callback_threshold: Seconds the loop may be stuck before the watchdog thread
            records a slow callback (``None``: no watchdog).
        process_interval: Seconds between process resource readings.
        cache_probe_interval: Seconds between cache hit-latency probes (``None``: off).
        cache_probe_samples: Hits timed per probe of each watched cache.
        publish_interval: Seconds between writes to ``multiprocess_dir``.
        use_psutil: ``None`` uses psutil if installed, ``False`` the stdlib fallback.

    Example:
        >>> monitor = PerformanceMonitor()
        >>> monitor.record_request("GET", "/items/{id}", 200, 0.004)
        >>> "asyncperf_http_server_request_duration_seconds_bucket" in monitor.prometheus_text()
        True
    """

    def __init__(
        self,
        *,
        worker: str | None = None,
        multiprocess_dir: str | os.PathLike[str] | None = None,
        max_label_sets: int = DEFAULT_MAX_LABEL_SETS,
        http_buckets: Iterable[float] = SECONDS_BUCKETS,
        loop_lag_interval: float | None = 0.25,
        slow_callback_threshold: float | None = 0.1,
        process_interval: float = 10.0,
        cache_probe_interval: float | None = 10.0,
        cache_probe_samples: int = 5,
        publish_interval: float = 5.0,
        use_psutil: bool | None = None,
    ) -> None:
        for label, value in (
            ("loop_lag_interval", loop_lag_interval),
            ("slow_callback_threshold", slow_callback_threshold),
            ("cache_probe_interval", cache_probe_interval),
            ("process_interval", process_interval),
            ("publish_interval", publish_interval),
        ):
            if value is not None and not value > 0:
                raise ConfigurationError(f"{label} must be > 0 seconds, got {value!r}")
        if worker is None:
            worker = os.environ.get("ASYNCPERF_WORKER") or None
        if worker is None and multiprocess_dir is not None:
            worker = str(os.getpid())
        self.worker = worker
        self.multiprocess_dir = Path(multiprocess_dir) if multiprocess_dir is not None else None
        self.started_at = time.time()
        self.registry = registry = MetricsRegistry(max_label_sets=max_label_sets)
        bounds = tuple(http_buckets)
        http_labels = ("method", "route", "status_class")
        self.http_duration = registry.histogram(
            "asyncperf_http_server_request_duration_seconds",
            "HTTP request duration by method, route template and status class.",
            http_labels,
            buckets=bounds,
        )
        self.http_request_size = registry.histogram(
            "asyncperf_http_server_request_body_size_bytes",
            "HTTP request body size (requests that sent a body).",
            http_labels,
            buckets=BYTES_BUCKETS,
        )
        self.http_response_size = registry.histogram(
            "asyncperf_http_server_response_body_size_bytes",
            "HTTP response body size.",
            http_labels,
            buckets=BYTES_BUCKETS,
        )
        self.http_active = registry.gauge(
            "asyncperf_http_server_active_requests", "HTTP requests in flight."
        )
        self.cache_latency = registry.histogram(
            "asyncperf_cache_operation_duration_seconds",
            "Cache read latency, sampled by a periodic probe (never timed on every hit).",
            ("cache", "operation", "result"),
            buckets=FAST_SECONDS_BUCKETS,
        )
        self.db_duration = registry.histogram(
            "asyncperf_db_client_operation_duration_seconds",
            "Database statement duration by operation and statement fingerprint.",
            ("operation", "statement"),
            buckets=bounds,
        )
        self.db_errors = registry.counter(
            "asyncperf_db_client_operation_errors_total",
            "Database statements that raised.",
            ("operation", "statement", "error"),
        )
        self.loop_lag = registry.histogram(
            "asyncperf_event_loop_lag_seconds",
            "How late the event loop ran a timer (sleep drift).",
            buckets=SECONDS_BUCKETS,
        )
        self.slow_callbacks = registry.counter(
            "asyncperf_event_loop_slow_callbacks_total",
            "Times the event loop was stuck past the slow-callback threshold.",
        )
        self._lag_probe = LoopLagProbe(self.loop_lag, interval=loop_lag_interval or 1.0)
        registry.gauge(
            "asyncperf_event_loop_lag_max_seconds",
            "Largest loop lag over the last minute.",
            function=lambda: self._lag_probe.max_recent,
        )
        registry.gauge(
            "asyncperf_event_loop_tasks", "Tasks alive on the loop.", function=lambda: self._tasks
        )
        self._watchdog = SlowCallbackWatchdog(
            self._lag_probe,
            self.slow_callbacks._only(),
            threshold=slow_callback_threshold or 0.1,
        )
        self.queries = QueryRecorder(self.db_duration, self.db_errors)
        self.process = ProcessCollector(use_psutil=use_psutil)
        registry.add_collector(self._collect_components)
        self.loop_lag_interval = loop_lag_interval
        self.slow_callback_threshold = slow_callback_threshold
        self.process_interval = process_interval
        self.cache_probe_interval = cache_probe_interval
        self.cache_probe_samples = cache_probe_samples
        self.publish_interval = publish_interval
        self._tasks = 0.0
        self._series: dict[tuple[str, str, int], HttpSeries] = {}
        self._max_series = max_label_sets * 4
        self._caches: list[CacheWatcher] = []
        self._components: list[ComponentWatcher] = []
        self._names: set[tuple[str, str]] = set()
        self._running = False
        self._task_group: anyio.abc.TaskGroup | None = None
        self._stop_requested: anyio.Event | None = None
        self._stopped: anyio.Event | None = None
        self._lock = threading.Lock()
        self._workers = (
            WorkerFiles(self.multiprocess_dir, worker, publish_interval=publish_interval)
            if self.multiprocess_dir is not None
            else None
        )
        #: The OpenTelemetry export set up by :meth:`instrument_otel` (``None``: none).
        self.otel: OpenTelemetryExport | None = None

    # -- recording ------------------------------------------------------------------------

    def series(self, method: str, route: str, status: int) -> HttpSeries:
        """Return the HTTP children for one request shape (cached; unknown methods fold)."""
        key = (method, route, status)
        found = self._series.get(key)
        if found is not None:
            return found
        if method not in KNOWN_METHODS:
            method = "_OTHER"
        status_class = _STATUS_CLASSES.get(status, "other")
        labels = (method, route, status_class)
        found = HttpSeries(
            self.http_duration.labels(*labels),
            self.http_request_size.labels(*labels),
            self.http_response_size.labels(*labels),
            monitor=self,
            method=method,
            route=route,
            status=status,
        )
        if len(self._series) < self._max_series and method != "_OTHER":
            self._series[key] = found
        return found

    def record_request(
        self,
        method: str,
        route: str,
        status: int,
        duration: float,
        *,
        request_bytes: int = 0,
        response_bytes: int = 0,
    ) -> None:
        """Record one finished HTTP request (what the middlewares call).

        Args:
            method: The request method.
            route: The route *template* (``/items/{id}``), never the raw path.
            status: The response status code (500 when the app raised first).
            duration: Seconds from the request's arrival to the response's last byte.
            request_bytes: Request body bytes read.
            response_bytes: Response body bytes sent.
        """
        self.series(method, route, status).record(duration, response_bytes, request_bytes)

    # -- watching -------------------------------------------------------------------------

    def watch(self, component: Any, *, name: str | None = None) -> None:
        """Expose a component's statistics, read at every scrape and snapshot.

        A :class:`~asyncperf.Cache` (or namespace view) gets the ``asyncperf_cache_*``
        metrics labelled by ``cache`` and ``namespace``, and its hit latency is probed on
        a timer. Anything else with a ``statistics()`` method (the HTTP response cache,
        the LLM cache, the database pool monitor, your own objects) is read through
        :class:`MonitoredComponent`; a component with a ``cache`` namespace view (the
        response and LLM caches) also gets a cache row for that view, under its name.

        Args:
            component: What to watch.
            name: Its label value (default: the cache's namespace or ``"default"``; the
                component kind for others; numbered when taken).

        Raises:
            ConfigurationError: ``component`` has no ``statistics()``, or ``name`` is taken.
        """
        if isinstance(component, Cache):
            base = name or component.name or "default"
            self._caches.append(
                CacheWatcher(component, self._unique("cache", base, name), self.cache_latency)
            )
            if self.otel is not None:
                self.otel.refresh()
            return
        if not callable(getattr(component, "statistics", None)):
            raise ConfigurationError(
                f"cannot watch {type(component).__name__}: it has no statistics() method"
            )
        watcher = ComponentWatcher(component, "")
        watcher.name = self._unique(watcher.kind, name or watcher.kind, name)
        self._components.append(watcher)
        # A response or LLM cache reads through a namespace view of the Cache it was given
        # (``component.cache``); that view's counters are the ones that move, so it gets a
        # row of its own under the component's name, and the Caches table never reads 0
        # while the component serves hits. The root Cache's row counts its own reads only.
        view = getattr(component, "cache", None)
        if isinstance(view, Cache) and view.name and all(w.cache is not view for w in self._caches):
            self._caches.append(
                CacheWatcher(view, self._unique("cache", watcher.name, None), self.cache_latency)
            )
        if self.otel is not None:
            self.otel.refresh()

    def _unique(self, kind: str, base: str, explicit: str | None) -> str:
        candidate, number = base, 1
        while (kind, candidate) in self._names:
            if explicit is not None:
                raise ConfigurationError(f"a {kind} named {explicit!r} is already watched")
            number += 1
            candidate = f"{base}_{number}"
        self._names.add((kind, candidate))
        return candidate

    def unwatch(self, component: Any) -> None:
        """Stop exposing ``component``."""
        for cache_watcher in list(self._caches):
            if cache_watcher.cache is component:
                self._caches.remove(cache_watcher)
                self._names.discard(("cache", cache_watcher.name))
        for watcher in list(self._components):
            if watcher.component is component:
                self._components.remove(watcher)
                self._names.discard((watcher.kind, watcher.name))
                view = getattr(component, "cache", None)
                if isinstance(view, Cache) and view is not component:
                    self.unwatch(view)

    # -- OpenTelemetry --------------------------------------------------------------------

    def instrument_otel(
        self,
        meter_provider: MeterProvider | None = None,
        *,
        tracer_provider: TracerProvider | None = None,
        spans: bool = True,
    ) -> OpenTelemetryExport:
        """Export this monitor's metrics (and, optionally, spans) through OpenTelemetry.

        Counters and gauges are read from the registry at each collection; histograms get
        each observation from now on, on the registry's bounds (``_otel.py`` says why).

        Args:
            meter_provider: Where the instruments live (default: the global provider).
            tracer_provider: Where spans go (default: the global provider).
            spans: A server span per request the ASGI middleware times, with the
                response cache's decision as ``asyncperf.cache.status``.

        Raises:
            ImportError: opentelemetry-api is missing (``pip install 'asyncperf[otel]'``).
            ConfigurationError: This monitor already has an open export.
        """
        from ._otel import OpenTelemetryExport

        if self.otel is not None:
            raise ConfigurationError(
                "this PerformanceMonitor is already exported; close() it first"
            )
        return OpenTelemetryExport(
            self, meter_provider, tracer_provider=tracer_provider, spans=spans
        )

    # -- asyncpg --------------------------------------------------------------------------

    def instrument_asyncpg(self, connection: Any) -> None:
        """Time every statement of an asyncpg connection, by statement fingerprint.

        Uses asyncpg's query-logging hook (``add_query_logger``): no wrapper, and asyncpg
        does the timing. For a pool, pass ``init=monitor.asyncpg_init`` to
        ``asyncpg.create_pool`` (or await :meth:`asyncpg_init` from your own ``init``).
        """
        connection.add_query_logger(self.queries)

    def instrument_sqlalchemy(self, engine: Any) -> None:
        """Time every statement of a SQLAlchemy (Async)Engine, by statement fingerprint.

        Same metrics as :meth:`instrument_asyncpg`, through the engine's
        ``before_cursor_execute``/``after_cursor_execute`` events; parameters never
        reach the metrics.
        """
        from ._sqlalchemy import instrument_sqlalchemy

        instrument_sqlalchemy(engine, self.queries)

    async def asyncpg_init(self, connection: Any) -> None:
        """An ``init=`` callback for ``asyncpg.create_pool``: instrument each connection."""
        self.instrument_asyncpg(connection)

    # -- background probes ----------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the background probes are running."""
        return self._running

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the background probes until cancelled (loop lag, resources, cache probes).

        Raises:
            ConfigurationError: The monitor is already running.
        """
        if self._running:
            raise ConfigurationError("this PerformanceMonitor is already running")
        self._running = True
        self._stop_requested = stop = anyio.Event()
        self._stopped = stopped = anyio.Event()
        watchdog = None
        try:
            async with anyio.create_task_group() as group:
                if self.loop_lag_interval is not None:
                    group.start_soon(self._lag_probe.run)
                    group.start_soon(self._count_tasks_forever)
                    if self.slow_callback_threshold is not None:
                        watchdog = self._watchdog
                        watchdog.start()
                        group.start_soon(watchdog.run)
                group.start_soon(self._every, self.process_interval, self._sample_process)
                if self.cache_probe_interval is not None:
                    group.start_soon(self._every, self.cache_probe_interval, self.probe_caches)
                if self.multiprocess_dir is not None:
                    group.start_soon(self._every, self.publish_interval, self._publish_async)
                task_status.started()
                await stop.wait()
                group.cancel_scope.cancel()
        finally:
            if watchdog is not None:
                watchdog.stop()
            if self._workers is not None:
                self._workers.remove()
            self._running = False
            stopped.set()

    async def stop(self) -> None:
        """Stop the background probes started by :meth:`run` and wait until they have."""
        if self._running and self._stop_requested is not None and self._stopped is not None:
            self._stop_requested.set()
            await self._stopped.wait()

    async def _every(self, interval: float, action: Callable[[], Awaitable[None]]) -> None:
        while True:
            await action()
            await anyio.sleep(interval)

    async def _sample_process(self) -> None:
        self.process.sample()

    async def _count_tasks_forever(self) -> None:
        count = _task_counter()
        while True:
            self._tasks = float(count())
            await anyio.sleep(max(self.loop_lag_interval or 1.0, 1.0))

    async def probe_caches(self) -> None:
        """Time a few hits (and a miss) on every watched cache now."""
        otel = self.otel
        mirror = otel.record_cache_probe if otel is not None else None
        for watcher in list(self._caches):
            await watcher.probe(self.cache_probe_samples, mirror=mirror)

    async def __aenter__(self) -> PerformanceMonitor:
        group = anyio.create_task_group()
        await group.__aenter__()
        try:
            await group.start(self._run_started)
        except BaseException:
            await group.__aexit__(*sys.exc_info())
            raise
        self._task_group = group
        return self

    async def _run_started(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        await self.run(task_status=task_status)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        group, self._task_group = self._task_group, None
        if group is None:
            return None
        group.cancel_scope.cancel()
        return await group.__aexit__(exc_type, exc, tb)

    # -- exposition -----------------------------------------------------------------------

    def _process_reading(self, max_age: float | None = None) -> ProcessSample:
        last = self.process.last
        age = self.process_interval if max_age is None else min(max_age, self.process_interval)
        if last is None or time.monotonic() - last.at >= age:
            with self._lock:
                return self.process.sample()
        return last

    def _collect_components(self) -> list[Family]:
        families: list[Family] = []
        for watcher in list(self._caches):
            try:
                families.extend(watcher.families())
            except Exception:
                watcher.probe_errors += 1
        for component in list(self._components):
            families.extend(component.families())
        families.extend(self.process.families(self._process_reading()))
        name = "asyncperf_monitor_label_sets_folded_total"
        folded = [
            Sample(name, (("metric", m.name),), float(m.folded))
            for m in (self.http_duration, self.db_duration, self.cache_latency)
        ]
        families.append(Family(name, "counter", "Label sets folded into 'other'.", folded))
        return families

    def collect(self) -> list[Family]:
        """Return every metric family of this process, without the worker label."""
        return self.registry.collect()

    def prometheus_text(self, *, openmetrics: bool = False) -> str:
        """Return the Prometheus text exposition (or OpenMetrics 1.0 with ``openmetrics``).

        With ``multiprocess_dir``, the series of every live worker are included.
        """
        families = self.collect()
        if self._workers is None:
            const = (("worker", self.worker),) if self.worker is not None else ()
            return render(families, const_labels=const, openmetrics=openmetrics)
        self._workers.publish(families)
        return render(self._workers.merge(), openmetrics=openmetrics)

    async def _publish_async(self) -> None:
        assert self._workers is not None
        self._workers.publish(self.collect())

    # -- snapshot -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Return this process's figures as a JSON-ready dict (what the dashboard polls).

        Percentiles are estimated from the fixed buckets (linear interpolation inside
        the bucket), so they are within one bucket width (a factor of 2) of the truth.
        Histogram bucket counts are included so that a client can compute percentiles
        over any interval from two snapshots.
        """
        return build_snapshot(self)

    # -- framework glue -------------------------------------------------------------------

    def asgi_middleware(self, app: ASGIApp, *, lifespan: bool = True) -> TimingMiddleware:
        """Wrap an ASGI app in :class:`TimingMiddleware`.

        Use it as ``app.add_middleware(monitor.asgi_middleware)``.
        """
        from ._asgi import TimingMiddleware

        return TimingMiddleware(app, monitor=self, lifespan=lifespan)

    def asgi_app(
        self,
        *,
        dashboard: bool = True,
        token: str | None = None,
        guard: Callable[[dict[str, Any]], bool | Awaitable[bool]] | None = None,
        refresh_seconds: float = 2.0,
    ) -> MonitorApp:
        """Return the ASGI app serving ``/metrics``, ``/snapshot.json`` and ``/`` (dashboard).

        Args:
            dashboard: Serve the HTML dashboard at ``/`` (``False``: 404 there).
            token: Require this token, as ``Authorization: Bearer <token>`` or
                ``?token=<token>`` (the dashboard passes its own query token on).
            guard: A callable given the ASGI scope, returning (or awaiting) whether the
                request may proceed; checked after ``token``.
            refresh_seconds: The dashboard's default polling interval (``?refresh=``
                overrides it).
        """
        from ._asgi import MonitorApp

        return MonitorApp(
            self, dashboard=dashboard, token=token, guard=guard, refresh_seconds=refresh_seconds
        )

    def aiohttp_middleware(self) -> AiohttpMiddleware:
        """Return an aiohttp middleware that times every request."""
        from ._aiohttp import AiohttpMiddleware

        return AiohttpMiddleware(self)

    def add_aiohttp_routes(
        self,
        app: Any,
        prefix: str = "/_asyncperf",
        *,
        dashboard: bool = True,
        token: str | None = None,
        guard: Callable[[Any], bool | Awaitable[bool]] | None = None,
        background: bool = True,
        refresh_seconds: float = 2.0,
    ) -> None:
        """Serve ``prefix/metrics``, ``prefix/snapshot.json`` and ``prefix/`` from aiohttp.

        Args:
            app: The ``aiohttp.web.Application``.
            prefix: Where to serve them.
            dashboard: Serve the dashboard page.
            token: As in :meth:`asgi_app`.
            guard: A callable given the ``aiohttp.web.Request``, returning (or awaiting)
                whether it may proceed.
            background: Run the background probes while the app runs (``cleanup_ctx``).
            refresh_seconds: The dashboard's default polling interval.
        """
        from ._aiohttp import add_routes

        add_routes(
            self,
            app,
            prefix,
            dashboard=dashboard,
            token=token,
            guard=guard,
            background=background,
            refresh_seconds=refresh_seconds,
        )


def _task_counter() -> Callable[[], int]:
    try:
        import sniffio

        library = sniffio.current_async_library()
    except Exception:
        library = "asyncio"
    if library == "trio":
        import trio

        return lambda: trio.lowlevel.current_statistics().tasks_living
    return lambda: len(asyncio.all_tasks())
