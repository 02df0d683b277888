"""Performance monitoring: metrics registry, timing middleware, loop lag, exposition.

```python
monitor = PerformanceMonitor()
monitor.watch(cache)
app.add_middleware(monitor.asgi_middleware)          # Starlette / FastAPI (pure ASGI)
app.mount("/_asyncperf", monitor.asgi_app())         # /metrics, /snapshot.json, / (dashboard)
```

Importing this package imports neither starlette, aiohttp, psutil nor OpenTelemetry: the
aiohttp glue is imported by :meth:`PerformanceMonitor.aiohttp_middleware`, psutil
(optional, ``asyncperf[monitor]``) when the monitor is built, and the OpenTelemetry API
(optional, ``asyncperf[otel]``) by :meth:`PerformanceMonitor.instrument_otel`.
"""

from ._asgi import MonitorApp, TimingMiddleware, route_template
from ._exposition import OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE, render
from ._loop import LoopLagProbe, SlowCallback, SlowCallbackWatchdog
from ._metrics import (
    BYTES_BUCKETS,
    FAST_SECONDS_BUCKETS,
    SECONDS_BUCKETS,
    Counter,
    Family,
    Gauge,
    Histogram,
    MetricsRegistry,
    Sample,
    estimate_quantile,
    log_buckets,
)
from ._monitor import PerformanceMonitor
from ._otel import OpenTelemetryExport, TracedCache
from ._process import ProcessCollector, ProcessSample
from ._queries import StatementFingerprint, fingerprint
from ._watch import ComponentMetric, MonitoredComponent, ProvidesMetrics

__all__ = [
    "BYTES_BUCKETS",
    "FAST_SECONDS_BUCKETS",
    "OPENMETRICS_CONTENT_TYPE",
    "PROMETHEUS_CONTENT_TYPE",
    "SECONDS_BUCKETS",
    "ComponentMetric",
    "Counter",
    "Family",
    "Gauge",
    "Histogram",
    "LoopLagProbe",
    "MetricsRegistry",
    "MonitorApp",
    "MonitoredComponent",
    "OpenTelemetryExport",
    "PerformanceMonitor",
    "ProcessCollector",
    "ProcessSample",
    "ProvidesMetrics",
    "Sample",
    "SlowCallback",
    "SlowCallbackWatchdog",
    "StatementFingerprint",
    "TimingMiddleware",
    "TracedCache",
    "estimate_quantile",
    "fingerprint",
    "log_buckets",
    "render",
    "route_template",
]
