"""Instructions per request of the HTTP cache's hit and miss, counted by callgrind.

Wall-clock ratios on a shared 2-core VM move by a third between runs; instruction counts
do not (the same binary, inputs and environment give the same count, whatever else the
machine is doing). This counts, for the ``http-direct`` apps of ``bench/test_http.py``
called in process (no client, no server):

* ``app``: the Starlette route answering 2 KB of JSON at once (behind Starlette's
  exception middleware, as in an application), with a new URL every request;
* ``essential``: that route behind the *essential miss work* middleware (the reference
  of the miss target: decode, buffer, hash an ETag, add the cache's fields, zstd-pack,
  keep in a dict);
* ``lean``: the route behind ``bench/_lean_miss.py``, a sketch of about the least Python a
  miss of a full-featured cache could run (a floor a redesign could approach, not a cache);
* ``miss``: the route behind ``ResponseCacheMiddleware`` over ``Cache(MemoryStore())``,
  a new URL every request (each one stored);
* ``app-hot`` and ``hit``: the route alone and behind the cache over 50 stored URLs, a
  client sending only ``Host`` (as wrk does: the identity body is served);
* ``hit-many``: the hit over 2,000 stored URLs (each stored and hit once while warming
  up), more than any per-process memo of decoded entries holds: what a site with many
  hot pages pays.

Each count is the difference between a run of 1,000 requests (after 200 to warm up) and a
run of none, divided by 1,000, so start-up and imports cancel out.

``--server`` counts the load test's servers instead (``bench/loadtest.py``: uvicorn with
httptools and uvloop, the ``nowork``, ``nowork-fields``, ``memory`` and ``memory-quiet``
apps): the whole server process under callgrind, driven over loopback by one keep-alive
client over the load test's 100 URLs, sending only ``Host`` as wrk does. After 600
requests to warm up the counters are zeroed (``callgrind_control -z``), 1,000 requests
are made and the counters dumped: the server's instructions a request, parser, event loop
and all (the kernel's share is not counted). It is the load test's requests/s ratio
without the noise: a ratio of instructions is what the CPU-bound server's ratio of
requests/s follows. Usage::

    .venv/bin/python -m bench.instructions            # needs valgrind (Debian: valgrind)
    .venv/bin/python -m bench.instructions --bytecodes  # Python bytecodes per request
    .venv/bin/python -m bench.instructions --server   # the load test's servers
    .venv/bin/python -m bench.instructions --cache    # L1 cache misses (callgrind's model)

``--cache`` runs the in-process variants under callgrind's cache simulation and prints,
beside the instructions, the L1 instruction and data cache misses a request: in time a
request costs what it touches as much as what it executes. (A miss executes 1.87x the
essential work's added instructions but misses L1 2.4x as often for code and 2.7x for
data, and its time ratio, 2.3-3.4x, follows the misses; compiling the HTTP package with
mypyc cut the instructions to 1.54x and left the misses, and the time, where they were.)

It prints each count and the two ratios of the HTTP issue: a miss's added instructions
against the essential work's (target 2x), and a hit's against the app's.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

T = TypeVar("T")

VARIANTS = ("app", "essential", "lean", "miss", "app-hot", "hit", "hit-many")
REQUESTS = 1000
WARMUP = 200
HOT_URLS = 50
MANY_URLS = 2000


def drive(variant: str, requests: int, trace: Any = None) -> None:
    """Run ``WARMUP + requests`` requests of ``variant`` (the process callgrind counts);
    ``trace`` (a :func:`sys.settrace` function) is set once the warm-up is done."""
    from starlette.applications import Starlette
    from starlette.middleware.exceptions import ExceptionMiddleware
    from starlette.routing import Route

    from asyncperf import Cache, MemoryStore
    from asyncperf.http import ResponseCache, ResponseCacheMiddleware
    from bench._asgi import get_scope, receive, send
    from bench._lean_miss import LeanMiss
    from bench.test_http import _CLIENT_HEADERS, EssentialWork, instant

    route = ExceptionMiddleware(Starlette(routes=[Route("/items/{n}", instant)]).router)
    cached = ResponseCacheMiddleware(
        route, ResponseCache(Cache(MemoryStore(max_entries=1_000_000)))
    )
    app = {
        "app": route,
        "essential": EssentialWork(route),
        "lean": LeanMiss(route),
        "miss": cached,
        "app-hot": route,
        "hit": cached,
        "hit-many": cached,
    }[variant]
    hot = variant in ("app-hot", "hit", "hit-many")
    urls = MANY_URLS if variant == "hit-many" else HOT_URLS
    headers = ((b"host", b"127.0.0.1:8000"),) if hot else _CLIENT_HEADERS
    paths = (
        itertools.cycle([f"/items/{i}" for i in range(urls)])
        if hot
        else (f"/items/{i}" for i in itertools.count())
    )

    async def run() -> None:
        for _ in range(max(WARMUP, 2 * urls)):  # hot URLs: each stored, then hit once
            await app(get_scope(next(paths), headers), receive, send)
        previous = sys.gettrace()  # a coverage tracer, say: given back, whatever happens
        if trace is not None:
            sys.settrace(trace)  # frames made from now on: the requests' own
        try:
            for _ in range(requests):
                await app(get_scope(next(paths), headers), receive, send)
        finally:
            sys.settrace(previous)

    asyncio.run(run())


def bytecodes(variant: str, requests: int = 200) -> float:
    """Python bytecodes executed per request of ``variant`` (in this process, no valgrind).

    The interpreter's share of a request: on this VM one bytecode costs several times an
    instruction of C work (zstd, SHA-1, orjson), so this, more than the instruction count,
    is what a miss's time follows.
    """
    executed = 0

    def opcode(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal executed
        if event == "opcode":
            executed += 1
        return opcode

    def call(frame: FrameType, event: str, arg: object) -> Any:
        if event != "call":
            return None
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        return opcode

    drive(variant, requests, trace=call)
    return executed / requests


@functools.cache
def no_aslr() -> list[str]:
    """The prefix that runs a command without address-space randomisation, where it works:
    with it, repeated runs of one tree give the same count (without, up to ~2k
    instructions a request apart, as objects land elsewhere); trees that differ in code a
    request does not run still read up to ~2k apart, so smaller differences mean nothing."""
    setarch = shutil.which("setarch")
    if setarch is None:
        return []
    works = subprocess.run([setarch, "-R", "true"], capture_output=True, check=False)
    return [setarch, "-R"] if works.returncode == 0 else []


# callgrind's events with --cache-sim=yes, in the order of its "Collected" line.
CACHE_EVENTS = ("Ir", "Dr", "Dw", "I1mr", "D1mr", "D1mw", "ILmr", "DLmr", "DLmw")


def collected(stderr: str) -> list[int]:
    """The event totals of callgrind's summary (``Collected : 1 2 3``) in ``stderr``."""
    match = re.search(r"Collected :((?: \d+)+)", stderr)
    if match is None:
        raise ValueError("no 'Collected :' line in callgrind's output")
    return [int(number) for number in match.group(1).split()]


