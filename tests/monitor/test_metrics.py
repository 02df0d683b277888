"""Counters, gauges, histograms, quantiles, label caps and the exposition formats."""

from __future__ import annotations

import itertools
import math

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

from asyncperf import ConfigurationError
from asyncperf.monitor import (
    SECONDS_BUCKETS,
    Counter,
    Gauge,
    Histogram,
    MetricsRegistry,
    estimate_quantile,
    log_buckets,
    render,
)
from tests.monitor._support import families, samples


def test_log_buckets_are_log_spaced() -> None:
    bounds = log_buckets(0.001, 2.0, 5)
    assert bounds == (0.001, 0.002, 0.004, 0.008, 0.016)
    ratios = {round(b / a, 6) for a, b in itertools.pairwise(SECONDS_BUCKETS)}
    assert ratios == {2.0}
    for bad in ((0, 2.0, 3), (1.0, 1.0, 3), (1.0, 2.0, 0)):
        with pytest.raises(ConfigurationError):
            log_buckets(*bad)


def test_histogram_counts_le_inclusively_and_estimates_quantiles() -> None:
    histogram = Histogram("asyncperf_t_seconds", "t", buckets=(0.1, 0.2, 0.4))
    for value in (0.1, 0.15, 0.3, 5.0):
        histogram.observe(value)
    child = histogram._only()
    assert child.counts == [1, 1, 1, 1]
    assert child.count == 4
    assert math.isclose(child.sum, 5.55)
    assert histogram.quantile(0.5) == pytest.approx(0.2)
    assert histogram.quantile(1.0) == 0.4  # +Inf answers with the largest bound
    assert Histogram("asyncperf_e_seconds", "e").quantile(0.5) is None


def test_quantile_error_is_within_one_bucket() -> None:
    histogram = Histogram("asyncperf_q_seconds", "q")
    values = [0.0001 * 1.07**i for i in range(150)]
    for value in values:
        histogram.observe(value)
    for q in (0.5, 0.95, 0.99):
        exact = sorted(values)[math.ceil(q * len(values)) - 1]
        estimate = histogram.quantile(q)
        assert estimate is not None
        assert exact / 2 <= estimate <= exact * 2


def test_estimate_quantile_interpolates_linearly() -> None:
    assert estimate_quantile(0.5, (1.0, 2.0), [0, 10, 0]) == pytest.approx(1.5)
    assert estimate_quantile(0.5, (1.0, 2.0), [0, 0, 0]) is None


def test_labels_are_capped_and_fold_into_other() -> None:
    counter = Counter("asyncperf_c_total", "c", ["path"], max_label_sets=3)
    for index in range(10):
        counter.labels(f"/raw/{index}").inc()
    values = dict(counter.children())
    assert len(values) == 4
    assert values[("other",)].value == 7
    assert counter.folded == 7


def test_metric_validation() -> None:
    with pytest.raises(ConfigurationError):
        Counter("asyncperf_bad", "counters end in _total")
    with pytest.raises(ConfigurationError):
        Histogram("asyncperf_h_seconds", "h", ["le"])
    with pytest.raises(ConfigurationError):
        Histogram("asyncperf_h_seconds", "h", buckets=(2.0, 1.0))
    with pytest.raises(ConfigurationError):
        Gauge("asyncperf_g", "g", ["a"]).set(1)
    with pytest.raises(ConfigurationError):
        Counter("asyncperf_x_total", "x", ["a"]).labels("1", "2")
    registry = MetricsRegistry()
    registry.counter("asyncperf_once_total", "once")
    with pytest.raises(ConfigurationError):
        registry.counter("asyncperf_once_total", "twice")


def _registry() -> MetricsRegistry:
    registry = MetricsRegistry()
    registry.counter("asyncperf_requests_total", "Requests.", ["route"]).labels('/a"b\\').inc(3)
    gauge = registry.gauge("asyncperf_level_bytes", "Level.\nTwo lines.")
    gauge.set(2.5)
    registry.gauge("asyncperf_fn_ratio", "From a function.", function=lambda: 0.25)
    histogram = registry.histogram(
        "asyncperf_duration_seconds", "Duration.", ["method"], buckets=(0.1, 1.0)
    )
    histogram.labels("GET").observe(0.05)
    histogram.labels("GET").observe(3.0)
    return registry


def test_prometheus_text_parses_with_prometheus_client() -> None:
    text = render(_registry().collect(), const_labels=(("worker", "w1"),))
    kinds = families(text)
    assert kinds == {
        "asyncperf_requests": "counter",
        "asyncperf_level_bytes": "gauge",
        "asyncperf_fn_ratio": "gauge",
        "asyncperf_duration_seconds": "histogram",
    }
    parsed = samples(text)
    worker = ("worker", "w1")
    assert parsed[("asyncperf_requests_total", frozenset({worker, ("route", '/a"b\\')}))] == 3
    assert parsed[("asyncperf_level_bytes", frozenset({worker}))] == 2.5
    assert parsed[("asyncperf_fn_ratio", frozenset({worker}))] == 0.25
    get = {worker, ("method", "GET")}
    bucket = "asyncperf_duration_seconds_bucket"
    assert parsed[(bucket, frozenset({*get, ("le", "0.1")}))] == 1
    assert parsed[(bucket, frozenset({*get, ("le", "1.0")}))] == 1
    assert parsed[(bucket, frozenset({*get, ("le", "+Inf")}))] == 2
    assert parsed[("asyncperf_duration_seconds_count", frozenset(get))] == 2
    assert parsed[("asyncperf_duration_seconds_sum", frozenset(get))] == pytest.approx(3.05)


def test_openmetrics_text_parses_with_the_openmetrics_parser() -> None:
    text = render(_registry().collect(), openmetrics=True)
    assert text.endswith("# EOF\n")
    parsed = {f.name: f for f in openmetrics_families(text)}
    assert parsed["asyncperf_requests"].type == "counter"
    assert parsed["asyncperf_duration_seconds"].type == "histogram"
