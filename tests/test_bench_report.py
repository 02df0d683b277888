"""bench/report.py on a tiny synthetic pytest-benchmark JSON, and bench/loadtest.py's wrk parser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.instructions import VARIANTS
from bench.loadtest import parse_wrk

# Captured from `wrk -t2 -c50 -d1s --latency` (wrk 4.1.0, Debian 12) against the load test's
# bare app on loopback; the second ran against a path that answers 404.
WRK_OK = """\
Running 1s test @ http://127.0.0.1:18777/items/1
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    24.69ms    1.65ms  34.88ms   73.74%
    Req/Sec     1.01k   121.60     1.22k    75.00%
  Latency Distribution
     50%   24.52ms
     75%   25.64ms
     90%   26.54ms
     99%   29.72ms
  2007 requests in 1.00s, 3.41MB read
Requests/sec:   2002.55
Transfer/sec:      3.40MB
"""

WRK_404 = """\
Running 1s test @ http://127.0.0.1:18777/missing
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     9.71ms    0.91ms  16.97ms   75.58%
    Req/Sec     2.57k   163.90     2.96k    70.00%
  Latency Distribution
     50%    9.77ms
     75%   10.17ms
     90%   10.64ms
     99%   11.30ms
  5127 requests in 1.00s, 475.65KB read
  Non-2xx or 3xx responses: 5127
Requests/sec:   5112.05
Transfer/sec:    474.26KB
"""


def test_parse_wrk_success() -> None:
    result = parse_wrk(WRK_OK)
    assert result.requests == 2007
    assert result.seconds == pytest.approx(1.0)
    assert result.requests_per_s == pytest.approx(2002.55)
    assert result.p(50) == pytest.approx(24.52)
    assert result.p(99) == pytest.approx(29.72)
    assert result.latency_max_ms == pytest.approx(34.88)
    assert result.transfer_per_s == pytest.approx(3.40 * 2**20)
    assert result.non_2xx == 0
    assert result.socket_errors == {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    assert not result.failed


def test_parse_wrk_counts_failures() -> None:
    result = parse_wrk(WRK_404)
    assert result.non_2xx == 5127
    assert result.failed
    # wrk adds this line when a socket failed; units below 1 ms are printed in us.
    errors = WRK_OK.replace(
        "Requests/sec:", "  Socket errors: connect 0, read 3, write 0, timeout 2\nRequests/sec:"
    ).replace("50%   24.52ms", "50%  812.00us")
    result = parse_wrk(errors)
    assert result.socket_errors == {"connect": 0, "read": 3, "write": 0, "timeout": 2}
    assert result.p(50) == pytest.approx(0.812)
    assert result.failed


def test_parse_wrk_rejects_other_output() -> None:
    with pytest.raises(ValueError, match="unexpected wrk output"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def _bench(group: str, name: str, extra: dict[str, Any], median: float = 0.01) -> dict[str, Any]:
    return {"group": group, "name": name, "extra_info": extra, "stats": {"median": median}}


def synthetic() -> dict[str, Any]:
    """What pytest-benchmark writes, cut down, with the plugin's copy of the ratio report."""
    results = [
        ("memory-get", "async def around dict.get (ASYNC FLOOR)", 100.0, "ns/op", True),
        ("memory-get", "asyncperf Cache.get (no TTL)", 250.0, "ns/op", False),
        ("memory-get", "cashews Cache().get", 5000.0, "ns/op", False),
        ("memory-get", "cachetools LRUCache.get (sync)", 200.0, "ns/op", False),
        ("redis-100-tasks", "raw redis.asyncio GET (RAW)", 10_000.0, "keys/s", True),
        ("redis-100-tasks", "asyncperf Cache.get (auto-MGET)", 70_000.0, "keys/s", False),
        ("redis-100-tasks", "aiocache RedisCache.get", 7_000.0, "keys/s", False),
    ]
    return {
        "machine_info": {
            "python_implementation": "CPython",
            "python_version": "3.11.7",
            "system": "Linux",
            "release": "6.1",
            "machine": "x86_64",
            "cpu": {"brand_raw": "Test CPU", "count": 2},
            report.VERSIONS_KEY: {"asyncperf": "0.1.0", "redis": "8.1.0", "cashews": "7.6.0"},
        },
        "commit_info": {"id": "0123456789abcdef", "branch": "main", "dirty": False},
        "datetime": "2026-01-02T03:04:05+00:00",
        "version": "5.3.1",
        "benchmarks": [
            _bench("memory-get", "test_floor", {"label": results[0][1], "ns_per_op": 100.0}),
        ],
        report.REPORT_KEY: {
            "results": [
                {"group": g, "label": label, "value": v, "unit": u, "floor": f, "note": ""}
                for g, label, v, u, f in results
            ],
            "targets": [
                {
                    "group": "memory-get",
                    "label": "asyncperf Cache.get (no TTL)",
                    "kind": "max_ratio",
                    "limit": 2.0,
                    "text": "<= 2x async floor",
                },
                {
                    "group": "redis-100-tasks",
                    "label": "asyncperf Cache.get (auto-MGET)",
                    "kind": "min_ratio",
                    "limit": 3.0,
                    "text": ">= 3x raw",
                },
            ],
            "notes": ["a note from the run"],
            "quick": False,
            "mode": "20000 ops x 7 rounds",
            "pytest_args": ["bench/", "--benchmark-only"],
        },
    }


