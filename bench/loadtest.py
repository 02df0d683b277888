"""Load test: wrk drives a small Starlette app under uvicorn on loopback, with and without
asyncperf's response cache.

Usage (from the repository root; needs ``wrk``, Debian package ``wrk``)::

    .venv/bin/python -m bench.loadtest                       # 7 rounds of 5 s per variant
    .venv/bin/python -m bench.loadtest --quick               # one round of 2 s (CI)
    .venv/bin/python -m bench.loadtest --json bench/results/loadtest.json --markdown out.md

The app: ``GET /items/{n}`` awaits 20 ms and returns a ~2 KB JSON body. Variants, each in a
uvicorn process of its own (one worker, uvloop and httptools as ``uvicorn[standard]``
installs them, ``127.0.0.1``, a free port):

* ``nowork``: the reference: the same Starlette route returning the same bytes at once (no
  sleep, no cache). A cache hit skips the app and its router, so this is the ceiling a hit
  is measured against (each row's ``vs no-work`` ratio);
* ``nowork-fields``: the same, also sending the header fields a hit adds (``Vary``,
  ``ETag``, ``Age``, ``X-Cache``, ``Cache-Status``, values of the same length): byte for
  byte the response a hit sends, so the cost of those fields in the server is set apart;
* ``bare``: the app alone;
* ``memory``: behind ``ResponseCacheMiddleware`` with ``ResponseCache(Cache(MemoryStore()),
  default_ttl=60)``;
* ``memory-quiet``: the same without the ``X-Cache`` and ``Cache-Status`` fields
  (``status_header=None, cache_status=False``);
* ``redis``: the same with ``Cache.from_url("redis://127.0.0.1:6379/0?prefix=loadtest")``
  (``--redis-url``); the ``loadtest`` keys are deleted before and after.

Every variant's server is started first and checked with two plain requests (200, the
full body; the second is an ``X-Cache: HIT`` on the cached variants), then warmed up with
wrk for one second. Then come the rounds (``--rounds``, 7): in each, every variant is
driven by ``wrk -c50 -d<duration>s --latency`` over 100 URLs (a Lua script), the order
reversed every other round, so the machine's drift falls on all variants alike; a row is
the variant's median round, its ratio to ``nowork`` the median of its per-round ratios
(each against the ``nowork`` run of the same round). Where two CPUs are usable the server
runs on the first and wrk (one thread) on the last (``--no-pin`` turns that off): on a
2-core machine an unpinned server and wrk's threads take turns on both cores, which moved
single runs by 10-20 %. wrk's output is parsed for requests/s, the latency percentiles and
the errors (non-2xx/3xx responses, socket errors). The server's own counters (``/stats``)
give the cache's hit rate. The command exits 1 if any request failed. ``--json`` writes
the numbers that ``python -m bench.report`` puts in ``docs/benchmarks.md``; ``--markdown``
writes that section on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VARIANTS = ("nowork", "nowork-fields", "bare", "memory", "memory-quiet", "redis")
REFERENCE = "nowork"  # the physical reference: the cheapest response the app can give
UNCACHED = frozenset({"bare", REFERENCE, "nowork-fields"})
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0?prefix=loadtest"
HANDLER_DELAY = 0.020
URLS = 100
WARMUP = 1
THREADS = 2
CONNECTIONS = 50

APP_DESCRIPTION = (
    f"App: `GET /items/{{n}}` ({URLS} URLs) awaits {HANDLER_DELAY * 1000:.0f} ms and returns"
    " ~2 KB of JSON; `nowork` is the same route returning the same bytes at once (the"
    " reference: the cheapest response the app can give); `nowork-fields` also sends the"
    " fields a hit adds (Vary, ETag, Age, X-Cache, Cache-Status), byte for byte what a hit"
    " sends; `memory-quiet` is `memory` without X-Cache and Cache-Status; `memory` and"
    " `redis` put"
    " `ResponseCacheMiddleware` with"
    " `ResponseCache(cache, default_ttl=60)` in front of it (wrk sends no Accept-Encoding,"
    " so cached bodies are decoded to identity)."
)

LUA_SCRIPT = f"""
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/items/" .. (counter % {URLS}))
end
"""


# --------------------------------------------------------------------------- the demo app


def body_for(n: int) -> bytes:
    """About 2 KB of JSON: a list page of 24 products."""
    import orjson

    return orjson.dumps(
        {
            "page": n,
            "items": [
                {
                    "id": n * 100 + i,
                    "sku": f"SKU-{n:03d}-{i:03d}",
                    "name": f"Product {i} of page {n}",
                    "price": round(i * 1.37 + n, 2),
                    "stock": (n + i) % 17,
                }
                for i in range(24)
            ],
        }
    )


def build_app(variant: str, redis_url: str = DEFAULT_REDIS_URL) -> Any:
    """The demo Starlette app for ``variant`` (``bare``, ``memory`` or ``redis``)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from asyncperf import Cache, MemoryStore
    from asyncperf.http import ResponseCache, ResponseCacheMiddleware

    bodies = {n: body_for(n) for n in range(URLS)}
    rc: ResponseCache | None = None
    cache: Cache | None = None

    async def item(request: Request) -> Response:
        await asyncio.sleep(HANDLER_DELAY)
        n = int(request.path_params["n"]) % URLS
        return Response(bodies[n], media_type="application/json")

    async def item_at_once(request: Request) -> Response:
        n = int(request.path_params["n"]) % URLS
        return Response(bodies[n], media_type="application/json")

    # What a hit sends besides the body: the same fields, values of the same length.
    hit_fields = {
        "vary": "Accept-Encoding",
        "etag": '"' + "0" * 32 + '"',
        "age": "0",
        "x-cache": "HIT",
        "cache-status": "asyncperf; hit; ttl=59",
    }

    async def item_at_once_with_fields(request: Request) -> Response:
        n = int(request.path_params["n"]) % URLS
        return Response(bodies[n], media_type="application/json", headers=hit_fields)

    async def stats(request: Request) -> Response:
        counters = dataclasses.asdict(rc.statistics()) if rc is not None else {}
        return JSONResponse(counters, headers={"cache-control": "no-store"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if cache is not None:
                await cache.aclose()

    endpoint = {REFERENCE: item_at_once, "nowork-fields": item_at_once_with_fields}.get(
        variant, item
    )
    app = Starlette(
        routes=[Route("/items/{n:int}", endpoint), Route("/stats", stats)], lifespan=lifespan
    )
    if variant in ("memory", "memory-quiet"):
        cache = Cache(MemoryStore())
    elif variant == "redis":
        cache = Cache.from_url(redis_url)
    elif variant not in UNCACHED:
        raise ValueError(f"unknown variant {variant!r}")
    if cache is not None:
        quiet = variant == "memory-quiet"  # no X-Cache, no Cache-Status: fewer fields to send
        rc = ResponseCache(
            cache,
            default_ttl=60,
            status_header=None if quiet else "x-cache",
            cache_status=not quiet,
        )
        app.add_middleware(ResponseCacheMiddleware, response_cache=rc)
    return app


def pinned_cpus(pin: bool) -> tuple[int, int] | None:
    """The CPUs for the server and for wrk when pinning applies (two or more CPUs usable).

    On a 2-core machine an unpinned server and wrk's threads take turns on both cores, and
    the scheduler's choices move each run by 10-20 %; one core each makes runs of
    different variants comparable.
    """
    if not pin or not hasattr(os, "sched_getaffinity"):
        return None
    usable = sorted(os.sched_getaffinity(0))
    return (usable[0], usable[-1]) if len(usable) >= 2 else None


def serve(variant: str, port: int, redis_url: str, cpu: int | None = None) -> None:
    """Run the variant's app under uvicorn (the child process started by the driver).

    uvloop and httptools are asked for by name, not left to ``auto``: production servers run
    ``uvicorn[standard]``, and a silent fallback to h11 would measure a slower server.
    """
    import uvicorn

    if cpu is not None:
        os.sched_setaffinity(0, {cpu})

    uvicorn.run(
        build_app(variant, redis_url),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        date_header=False,
        server_header=False,
    )


# --------------------------------------------------------------------------- wrk output

_TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_SIZE_UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _TIME_UNITS[match.group(2)]


def _bytes(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(B|KB|MB|GB|TB)", text.strip())
    if match is None:
        raise ValueError(f"not a wrk size: {text!r}")
    return float(match.group(1)) * _SIZE_UNITS[match.group(2)]


@dataclass
class WrkResult:
    """What ``wrk --latency`` printed for one run."""

    requests: int
    seconds: float
    requests_per_s: float
    transfer_per_s: float  # bytes/s
    latency_avg_ms: float
    latency_max_ms: float
    percentiles_ms: dict[str, float]
    socket_errors: dict[str, int] = field(
        default_factory=lambda: {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    )
    non_2xx: int = 0

    @property
    def failed(self) -> bool:
        """True if any request failed (or none was made)."""
        return self.requests == 0 or self.non_2xx > 0 or any(self.socket_errors.values())

    def p(self, percent: int) -> float:
        return self.percentiles_ms.get(f"{percent}%", float("nan"))


def parse_wrk(output: str) -> WrkResult:
    """Parse wrk's summary (run with ``--latency``).

    Raises:
        ValueError: The output lacks the request count or requests/s line.
    """
    summary = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", output, re.M)
    rate = re.search(r"^Requests/sec:\s*([\d.]+)", output, re.M)
    if summary is None or rate is None:
        raise ValueError(f"unexpected wrk output:\n{output}")
    latency = re.search(r"^\s*Latency\s+(\S+)\s+(\S+)\s+(\S+)", output, re.M)
    transfer = re.search(r"^Transfer/sec:\s*(\S+)", output, re.M)
    percentiles = {
        f"{m.group(1)}%": _ms(m.group(2))
        for m in re.finditer(r"^\s+(\d+)%\s+(\S+)\s*$", output, re.M)
    }
    result = WrkResult(
        requests=int(summary.group(1)),
        seconds=_ms(summary.group(2) + summary.group(3)) / 1e3,
        requests_per_s=float(rate.group(1)),
        transfer_per_s=_bytes(transfer.group(1)) if transfer else 0.0,
        latency_avg_ms=_ms(latency.group(1)) if latency else float("nan"),
        latency_max_ms=_ms(latency.group(3)) if latency else float("nan"),
        percentiles_ms=percentiles,
    )
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if errors:
        result.socket_errors = dict(
            zip(("connect", "read", "write", "timeout"), map(int, errors.groups()), strict=True)
        )
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", output)
    if non_2xx:
        result.non_2xx = int(non_2xx.group(1))
    return result


# --------------------------------------------------------------------------- the driver


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"accept-encoding": "identity"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        headers = {k.lower(): v for k, v in response.headers.items()}
        return int(response.status), headers, response.read()


def wait_until_up(base: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before answering")
        with contextlib.suppress(OSError, urllib.error.URLError):
            if http_get(base + "/stats", timeout=1.0)[0] == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the server did not answer on {base} within {timeout:.0f} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGINT (uvicorn shuts down gracefully and closes the cache), then SIGKILL."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def redis_prefix(redis_url: str) -> tuple[str, str]:
    """The server URL without asyncperf's options, and the key prefix (``prefix=``)."""
    from urllib.parse import parse_qs, urlsplit, urlunsplit

    parts = urlsplit(redis_url)
    prefix = parse_qs(parts.query).get("prefix", ["asyncperf"])[0].rstrip(":")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), prefix


def clean_redis(redis_url: str) -> int:
    """Delete the keys under the load test's prefix (``<prefix>:*`` and ``<prefix>#*``)."""
    import redis

    url, prefix = redis_prefix(redis_url)
    if not prefix or prefix in {"*", "asyncperf"}:
        raise ValueError(f"refusing to delete keys under prefix {prefix!r}")
    client = redis.Redis.from_url(url)
    try:
        deleted = 0
        for pattern in (f"{prefix}:*", f"{prefix}#*"):
            batch: list[bytes] = []
            for key in client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    deleted += int(client.delete(*batch))
                    batch = []
            if batch:
                deleted += int(client.delete(*batch))
        return deleted
    finally:
        client.close()


def run_wrk(
    wrk: str,
    url: str,
    script: Path,
    seconds: int,
    threads: int,
    connections: int,
    cpu: int | None = None,
) -> str:
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
        preexec_fn=None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu})),
    )
    if completed.returncode != 0:
        raise RuntimeError(f"wrk exited with {completed.returncode}: {completed.stderr.strip()}")
    return completed.stdout


