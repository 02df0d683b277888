"""Watching caches and generic components; the sampled hit-latency probe."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest

from asyncperf import Cache, ConfigurationError, MemoryStore
from asyncperf.monitor import ComponentMetric, PerformanceMonitor
from tests.monitor._support import families, samples


@dataclass(frozen=True)
class FakeHttpCacheStatistics:
    hits: int
    misses: int
    stale: int
    not_modified: int
    bytes_saved: int
    hit_rate: float
    entries: int
    mode: str


class ResponseCache:  # declares its kind as asyncperf.http's does
    monitor_kind = "http_cache"

    def statistics(self) -> FakeHttpCacheStatistics:
        return FakeHttpCacheStatistics(7, 3, 1, 2, 4096, 0.7, 12, "shared")


class LLMCache:
    monitor_kind = "llm_cache"

    def statistics(self) -> dict[str, object]:
        return {"calls": 4}

    def monitor_metrics(self) -> list[ComponentMetric]:
        return [
            ComponentMetric("llm_cache_cost_saved_usd_total", "counter", Decimal("0.25")),
            ComponentMetric(
                "llm_cache_tokens_saved_total", "counter", 900, labels={"model": "gpt-x"}
            ),
        ]


async def test_cache_metrics_by_namespace_and_sampled_hit_latency() -> None:
    cache = Cache(MemoryStore())
    users = cache.namespace("users")
    monitor = PerformanceMonitor(loop_lag_interval=None)
    monitor.watch(cache)
    monitor.watch(users)
    await cache.set("a", 1)
    assert await cache.get("a") == 1
    assert await cache.get("missing") is None
    await users.get_or_set("u1", lambda: {"id": 1})
    await monitor.probe_caches()
    # the probe reads through its own namespace view: the watched counters are untouched
    assert (cache.statistics().hits, cache.statistics().misses) == (1, 1)
    text = monitor.prometheus_text()
    parsed = samples(text)
    root = frozenset({("cache", "default"), ("namespace", "")})
    view = frozenset({("cache", "users"), ("namespace", "users")})
    assert parsed[("asyncperf_cache_hits_total", root)] == 1
    assert parsed[("asyncperf_cache_misses_total", root)] == 1
    assert parsed[("asyncperf_cache_loads_total", view)] == 1
    assert parsed[("asyncperf_cache_breaker_state", root | {("state", "closed")})] == 1
    assert parsed[("asyncperf_cache_breaker_state", root | {("state", "open")})] == 0
    hit = frozenset({("cache", "default"), ("operation", "get"), ("result", "hit")})
    assert parsed[("asyncperf_cache_operation_duration_seconds_count", hit)] == 5
    assert families(text)["asyncperf_cache_coalesced"] == "counter"
    snapshot = monitor.snapshot()
    assert snapshot["caches"][0]["hit_latency"]["samples"] == 5
    assert snapshot["caches"][0]["hit_latency"]["p99"] > 0


async def test_generic_components_and_the_metrics_protocol() -> None:
    monitor = PerformanceMonitor(loop_lag_interval=None)
    monitor.watch(ResponseCache())
    monitor.watch(ResponseCache())  # numbered, not rejected
    monitor.watch(LLMCache(), name="chat")
    with pytest.raises(ConfigurationError):
        monitor.watch(LLMCache(), name="chat")
    with pytest.raises(ConfigurationError):
        monitor.watch(object())
    text = monitor.prometheus_text()
    kinds = families(text)
    parsed = samples(text)
    first = frozenset({("name", "http_cache")})
    assert parsed[("asyncperf_http_cache_hits_total", first)] == 7
    assert parsed[("asyncperf_http_cache_bytes_saved_total", first)] == 4096
    assert parsed[("asyncperf_http_cache_hit_ratio", first)] == 0.7
    assert kinds["asyncperf_http_cache_entries"] == "gauge"
    assert parsed[("asyncperf_http_cache_mode", first | {("state", "shared")})] == 1
    assert ("asyncperf_http_cache_hits_total", frozenset({("name", "http_cache_2")})) in parsed
    chat = frozenset({("name", "chat")})
    assert parsed[("asyncperf_llm_cache_cost_saved_usd_total", chat)] == 0.25
    tokens = chat | {("model", "gpt-x")}
    assert parsed[("asyncperf_llm_cache_tokens_saved_total", tokens)] == 900
    components = monitor.snapshot()["components"]
    assert components[0]["statistics"]["bytes_saved"] == 4096
    assert components[2] == {"kind": "llm_cache", "name": "chat", "statistics": {"calls": 4}}


def test_a_nested_total_is_exported_at_the_top_level() -> None:
    import dataclasses

    from asyncperf.monitor._watch import statistics_dict

    @dataclasses.dataclass(frozen=True)
    class Totals:
        requests: int
        exact_hits: int

    @dataclasses.dataclass(frozen=True)
    class Stats:
        total: Totals
        by_model: dict[str, Totals]

    flat = statistics_dict(Stats(Totals(5, 3), {"m": Totals(5, 3)}))
    assert flat["requests"] == 5
    assert flat["exact_hits"] == 3
    assert "total" not in flat
