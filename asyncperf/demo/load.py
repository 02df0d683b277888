"""The demo's load runs, measured and returned, never printed.

Part 1 drives a Zipf workload through a slow backend without a cache and with one, a
stampede on one cold key and a bounded warm-up (:func:`run_cache_load`). Part 2 drives the
app without caching and with it through ``httpx.ASGITransport`` (:func:`run_app_load`),
then writes to the demo table to show the invalidation. Each returns what it measured for
:mod:`.report` to print; the caller's callbacks only announce the steps and draw progress.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol
from urllib.parse import quote

from ..cache import Cache, CacheStatistics, WarmReport
from .app import (
    PRODUCTS,
    QUESTIONS,
    REGIONS,
    Counts,
    FakeModel,
    Stores,
    Tour,
    build_app,
    make_tour,
)

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = [
    "AppResults",
    "AppRun",
    "CacheResults",
    "CacheStep",
    "ProgressSink",
    "Run",
    "make_plan",
    "percentile",
    "run_app_load",
    "run_cache_load",
    "zipf",
]

CacheStep = Literal["plain", "cached", "stampede", "warm"]


class ProgressSink(Protocol):
    """Where :func:`drive_app` reports how far a run is (``report.Progress``)."""

    def update(self, done: int) -> None: ...

    def finish(self, failures: int) -> float:
        """End the run; return its wall time in seconds."""
        ...


@dataclass
class Run:
    latencies: list[float]
    loads: int
    seconds: float

    def percentile(self, fraction: float) -> float:
        return percentile(self.latencies, fraction)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class SlowBackend:
    """Stands in for a database or an API: each call costs ``latency`` seconds."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.calls = 0

    async def fetch(self, key: str) -> dict[str, object]:
        self.calls += 1
        await asyncio.sleep(self.latency)
        return {"key": key, "payload": "x" * 64}


def zipf(count: int) -> list[float]:
    # A few hot items and a long tail, as real read traffic is.
    return [1.0 / (rank + 1) for rank in range(count)]


def workload(requests: int, keys: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"item:{index}" for index in rng.choices(range(keys), weights=zipf(keys), k=requests)]


class Handler:
    def __init__(self, backend: SlowBackend, cache: Cache | None, ttl: float) -> None:
        self.backend = backend
        self.cache = cache
        self.ttl = ttl

    async def __call__(self, key: str) -> object:
        if self.cache is None:
            return await self.backend.fetch(key)
        return await self.cache.get_or_set(key, lambda: self.backend.fetch(key), ttl=self.ttl)


async def drive(keys: list[str], concurrency: int, handle: Handler, backend: SlowBackend) -> Run:
    latencies: list[float] = []
    queue = iter(keys)

    async def worker() -> None:
        for key in queue:
            started = time.perf_counter()
            await handle(key)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Run(latencies, backend.calls, time.perf_counter() - started)


def make_plan(total: int, seed: int, with_db: bool) -> list[tuple[str, str]]:
    """The load: (kind, URL) pairs, Zipf-popular products, questions and regions."""
    rng = random.Random(seed)
    kinds, weights = (["products", "ask"], [0.7, 0.3])
    if with_db:
        kinds, weights = (["products", "ask", "report"], [0.6, 0.25, 0.15])
    plan = []
    for kind in rng.choices(kinds, weights=weights, k=total):
        if kind == "products":
            product_id = rng.choices(range(1, PRODUCTS + 1), weights=zipf(PRODUCTS))[0]
            plan.append((kind, f"/products/{product_id}"))
        elif kind == "ask":
            question = rng.choices(QUESTIONS, weights=zipf(len(QUESTIONS)))[0]
            plan.append((kind, f"/ask?q={quote(question)}"))
        else:
            plan.append((kind, f"/report/{rng.choices(REGIONS, weights=zipf(len(REGIONS)))[0]}"))
    return plan


@dataclass
class AppRun:
    latencies: dict[str, list[float]]
    served: dict[str, int]  # answered from the HTTP cache (X-Cache: HIT or STALE)
    wire_bytes: int
    failures: int
    seconds: float


async def drive_app(
    app: Starlette, plan: list[tuple[str, str]], concurrency: int, progress: ProgressSink
) -> AppRun:
    import httpx

    latencies: dict[str, list[float]] = {}
    served: dict[str, int] = {}
    counters = {"done": 0, "failures": 0, "bytes": 0}
    queue = iter(plan)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://demo.local", timeout=60.0
    ) as client:

        async def worker() -> None:
            for kind, url in queue:
                started = time.perf_counter()
                response = await client.get(url)
                latencies.setdefault(kind, []).append(time.perf_counter() - started)
                if response.headers.get("x-cache") in ("HIT", "STALE"):
                    served[kind] = served.get(kind, 0) + 1
                counters["bytes"] += response.num_bytes_downloaded
                counters["failures"] += response.status_code != 200
                counters["done"] += 1
                progress.update(counters["done"])

        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(plan)))))
    seconds = progress.finish(counters["failures"])
    return AppRun(latencies, served, counters["bytes"], counters["failures"], seconds)