def check_app(base: str, cached: bool) -> None:
    """Two plain requests: 200 with the full body; the second is a cache hit when cached."""
    expected = body_for(7)
    for attempt in range(2):
        status, headers, body = http_get(base + "/items/7")
        if status != 200 or body != expected:
            raise RuntimeError(f"GET /items/7 -> {status}, {len(body)} bytes (expected 200)")
        if cached and attempt == 1 and headers.get("x-cache", "").upper() != "HIT":
            raise RuntimeError(f"second GET /items/7 was not a cache hit: {headers}")


@dataclass
class VariantResult:
    """One variant over every round: ``wrk`` is its median round (by requests/s)."""

    name: str
    wrk: WrkResult
    stats: dict[str, Any]
    raw: str
    rounds: list[WrkResult] = field(default_factory=list)
    ratio: float | None = None  # median over rounds of requests/s against the reference

    def as_json(self) -> dict[str, Any]:
        w = self.wrk
        return {
            "name": self.name,
            "requests_per_s": w.requests_per_s,
            "rounds_requests_per_s": [r.requests_per_s for r in self.rounds],
            "ratio_vs_reference": self.ratio,
            "requests": sum(r.requests for r in self.rounds) or w.requests,
            "seconds": w.seconds,
            "latency_avg_ms": w.latency_avg_ms,
            "latency_p50_ms": w.p(50),
            "latency_p75_ms": w.p(75),
            "latency_p90_ms": w.p(90),
            "latency_p99_ms": w.p(99),
            "latency_max_ms": w.latency_max_ms,
            "transfer_per_s": w.transfer_per_s,
            "non_2xx": sum(r.non_2xx for r in self.rounds),
            "socket_errors": {
                kind: sum(r.socket_errors.get(kind, 0) for r in self.rounds)
                for kind in w.socket_errors
            },
            "cache_hits": self.stats.get("hits"),
            "cache_misses": self.stats.get("misses"),
        }