def count(valgrind: str, variant: str, requests: int) -> int:
    """Instructions callgrind counts for one run of ``variant``."""
    return events(valgrind, variant, requests)[0]


def events(valgrind: str, variant: str, requests: int, *, cache: bool = False) -> list[int]:
    """What callgrind counts for one run of ``variant``: the instructions, or with
    ``cache`` the :data:`CACHE_EVENTS` of its cache simulation."""
    root = Path(__file__).resolve().parent.parent
    completed = subprocess.run(
        [
            *no_aslr(),
            valgrind,
            "--tool=callgrind",
            *(["--cache-sim=yes"] if cache else []),
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-m",
            "bench.instructions",
            "--drive",
            variant,
            str(requests),
        ],
        capture_output=True,
        text=True,
        cwd=root,
        env=dict(os.environ, PYTHONHASHSEED="0"),
        check=False,
    )
    if completed.returncode != 0 or "Collected :" not in completed.stderr:
        raise RuntimeError(f"callgrind run of {variant} failed:\n{completed.stderr[-2000:]}")
    return collected(completed.stderr)


def per_request(valgrind: str, variant: str) -> int:
    return (count(valgrind, variant, REQUESTS) - count(valgrind, variant, 0)) // REQUESTS


def cache_per_request(valgrind: str, variant: str) -> list[float]:
    """:data:`CACHE_EVENTS` a request of ``variant`` adds (its run minus a run of none)."""
    busy = events(valgrind, variant, REQUESTS, cache=True)
    idle = events(valgrind, variant, 0, cache=True)
    return [(a - b) / REQUESTS for a, b in zip(busy, idle, strict=True)]


def cache_report(counts: dict[str, list[float]]) -> list[str]:
    """The ``--cache`` table: each variant's instructions and L1 misses a request, then
    the miss's and the lean sketch's added counts as multiples of the essential work's."""
    ir, i1, d1r, d1w = (CACHE_EVENTS.index(name) for name in ("Ir", "I1mr", "D1mr", "D1mw"))
    lines = [f"{'':<10} {'instr':>9} {'L1i miss':>9} {'L1d miss':>9}"]
    for variant, row in counts.items():
        lines.append(
            f"{variant:<10} {row[ir]:>9,.0f} {row[i1]:>9,.0f} {row[d1r] + row[d1w]:>9,.0f}"
        )
    app = counts["app"]

    def added(variant: str) -> tuple[float, float, float]:
        row = counts[variant]
        return (
            row[ir] - app[ir],
            row[i1] - app[i1],
            row[d1r] + row[d1w] - app[d1r] - app[d1w],
        )

    essential = added("essential")
    for variant in ("miss", "lean"):
        ratios = [mine / theirs for mine, theirs in zip(added(variant), essential, strict=True)]
        lines.append(
            f"{variant} adds {ratios[0]:.2f}x the essential work's instructions,"
            f" {ratios[1]:.2f}x its L1i misses, {ratios[2]:.2f}x its L1d misses"
        )
    return lines