async def warm_up(args: argparse.Namespace) -> None:
    """Send each route a request or two on throwaway apps and caches.

    The first request through a code path pays for imports and codec set-up; this keeps
    that one-time cost out of both timed runs (the timed caches still start empty).
    """
    import httpx

    from ..monitor import PerformanceMonitor

    stores = Stores(None)
    try:
        tour = make_tour(args, stores, PerformanceMonitor(), None)
        model = FakeModel(speed=1000.0, seed=args.seed)
        for app in (
            build_app(args, model, Counts(), db=None, tour=None),
            build_app(args, model, Counts(), db=None, tour=tour),
        ):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://warm") as client:
                for url in ("/products/0", "/ask?q=warm-up") * 2:
                    await client.get(url)
    finally:
        await stores.aclose()


async def show_invalidation(tour: Tour, app: Starlette) -> str:
    """Write to the table and show that the cached rows went away; return the summary."""
    db = tour.db
    if db is None or db.invalidation is None or tour.db_cache is None:
        return ""
    invalidation = db.invalidation
    loads = tour.db_cache.statistics().loads
    notified = invalidation.notifications
    started = time.perf_counter()
    await db.pool.execute(f"UPDATE {db.table} SET cents = cents + 1 WHERE id = 1")
    for _ in range(2500):  # the NOTIFY arrives after the commit; give it up to ~5 s
        if invalidation.notifications != notified:
            break
        await asyncio.sleep(0.002)
    await invalidation.wait_idle()
    seconds = time.perf_counter() - started
    if invalidation.notifications == notified:
        return "an UPDATE was not notified within 5 s (is LISTEN/NOTIFY blocked?)"
    import httpx

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://demo.local") as client:
        await client.get(f"/report/{REGIONS[0]}")
    reran = tour.db_cache.statistics().loads - loads
    return (
        f"an UPDATE invalidated the cached reports in {seconds * 1000:.0f} ms "
        f"(LISTEN/NOTIFY), the next GET ran {reran} query"
    )


# -- part 1: the cache on its own -------------------------------------------------------


@dataclass
class CacheResults:
    """What part 1 measured."""

    plain: Run
    cached: Run
    stats: CacheStatistics
    stampede_loads: int
    stampede_seconds: float
    warm: WarmReport
    warm_loads: int


async def run_cache_load(
    args: argparse.Namespace,
    stores: Stores,
    announce: Callable[[CacheStep], None],
    progress: Callable[[int, int], None],
) -> CacheResults:
    """Run part 1's four loads; ``announce`` is told each step, ``progress`` the warm-up."""
    latency = args.latency_ms / 1000.0
    keys = workload(args.requests, args.keys, args.seed)

    announce("plain")
    plain_backend = SlowBackend(latency)
    plain = await drive(keys, args.concurrency, Handler(plain_backend, None, 0), plain_backend)

    announce("cached")
    cache = stores.make("cache", max_entries=max(args.keys, 1))
    cached_backend = SlowBackend(latency)
    with_cache = await drive(
        keys, args.concurrency, Handler(cached_backend, cache, ttl=300.0), cached_backend
    )
    stats = cache.statistics()

    announce("stampede")
    stampede_backend = SlowBackend(latency)
    stampede_cache = stores.make("stampede")
    started = time.perf_counter()
    await asyncio.gather(
        *(
            stampede_cache.get_or_set("cold", lambda: stampede_backend.fetch("cold"), ttl=60)
            for _ in range(1000)
        )
    )
    stampede_seconds = time.perf_counter() - started

    announce("warm")
    warm_backend = SlowBackend(latency)
    warm_cache = stores.make("warm")

    def loader_for(key: str) -> Callable[[], Awaitable[dict[str, object]]]:
        return lambda: warm_backend.fetch(key)

    report = await warm_cache.warm(
        {f"item:{i}": loader_for(f"item:{i}") for i in range(200)},
        concurrency=20,
        ttl=300,
        progress=progress,
    )
    return CacheResults(
        plain=plain,
        cached=with_cache,
        stats=stats,
        stampede_loads=stampede_backend.calls,
        stampede_seconds=stampede_seconds,
        warm=report,
        warm_loads=warm_backend.calls,
    )


# -- part 2: the app --------------------------------------------------------------------


@dataclass
class AppResults:
    """What part 2 measured, and the cached app (``--serve`` keeps it running)."""

    app: Starlette
    plain: AppRun
    cached: AppRun
    plain_counts: Counts
    plain_model_calls: int
    invalidation: str


async def run_app_load(
    tour: Tour,
    plan: list[tuple[str, str]],
    progress: Callable[[str, int], ProgressSink],
) -> AppResults:
    """Drive ``plan`` through the app without caching, then with it (``progress(label, n)``)."""
    args = tour.args
    plain_counts = Counts()
    plain_model = FakeModel(args.speed, args.seed)
    plain_app = build_app(args, plain_model, plain_counts, db=tour.db, tour=None)
    cached_app = build_app(args, tour.model, tour.counts, db=tour.db, tour=tour)
    await warm_up(args)
    plain = await drive_app(
        plain_app, plan, args.app_concurrency, progress("without caching", len(plan))
    )
    async with tour.monitor:  # loop lag and cache probes while the load runs
        cached = await drive_app(
            cached_app, plan, args.app_concurrency, progress("with caching", len(plan))
        )
        invalidation = await show_invalidation(tour, cached_app)
    return AppResults(
        app=cached_app,
        plain=plain,
        cached=cached,
        plain_counts=plain_counts,
        plain_model_calls=plain_model.calls,
        invalidation=invalidation,
    )
