"""Process resources (psutil and the stdlib fallback) and several workers."""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncperf.monitor import PerformanceMonitor, ProcessCollector
from tests.monitor._support import samples


@pytest.mark.parametrize("use_psutil", [True, False], ids=["psutil", "stdlib"])
def test_process_resources(use_psutil: bool) -> None:
    collector = ProcessCollector(use_psutil=use_psutil)
    first = collector.sample()
    second = collector.sample()
    assert first.source == ("psutil" if use_psutil else "stdlib")
    assert second.cpu_seconds >= first.cpu_seconds > 0
    assert second.cpu_ratio is not None
    assert first.resident_memory_bytes
    assert first.resident_memory_bytes > 0
    assert first.open_fds
    assert first.open_fds > 0
    assert first.threads >= 1
    assert len(first.gc_collections) == 3
    text = PerformanceMonitor(use_psutil=use_psutil, loop_lag_interval=None).prometheus_text()
    parsed = samples(text)
    assert parsed[("asyncperf_process_resident_memory_bytes", frozenset())] > 0
    assert ("asyncperf_python_gc_collections_total", frozenset({("generation", "0")})) in parsed


def test_import_stays_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, asyncperf.monitor; "
        "print([m for m in ('starlette', 'aiohttp', 'psutil') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_worker_label_and_multiprocess_aggregation(tmp_path: Path) -> None:
    alone = PerformanceMonitor(worker="w0", loop_lag_interval=None)
    alone.record_request("GET", "/a", 200, 0.01)
    assert all(("worker", "w0") in labels for _, labels in samples(alone.prometheus_text()))
    first = PerformanceMonitor(worker="a", multiprocess_dir=tmp_path, loop_lag_interval=None)
    second = PerformanceMonitor(worker="b", multiprocess_dir=tmp_path, loop_lag_interval=None)
    first.record_request("GET", "/a", 200, 0.01)
    second.record_request("GET", "/a", 200, 0.01)
    second.record_request("GET", "/a", 200, 0.02)
    second.prometheus_text()  # publishes b's series
    parsed = samples(first.prometheus_text())  # any worker answers for all
    key = "asyncperf_http_server_request_duration_seconds_count"
    labels = {("method", "GET"), ("route", "/a"), ("status_class", "2xx")}
    assert parsed[(key, frozenset({*labels, ("worker", "a")}))] == 1
    assert parsed[(key, frozenset({*labels, ("worker", "b")}))] == 2


def test_public_api_is_sorted_and_complete() -> None:
    import asyncperf.monitor as monitor

    names = list(monitor.__all__)
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))
    for name in names:
        assert hasattr(monitor, name)
