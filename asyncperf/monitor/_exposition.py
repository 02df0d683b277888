"""Prometheus text exposition (0.0.4) and OpenMetrics 1.0 from collected families."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from ._metrics import Family

__all__ = ["OPENMETRICS_CONTENT_TYPE", "PROMETHEUS_CONTENT_TYPE", "render"]

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _format_value(value: float) -> str:
    if value != value:  # NaN
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value)) if value or math.copysign(1, value) > 0 else "0"
    return repr(float(value))


def render(
    families: Iterable[Family],
    *,
    const_labels: Sequence[tuple[str, str]] = (),
    openmetrics: bool = False,
) -> str:
    """Render families as Prometheus text, or OpenMetrics text (ending in ``# EOF``).

    Args:
        families: What :meth:`MetricsRegistry.collect` returned.
        const_labels: Labels added to every sample first (the ``worker`` label).
        openmetrics: Write OpenMetrics 1.0 (counter families named without ``_total``).
    """
    lines: list[str] = []
    append = lines.append
    const = ",".join(f'{k}="{_escape_label(v)}"' for k, v in const_labels)
    for family in families:
        if not family.samples:
            continue
        name = family.name
        if openmetrics and family.type == "counter" and name.endswith("_total"):
            name = name[: -len("_total")]
        append(f"# HELP {name} {_escape_help(family.help)}")
        append(f"# TYPE {name} {family.type}")
        for sample in family.samples:
            parts = [const] if const else []
            parts.extend(f'{k}="{_escape_label(v)}"' for k, v in sample.labels)
            labels = "{" + ",".join(parts) + "}" if parts else ""
            append(f"{sample.name}{labels} {_format_value(sample.value)}")
    if openmetrics:
        append("# EOF")
    return "\n".join(lines) + "\n"