@dataclass
class Server:
    """A variant's uvicorn process, started once and driven in every round."""

    name: str
    process: subprocess.Popen[bytes]
    base: str
    outputs: list[str] = field(default_factory=list)


def start_server(name: str, redis_url: str, cpu: int | None = None) -> Server:
    """Start the variant's server (on ``cpu`` if given) and check that it answers."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    command = [sys.executable, "-m", "bench.loadtest", "--serve", name, "--port", str(port)]
    command += ["--redis-url", redis_url]
    if cpu is not None:
        command += ["--cpu", str(cpu)]
    process = subprocess.Popen(command, env=env, cwd=Path(__file__).resolve().parent.parent)
    server = Server(name, process, base)
    try:
        wait_until_up(base, process)
        check_app(base, cached=name not in UNCACHED and name != "memory-quiet")
    except BaseException:
        stop(process)
        raise
    return server


def median_round(rounds: Sequence[WrkResult]) -> WrkResult:
    """The round with the median requests/s (the lower middle one of an even count)."""
    ordered = sorted(rounds, key=lambda r: r.requests_per_s)
    return ordered[(len(ordered) - 1) // 2]


def combine(servers: Sequence[Server], stats: dict[str, dict[str, Any]]) -> list[VariantResult]:
    """Each variant's median round, and its median per-round ratio to the reference (each
    round's variant against the reference measured in the same round)."""
    parsed = {s.name: [parse_wrk(output) for output in s.outputs] for s in servers}
    reference = parsed.get(REFERENCE)
    results = []
    for server in servers:
        rounds = parsed[server.name]
        ratio = None
        if reference is not None:
            ratios = sorted(
                r.requests_per_s / ref.requests_per_s
                for r, ref in zip(rounds, reference, strict=True)
                if ref.requests_per_s
            )
            if ratios:
                middle = len(ratios) // 2
                ratio = (
                    ratios[middle] if len(ratios) % 2 else (ratios[middle - 1] + ratios[middle]) / 2
                )
        chosen = median_round(rounds)
        raw = server.outputs[rounds.index(chosen)]
        results.append(
            VariantResult(server.name, chosen, stats.get(server.name, {}), raw, rounds, ratio)
        )
    return results


