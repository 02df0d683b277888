"""The asyncperf command: the demo is the README's main job."""

from __future__ import annotations

import subprocess
import sys

import pytest

from asyncperf.cli import build_parser, main


def test_demo_runs_and_reports_what_caching_saved(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--requests", "400", "--keys", "40", "--latency-ms", "2"]) == 0
    out = capsys.readouterr().out
    assert "backend loads" in out
    assert "loads avoided" in out
    assert "stampede: 1000 callers -> 1 backend load" in out
    assert "warm-up: 200 keys loaded" in out
    avoided = int(out.split("loads avoided: ")[1].split(" ")[0])
    assert 0 < avoided < 400


def test_demo_rejects_bad_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--requests", "0"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--latency-ms", "-1"])
    assert "positive" in capsys.readouterr().err


def test_module_entry_point_prints_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "asyncperf", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("asyncperf ")


TOUR = ["--requests", "400", "--keys", "40", "--latency-ms", "2"]
TOUR += ["--app-requests", "120", "--speed", "30"]


def _tour_numbers(out: str) -> tuple[int, int]:
    """The app part's (loads avoided, loads without caching)."""
    part2 = out.split("part 2:")[1]
    avoided, _, total = part2.split("loads avoided: ")[1].split(" ")[:3]
    return int(avoided), int(total)


def test_demo_tour_prints_every_report_section(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", *TOUR]) == 0
    out = capsys.readouterr().out
    assert "caches: in memory (no server needed)" in out
    for section in ("part 1: asyncperf.Cache", "part 2: a Starlette app", "report ("):
        assert section in out
    for row in ("GET /products/{id}", "GET /ask (LLM)", "all requests"):
        assert row in out.split("report (")[1]
    assert "without caching  [" in out  # the progress bars
    assert "with caching     [" in out
    assert "/report/{region}" not in out.split("report (")[1]  # no --dsn: no DB part
    for line in ("  http: ", "  llm: ", "  db: not run", "  monitor: "):
        assert line in out
    avoided, total = _tour_numbers(out)
    assert 0 < avoided < total == 120
    assert "compression saved" in out
    assert "0 B of" not in out
    saved = out.split("(saved $")[1].split(")")[0]
    assert float(saved) > 0
    assert "FAILED" not in out


def test_demo_without_the_app_modules_runs_part_1_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from asyncperf.demo import tour as _demo

    monkeypatch.setattr(_demo, "_missing", lambda *names: [n for n in names if n == "httpx"])
    assert main(["demo", *TOUR]) == 0
    out = capsys.readouterr().out
    assert "stampede: 1000 callers -> 1 backend load" in out
    assert "part 2 (the app tour) needs httpx" in out
    assert main(["demo", *TOUR, "--serve"]) == 2
    assert "--serve needs httpx" in capsys.readouterr().err


def test_demo_rejects_a_bad_serve_address(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--serve", "8000"])
    assert "expected HOST:PORT" in capsys.readouterr().err
    assert build_parser().parse_args(["demo", "--serve"]).serve == "127.0.0.1:8000"


@pytest.mark.parametrize("rate", ["-1", "fast", "nan", "20000"])
def test_demo_rejects_a_bad_serve_load(rate: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--serve", "--serve-load", rate])
    assert f"must be requests/s from 0 to 10000, got {rate}" in capsys.readouterr().err
    assert build_parser().parse_args(["demo", "--serve-load", "0"]).serve_load == 0.0
    assert build_parser().parse_args(["demo"]).serve_load == 20.0


def _redis_keys(pattern: str) -> list[bytes]:
    import redis

    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        client.ping()  # a Redis that is down fails the test, never skips it
        return list(client.scan_iter(match=pattern))
    finally:
        client.close()


@pytest.mark.redis
def test_demo_tour_on_redis_leaves_no_keys(capsys: pytest.CaptureFixture[str]) -> None:
    _redis_keys("asyncperf-demo-*")
    assert main(["demo", *TOUR, "--redis", "redis://127.0.0.1:6379/0"]) == 0
    out = capsys.readouterr().out
    assert "caches: Redis at redis://127.0.0.1:6379/0" in out
    assert "asyncperf.Cache(RedisStore(...))" in out
    prefix = out.split("keys under ")[1].split("*")[0]
    assert prefix.startswith("asyncperf-demo-")
    assert "stampede: 1000 callers -> 1 backend load" in out
    avoided, _ = _tour_numbers(out)
    assert avoided > 0
    assert _redis_keys(f"{prefix}*") == []  # cleaned at exit


def test_demo_reports_an_unreachable_redis(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", *TOUR, "--redis", "redis://127.0.0.1:1/0"]) == 2
    assert "Redis at redis://127.0.0.1:1/0" in capsys.readouterr().err


DSN = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.mark.postgres
def test_demo_tour_with_cached_queries_drops_its_schema(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import asyncio

    import asyncpg

    assert main(["demo", *TOUR, "--dsn", DSN]) == 0
    out = capsys.readouterr().out
    schema = out.split("database: PostgreSQL at ")[1].split(", ")[1].split(".")[0]
    assert schema.startswith("asyncperf_demo_")
    report = out.split("report (")[1]
    assert "GET /report/{region}" in report
    queries = report.split("  db: ")[1]
    avoided, _, total = queries.split(" ")[:3]
    assert 0 < int(avoided) < int(total)
    assert "an UPDATE invalidated the cached reports" in queries
    assert "the next GET ran 1 query" in queries

    async def schema_exists() -> bool:
        conn = await asyncpg.connect(DSN)
        try:
            found = await conn.fetchval(
                "SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema
            )
            return bool(found)
        finally:
            await conn.close()

    assert not asyncio.run(schema_exists())


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _served_requests(metrics: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics)
        if family.name == "asyncperf_http_server_request_duration_seconds"
        for sample in family.samples
        if sample.name.endswith("_count")
    )


@pytest.mark.slow
def test_demo_serve_keeps_the_app_and_dashboard_running() -> None:
    import signal
    import time

    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    port = _free_port()
    command = [sys.executable, "-m", "asyncperf", "demo", *TOUR, "--serve", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                dashboard = httpx.get(f"{base}/_asyncperf/", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the demo never started serving"
                time.sleep(0.1)
        assert dashboard.status_code == 200
        assert dashboard.headers["content-type"].startswith("text/html")
        assert "asyncperf monitor" in dashboard.text
        assert httpx.get(f"{base}/products/7", timeout=5).json()["id"] == 7
        metrics = httpx.get(f"{base}/_asyncperf/metrics", timeout=5)
        assert metrics.status_code == 200
        names = {family.name for family in text_string_to_metric_families(metrics.text)}
        assert "asyncperf_http_server_request_duration_seconds" in names
        assert "asyncperf_cache_hits" in names
        assert any(name.startswith("asyncperf_llm_cache_") for name in names)
        # The demo's own background traffic moves the dashboard with nobody driving it.
        before = _served_requests(metrics.text)
        time.sleep(2.0)
        after = _served_requests(httpx.get(f"{base}/_asyncperf/metrics", timeout=5).text)
        assert after - before >= 10, (before, after)  # 20 requests/s by default
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert f"dashboard: {base}/_asyncperf/" in out
    assert "load:      20 requests/s of the tour's traffic" in out
    assert "stopped; cleaning up" in out
