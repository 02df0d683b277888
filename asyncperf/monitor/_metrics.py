"""Counters, gauges and histograms with fixed log-spaced buckets, and their registry.

The hot path is an attribute increment (counters) or a ``bisect`` plus a list-slot
increment (histograms): no locks, no allocation. That is safe on the event-loop thread,
and on CPython a ``list[i] += 1`` is not interrupted by a thread switch in practice, so
the occasional observe from a worker thread does not corrupt anything either.

Labels are bounded: each labelled metric keeps at most ``max_label_sets`` children; label
sets past the cap fold into one child whose values are all ``"other"``.
"""

from __future__ import annotations

import itertools
import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from .._exceptions import ConfigurationError

__all__ = [
    "DEFAULT_MAX_LABEL_SETS",
    "OTHER",
    "Counter",
    "Family",
    "Gauge",
    "Histogram",
    "MetricsRegistry",
    "Sample",
    "estimate_quantile",
    "log_buckets",
]

MetricType = Literal["counter", "gauge", "histogram", "info", "stateset", "unknown"]

OTHER = "other"
DEFAULT_MAX_LABEL_SETS = 200


def log_buckets(start: float, factor: float, count: int) -> tuple[float, ...]:
    """Return ``count`` upper bounds ``start * factor**i``, log-spaced.

    With ``factor=2`` a quantile estimated from the buckets is off by less than 2x in the
    worst case (and usually far less, as the estimate interpolates inside the bucket).

    Args:
        start: The first upper bound (> 0), in the metric's base unit.
        factor: The ratio between neighbouring bounds (> 1).
        count: How many bounds (>= 1); ``+Inf`` is implied.

    Raises:
        ConfigurationError: A non-positive start, a factor <= 1 or a count < 1.

    Example:
        >>> log_buckets(0.001, 2.0, 4)
        (0.001, 0.002, 0.004, 0.008)
    """
    if not start > 0 or not factor > 1 or count < 1 or not math.isfinite(start * factor):
        raise ConfigurationError(
            f"log_buckets needs start > 0, factor > 1, count >= 1; got {start}, {factor}, {count}"
        )
    return tuple(float(f"{start * factor**i:.6g}") for i in range(count))


# 100 µs ... 13.1 s, doubling: request and query durations, loop lag.
SECONDS_BUCKETS = log_buckets(0.0001, 2.0, 18)
# 1 µs ... 0.5 s: cache operations (a memory hit takes about a microsecond).
FAST_SECONDS_BUCKETS = log_buckets(0.000001, 2.0, 20)
# 64 B ... 64 MiB: body sizes.
BYTES_BUCKETS = tuple(float(64 * 4**i) for i in range(11))


def _check_name(name: str) -> str:
    if not name or not all(c.isalnum() or c in "_:" for c in name) or name[0].isdigit():
        raise ConfigurationError(f"invalid metric name {name!r}")
    return name


def estimate_quantile(
    q: float, bounds: Sequence[float], counts: Sequence[int], *, lowest: float = 0.0
) -> float | None:
    """Estimate quantile ``q`` from per-bucket (non-cumulative) counts.

    Finds the bucket where the cumulative count crosses ``q * total`` and interpolates
    linearly inside it, as Prometheus' ``histogram_quantile`` does. Observations in the
    ``+Inf`` bucket answer with the largest finite bound.

    Args:
        q: The quantile, in [0, 1].
        bounds: The finite upper bounds, ascending.
        counts: ``len(bounds) + 1`` counts, the last one for ``+Inf``.
        lowest: The lower edge of the first bucket.

    Returns:
        The estimate, or ``None`` when nothing was observed.
    """
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            if index == len(bounds):
                return bounds[-1]
            low = lowest if index == 0 else bounds[index - 1]
            high = bounds[index]
            return low + (high - low) * max(rank - seen, 0.0) / count
        seen += count
    return bounds[-1]


