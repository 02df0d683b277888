"""OpenTelemetry export: the monitor's metrics through a ``MeterProvider``, and spans.

The registry stays the source. :meth:`PerformanceMonitor.instrument_otel` registers
instruments on a meter of the given (or global) ``MeterProvider``:

- **Counters and gauges** are observable instruments (``ObservableCounter``,
  ``ObservableGauge``, ``ObservableUpDownCounter`` where the semantic conventions ask for
  one) whose callbacks read the registry at collection time, the same families
  :meth:`PerformanceMonitor.prometheus_text` renders. The first callback of a collection
  reads the registry once and the others reuse that reading, so a collection costs one
  registry read whatever the number of instruments, and both expositions show the same
  numbers, counted from process start.
- **Histograms.** The OpenTelemetry API has no observable histogram, so a bucket array
  cannot be handed over at collection time. Rebuilding one from the SDK's private
  aggregation state would break with any SDK release, and replaying bucket deltas as
  fake observations would get the sums wrong. So each histogram the monitor records
  (HTTP duration and body sizes, statement duration, loop lag, sampled cache latency) is
  an OpenTelemetry ``Histogram`` created with the registry's bucket bounds as
  ``explicit_bucket_boundaries_advisory``, and the monitor's recording points hand it
  every observation as well: the request's ``HttpSeries``, the statement recorder, the
  loop-lag probe, the cache probe. Both sides bucket ``le``-inclusively on the same
  bounds, so counts, sums and buckets agree for everything observed after the export
  started (earlier observations are in Prometheus only). The hooks are one ``None``
  check when no export is set up; with one, a record costs what the SDK's
  ``Histogram.record`` costs (a few microseconds). Histograms registered by hand on the
  registry are not exported.

Names follow the OpenTelemetry semantic conventions where one applies
(``http.server.request.duration`` with ``http.request.method``, ``http.route``,
``http.response.status_code``; ``db.client.operation.duration`` with
``db.system.name=postgresql``; ``process.*``, ``cpython.gc.*``), and are ``asyncperf.*``
otherwise, with the unit in the instrument's ``unit`` rather than in its name.

Spans (optional): the ASGI timing middleware starts a ``SERVER`` span per request (the
incoming ``traceparent`` is honoured) and, when the response cache answered, sets
``asyncperf.cache.status`` (``hit``, ``miss``, ``stale``, ``revalidated``, ``bypass``)
from its RFC 9211 ``Cache-Status`` field. :meth:`OpenTelemetryExport.trace_cache` wraps a
:class:`~asyncperf.Cache` so that reads and writes get ``INTERNAL`` spans carrying a hash
of the key, never the key.

This module imports no OpenTelemetry package at import time: :func:`require` does, when
an export is built, and names the extra to install when it is missing.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Final

from ..cache import Cache
from ._metrics import BYTES_BUCKETS, FAST_SECONDS_BUCKETS, Family

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from opentelemetry.trace import Span, Tracer, TracerProvider

    from ._monitor import HttpSeries, PerformanceMonitor
    from ._queries import StatementFingerprint

__all__ = ["INSTALL_HINT", "OpenTelemetryExport", "TracedCache", "cache_status", "require"]

INSTALL_HINT: Final = "pip install 'asyncperf[otel]'"
SCOPE: Final = "asyncperf.monitor"
DB_SYSTEM: Final = "postgresql"  # asyncperf.db and the statement hooks are PostgreSQL only
# A reading this old is taken again even when no collection pass was seen to start
# (an SDK that calls callbacks in another order than it registered them).
_STALE_AFTER = 1.0

# Registry family -> (OpenTelemetry name, unit), where the generic rule would not do.
NAMES: Final[dict[str, tuple[str, str]]] = {
    "asyncperf_http_server_active_requests": ("http.server.active_requests", "{request}"),
    "asyncperf_event_loop_lag_max_seconds": ("asyncperf.event_loop.max_lag", "s"),
    "asyncperf_event_loop_tasks": ("asyncperf.event_loop.tasks", "{task}"),
    "asyncperf_event_loop_slow_callbacks_total": (
        "asyncperf.event_loop.slow_callbacks",
        "{callback}",
    ),
    "asyncperf_cache_load_duration_seconds_total": ("asyncperf.cache.load_time", "s"),
    "asyncperf_cache_store_entries": ("asyncperf.cache.store.entries", "{entry}"),
    "asyncperf_cache_store_bytes": ("asyncperf.cache.store.size", "By"),
    "asyncperf_db_client_operation_errors_total": (
        "asyncperf.db.client.operation.errors",
        "{error}",
    ),
    "asyncperf_process_cpu_seconds_total": ("process.cpu.time", "s"),
    "asyncperf_process_resident_memory_bytes": ("process.memory.usage", "By"),
    "asyncperf_process_virtual_memory_bytes": ("process.memory.virtual", "By"),
    "asyncperf_process_open_fds": ("process.open_file_descriptor.count", "{file_descriptor}"),
    "asyncperf_process_threads": ("process.thread.count", "{thread}"),
    "asyncperf_python_gc_collections_total": ("cpython.gc.collections", "{collection}"),
    "asyncperf_python_gc_objects_collected_total": ("cpython.gc.collected_objects", "{object}"),
    "asyncperf_python_gc_objects_uncollectable_total": (
        "cpython.gc.uncollectable_objects",
        "{object}",
    ),
}
# Levels the semantic conventions define as UpDownCounters rather than gauges.
UP_DOWN: Final = frozenset(
    {
        "http.server.active_requests",
        "process.memory.usage",
        "process.memory.virtual",
        "process.open_file_descriptor.count",
        "process.thread.count",
    }
)
# Registry label -> attribute, for every family (per-family overrides below).
ATTRIBUTES: Final[dict[str, str]] = {
    "cache": "asyncperf.cache.name",
    "namespace": "asyncperf.cache.namespace",
    "name": "asyncperf.component.name",
    "state": "asyncperf.state",
    "metric": "asyncperf.metric.name",
    "generation": "cpython.gc.generation",
}
_FAMILY_ATTRIBUTES: Final[dict[str, dict[str, str]]] = {
    "asyncperf_cache_breaker_state": {"state": "asyncperf.cache.breaker.state"},
    "asyncperf_db_client_operation_errors_total": {
        "operation": "db.operation.name",
        "statement": "asyncperf.db.statement.id",
        "error": "error.type",
    },
}
_CONSTANT_ATTRIBUTES: Final[dict[str, dict[str, str]]] = {
    "asyncperf_db_client_operation_errors_total": {"db.system.name": DB_SYSTEM},
}
_INTEGER_ATTRIBUTES: Final = frozenset({"cpython.gc.generation"})
# Families whose first words name a namespace: asyncperf_cache_hits -> asyncperf.cache.hits.
_NAMESPACES: Final = {
    "http_server": "http.server",
    "db_client": "db.client",
    "event_loop": "event_loop",
    "python_gc": "python.gc",
}
_UNITS: Final = (("_seconds", "s", True), ("_bytes", "By", True), ("_ratio", "1", False))


def require() -> None:
    """Import the OpenTelemetry API, or raise an ``ImportError`` naming the extra."""
    try:
        import opentelemetry.metrics
        import opentelemetry.trace  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"the OpenTelemetry export needs opentelemetry-api and -sdk: {INSTALL_HINT}"
        ) from exc


def otel_name(family: str, kinds: Iterable[str] = ()) -> tuple[str, str]:
    """Return the OpenTelemetry (name, unit) of a registry family.

    Args:
        family: The registry name (``asyncperf_cache_hits_total``).
        kinds: Component kinds watched (``http_cache``...): their first words are a
            namespace (``asyncperf.http_cache.bytes_saved``).

    Example:
        >>> otel_name("asyncperf_cache_hits_total")
        ('asyncperf.cache.hits', '')
        >>> otel_name("asyncperf_cache_hit_ratio")
        ('asyncperf.cache.hit_ratio', '1')
    """
    known = NAMES.get(family)
    if known is not None:
        return known
    rest = family.removeprefix("asyncperf_").removesuffix("_total")
    unit = ""
    for suffix, symbol, strip in _UNITS:
        if rest.endswith(suffix):
            unit = symbol
            if strip:
                rest = rest.removesuffix(suffix)
            break
    spaces = {**{kind: kind for kind in kinds}, **_NAMESPACES}
    for space in sorted(spaces, key=len, reverse=True):
        if rest.startswith(space + "_"):
            return f"asyncperf.{spaces[space]}.{rest[len(space) + 1 :]}", unit
    head, _, tail = rest.partition("_")
    return (f"asyncperf.{head}.{tail}" if tail else f"asyncperf.{head}"), unit


def key_hash(key: str) -> str:
    """Return the hash a span carries instead of a cache key (16 hex digits)."""
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def cache_status(field: str | None, label: str | None = None) -> str | None:
    """Map the response cache's ``Cache-Status`` (RFC 9211) and ``X-Cache`` to one word.

    The last member is the cache nearest the client (each cache appends its own).

    Returns:
        ``hit``, ``stale`` (served stale: while revalidating or after an app error),
        ``revalidated`` (the app answered 304 to a conditional request), ``miss``,
        ``bypass`` (not cacheable), or ``None`` when no cache said anything.

    Example:
        >>> cache_status("asyncperf; fwd=stale; fwd-status=304")
        'revalidated'
    """
    if field:
        member = field.split(",")[-1]
        params: dict[str, str] = {}
        for part in member.split(";")[1:]:
            name, _, value = part.strip().partition("=")
            params[name.lower()] = value.strip().strip('"')
        if "hit" in params:
            ttl = params.get("ttl", "")
            stale = (label or "").upper() == "STALE" or ttl.startswith("-")
            return "stale" if stale else "hit"
        forward = params.get("fwd")
        if forward == "stale":
            status = params.get("fwd-status", "")
            if status == "304":
                return "revalidated"
            if params.get("detail") == "app-error" or status.startswith("5"):
                return "stale"
            return "miss"
        if forward == "bypass":
            return "bypass"
        if forward is not None:
            return "miss"
    if label:
        word = label.lower()
        return word if word in ("hit", "miss", "stale", "bypass") else None
    return None


class OpenTelemetryExport:
    """The monitor's metrics on an OpenTelemetry ``MeterProvider``, and optional spans.

    Built by :meth:`PerformanceMonitor.instrument_otel`; see this module's docstring for
    what is exported and how.

    Args:
        monitor: The monitor to export.
        meter_provider: Where the instruments live (default: the global provider).
        tracer_provider: Where spans go (default: the global provider).
        spans: Start server spans in the ASGI timing middleware.

    Raises:
        ImportError: opentelemetry-api is not installed.
    """

    def __init__(
        self,
        monitor: PerformanceMonitor,
        meter_provider: MeterProvider | None = None,
        *,
        tracer_provider: TracerProvider | None = None,
        spans: bool = True,
    ) -> None:
        require()
        from opentelemetry import metrics, trace

        from .. import __version__

        self.monitor = monitor
        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        self.meter = provider.get_meter(SCOPE, __version__)
        self.tracer: Tracer | None = None
        if spans:
            tracers = (
                tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
            )
            self.tracer = tracers.get_tracer(SCOPE, __version__)
        self.closed = False
        self._observation = metrics.Observation
        self._instruments: dict[str, str] = {}  # registry family -> OpenTelemetry name
        self._first: str | None = None
        self._reading: dict[str, Family] = {}
        self._read_at = -_STALE_AFTER
        self._http_attributes: dict[tuple[str, str, int], dict[str, str | int]] = {}
        meter = self.meter
        http_bounds = monitor.http_duration.bounds
        self._http_duration = meter.create_histogram(
            "http.server.request.duration",
            "s",
            "Duration of HTTP server requests.",
            explicit_bucket_boundaries_advisory=http_bounds,
        )
        self._http_request_size = meter.create_histogram(
            "http.server.request.body.size",
            "By",
            "Size of HTTP server request bodies (requests that sent one).",
            explicit_bucket_boundaries_advisory=BYTES_BUCKETS,
        )
        self._http_response_size = meter.create_histogram(
            "http.server.response.body.size",
            "By",
            "Size of HTTP server response bodies.",
            explicit_bucket_boundaries_advisory=BYTES_BUCKETS,
        )
        self._db_duration = meter.create_histogram(
            "db.client.operation.duration",
            "s",
            "Duration of database client operations.",
            explicit_bucket_boundaries_advisory=monitor.db_duration.bounds,
        )
        self._loop_lag = meter.create_histogram(
            "asyncperf.event_loop.lag",
            "s",
            "How late the event loop ran a timer (sleep drift).",
            explicit_bucket_boundaries_advisory=monitor.loop_lag.bounds,
        )
        self._cache_latency = meter.create_histogram(
            "asyncperf.cache.operation.duration",
            "s",
            "Cache read latency, sampled by the monitor's probe.",
            explicit_bucket_boundaries_advisory=FAST_SECONDS_BUCKETS,
        )
        monitor.queries.mirror = self.record_statement
        monitor._lag_probe.mirror = self._loop_lag.record
        monitor.otel = self
        self.refresh()

    # -- observable instruments ---------------------------------------------------------

    def refresh(self) -> None:
        """Create instruments for registry families that appeared since the last call.

        The monitor calls this when it starts watching something; call it yourself after
        registering your own counters or gauges on ``monitor.registry``.
        """
        if self.closed:
            return
        kinds = {watcher.kind for watcher in self.monitor._components}
        taken = set(self._instruments.values())
        for family in self.monitor.collect():
            if family.name in self._instruments or family.type not in ("counter", "gauge"):
                continue
            name, unit = otel_name(family.name, kinds)
            if name in taken:
                continue
            taken.add(name)
            self._instruments[family.name] = name
            if self._first is None:
                self._first = family.name
            callback = self._callback(family.name)
            help_text = family.help
            if family.type == "counter":
                self.meter.create_observable_counter(name, [callback], unit, help_text)
            elif name in UP_DOWN:
                self.meter.create_observable_up_down_counter(name, [callback], unit, help_text)
            else:
                self.meter.create_observable_gauge(name, [callback], unit, help_text)

    def _read(self, fresh: bool) -> dict[str, Family]:
        now = time.monotonic()
        if fresh or now - self._read_at >= _STALE_AFTER:
            # A periodic reader collects on the SDK's own thread while the loop records:
            # a dict that grows mid-read (a new series) is read again, not dropped.
            for attempt in range(3):
                try:
                    self._reading = {family.name: family for family in self.monitor.collect()}
                    break
                except RuntimeError:
                    if attempt == 2:
                        raise
            self._read_at = now
        return self._reading

    def _callback(self, family: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        renames = {**ATTRIBUTES, **_FAMILY_ATTRIBUTES.get(family, {})}
        constant = _CONSTANT_ATTRIBUTES.get(family, {})
        observation = self._observation

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            if self.closed:
                return []
            # The SDK calls callbacks in the order they were registered: the first one
            # starts a collection pass, so it reads the registry and the others reuse it.
            found = self._read(fresh=family == self._first).get(family)
            if found is None:
                return []
            out = []
            for sample in found.samples:
                attributes: dict[str, str | int] = dict(constant)
                for label, value in sample.labels:
                    key = renames.get(label, label)
                    attributes[key] = _integer(value) if key in _INTEGER_ATTRIBUTES else value
                out.append(observation(sample.value, attributes))
            return out

        return observe

    # -- histogram mirrors (called by the monitor's recording points) -------------------

    def record_http(
        self, series: HttpSeries, duration: float, response_bytes: int, request_bytes: int
    ) -> None:
        """Record one request, as its ``HttpSeries`` did in the registry."""
        key = (series.method, series.route, series.status)
        attributes = self._http_attributes.get(key)
        if attributes is None:
            attributes = http_attributes(*key)
            if len(self._http_attributes) < 4 * self.monitor.registry.max_label_sets:
                self._http_attributes[key] = attributes
        self._http_duration.record(duration, attributes)
        self._http_response_size.record(response_bytes, attributes)
        if request_bytes:
            self._http_request_size.record(request_bytes, attributes)

    def record_statement(
        self, statement: StatementFingerprint, seconds: float, exception: BaseException | None
    ) -> None:
        """Record one database statement, as the statement recorder did."""
        attributes: dict[str, str] = {
            "db.system.name": DB_SYSTEM,
            "db.operation.name": statement.operation,
            "asyncperf.db.statement.id": statement.id,
        }
        if exception is not None:
            attributes["error.type"] = type(exception).__qualname__
        self._db_duration.record(seconds, attributes)

    def record_cache_probe(self, cache: str, result: str, seconds: float) -> None:
        """Record one timed read of the cache probe."""
        self._cache_latency.record(
            seconds,
            {
                "asyncperf.cache.name": cache,
                "asyncperf.cache.operation": "get",
                "asyncperf.cache.status": result,
            },
        )

    # -- spans --------------------------------------------------------------------------

    def start_http_span(self, scope: MutableMapping[str, Any]) -> HttpSpan | None:
        """Start the server span of one ASGI request (``None`` without a tracer)."""
        if self.tracer is None or self.closed:
            return None
        return HttpSpan.of_scope(self.tracer, scope)

    def start_aiohttp_span(self, request: Any) -> HttpSpan | None:
        """Start the server span of one aiohttp request (``None`` without a tracer)."""
        if self.tracer is None or self.closed:
            return None
        version = request.version
        return HttpSpan(
            self.tracer,
            method=request.method,
            path=request.path,
            scheme=request.scheme,
            version=f"{version.major}.{version.minor}",
            carrier={name.lower(): value for name, value in request.headers.items()},
        )

    def trace_cache(self, cache: Cache, *, name: str | None = None) -> TracedCache:
        """Return ``cache`` wrapped so that its reads and writes get spans.

        Args:
            cache: The cache (or namespace view).
            name: Its ``asyncperf.cache.name`` (default: its namespace or ``default``).

        Raises:
            ConfigurationError: Spans are off for this export.
        """
        from .._exceptions import ConfigurationError

        if self.tracer is None:
            raise ConfigurationError("this export was built with spans=False")
        return TracedCache(cache, self.tracer, name=name)

    def close(self) -> None:
        """Stop exporting: the hooks go quiet and the instruments report nothing.

        The OpenTelemetry API cannot unregister an instrument, so the instruments stay
        in the ``MeterProvider``, empty; a new export on the same provider needs the
        old one closed first.
        """
        self.closed = True
        monitor = self.monitor
        if monitor.otel is self:
            monitor.otel = None
        if monitor.queries.mirror == self.record_statement:
            monitor.queries.mirror = None
        if monitor._lag_probe.mirror == self._loop_lag.record:
            monitor._lag_probe.mirror = None


def _integer(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def http_attributes(method: str, route: str, status: int) -> dict[str, str | int]:
    """Return the semantic-convention attributes of ``http.server.request.duration``."""
    from ._monitor import UNMATCHED_ROUTE

    attributes: dict[str, str | int] = {"http.request.method": method}
    if route and route != UNMATCHED_ROUTE:
        attributes["http.route"] = route
    if status:
        attributes["http.response.status_code"] = status
        if status >= 500:
            attributes["error.type"] = str(status)
    return attributes


class HttpSpan:
    """The server span of one request through the ASGI or aiohttp timing middleware.

    Started before the app runs (so spans the app starts are its children, and an
    incoming W3C ``traceparent`` is its parent), named and finished when the response
    is done, with the route template and the response cache's decision.
    """

    __slots__ = ("_headers", "_method", "_raised", "_span", "_token")

    def __init__(
        self,
        tracer: Tracer,
        *,
        method: str,
        path: str,
        scheme: str,
        version: str | None,
        carrier: dict[str, str],
    ) -> None:
        from opentelemetry import context, propagate, trace

        parent: Context = propagate.extract(carrier)
        attributes = {"http.request.method": method, "url.path": path, "url.scheme": scheme}
        if version:
            attributes["network.protocol.version"] = version
        self._method = method
        self._span: Span = tracer.start_span(
            method, parent, kind=trace.SpanKind.SERVER, attributes=attributes
        )
        self._token = context.attach(trace.set_span_in_context(self._span, parent))
        self._headers: dict[str, str] = {}
        self._raised = False

    @classmethod
    def of_scope(cls, tracer: Tracer, scope: MutableMapping[str, Any]) -> HttpSpan:
        """Start the span of an ASGI request."""
        return cls(
            tracer,
            method=scope["method"],
            path=scope.get("path", ""),
            scheme=scope.get("scheme", "http"),
            version=scope.get("http_version"),
            carrier={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
        )

    def wrap_send(
        self, send: Callable[[MutableMapping[str, Any]], Any]
    ) -> Callable[[MutableMapping[str, Any]], Any]:
        """Return an ASGI ``send`` that also keeps the response's cache status fields."""
        headers = self._headers

        async def traced_send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                for name, value in message.get("headers", ()):
                    lowered = name.lower()
                    if lowered in (b"cache-status", b"x-cache"):
                        headers[lowered.decode("latin-1")] = value.decode("latin-1")
            await send(message)

        return traced_send

    def keep_fields(self, fields: Mapping[str, str]) -> None:
        """Keep the cache status fields of a response whose headers are a mapping."""
        for name in ("cache-status", "x-cache"):
            value = fields.get(name)
            if value is not None:
                self._headers[name] = value

    def failed(self, exc: BaseException) -> None:
        """Record the exception the app raised."""
        from opentelemetry.trace import Status, StatusCode

        self._raised = True
        self._span.record_exception(exc)
        self._span.set_status(Status(StatusCode.ERROR, type(exc).__qualname__))
        self._span.set_attribute("error.type", type(exc).__qualname__)

    def end(self, route: str, status: int, *, skipped: bool = False) -> None:
        """Name, annotate and end the span; a ``skipped`` one (the monitor's own
        endpoints, which are not timed either) is left unended, so never exported."""
        from opentelemetry import context
        from opentelemetry.trace import Status, StatusCode

        context.detach(self._token)
        if skipped:
            return
        span = self._span
        span.set_attribute("http.response.status_code", status)
        if route != "unmatched":
            span.set_attribute("http.route", route)
            span.update_name(f"{self._method} {route}")
        if status >= 500 and not self._raised:  # an exception names its own error.type
            span.set_status(Status(StatusCode.ERROR))
            span.set_attribute("error.type", str(status))
        field = self._headers.get("cache-status")
        decision = cache_status(field, self._headers.get("x-cache"))
        if decision is not None:
            span.set_attribute("asyncperf.cache.status", decision)
        if field is not None:
            span.set_attribute("http.response.header.cache-status", (field,))
        span.end()


