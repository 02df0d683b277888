"""The JSON snapshot of one process's figures: what ``/snapshot.json`` and the dashboard read.

Percentiles are estimated from the fixed buckets (linear interpolation inside the bucket,
as Prometheus' ``histogram_quantile`` does), and the bucket counts are included so that
a client can compute percentiles over any interval from two snapshots.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from ._metrics import estimate_quantile
from ._watch import jsonable

if TYPE_CHECKING:
    from ._monitor import PerformanceMonitor

__all__ = ["build_snapshot", "quantiles"]


def quantiles(bounds: tuple[float, ...], counts: list[int], total: float) -> dict[str, Any]:
    """Return count, sum, mean and estimated p50/p95/p99 of one histogram's buckets."""
    count = sum(counts)
    return {
        "count": count,
        "sum_seconds": total,
        "mean": total / count if count else None,
        "p50": estimate_quantile(0.5, bounds, counts),
        "p95": estimate_quantile(0.95, bounds, counts),
        "p99": estimate_quantile(0.99, bounds, counts),
    }


def _http(monitor: PerformanceMonitor) -> dict[str, Any]:
    bounds = monitor.http_duration.bounds
    routes: dict[tuple[str, str], dict[str, Any]] = {}
    overall = [0] * (len(bounds) + 1)
    overall_sum = 0.0
    classes: dict[str, int] = {}
    for (method, route, status_class), child in monitor.http_duration.children():
        counts = list(child.counts)
        entry = routes.setdefault(
            (method, route), {"counts": [0] * len(counts), "sum": 0.0, "errors": 0}
        )
        for index, count in enumerate(counts):
            entry["counts"][index] += count
            overall[index] += count
        entry["sum"] += child.sum
        overall_sum += child.sum
        total = sum(counts)
        classes[status_class] = classes.get(status_class, 0) + total
        if status_class == "5xx":
            entry["errors"] += total
    route_rows = [
        {
            "method": method,
            "route": route,
            "errors": entry["errors"],
            **quantiles(bounds, entry["counts"], entry["sum"]),
        }
        for (method, route), entry in routes.items()
    ]
    route_rows.sort(key=lambda row: row["p95"] or 0.0, reverse=True)
    return {
        "in_flight": monitor.http_active.value,
        "bounds": list(bounds),
        "counts": overall,
        "status_classes": classes,
        "overall": quantiles(bounds, overall, overall_sum),
        "routes": route_rows,
    }


def _db(monitor: PerformanceMonitor) -> list[dict[str, Any]]:
    rows = []
    for (operation, statement), child in monitor.db_duration.children():
        known = monitor.queries.statements.get(statement)
        rows.append(
            {
                "id": statement,
                "operation": operation,
                "text": known.text if known is not None else statement,
                **quantiles(monitor.db_duration.bounds, list(child.counts), child.sum),
            }
        )
    rows.sort(key=lambda row: row["sum_seconds"], reverse=True)
    return rows


def _loop(monitor: PerformanceMonitor) -> dict[str, Any]:
    lag = monitor.loop_lag
    child = lag._only()
    probe = monitor._lag_probe
    return {
        "bounds": list(lag.bounds),
        "counts": list(child.counts),
        "lag": quantiles(lag.bounds, list(child.counts), child.sum),
        "last_seconds": probe.last,
        "max_recent_seconds": probe.max_recent,
        "tasks": monitor._tasks,
        "slow_callbacks": monitor.slow_callbacks.value,
        # What the dashboard's stall panel says when the list is empty: none over this
        # many seconds, or (None) that the watchdog is off.
        "slow_callback_threshold_seconds": monitor.slow_callback_threshold,
        # Bounded: the watchdog keeps its last ``keep`` stalls (20), 8 frames each.
        "recent_slow_callbacks": [
            {
                "at": s.at,
                "blocked_seconds": s.blocked_seconds,
                "location": s.location,
                "stack": list(s.stack),
            }
            for s in list(monitor._watchdog.recent)
        ],
    }


def build_snapshot(monitor: PerformanceMonitor) -> dict[str, Any]:
    """Return ``monitor``'s figures as a JSON-ready dict (see the module docstring)."""
    # The dashboard polls every few seconds; a fresh reading (at most one a second)
    # gives it a CPU figure per poll without ever reading per request.
    reading = monitor._process_reading(max_age=1.0)
    snapshot: dict[str, Any] = jsonable(
        {
            "version": 1,
            "time": time.time(),
            "worker": monitor.worker,
            "pid": os.getpid(),
            "uptime_seconds": time.time() - monitor.started_at,
            "running": monitor.running,
            "http": _http(monitor),
            "loop": _loop(monitor),
            "process": reading.to_dict(),
            "caches": [watcher.snapshot() for watcher in list(monitor._caches)],
            "components": [watcher.snapshot() for watcher in list(monitor._components)],
            "db": {"statements": _db(monitor)},
        }
    )
    return snapshot