SERVER_VARIANTS = ("nowork", "nowork-fields", "memory", "memory-quiet")
SERVER_WARMUP = 600


def _get(sock: socket.socket, reader: Any, path: str) -> None:
    """One keep-alive GET, its response read whole (by its Content-Length)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    status = reader.readline()
    if not status.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"the server answered {status!r}")
    length = 0
    while (line := reader.readline()) != b"\r\n":
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    reader.read(length)


def server_per_request(valgrind: str, variant: str, requests: int = REQUESTS) -> int:
    """Instructions a request of the load test's ``variant`` server (the whole process)."""
    from bench.loadtest import URLS, free_port, wait_until_up

    control = shutil.which("callgrind_control")
    if control is None:
        raise RuntimeError("callgrind_control is missing (it comes with valgrind)")
    root = Path(__file__).resolve().parent.parent
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        server = subprocess.Popen(
            [
                *no_aslr(),
                valgrind,
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-m",
                "bench.loadtest",
                "--serve",
                variant,
                "--port",
                str(port),
            ],
            cwd=root,
            env=dict(os.environ, PYTHONHASHSEED="0"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            # uvicorn under callgrind starts slowly
            wait_until_up(f"http://127.0.0.1:{port}", server, timeout=300)
            sock = socket.create_connection(("127.0.0.1", port))
            with sock, sock.makefile("rb") as reader:
                paths = itertools.cycle([f"/items/{i}" for i in range(URLS)])
                for _ in range(SERVER_WARMUP):
                    _get(sock, reader, next(paths))
                subprocess.run([control, "-z", str(server.pid)], capture_output=True, check=True)
                for _ in range(requests):
                    _get(sock, reader, next(paths))
                subprocess.run([control, "-d", str(server.pid)], capture_output=True, check=True)
        finally:
            server.terminate()
            server.wait(timeout=120)
        for dump in sorted(Path(folder).glob("callgrind.out*")):
            text = dump.read_text()
            if re.search(r"^desc: Trigger: dump", text, re.M):
                match = re.search(r"^summary: (\d+)", text, re.M)
                if match is not None:
                    return int(match.group(1)) // requests
    raise RuntimeError(f"callgrind wrote no dump for the {variant} server")


def _each(measure: Callable[[str], T], variants: Sequence[str]) -> dict[str, T]:
    """``measure`` of every variant, one callgrind run per core at a time."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return dict(zip(variants, pool.map(measure, variants), strict=True))


def main(argv: list[str]) -> int:
    if argv[:1] == ["--drive"]:
        drive(argv[1], int(argv[2]))
        return 0
    if argv[:1] == ["--bytecodes"]:
        counted = {variant: bytecodes(variant) for variant in VARIANTS}
        for variant in VARIANTS:
            print(f"{variant:<10} {counted[variant]:>9,.0f} bytecodes/request")
        print(
            f"a miss adds {counted['miss'] - counted['app']:,.0f} bytecodes, the essential"
            f" work {counted['essential'] - counted['app']:,.0f}, the lean sketch"
            f" {counted['lean'] - counted['app']:,.0f}"
        )
        return 0
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("valgrind is not installed (Debian: apt-get install -y valgrind)", file=sys.stderr)
        return 2
    if argv[:1] == ["--cache"]:
        variants = ("app", "essential", "lean", "miss")
        simulated = _each(lambda v: cache_per_request(valgrind, v), variants)
        print("\n".join(cache_report(simulated)))
        return 0
    if argv[:1] == ["--server"]:
        served = _each(lambda v: server_per_request(valgrind, v), SERVER_VARIANTS)
        for variant in SERVER_VARIANTS:
            print(
                f"{variant:<14} {served[variant]:>9,} instructions/request"
                f"  nowork's count / this one's: {served['nowork'] / served[variant]:.2f}"
            )
        return 0
    counts = _each(lambda v: per_request(valgrind, v), VARIANTS)
    for variant in VARIANTS:
        print(f"{variant:<10} {counts[variant]:>9,} instructions/request")
    miss_added = counts["miss"] - counts["app"]
    essential_added = counts["essential"] - counts["app"]
    print(
        f"a miss adds {miss_added:,} instructions, the essential work {essential_added:,}:"
        f" {miss_added / essential_added:.2f}x (target <= 2x); the lean sketch"
        f" {(counts['lean'] - counts['app']) / essential_added:.2f}x"
    )
    print(
        f"a hit costs {counts['hit']:,} instructions, the app answering at once"
        f" {counts['app-hot']:,}: {counts['hit'] / counts['app-hot']:.2f}x; over"
        f" {MANY_URLS:,} URLs {counts['hit-many']:,}:"
        f" {counts['hit-many'] / counts['app-hot']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
