"""The dashboard: one self-contained HTML page (inline CSS, inline JS, canvas charts).

The page lives in ``dashboard.html`` beside this module. It polls ``snapshot.json`` next
to itself, keeps the last 120 snapshots in memory and computes interval figures
(percentiles over each poll's new observations, request rate, hit ratio, CPU) from
consecutive snapshots. No CDN, no external request.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

__all__ = ["dashboard_html"]


@cache
def _template() -> str:
    return files(__package__ or "asyncperf.monitor").joinpath("dashboard.html").read_text("utf-8")


def dashboard_html(*, refresh_seconds: float = 2.0) -> str:
    """Return the dashboard page, polling every ``refresh_seconds`` by default."""
    return _template().replace("__REFRESH__", repr(float(refresh_seconds)))