def wrk_version(wrk: str) -> str:
    out = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False, timeout=5)
    match = re.search(r"wrk (\S+)", out.stdout + out.stderr)
    return match.group(1) if match else "?"


def missing_server_parts() -> list[str]:
    """The parts of ``uvicorn[standard]`` the servers need that are not installed."""
    import importlib.util

    return [
        name for name in ("uvicorn", "uvloop", "httptools") if not importlib.util.find_spec(name)
    ]


def server_description() -> str:
    """uvicorn's version and the loop and HTTP parser every variant runs on."""
    import importlib.metadata

    versions = {
        name: importlib.metadata.version(name) for name in ("uvicorn", "uvloop", "httptools")
    }
    return (
        f"uvicorn {versions['uvicorn']} (one worker, uvloop {versions['uvloop']},"
        f" httptools {versions['httptools']}), 127.0.0.1"
    )


def table(results: Sequence[VariantResult]) -> str:
    head = (
        f"{'variant':<13} {'req/s':>10} {'x nowork':>8} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'requests':>9} {'non-2xx':>8} {'sock err':>8} {'hit rate':>8}"
    )
    lines = [head, "-" * len(head)]
    reference = next((r for r in results if r.name == REFERENCE), None)
    for r in results:
        w = r.wrk
        if r.ratio is not None:
            ratio = f"{r.ratio:.2f}"
        else:
            ratio = f"{w.requests_per_s / reference.wrk.requests_per_s:.2f}" if reference else "-"
        hits, misses = r.stats.get("hits"), r.stats.get("misses")
        rate = f"{hits / (hits + misses):.1%}" if hits is not None and hits + misses else "-"
        lines.append(
            f"{r.name:<13} {w.requests_per_s:>10,.0f} {ratio:>8} {w.p(50):>8.2f} {w.p(99):>8.2f}"
            f" {w.requests:>9,} {w.non_2xx:>8} {sum(w.socket_errors.values()):>8} {rate:>8}"
        )
    return "\n".join(lines)