@dataclass(frozen=True, slots=True)
class Sample:
    """One exposed value: a sample name (with suffix), its labels and its value."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass(slots=True)
class Family:
    """All samples of one metric, as the exposition writes them.

    Attributes:
        name: The family name (a counter's includes ``_total``).
        type: ``counter``, ``gauge``, ``histogram``...
        help: One line of help text.
        samples: The samples, in exposition order.
    """

    name: str
    type: MetricType
    help: str
    samples: list[Sample] = field(default_factory=list)


class CounterChild:
    """One labelled series of a :class:`Counter`."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (>= 0)."""
        self.value += amount


class GaugeChild:
    """One labelled series of a :class:`Gauge`."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def set(self, value: float) -> None:
        """Set the value."""
        self.value = value

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount``."""
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        """Subtract ``amount``."""
        self.value -= amount


class HistogramChild:
    """One labelled series of a :class:`Histogram`: per-bucket counts and a sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Record one observation (``le`` is inclusive: ``value == bound`` counts there)."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        """Observations so far."""
        return sum(self.counts)

    def quantile(self, q: float) -> float | None:
        """Estimate quantile ``q`` (see :func:`estimate_quantile`); ``None`` if empty."""
        return estimate_quantile(q, self.bounds, self.counts)

    def reset(self) -> None:
        """Forget every observation."""
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0


ChildT = TypeVar("ChildT", CounterChild, GaugeChild, HistogramChild)


class _Metric(Generic[ChildT]):
    """Shared machinery: a name, help, label names and a bounded map of children."""

    type: MetricType = "unknown"

    def __init__(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        *,
        max_label_sets: int = DEFAULT_MAX_LABEL_SETS,
    ) -> None:
        self.name = _check_name(name)
        self.help = help
        self.labelnames = tuple(_check_name(label) for label in labelnames)
        if max_label_sets < 1:
            raise ConfigurationError(f"max_label_sets must be >= 1, got {max_label_sets}")
        self.max_label_sets = max_label_sets
        self._children: dict[tuple[str, ...], ChildT] = {}
        self._overflow = (OTHER,) * len(self.labelnames)
        self._default: ChildT | None = None if self.labelnames else self._new_child()
        self.folded = 0

    def _new_child(self) -> ChildT:
        raise AssertionError("subclasses create their children")

    def labels(self, *values: str) -> ChildT:
        """Return the child for these label values (in ``labelnames`` order).

        Past ``max_label_sets`` distinct sets, new sets share one child labelled
        ``"other"`` (counted in :attr:`folded`), so a raw path or an id used as a label
        cannot grow memory or the exposition without bound.
        """
        child = self._children.get(values)
        if child is not None:
            return child
        if len(values) != len(self.labelnames):
            raise ConfigurationError(
                f"{self.name} takes labels {self.labelnames}, got {len(values)} values"
            )
        if len(self._children) >= self.max_label_sets:
            self.folded += 1
            values = self._overflow
            child = self._children.get(values)
            if child is not None:
                return child
        child = self._new_child()
        self._children[tuple(str(v) for v in values)] = child
        return child

    def _only(self) -> ChildT:
        if self._default is None:
            raise ConfigurationError(f"{self.name} has labels; call .labels(...) first")
        return self._default

    def children(self) -> Iterator[tuple[tuple[str, ...], ChildT]]:
        """Yield ``(label values, child)`` for every series."""
        if self._default is not None:
            yield (), self._default
        yield from list(self._children.items())

    def clear(self) -> None:
        """Drop every labelled child (the unlabelled series is kept)."""
        self._children.clear()

    def _labels(self, values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
        return tuple(zip(self.labelnames, values, strict=True))

    def collect(self) -> Family:
        """Return this metric's samples for the exposition."""
        raise AssertionError("subclasses collect their own samples")


class Counter(_Metric[CounterChild]):
    """A monotonically increasing count. The name must end in ``_total``.

    Example:
        >>> errors = Counter("asyncperf_example_errors_total", "Errors.", ["kind"])
        >>> errors.labels("timeout").inc()
    """

    type: MetricType = "counter"

    def __init__(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        *,
        max_label_sets: int = DEFAULT_MAX_LABEL_SETS,
    ) -> None:
        if not name.endswith("_total"):
            raise ConfigurationError(f"a counter's name ends in _total, got {name!r}")
        super().__init__(name, help, labelnames, max_label_sets=max_label_sets)

    def _new_child(self) -> CounterChild:
        return CounterChild()

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` to the unlabelled series."""
        self._only().value += amount

    @property
    def value(self) -> float:
        """The unlabelled series' value."""
        return self._only().value

    def collect(self) -> Family:
        """Return this metric's samples for the exposition."""
        family = Family(self.name, "counter", self.help)
        for values, child in self.children():
            family.samples.append(Sample(self.name, self._labels(values), child.value))
        return family


class Gauge(_Metric[GaugeChild]):
    """A value that goes up and down, or is read from a callback at collection time.

    Args:
        name: The metric name (never ending in ``_total``).
        help: One line of help.
        labelnames: Label names.
        max_label_sets: The cap on label sets (see :meth:`labels`).
        function: For an unlabelled gauge: called at collection time for the value.
    """

    type: MetricType = "gauge"

    def __init__(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        *,
        max_label_sets: int = DEFAULT_MAX_LABEL_SETS,
        function: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(name, help, labelnames, max_label_sets=max_label_sets)
        self.function = function

    def _new_child(self) -> GaugeChild:
        return GaugeChild()

    def set(self, value: float) -> None:
        """Set the unlabelled series."""
        self._only().value = value

    def inc(self, amount: float = 1.0) -> None:
        """Add to the unlabelled series."""
        self._only().value += amount

    def dec(self, amount: float = 1.0) -> None:
        """Subtract from the unlabelled series."""
        self._only().value -= amount

    @property
    def value(self) -> float:
        """The unlabelled series' value."""
        if self.function is not None:
            return float(self.function())
        return self._only().value

    def collect(self) -> Family:
        """Return this metric's samples for the exposition."""
        family = Family(self.name, "gauge", self.help)
        for values, child in self.children():
            value = child.value
            if not values and self.function is not None:
                value = float(self.function())
            family.samples.append(Sample(self.name, self._labels(values), value))
        return family


class Histogram(_Metric[HistogramChild]):
    """Observations counted into fixed buckets, with quantile estimates.

    Args:
        name: The metric name, ending in its unit (``_seconds``, ``_bytes``).
        help: One line of help.
        labelnames: Label names.
        buckets: Finite upper bounds, ascending (default: 0.5 ms to 16.4 s, doubling).
        max_label_sets: The cap on label sets (see :meth:`labels`).

    Example:
        >>> latency = Histogram("asyncperf_example_seconds", "Latency.")
        >>> latency.observe(0.003)
        >>> round(latency.quantile(0.5), 4)
        0.003
    """

    type: MetricType = "histogram"

    def __init__(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Iterable[float] = SECONDS_BUCKETS,
        max_label_sets: int = DEFAULT_MAX_LABEL_SETS,
    ) -> None:
        bounds = tuple(float(b) for b in buckets if b != math.inf)
        if not bounds or any(b >= c for b, c in itertools.pairwise(bounds)):
            raise ConfigurationError(f"buckets must be ascending and non-empty, got {bounds}")
        if "le" in labelnames:
            raise ConfigurationError("'le' is reserved for histogram buckets")
        self.bounds = bounds
        super().__init__(name, help, labelnames, max_label_sets=max_label_sets)

    def _new_child(self) -> HistogramChild:
        return HistogramChild(self.bounds)

    def observe(self, value: float) -> None:
        """Record one observation in the unlabelled series."""
        self._only().observe(value)

    def quantile(self, q: float) -> float | None:
        """Estimate quantile ``q`` over every series together; ``None`` if empty."""
        counts = [0] * (len(self.bounds) + 1)
        for _, child in self.children():
            for index, count in enumerate(child.counts):
                counts[index] += count
        return estimate_quantile(q, self.bounds, counts)

    def collect(self) -> Family:
        """Return this metric's samples (``_bucket`` cumulative, ``_count``, ``_sum``)."""
        family = Family(self.name, "histogram", self.help)
        bucket, append = self.name + "_bucket", family.samples.append
        for values, child in self.children():
            labels = self._labels(values)
            counts = list(child.counts)
            cumulative = 0
            for bound, count in zip(self.bounds, counts, strict=False):
                cumulative += count
                append(Sample(bucket, (*labels, ("le", _format_bound(bound))), cumulative))
            cumulative += counts[-1]
            append(Sample(bucket, (*labels, ("le", "+Inf")), cumulative))
            append(Sample(self.name + "_count", labels, cumulative))
            append(Sample(self.name + "_sum", labels, child.sum))
        return family


def _format_bound(bound: float) -> str:
    return repr(bound)


AnyMetric = Counter | Gauge | Histogram
Collector = Callable[[], Iterable[Family]]


class MetricsRegistry:
    """Metrics by name, plus collectors called at collection time.

    Args:
        max_label_sets: The default cap on label sets for metrics created here.
    """

    def __init__(self, *, max_label_sets: int = DEFAULT_MAX_LABEL_SETS) -> None:
        self.max_label_sets = max_label_sets
        self._metrics: dict[str, AnyMetric] = {}
        self._collectors: list[Collector] = []

    def _add(self, metric: AnyMetric) -> None:
        if metric.name in self._metrics:
            raise ConfigurationError(f"metric {metric.name!r} is already registered")
        self._metrics[metric.name] = metric

    def counter(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Counter:
        """Create and register a :class:`Counter`."""
        metric = Counter(name, help, labelnames, max_label_sets=self.max_label_sets)
        self._add(metric)
        return metric

    def gauge(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        *,
        function: Callable[[], float] | None = None,
    ) -> Gauge:
        """Create and register a :class:`Gauge`."""
        metric = Gauge(
            name, help, labelnames, max_label_sets=self.max_label_sets, function=function
        )
        self._add(metric)
        return metric

    def histogram(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Iterable[float] = SECONDS_BUCKETS,
    ) -> Histogram:
        """Create and register a :class:`Histogram`."""
        metric = Histogram(
            name, help, labelnames, buckets=buckets, max_label_sets=self.max_label_sets
        )
        self._add(metric)
        return metric

    def register(self, metric: AnyMetric) -> AnyMetric:
        """Register a metric built elsewhere; return it."""
        self._add(metric)
        return metric

    def add_collector(self, collector: Collector) -> None:
        """Call ``collector()`` at every collection for extra families."""
        self._collectors.append(collector)

    def get(self, name: str) -> AnyMetric | None:
        """Return the metric registered under ``name``, if any."""
        return self._metrics.get(name)

    def collect(self) -> list[Family]:
        """Return every family: registered metrics, then collectors' (same names merged)."""
        families: dict[str, Family] = {}
        for metric in list(self._metrics.values()):
            families[metric.name] = metric.collect()
        for collector in list(self._collectors):
            for family in collector():
                known = families.get(family.name)
                if known is None:
                    families[family.name] = family
                else:
                    known.samples.extend(family.samples)
        return list(families.values())
