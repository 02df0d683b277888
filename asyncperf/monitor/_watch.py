"""Reading asyncperf components (and anything with ``statistics()``) at collection time.

Nothing here runs per request: a watched object's ``statistics()`` is called when the
exposition or a snapshot is built. The one active part is the cache hit-latency probe,
which times a few reads of its own key through a namespace view of the watched cache on
a timer, so the cache's own hit path is never timed (and its hit budget holds).
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, Protocol, runtime_checkable

from ..cache import Cache
from ._metrics import FAST_SECONDS_BUCKETS, Family, Histogram, Sample

__all__ = [
    "CacheWatcher",
    "ComponentMetric",
    "ComponentWatcher",
    "MonitoredComponent",
    "ProvidesMetrics",
    "statistics_dict",
]

PREFIX = "asyncperf_"
_PROBE_NAMESPACE = "__asyncperf_probe__"
_MISSING = object()


@runtime_checkable
class MonitoredComponent(Protocol):
    """What :meth:`PerformanceMonitor.watch` needs: a cheap, synchronous ``statistics()``.

    ``statistics()`` returns a dataclass (frozen, as asyncperf's are), an object with
    ``to_dict()``, a named tuple or a mapping. Numeric fields become metrics named
    ``asyncperf_<kind>_<field>``: ``*_total`` and other counts become counters, fields
    whose name says a level (``entries``, ``bytes``, ``in_use``, ``idle``, ``pending``,
    ``size``, ``max_*``, ``mean_*``, ``*_rate``, ``*_ratio``...) become gauges, and string
    fields (a breaker state) become a gauge with the value as a ``state`` label. An
    optional ``monitor_kind`` attribute names the kind (asyncperf's components declare
    theirs: ``ResponseCache`` ``http_cache``, ``LLMCache`` ``llm_cache``, ``PoolMonitor``
    ``db_pool``, ``QueryAnalyzer`` ``db_queries``); without it the snake-cased class name
    is used.

    A component that wants exact names, types and labels also implements
    :class:`ProvidesMetrics`.
    """

    def statistics(self) -> Any:
        """Return a snapshot of the component's counters."""
        ...


@dataclass(frozen=True, slots=True)
class ComponentMetric:
    """One value a component reports through :class:`ProvidesMetrics`.

    Attributes:
        name: The name without the ``asyncperf_`` prefix, with its unit and, for a
            counter, ``_total`` (``"http_cache_bytes_saved_total"``).
        type: ``"counter"`` or ``"gauge"``.
        value: The current value (an int, a float or a ``Decimal``).
        help: One line of help.
        labels: Extra labels (bounded values only); ``name`` is added by the monitor.
    """

    name: str
    type: Literal["counter", "gauge"]
    value: float | int | Decimal
    help: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class ProvidesMetrics(Protocol):
    """Optional: a component that names its own metrics."""

    def monitor_metrics(self) -> Iterable[ComponentMetric]:
        """Return the component's metrics now (called at collection time)."""
        ...


# Words that make a field cumulative even beside a unit word ("bytes_saved").
_COUNTER_WORDS = frozenset("saved sent received written read served evicted spent".split())
_GAUGE_WORDS = frozenset(
    "entries bytes size in_use inuse in_flight inflight idle open pending current "
    "utilisation utilization capacity max min mean avg average p50 p90 p95 p99 rate ratio "
    "level waiting used free connections active length depth available".split()
)


def kind_of(obj: object) -> str:
    """Return the metric kind of a component: its ``monitor_kind``, else its class name.

    asyncperf's own components declare theirs (``ResponseCache.monitor_kind ==
    "http_cache"``), so the monitor never needs to know their class names.
    """
    kind = getattr(obj, "monitor_kind", None)
    if isinstance(kind, str) and kind:
        return _snake(kind)
    return _snake(type(obj).__name__)


def _snake(name: str) -> str:
    text = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", text)
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_") or "component"


def statistics_dict(stats: Any) -> dict[str, Any]:
    """Turn what ``statistics()`` returned into a plain dict (one level deep)."""
    if stats is None:
        return {}
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        result = {f.name: getattr(stats, f.name) for f in dataclasses.fields(stats)}
        # Components that break their figures down (by model, by tenant...) keep the
        # overall ones in a nested ``total``: those are the series to export.
        total = result.get("total")
        if dataclasses.is_dataclass(total) and not isinstance(total, type):
            del result["total"]
            for field in dataclasses.fields(total):
                result.setdefault(field.name, getattr(total, field.name))
        return result
    to_dict = getattr(stats, "to_dict", None)
    if callable(to_dict):
        result = to_dict()
        if isinstance(result, Mapping):
            return dict(result)
    as_dict = getattr(stats, "_asdict", None)
    if callable(as_dict):
        return dict(as_dict())
    if isinstance(stats, Mapping):
        return dict(stats)
    return {k: v for k, v in vars(stats).items() if not k.startswith("_")}


def jsonable(value: Any) -> Any:
    """Return ``value`` with Decimals, dataclasses and tuples made JSON-friendly."""
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(statistics_dict(value))
    return str(value)


def _field_metric(kind: str, key: str, value: Any) -> tuple[str, str, float] | None:
    """Return (metric name, type, value) for one statistics field, or None to skip it."""
    if isinstance(value, bool):
        return f"{PREFIX}{kind}_{key}", "gauge", float(value)
    if not isinstance(value, int | float | Decimal):
        return None
    number = float(value)
    words = set(key.split("_"))
    if key.endswith("_total"):
        return f"{PREFIX}{kind}_{key}", "counter", number
    if key.endswith(("_rate", "_ratio")):
        base = key.rsplit("_", 1)[0]
        return f"{PREFIX}{kind}_{base}_ratio", "gauge", number
    if words & _COUNTER_WORDS:
        return f"{PREFIX}{kind}_{key}_total", "counter", number
    if words & _GAUGE_WORDS or key.startswith(("max_", "min_")):
        return f"{PREFIX}{kind}_{key}", "gauge", number
    if isinstance(value, float) and "seconds" not in words and "usd" not in words:
        return f"{PREFIX}{kind}_{key}", "gauge", number
    return f"{PREFIX}{kind}_{key}_total", "counter", number


class ComponentWatcher:
    """Reads one generic component at collection time.

    Args:
        component: The watched object (see :class:`MonitoredComponent`).
        name: The value of its ``name`` label.
    """

    def __init__(self, component: Any, name: str) -> None:
        self.component = component
        self.kind = kind_of(component)
        self.name = name
        self.errors = 0

    def read(self) -> dict[str, Any] | None:
        """Return the component's statistics as a dict, or None if reading failed."""
        try:
            return statistics_dict(self.component.statistics())
        except Exception:
            self.errors += 1
            return None

    def families(self) -> list[Family]:
        """Return the component's metrics as exposition families."""
        label = (("name", self.name),)
        out: dict[str, Family] = {}
        if isinstance(self.component, ProvidesMetrics):
            try:
                metrics = list(self.component.monitor_metrics())
            except Exception:
                self.errors += 1
                return []
            for metric in metrics:
                name = metric.name if metric.name.startswith(PREFIX) else PREFIX + metric.name
                family = out.setdefault(name, Family(name, metric.type, metric.help or name))
                labels = label + tuple(sorted(metric.labels.items()))
                family.samples.append(Sample(name, labels, float(metric.value)))
            return list(out.values())
        stats = self.read()
        if stats is None:
            return []
        for key, value in stats.items():
            if isinstance(value, str):
                name = f"{PREFIX}{self.kind}_{key}"
                family = out.setdefault(name, Family(name, "gauge", f"{key} (1 = current)"))
                family.samples.append(Sample(name, (*label, ("state", value)), 1.0))
                continue
            found = _field_metric(self.kind, key, value)
            if found is None:
                continue
            name, mtype, number = found
            family = out.setdefault(name, Family(name, mtype, f"{self.kind} {key}"))  # type: ignore[arg-type]
            family.samples.append(Sample(name, label, number))
        return list(out.values())

    def snapshot(self) -> dict[str, Any]:
        """Return the component's statistics for the JSON snapshot."""
        return {"kind": self.kind, "name": self.name, "statistics": jsonable(self.read() or {})}


# field -> (metric suffix, type, help)
_CACHE_FIELDS: tuple[tuple[str, str, Literal["counter", "gauge"], str], ...] = (
    ("hits", "hits_total", "counter", "Reads answered with a fresh value."),
    ("misses", "misses_total", "counter", "Reads that found nothing usable."),
    ("hit_rate", "hit_ratio", "gauge", "hits / (hits + misses) since start."),
    ("sets", "sets_total", "counter", "Values written."),
    ("deletes", "deletes_total", "counter", "Keys deleted."),
    ("evictions", "evictions_total", "counter", "Entries dropped for a cap (store-wide)."),
    ("expirations", "expirations_total", "counter", "Entries dropped at their TTL."),
    ("errors", "errors_total", "counter", "Store failures answered as misses."),
    ("loads", "loads_total", "counter", "Loader calls completed."),
    ("load_errors", "load_errors_total", "counter", "Loader calls that raised."),
    ("load_seconds", "load_duration_seconds_total", "counter", "Seconds spent in loaders."),
    ("coalesced", "coalesced_total", "counter", "Callers that waited on another's load."),
    ("stale_served", "stale_served_total", "counter", "Stale values served."),
    ("early_refreshes", "early_refreshes_total", "counter", "Early refreshes started."),
    ("background_refreshes", "background_refreshes_total", "counter", "Background refreshes."),
    ("lock_waits", "lock_waits_total", "counter", "Distributed single-flight waits."),
    ("lock_timeouts", "lock_timeouts_total", "counter", "Distributed waits that timed out."),
    ("backend_failures", "backend_failures_total", "counter", "Remote store failures."),
    ("degraded_operations", "degraded_operations_total", "counter", "Served from fallback."),
)
_BREAKER_STATES = ("closed", "open", "half-open")


class CacheWatcher:
    """Reads one :class:`~asyncperf.Cache` at collection time and probes its hit latency.

    Args:
        cache: The watched cache (a root cache or a namespace view).
        name: The value of its ``cache`` label.
        latency: The shared ``asyncperf_cache_operation_duration_seconds`` histogram.
    """

    def __init__(self, cache: Cache, name: str, latency: Histogram) -> None:
        self.cache = cache
        self.name = name
        self.namespace = cache.name
        self._latency_hit = latency.labels(name, "get", "hit")
        self._latency_miss = latency.labels(name, "get", "miss")
        self._probe_view: Cache | None = None
        self.probe_errors = 0

    async def probe(
        self, samples: int, *, mirror: Callable[[str, str, float], None] | None = None
    ) -> None:
        """Time ``samples`` hits and one miss through a private namespace view.

        The view shares the store (and so its latency) but keeps its own counters, so
        the watched cache's hit rate is not disturbed. ``mirror(cache, result, seconds)``
        is also given each timing (the OpenTelemetry export).
        """
        view = self._probe_view
        if view is None:
            view = self._probe_view = self.cache.namespace(_PROBE_NAMESPACE)
        clock = time.perf_counter
        try:
            if await view.get("probe", _MISSING) is _MISSING:
                await view.set("probe", 1, ttl=3600.0)
            for _ in range(samples):
                start = clock()
                found = await view.get("probe", _MISSING)
                elapsed = clock() - start
                if found is not _MISSING:
                    self._latency_hit.observe(elapsed)
                    if mirror is not None:
                        mirror(self.name, "hit", elapsed)
            start = clock()
            await view.get("absent", _MISSING)
            elapsed = clock() - start
            self._latency_miss.observe(elapsed)
            if mirror is not None:
                mirror(self.name, "miss", elapsed)
        except Exception:
            self.probe_errors += 1

    def _store_levels(self) -> dict[str, float]:
        read = getattr(self.cache.store, "statistics", None)
        if read is None:
            return {}
        try:
            stats = statistics_dict(read())
        except Exception:
            return {}
        levels: dict[str, float] = {}
        for key in ("entries", "bytes"):
            value = stats.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                levels[key] = float(value)
        return levels

    def families(self) -> list[Family]:
        """Return this cache's metrics as exposition families."""
        stats = self.cache.statistics()
        labels = (("cache", self.name), ("namespace", self.namespace))
        out: list[Family] = []
        for attr, suffix, mtype, help_text in _CACHE_FIELDS:
            name = f"{PREFIX}cache_{suffix}"
            value = float(getattr(stats, attr, 0) or 0)
            out.append(Family(name, mtype, help_text, [Sample(name, labels, value)]))
        name = f"{PREFIX}cache_breaker_state"
        out.append(
            Family(
                name,
                "gauge",
                "Circuit breaker state (1 = current).",
                [
                    Sample(name, (*labels, ("state", s)), float(stats.breaker_state == s))
                    for s in _BREAKER_STATES
                ],
            )
        )
        name = f"{PREFIX}cache_loads_in_flight"
        out.append(
            Family(name, "gauge", "Loads running now.", [Sample(name, labels, self.in_flight())])
        )
        for key, value in self._store_levels().items():
            name = f"{PREFIX}cache_store_{key}"
            help_text = f"Store {key} now (shared by namespace views)."
            out.append(Family(name, "gauge", help_text, [Sample(name, labels, value)]))
        return out

    def in_flight(self) -> float:
        """Loads running now (0 if the cache cannot tell)."""
        try:
            return float(self.cache.in_flight())
        except Exception:
            return 0.0

    def snapshot(self) -> dict[str, Any]:
        """Return this cache's statistics and sampled hit latency for the JSON snapshot."""
        stats = statistics_dict(self.cache.statistics())
        hit = self._latency_hit
        return {
            "name": self.name,
            "namespace": self.namespace,
            "statistics": jsonable(stats),
            "in_flight": self.in_flight(),
            "store": self._store_levels(),
            "hit_latency": {
                "samples": hit.count,
                "p50": hit.quantile(0.5),
                "p95": hit.quantile(0.95),
                "p99": hit.quantile(0.99),
            },
        }


CACHE_LATENCY_BUCKETS = FAST_SECONDS_BUCKETS