def main(argv: Iterable[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m bench.loadtest",
        description="wrk against the demo app under uvicorn on loopback (nowork, bare, memory,"
        " redis).",
    )
    parser.add_argument("--duration", type=int, default=5, help="seconds per variant and round (5)")
    parser.add_argument(
        "--rounds", type=int, default=7, help="rounds, each driving every variant once (7)"
    )
    parser.add_argument("--quick", action="store_true", help="one round of 2 s (CI)")
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument(
        "--threads",
        type=int,
        help=f"wrk threads (1 when pinned to its own CPU, else {THREADS})",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the server and wrk to a CPU each (pinned when two are usable)",
    )
    parser.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="comma-separated subset of " + ",".join(VARIANTS),
    )
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--json", type=Path, help="write the numbers here (for bench.report)")
    parser.add_argument("--markdown", type=Path, help="write the docs section here")
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(args_list)

    if args.serve:
        serve(args.serve, args.port, args.redis_url, args.cpu)
        return 0

    duration = 2 if args.quick else args.duration
    if duration < 1:
        parser.error("--duration must be at least 1 second")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s): {', '.join(unknown)}")
    missing = missing_server_parts()
    if missing:
        print(
            f"{', '.join(missing)} not installed: the servers run uvicorn[standard]"
            " (pip install -e '.[bench]')",
            file=sys.stderr,
        )
        return 2
    wrk = shutil.which("wrk")
    if wrk is None:
        print("wrk is not installed (Debian: apt-get install -y wrk)", file=sys.stderr)
        return 2

    rounds = 1 if args.quick else args.rounds
    cpus = pinned_cpus(not args.no_pin)
    server_cpu, wrk_cpu = cpus if cpus is not None else (None, None)
    if args.threads is None:
        args.threads = 1 if cpus is not None else THREADS
    if rounds < 1:
        parser.error("--rounds must be at least 1")
    if "redis" in variants:
        clean_redis(args.redis_url)
    servers: list[Server] = []
    stats: dict[str, dict[str, Any]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="asyncperf-loadtest-") as tmp:
            script = Path(tmp) / "urls.lua"
            script.write_text(LUA_SCRIPT, encoding="utf-8")
            for name in variants:
                servers.append(start_server(name, args.redis_url, server_cpu))
                base = servers[-1].base + "/"  # warmed up; the run discarded
                run_wrk(wrk, base, script, WARMUP, args.threads, args.connections, wrk_cpu)
            for number in range(rounds):
                # Every variant in each round, the order reversed every other round: the
                # machine's drift falls on all of them alike.
                order = servers if number % 2 == 0 else servers[::-1]
                for server in order:
                    print(
                        f"round {number + 1}/{rounds}, {server.name}: {duration} s of"
                        f" wrk -t{args.threads} -c{args.connections} ..."
                    )
                    server.outputs.append(
                        run_wrk(
                            wrk,
                            server.base + "/",
                            script,
                            duration,
                            args.threads,
                            args.connections,
                            wrk_cpu,
                        )
                    )
            for server in servers:
                stats[server.name] = json.loads(http_get(server.base + "/stats")[2])
        results = combine(servers, stats)
    except (RuntimeError, OSError, ValueError) as exc:
        print(f"load test: {exc}", file=sys.stderr)
        return 1
    finally:
        for server in servers:
            stop(server.process)
        if "redis" in variants:
            clean_redis(args.redis_url)

    print()
    print(table(results))
    failed = [r for r in results if r.wrk.failed]
    document = {
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m bench.loadtest " + shlex.join(args_list),
        "wrk_version": wrk_version(wrk),
        "threads": args.threads,
        "pinned": None if cpus is None else {"server_cpu": server_cpu, "wrk_cpu": wrk_cpu},
        "connections": args.connections,
        "duration": duration,
        "rounds": rounds,
        "warmup": WARMUP,
        "app": APP_DESCRIPTION,
        "server": server_description(),
        "variants": [r.as_json() for r in results],
        "failed": bool(failed),
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    if args.markdown:
        from bench.report import loadtest_lines

        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text("\n".join(loadtest_lines(document, None)), encoding="utf-8")
        print(f"wrote {args.markdown}")
    if failed:
        for r in failed:
            print(f"\n{r.name}: requests failed; wrk printed:\n{r.raw}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