LOAD = {
    "generated": "2026-01-02 03:05 UTC",
    "command": "python -m bench.loadtest --quick",
    "wrk_version": "4.1.0",
    "threads": 2,
    "connections": 50,
    "duration": 2,
    "warmup": 1,
    "variants": [
        {"name": "bare", "requests_per_s": 2000.0, "latency_p50_ms": 24.0,
         "latency_p99_ms": 30.0, "requests": 4000, "non_2xx": 0,
         "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0}},
        {"name": "memory", "requests_per_s": 7000.0, "latency_p50_ms": 6.5,
         "latency_p99_ms": 11.0, "requests": 14000, "non_2xx": 0,
         "cache_hits": 990, "cache_misses": 10,
         "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0}},
    ],
    "failed": False,
}  # fmt: skip


def test_report_page(tmp_path: Path) -> None:
    source = tmp_path / "run.json"
    source.write_text(json.dumps(synthetic()), encoding="utf-8")
    loadtest = tmp_path / "loadtest.json"
    loadtest.write_text(json.dumps(LOAD), encoding="utf-8")
    out = tmp_path / "docs" / "benchmarks.md"
    page = report.build(
        source, out, None, loadtest=loadtest, command="python -m bench.report run.json"
    )
    assert out.read_text(encoding="utf-8") == page
    assert page.startswith("<!-- generated by bench/report.py; do not edit.")
    assert "by `python -m bench.report run.json`" in page
    assert "Test CPU, 2 logical CPUs" in page
    assert "| cashews | 7.6.0 |" in page
    # ratios against the floor and against each peer (times: lower is better; rates: higher)
    assert "| **asyncperf Cache.get (no TTL)** | 250 ns/op | 2.50x |  |" in page
    assert "| cashews Cache().get | 5,000 ns/op | 50.00x |  |" in page
    assert "| asyncperf Cache.get (no TTL) | cashews | cashews Cache().get | 20.00x |" in page
    assert "| cachetools | cachetools LRUCache.get (sync) | 0.80x |" in page
    assert "| aiocache | aiocache RedisCache.get | 10.00x |" in page
    # targets: 2.5x > 2x missed; 7x >= 3x met
    assert "| **MISSED** | memory-get | asyncperf Cache.get (no TTL) | 2.500x floor |" in page
    assert "| MET | redis-100-tasks | asyncperf Cache.get (auto-MGET) | 7.000x floor |" in page
    assert "1 of 2 targets met" in page
    # load test section, notes, and a runnable example (tests/test_docs.py runs it)
    assert "| memory | 7,000 | 3.50x | 6.50 ms | 11.00 ms | 14,000 | 0 | 0 | 99.0% |" in page
    assert "Every request succeeded." in page
    assert "a note from the run" in page
    assert "```python" in page
    assert page.index("### memory-get") < page.index("### redis-100-tasks")


def test_report_without_the_plugin_uses_extra_info() -> None:
    data = synthetic()
    del data[report.REPORT_KEY]
    data["benchmarks"].append(
        _bench(
            "redis-get",
            "test_round_robin",
            {"medians": {"raw GET (floor)": 80_000.0, "asyncperf get": 88_000.0}, "unit": "ns/op"},
        )
    )
    run = report.load_run(data)
    assert not run.from_plugin
    assert [(r.group, r.label, r.value, r.floor) for r in run.rows] == [
        ("memory-get", "async def around dict.get (ASYNC FLOOR)", 100.0, False),
        ("redis-get", "raw GET (floor)", 80_000.0, True),
        ("redis-get", "asyncperf get", 88_000.0, False),
    ]
    page = report.render(run, command="x", generated="today", charts={})
    assert "The JSON holds no targets" in page
    assert "| **asyncperf get** | 88.0 µs/op | 1.10x |  |" in page


def test_charts_are_pngs(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    run = report.load_run(synthetic())
    out = tmp_path / "docs" / "benchmarks.md"
    stale = tmp_path / "docs" / "img" / "bench-gone.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    charts = report.write_charts(run, tmp_path / "docs" / "img", out)
    assert charts == {
        "memory-get": "img/bench-memory-get.png",
        "redis-100-tasks": "img/bench-redis-100-tasks.png",
    }
    for relative in charts.values():
        assert (out.parent / relative).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert not stale.exists()


def test_load_rounds_pair_each_variant_with_the_reference_of_its_round() -> None:
    from bench.loadtest import Server, combine

    def output(rate: float) -> str:
        return WRK_OK.replace("Requests/sec:   2002.55", f"Requests/sec:   {rate:.2f}")

    servers = [
        Server("nowork", None, "", [output(r) for r in (1000, 2000, 1500)]),  # type: ignore[arg-type]
        Server("memory", None, "", [output(r) for r in (950, 1900, 1800)]),  # type: ignore[arg-type]
    ]
    nowork, memory = combine(servers, {"memory": {"hits": 9, "misses": 1}})
    # Per-round ratios 0.95, 0.95, 1.2: the median is 0.95, not 1900 / 1500.
    assert memory.ratio == pytest.approx(0.95)
    assert memory.wrk.requests_per_s == 1800  # the median round
    assert nowork.ratio == pytest.approx(1.0)
    data = memory.as_json()
    assert data["rounds_requests_per_s"] == [950, 1900, 1800]
    assert data["requests"] == 3 * 2007
    assert data["cache_hits"] == 9


@pytest.mark.parametrize("variant", VARIANTS)
def test_instruction_counts_drive_every_variant(variant: str) -> None:
    # What callgrind counts in bench/instructions.py: each variant's requests must run
    # (a broken driver would count a traceback's instructions instead).
    from bench.instructions import drive

    drive(variant, 5)


def test_bytecode_counts_are_the_requests_own() -> None:
    # `python -m bench.instructions --bytecodes`: traced from the end of the warm-up, so
    # the same variant gives the same count however many requests are counted, and a
    # cached miss runs more of them than the route it wraps.
    from bench.instructions import bytecodes

    app = bytecodes("app", 20)
    assert app == bytecodes("app", 40)
    assert bytecodes("miss", 20) > app > 0


def test_cache_counts_parse_callgrinds_summary_and_compare_added_misses() -> None:
    # `python -m bench.instructions --cache`: the nine events of callgrind's cache
    # simulation, read from its summary line, and each ratio taken over what a variant
    # adds to the route (the app's own counts subtracted, read and write misses summed).
    from bench.instructions import CACHE_EVENTS, cache_report, collected

    stderr = (
        "==17454== Events    : Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw\n"
        "==17454== Collected : 126741 27914 11771 1082 991 580 1064 782 548\n"
    )
    assert collected(stderr) == [126741, 27914, 11771, 1082, 991, 580, 1064, 782, 548]
    with pytest.raises(ValueError, match="Collected"):
        collected("==1== valgrind: failed to start tool\n")

    def row(ir: float, i1: float, d1r: float, d1w: float) -> list[float]:
        counts = dict.fromkeys(CACHE_EVENTS, 0.0)
        counts.update(Ir=ir, I1mr=i1, D1mr=d1r, D1mw=d1w)
        return [counts[name] for name in CACHE_EVENTS]

    lines = cache_report(
        {
            "app": row(100.0, 10.0, 5.0, 5.0),
            "essential": row(200.0, 30.0, 15.0, 5.0),
            "lean": row(250.0, 40.0, 15.0, 10.0),
            "miss": row(400.0, 70.0, 25.0, 15.0),
        }
    )
    assert lines[1].split() == ["app", "100", "10", "10"]
    assert lines[-2] == (
        "miss adds 3.00x the essential work's instructions, 3.00x its L1i misses,"
        " 3.00x its L1d misses"
    )
    assert lines[-1] == (
        "lean adds 1.50x the essential work's instructions, 1.50x its L1i misses,"
        " 1.50x its L1d misses"
    )


def test_server_counts_read_whole_keep_alive_responses() -> None:
    # `python -m bench.instructions --server` drives a real load-test server with _get:
    # each response must be read to its end (or the next one would be misread), and a
    # failed request must stop the count, not be counted.
    import socket
    from urllib.parse import urlsplit

    from bench.instructions import _get
    from bench.loadtest import DEFAULT_REDIS_URL, start_server, stop

    server = start_server("nowork", DEFAULT_REDIS_URL)
    try:
        port = urlsplit(server.base).port
        assert port is not None
        with socket.create_connection(("127.0.0.1", port)) as sock, sock.makefile("rb") as reader:
            for n in range(3):
                _get(sock, reader, f"/items/{n}")
            with pytest.raises(RuntimeError, match="404"):
                _get(sock, reader, "/nothing")
    finally:
        stop(server.process)