_ABSENT = object()


class TracedCache:
    """A :class:`~asyncperf.Cache` whose reads and writes get spans.

    ``get``, ``get_or_set``, ``get_many``, ``set``, ``set_many`` and ``delete`` each run in
    an ``INTERNAL`` span named ``"<operation> <cache name>"`` with
    ``asyncperf.cache.operation``, ``asyncperf.cache.name``, ``asyncperf.cache.namespace``,
    ``asyncperf.cache.key_hash`` (a BLAKE2b hash: keys can hold user data) and, for
    reads, ``asyncperf.cache.status`` (``hit`` or ``miss``; for ``get_or_set`` ``miss``
    means this caller's loader ran). Everything else is the wrapped cache's.

    Args:
        cache: The cache to wrap.
        tracer: Where the spans go.
        name: The ``asyncperf.cache.name`` value (default: the namespace or ``default``).
    """

    def __init__(self, cache: Cache, tracer: Tracer, *, name: str | None = None) -> None:
        self.cache = cache
        self._tracer = tracer
        self._name = name or cache.name or "default"
        self._base = {
            "asyncperf.cache.name": self._name,
            "asyncperf.cache.namespace": cache.name,
        }

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.cache, attribute)

    def _span(
        self, operation: str, key: str | None = None, extra: Mapping[str, Any] | None = None
    ) -> Any:
        from opentelemetry.trace import SpanKind

        attributes: dict[str, Any] = {**self._base, "asyncperf.cache.operation": operation}
        if key is not None:
            attributes["asyncperf.cache.key_hash"] = key_hash(key)
        if extra:
            attributes.update(extra)
        return self._tracer.start_as_current_span(
            f"{operation} {self._name}", kind=SpanKind.INTERNAL, attributes=attributes
        )

    async def get(self, key: str, default: Any = None) -> Any:
        """:meth:`Cache.get <asyncperf.Cache.get>` in a span."""
        with self._span("get", key) as span:
            value = await self.cache.get(key, _ABSENT)
            span.set_attribute("asyncperf.cache.status", "miss" if value is _ABSENT else "hit")
            return default if value is _ABSENT else value

    async def get_or_set(self, key: str, loader: Callable[[], Any], **options: Any) -> Any:
        """:meth:`Cache.get_or_set <asyncperf.Cache.get_or_set>` in a span."""
        with self._span("get_or_set", key) as span:
            loaded = False

            def load() -> Any:
                nonlocal loaded
                loaded = True
                return loader()

            value = await self.cache.get_or_set(key, load, **options)
            span.set_attribute("asyncperf.cache.status", "miss" if loaded else "hit")
            return value

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """:meth:`Cache.get_many <asyncperf.Cache.get_many>` in a span."""
        wanted = list(keys)
        with self._span("get_many", extra={"asyncperf.cache.keys": len(wanted)}) as span:
            found = await self.cache.get_many(wanted)
            span.set_attribute("asyncperf.cache.hits", len(found))
            return found

    async def set(self, key: str, value: Any, **options: Any) -> None:
        """:meth:`Cache.set <asyncperf.Cache.set>` in a span."""
        with self._span("set", key):
            await self.cache.set(key, value, **options)

    async def set_many(self, mapping: Mapping[str, Any], **options: Any) -> None:
        """:meth:`Cache.set_many <asyncperf.Cache.set_many>` in a span."""
        with self._span("set_many", extra={"asyncperf.cache.keys": len(mapping)}):
            await self.cache.set_many(mapping, **options)

    async def delete(self, key: str) -> bool:
        """:meth:`Cache.delete <asyncperf.Cache.delete>` in a span."""
        with self._span("delete", key) as span:
            deleted = await self.cache.delete(key)
            span.set_attribute("asyncperf.cache.deleted", deleted)
            return deleted
