"""The ``asyncperf`` command: ``asyncperf demo`` shows what caching saves."""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from . import __version__
from .cache import Cache, MemoryStore

__all__ = ["main"]


@dataclass
class _Run:
    latencies: list[float]
    loads: int
    seconds: float

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class _SlowBackend:
    """Stands in for a database or an API: each call costs ``latency`` seconds."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.calls = 0

    async def fetch(self, key: str) -> dict[str, object]:
        self.calls += 1
        await asyncio.sleep(self.latency)
        return {"key": key, "payload": "x" * 64}


def _workload(requests: int, keys: int, seed: int) -> list[str]:
    # Zipf-like popularity (a few hot keys, a long tail), as real read traffic is.
    rng = random.Random(seed)
    weights = [1.0 / (rank + 1) for rank in range(keys)]
    return [f"item:{index}" for index in rng.choices(range(keys), weights=weights, k=requests)]


async def _drive(
    keys: list[str], concurrency: int, handle: _Handler, backend: _SlowBackend
) -> _Run:
    latencies: list[float] = []
    queue = iter(keys)

    async def worker() -> None:
        for key in queue:
            started = time.perf_counter()
            await handle(key)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return _Run(latencies, backend.calls, time.perf_counter() - started)


class _Handler:
    def __init__(self, backend: _SlowBackend, cache: Cache | None, ttl: float) -> None:
        self.backend = backend
        self.cache = cache
        self.ttl = ttl

    async def __call__(self, key: str) -> object:
        if self.cache is None:
            return await self.backend.fetch(key)
        return await self.cache.get_or_set(key, lambda: self.backend.fetch(key), ttl=self.ttl)


def _bar(done: int, total: int, width: int = 30) -> str:
    filled = int(width * done / total) if total else width
    return "[" + "#" * filled + "." * (width - filled) + f"] {done}/{total}"


async def _demo(args: argparse.Namespace) -> int:
    out = sys.stdout
    latency = args.latency_ms / 1000.0
    keys = _workload(args.requests, args.keys, args.seed)
    print(f"asyncperf {__version__} demo: in-memory cache, no server needed", file=out)
    print(
        f"workload: {args.requests} requests over {args.keys} keys (Zipf popularity), "
        f"{args.concurrency} concurrent clients, backend latency {args.latency_ms:g} ms",
        file=out,
    )

    print("\n1) without a cache ...", file=out, flush=True)
    plain_backend = _SlowBackend(latency)
    plain = await _drive(keys, args.concurrency, _Handler(plain_backend, None, 0), plain_backend)

    print("2) with asyncperf.Cache(MemoryStore()) and get_or_set ...", file=out, flush=True)
    cache = Cache(MemoryStore(max_entries=max(args.keys, 1)))
    cached_backend = _SlowBackend(latency)
    with_cache = await _drive(
        keys, args.concurrency, _Handler(cached_backend, cache, ttl=300.0), cached_backend
    )
    stats = cache.statistics()

    print("3) stampede: 1000 callers ask for one cold key at once ...", file=out, flush=True)
    stampede_backend = _SlowBackend(latency)
    stampede_cache = Cache(MemoryStore())
    started = time.perf_counter()
    await asyncio.gather(
        *(
            stampede_cache.get_or_set("cold", lambda: stampede_backend.fetch("cold"), ttl=60)
            for _ in range(1000)
        )
    )
    stampede_seconds = time.perf_counter() - started

    print("4) warming 200 keys with bounded concurrency ...", file=out, flush=True)
    warm_backend = _SlowBackend(latency)
    warm_cache = Cache(MemoryStore())

    interactive = out.isatty()

    def progress(done: int, total: int) -> None:
        if done == total or (interactive and done % 10 == 0):
            print("   " + _bar(done, total), end="\r" if done < total else "\n", file=out)

    def loader_for(key: str) -> Callable[[], Awaitable[dict[str, object]]]:
        return lambda: warm_backend.fetch(key)

    report = await warm_cache.warm(
        {f"item:{i}": loader_for(f"item:{i}") for i in range(200)},
        concurrency=20,
        ttl=300,
        progress=progress,
    )
    await cache.aclose()
    await stampede_cache.aclose()
    await warm_cache.aclose()

    def ms(seconds: float) -> str:
        if seconds < 0.001:
            return f"{seconds * 1e6:.1f} µs"
        return f"{seconds * 1000:.2f} ms"

    print("\nresults", file=out)
    print(f"  {'':28}{'no cache':>14}{'asyncperf':>14}", file=out)
    print(f"  {'backend loads':28}{plain.loads:>14}{with_cache.loads:>14}", file=out)
    print(
        f"  {'latency p50':28}{ms(plain.percentile(0.5)):>14}{ms(with_cache.percentile(0.5)):>14}",
        file=out,
    )
    print(
        f"  {'latency p99':28}{ms(plain.percentile(0.99)):>14}"
        f"{ms(with_cache.percentile(0.99)):>14}",
        file=out,
    )
    print(
        f"  {'mean latency':28}{ms(statistics.fmean(plain.latencies)):>14}"
        f"{ms(statistics.fmean(with_cache.latencies)):>14}",
        file=out,
    )
    print(f"  {'wall time':28}{plain.seconds:>12.2f} s{with_cache.seconds:>12.2f} s", file=out)
    avoided = plain.loads - with_cache.loads
    print(
        f"\n  loads avoided: {avoided} of {plain.loads} "
        f"({avoided / plain.loads:.1%}); hit rate {stats.hit_rate:.1%}; "
        f"{stats.coalesced} concurrent misses coalesced into in-flight loads",
        file=out,
    )
    print(
        f"  stampede: 1000 callers -> {stampede_backend.calls} backend load "
        f"in {stampede_seconds * 1000:.0f} ms (loader takes {args.latency_ms:g} ms)",
        file=out,
    )
    print(
        f"  warm-up: {report.loaded} keys loaded in {report.seconds:.2f} s "
        f"({warm_backend.calls} loads, 20 at a time)",
        file=out,
    )
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the ``asyncperf`` argument parser."""
    parser = argparse.ArgumentParser(prog="asyncperf", description=__doc__)
    parser.add_argument("--version", action="version", version=f"asyncperf {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run a scripted workload and show what caching saves")
    demo.add_argument("--requests", type=_positive_int, default=4000)
    demo.add_argument("--keys", type=_positive_int, default=300)
    demo.add_argument("--concurrency", type=_positive_int, default=50)
    demo.add_argument("--latency-ms", type=_positive_float, default=20.0)
    demo.add_argument("--seed", type=int, default=1)
    from .db._cli import add_parser as add_db_parser  # imports neither asyncpg nor pglast

    add_db_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``asyncperf`` command line."""
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        return asyncio.run(_demo(args))
    if args.command == "db":
        from .db._cli import run as run_db

        return run_db(args)
    raise AssertionError(args.command)  # argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
