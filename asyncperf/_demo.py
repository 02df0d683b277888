"""``asyncperf demo``: a tour of what has landed, ending in what caching saved.

Part 1 is the scripted workload on :class:`~asyncperf.Cache` (``get_or_set`` under a
Zipf load, a stampede on one cold key, warming). Part 2 builds a Starlette app in
process: a slow JSON endpoint behind the HTTP response cache, an ``/ask`` endpoint whose
answers come from a fake chat model through the LLM cache, a ``/report`` endpoint whose
SQL goes through ``cached_fetch`` when ``--dsn`` is given, and the performance monitor
around it all. A bounded load drives it through ``httpx.ASGITransport`` (no sockets),
once without caching and once with it, and the report compares the two. ``--serve``
then keeps the cached app running under uvicorn, with the dashboard at ``/_asyncperf/``.

The command imports this module only when it runs, and the module imports starlette,
httpx, uvicorn and asyncpg only where it uses them, so ``import asyncperf`` stays light.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import quote, urlsplit, urlunsplit

from . import __version__
from .cache import Cache, MemoryStore

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from .db import TableInvalidation
    from .http import ResponseCache
    from .llm import LLMCache, UsageStatistics
    from .monitor import PerformanceMonitor

__all__ = ["parse_bind", "run"]

MODEL = "gpt-4o"  # priced by asyncperf.llm.DEFAULT_PRICES ($2.50 / $10 per million tokens)
MODEL_SECONDS = 0.3  # a fake model call at --speed 1
CONTEXT_TOKENS = 1_200  # retrieved documents sent with every question (RAG)
SYSTEM_PROMPT = (
    "You are the support assistant of Acme Shop. Answer in three short paragraphs, "
    "using only the documents below."
)
QUESTIONS = (
    "How do I reset my password?",
    "What is your refund policy?",
    "How long does shipping to Canada take?",
    "Can I change the delivery address after ordering?",
    "Do you ship to PO boxes?",
    "How do I cancel my subscription?",
    "Which payment methods do you accept?",
    "Is there a student discount?",
    "How do I track my parcel?",
    "What does the two-year warranty cover?",
    "Can I return a gift without the receipt?",
    "Why was my card declined?",
    "How do I delete my account?",
    "Do prices include VAT?",
    "How do I contact a human?",
    "Where is my invoice?",
)
REGIONS = ("north", "south", "east", "west", "central")
PRODUCTS = 50
ORDERS = 200_000
MONITOR_PATH = "/_asyncperf"


# -- part 1: the cache on its own -------------------------------------------------------


@dataclass
class _Run:
    latencies: list[float]
    loads: int
    seconds: float

    def percentile(self, fraction: float) -> float:
        return _percentile(self.latencies, fraction)


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
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


def _zipf(count: int) -> list[float]:
    # A few hot items and a long tail, as real read traffic is.
    return [1.0 / (rank + 1) for rank in range(count)]


def _workload(requests: int, keys: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"item:{index}" for index in rng.choices(range(keys), weights=_zipf(keys), k=requests)]


class _Handler:
    def __init__(self, backend: _SlowBackend, cache: Cache | None, ttl: float) -> None:
        self.backend = backend
        self.cache = cache
        self.ttl = ttl

    async def __call__(self, key: str) -> object:
        if self.cache is None:
            return await self.backend.fetch(key)
        return await self.cache.get_or_set(key, lambda: self.backend.fetch(key), ttl=self.ttl)


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


def _bar(done: int, total: int, width: int = 30) -> str:
    filled = int(width * done / total) if total else width
    return "[" + "#" * filled + "." * (width - filled) + f"] {done}/{total}"


def _ms(seconds: float) -> str:
    if seconds < 0.001:
        return f"{seconds * 1e6:.1f} µs"
    return f"{seconds * 1000:.2f} ms"


class _Stores:
    """Makes every cache of the tour: in memory, or in one Redis under a unique prefix."""

    def __init__(self, redis_url: str | None) -> None:
        self.redis_url = redis_url
        self.prefix = f"asyncperf-demo-{uuid.uuid4().hex[:8]}"
        self.caches: list[Cache] = []

    def make(self, part: str, max_entries: int = 10_000) -> Cache:
        if self.redis_url is None:
            cache = Cache(MemoryStore(max_entries=max_entries))
        else:
            cache = Cache.from_url(self.redis_url, prefix=f"{self.prefix}-{part}")
        self.caches.append(cache)
        return cache

    def describe(self) -> str:
        if self.redis_url is None:
            return "in memory (no server needed)"
        return f"Redis at {_redact(self.redis_url)}, keys under {self.prefix}-* (removed at exit)"

    async def check(self) -> str | None:
        """Return why the Redis cannot be used, or ``None``."""
        if self.redis_url is None:
            return None
        try:
            probe = self.make("probe")
        except Exception as exc:  # a bad URL, or redis-py missing: ConfigurationError
            return str(exc)
        health = await probe.health()
        return None if health.ok else (health.detail or "not reachable")

    async def aclose(self) -> None:
        for cache in self.caches:
            try:
                if self.redis_url is not None:
                    await cache.clear()
            finally:
                await cache.aclose()
        self.caches.clear()


async def _cache_part(args: argparse.Namespace, stores: _Stores, out: TextIO) -> None:
    latency = args.latency_ms / 1000.0
    keys = _workload(args.requests, args.keys, args.seed)
    print("\npart 1: asyncperf.Cache on its own", file=out)
    print(
        f"workload: {args.requests} requests over {args.keys} keys (Zipf popularity), "
        f"{args.concurrency} concurrent clients, backend latency {args.latency_ms:g} ms",
        file=out,
    )

    print("\n1) without a cache ...", file=out, flush=True)
    plain_backend = _SlowBackend(latency)
    plain = await _drive(keys, args.concurrency, _Handler(plain_backend, None, 0), plain_backend)

    store = "MemoryStore()" if stores.redis_url is None else "RedisStore(...)"
    print(f"2) with asyncperf.Cache({store}) and get_or_set ...", file=out, flush=True)
    cache = stores.make("cache", max_entries=max(args.keys, 1))
    cached_backend = _SlowBackend(latency)
    with_cache = await _drive(
        keys, args.concurrency, _Handler(cached_backend, cache, ttl=300.0), cached_backend
    )
    stats = cache.statistics()

    print("3) stampede: 1000 callers ask for one cold key at once ...", file=out, flush=True)
    stampede_backend = _SlowBackend(latency)
    stampede_cache = stores.make("stampede")
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
    warm_cache = stores.make("warm")
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

    print("\nresults", file=out)
    print(f"  {'':28}{'no cache':>14}{'asyncperf':>14}", file=out)
    print(f"  {'backend loads':28}{plain.loads:>14}{with_cache.loads:>14}", file=out)
    for label, fraction in (("latency p50", 0.5), ("latency p99", 0.99)):
        print(
            f"  {label:28}{_ms(plain.percentile(fraction)):>14}"
            f"{_ms(with_cache.percentile(fraction)):>14}",
            file=out,
        )
    print(
        f"  {'mean latency':28}{_ms(statistics.fmean(plain.latencies)):>14}"
        f"{_ms(statistics.fmean(with_cache.latencies)):>14}",
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


# -- part 2: the app --------------------------------------------------------------------


class FakeModel:
    """A chat model stand-in: realistic latency, token usage and an OpenAI-style answer."""

    def __init__(self, speed: float, seed: int) -> None:
        self.latency = MODEL_SECONDS / speed
        self.seed = seed
        self.calls = 0

    async def __call__(self, request: Mapping[str, Any]) -> dict[str, Any]:
        self.calls += 1
        question = str(request["messages"][-1]["content"])
        rng = random.Random(f"{self.seed}:{question}")
        await asyncio.sleep(self.latency * rng.uniform(0.8, 1.3))
        prompt_tokens = CONTEXT_TOKENS + (len(SYSTEM_PROMPT) + len(question)) // 4
        completion_tokens = rng.randint(180, 420)
        return {
            "id": f"chatcmpl-demo-{self.calls}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request["model"],
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {
                        "role": "assistant",
                        "content": f"(a {completion_tokens}-token answer to {question!r})",
                    },
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


def _product(product_id: int) -> dict[str, Any]:
    """A product page's JSON: about 2 KB."""
    rng = random.Random(product_id)
    words = ("sturdy", "light", "blue", "recycled", "compact", "quiet", "fast", "warm")
    return {
        "id": product_id,
        "name": f"product {product_id}",
        "price_cents": rng.randint(199, 99_999),
        "stock": rng.randint(0, 500),
        "description": " ".join(rng.choice(words) for _ in range(40)),
        "reviews": [
            {
                "user": f"user{rng.randint(1, 99_999)}",
                "stars": rng.randint(1, 5),
                "text": " ".join(rng.choice(words) for _ in range(12)),
            }
            for _ in range(12)
        ],
    }


@dataclass
class _Counts:
    """What one app ran (the loads the cache is there to avoid)."""

    product_loads: int = 0
    queries: int = 0


class _Database:
    """A demo table in a schema of its own, dropped at exit."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.schema = f"asyncperf_demo_{uuid.uuid4().hex[:8]}"
        self.table = f"{self.schema}.orders"
        self.sql = (
            "SELECT count(*) AS orders, sum(cents) AS revenue_cents, "
            "avg(cents)::float8 AS mean_cents, max(placed)::text AS last_order "
            f"FROM {self.table} WHERE region = $1"
        )
        self.pool: Any = None  # the cached app's, timed by the monitor
        self.plain_pool: Any = None  # the uncached app's
        self.invalidation: TableInvalidation | None = None
        self.created = False

    async def open(self, monitor: PerformanceMonitor) -> None:
        import asyncpg

        self.pool = await asyncpg.create_pool(
            self.dsn, min_size=1, max_size=10, init=monitor.asyncpg_init
        )
        self.plain_pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=10)
        regions = ", ".join(f"'{region}'" for region in REGIONS)
        await self.pool.execute(
            f"CREATE SCHEMA {self.schema};"
            f"CREATE TABLE {self.table} (id int PRIMARY KEY, region text NOT NULL,"
            " cents int NOT NULL, placed date NOT NULL);"
            f"INSERT INTO {self.table} SELECT g, (ARRAY[{regions}])[1 + g % {len(REGIONS)}],"
            " 100 + (g * 7919) % 20000, date '2024-01-01' + g % 365"
            f" FROM generate_series(1, {ORDERS}) AS g;"
            f"ANALYZE {self.table}"
        )
        self.created = True

    async def watch(self, cache: Cache) -> None:
        from .db import setup_invalidation

        self.invalidation = await setup_invalidation(self.pool, cache, [self.table], dsn=self.dsn)

    async def close(self) -> None:
        try:
            if self.invalidation is not None:
                await self.invalidation.aclose()
            if self.created:
                await self.pool.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
        finally:
            for pool in (self.pool, self.plain_pool):
                if pool is not None:
                    await pool.close()


@dataclass
class _Tour:
    """Everything the cached app uses, and what the report reads."""

    args: argparse.Namespace
    stores: _Stores
    monitor: PerformanceMonitor
    db: _Database | None
    response_cache: ResponseCache
    llm: LLMCache
    db_cache: Cache | None
    model: FakeModel
    counts: _Counts = field(default_factory=_Counts)


def _build_app(
    args: argparse.Namespace,
    model: FakeModel,
    counts: _Counts,
    *,
    db: _Database | None,
    tour: _Tour | None,
) -> Starlette:
    """The demo app; with ``tour``, every cache and the monitor are in it."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import BaseRoute, Mount, Route

    from .db import cached_fetch
    from .http import ResponseCacheMiddleware, cache_policy
    from .monitor import TimingMiddleware

    latency = args.latency_ms / 1000.0

    async def product(request: Request) -> Response:
        counts.product_loads += 1
        await asyncio.sleep(latency)  # the slow part: a database, a template, an API
        return JSONResponse(
            _product(request.path_params["product_id"]),
            headers={"Cache-Control": "max-age=60"},
        )

    @cache_policy(enabled=False)  # the LLM cache answers this one, not the HTTP cache
    async def ask(request: Request) -> Response:
        chat = {
            "model": MODEL,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": request.query_params.get("q", QUESTIONS[0])},
            ],
        }
        if tour is None:
            answer = await model(chat)
        else:
            answer = await tour.llm.complete(chat, call=model)
        return JSONResponse(
            {"answer": answer["choices"][0]["message"]["content"], "usage": answer["usage"]},
            headers={"Cache-Control": "no-store"},
        )

    @cache_policy(enabled=False)  # cached_fetch keeps the rows, invalidated on writes
    async def report(request: Request) -> Response:
        assert db is not None
        region = request.path_params["region"]
        if tour is None:
            counts.queries += 1
            rows = [dict(row) for row in await db.plain_pool.fetch(db.sql, region)]
        else:
            rows = await cached_fetch(db.pool, db.sql, region, ttl=300, cache=tour.db_cache)
        return JSONResponse({"region": region, **rows[0]}, headers={"Cache-Control": "no-store"})

    async def index(request: Request) -> Response:
        links = [f"/products/{i}" for i in (1, 2, 3)]
        links += [f"/ask?q={quote(QUESTIONS[0])}"]
        links += [f"/report/{REGIONS[0]}"] if db is not None else []
        links += [f"{MONITOR_PATH}/", f"{MONITOR_PATH}/metrics", f"{MONITOR_PATH}/snapshot.json"]
        items = "".join(f'<li><a href="{link}">{link}</a></li>' for link in links)
        return HTMLResponse(f"<h1>asyncperf demo</h1><ul>{items}</ul>")

    routes: list[BaseRoute] = [
        Route("/", index),
        Route("/products/{product_id:int}", product),
        Route("/ask", ask),
    ]
    if db is not None:
        routes.append(Route("/report/{region}", report))
    if tour is None:
        return Starlette(routes=routes)
    routes.append(Mount(MONITOR_PATH, app=tour.monitor.asgi_app()))
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(TimingMiddleware, monitor=tour.monitor),
            Middleware(ResponseCacheMiddleware, response_cache=tour.response_cache),
        ],
    )


def _plan(total: int, seed: int, with_db: bool) -> list[tuple[str, str]]:
    """The load: (kind, URL) pairs, Zipf-popular products, questions and regions."""
    rng = random.Random(seed)
    kinds, weights = (["products", "ask"], [0.7, 0.3])
    if with_db:
        kinds, weights = (["products", "ask", "report"], [0.6, 0.25, 0.15])
    plan = []
    for kind in rng.choices(kinds, weights=weights, k=total):
        if kind == "products":
            product_id = rng.choices(range(1, PRODUCTS + 1), weights=_zipf(PRODUCTS))[0]
            plan.append((kind, f"/products/{product_id}"))
        elif kind == "ask":
            question = rng.choices(QUESTIONS, weights=_zipf(len(QUESTIONS)))[0]
            plan.append((kind, f"/ask?q={quote(question)}"))
        else:
            plan.append((kind, f"/report/{rng.choices(REGIONS, weights=_zipf(len(REGIONS)))[0]}"))
    return plan


class _Progress:
    """A progress bar: redrawn in place on a terminal, printed once when done otherwise."""

    def __init__(self, out: TextIO, label: str, total: int) -> None:
        self.out = out
        self.label = label
        self.total = total
        self.interactive = out.isatty()
        self.step = max(1, total // 60)
        self.started = time.perf_counter()

    def update(self, done: int) -> None:
        if self.interactive and done < self.total and done % self.step == 0:
            line = f"\r   {self.label:<17}{_bar(done, self.total)}"
            print(line, end="", file=self.out, flush=True)

    def finish(self, failures: int) -> float:
        seconds = time.perf_counter() - self.started
        failed = f", {failures} FAILED" if failures else ""
        line = f"   {self.label:<17}{_bar(self.total, self.total)} in {seconds:.2f} s{failed}"
        print(("\r" if self.interactive else "") + line, file=self.out, flush=True)
        return seconds


@dataclass
class _AppRun:
    latencies: dict[str, list[float]]
    served: dict[str, int]  # answered from the HTTP cache (X-Cache: HIT or STALE)
    wire_bytes: int
    failures: int
    seconds: float


async def _drive_app(
    app: Starlette, plan: list[tuple[str, str]], concurrency: int, progress: _Progress
) -> _AppRun:
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
    return _AppRun(latencies, served, counters["bytes"], counters["failures"], seconds)


async def _warm_up(args: argparse.Namespace) -> None:
    """Send each route a request or two on throwaway apps and caches.

    The first request through a code path pays for imports and codec set-up; this keeps
    that one-time cost out of both timed runs (the timed caches still start empty).
    """
    import httpx

    from .monitor import PerformanceMonitor

    stores = _Stores(None)
    try:
        tour = _make_tour(args, stores, PerformanceMonitor(), None)
        model = FakeModel(speed=1000.0, seed=args.seed)
        for app in (
            _build_app(args, model, _Counts(), db=None, tour=None),
            _build_app(args, model, _Counts(), db=None, tour=tour),
        ):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://warm") as client:
                for url in ("/products/0", "/ask?q=warm-up") * 2:
                    await client.get(url)
    finally:
        await stores.aclose()


def _size(count: float) -> str:
    for unit in ("B", "KB", "MB"):
        if abs(count) < 1000 or unit == "MB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError


def _money(amount: Decimal) -> str:
    return f"${amount.quantize(Decimal('0.0001'))}"


def _redact(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


async def _app_part(tour: _Tour, out: TextIO) -> Starlette:
    """Drive the app without caching and with it, print the report; return the cached app."""
    args = tour.args
    db = tour.db
    plan = _plan(args.app_requests, args.seed, db is not None)
    model_ms = MODEL_SECONDS * 1000 / args.speed
    print(
        "\npart 2: a Starlette app with ResponseCache, LLMCache"
        + (", cached_fetch" if db is not None else "")
        + " and PerformanceMonitor",
        file=out,
    )
    print(
        f"load: {len(plan)} GET requests, {args.app_concurrency} concurrent, through "
        "httpx.ASGITransport (no sockets)",
        file=out,
    )
    print(
        f"  /products/{{id}}  {args.latency_ms:g} ms handler, ~2 KB JSON, "
        "Cache-Control: max-age=60",
        file=out,
    )
    print(
        f"  /ask?q=...       fake {MODEL}: {MODEL_SECONDS * 1000:.0f} ms a call "
        f"(/ {args.speed:g} with --speed: {model_ms:.0f} ms), ~{CONTEXT_TOKENS + 40:,} "
        "prompt + 180-420 completion tokens",
        file=out,
    )
    if db is not None:
        print(f"  /report/{{region}} SQL aggregate over {ORDERS:,} rows of {db.table}", file=out)
    else:
        print("  (pass --dsn postgresql://... to add /report/{region}: cached SQL)", file=out)

    plain_counts = _Counts()
    plain_model = FakeModel(args.speed, args.seed)
    plain_app = _build_app(args, plain_model, plain_counts, db=db, tour=None)
    cached_app = _build_app(args, tour.model, tour.counts, db=db, tour=tour)
    await _warm_up(args)
    plain = await _drive_app(
        plain_app, plan, args.app_concurrency, _Progress(out, "without caching", len(plan))
    )
    async with tour.monitor:  # loop lag and cache probes while the load runs
        cached = await _drive_app(
            cached_app, plan, args.app_concurrency, _Progress(out, "with caching", len(plan))
        )
        invalidation = await _show_invalidation(tour, cached_app)

    http = tour.response_cache.statistics()
    llm = tour.llm.statistics().total
    db_stats = tour.db_cache.statistics() if tour.db_cache is not None else None
    products = len(cached.latencies.get("products", []))
    rows: list[tuple[str, str, str, int, int]] = [
        (
            "products",
            "GET /products/{id}",
            f"{cached.served.get('products', 0) / max(products, 1):.1%}",
            plain_counts.product_loads,
            tour.counts.product_loads,
        ),
        ("ask", "GET /ask (LLM)", f"{llm.hit_rate:.1%}", plain_model.calls, tour.model.calls),
    ]
    if db_stats is not None:
        rows.append(
            (
                "report",
                "GET /report/{region}",
                f"{db_stats.hit_rate:.1%}",
                plain_counts.queries,
                db_stats.loads,
            )
        )

    def cell(run: _AppRun, kind: str | None, fraction: float) -> str:
        if kind is None:
            values = [value for series in run.latencies.values() for value in series]
        else:
            values = run.latencies.get(kind, [])
        return _ms(_percentile(values, fraction))

    print("\nreport (before = without caching, after = with asyncperf)", file=out)
    print(
        f"  {'':22}{'hit rate':>9}{'p50 before':>12}{'p50 after':>11}"
        f"{'p99 before':>12}{'p99 after':>11}{'loads':>16}",
        file=out,
    )
    for kind, label, hit_rate, before, after in rows:
        print(
            f"  {label:22}{hit_rate:>9}{cell(plain, kind, 0.5):>12}{cell(cached, kind, 0.5):>11}"
            f"{cell(plain, kind, 0.99):>12}{cell(cached, kind, 0.99):>11}"
            f"{f'{before} -> {after}':>16}",
            file=out,
        )
    before_total = sum(row[3] for row in rows)
    after_total = sum(row[4] for row in rows)
    print(
        f"  {'all requests':22}{'':>9}{cell(plain, None, 0.5):>12}{cell(cached, None, 0.5):>11}"
        f"{cell(plain, None, 0.99):>12}{cell(cached, None, 0.99):>11}"
        f"{f'{before_total} -> {after_total}':>16}",
        file=out,
    )
    print(
        f"  wall time {plain.seconds:.2f} s -> {cached.seconds:.2f} s; "
        f"{len(plan) / plain.seconds:,.0f} -> {len(plan) / cached.seconds:,.0f} requests/s"
        + (f"; {plain.failures + cached.failures} requests FAILED" if plain.failures else ""),
        file=out,
    )
    print(
        "  (the caches start empty: the slowest 1% after are first misses, queued behind "
        "hits on the event loop the in-process client shares with the app)",
        file=out,
    )
    avoided = before_total - after_total
    parts = ", ".join(f"{label.split()[1]} {b - a} of {b}" for _, label, _, b, a in rows)
    print(
        f"\n  loads avoided: {avoided} of {before_total} "
        f"({avoided / max(before_total, 1):.1%}): {parts}",
        file=out,
    )
    print(
        f"  http: {http.hits} hits, {http.stores} responses stored (zstd); "
        f"{_size(plain.wire_bytes)} on the wire without caching, "
        f"{_size(cached.wire_bytes)} with; compression saved {_size(http.bytes_saved)} "
        f"of {_size(http.bytes_served + http.bytes_saved)} served from the cache",
        file=out,
    )
    spent, saved = llm.money_spent, llm.money_saved
    print(
        f"  llm: {llm.hits} of {llm.requests} answers without a model call "
        f"({llm.exact_hits} exact hits, {llm.coalesced} joined in flight); tokens saved "
        f"{llm.prompt_tokens_saved:,} prompt + {llm.completion_tokens_saved:,} completion; "
        f"money {_money(spent + saved)} -> {_money(spent)} (saved {_money(saved)}); "
        f"model time saved {llm.latency_saved:.1f} s "
        f"(~{llm.latency_saved * args.speed:.0f} s at real speed)",
        file=out,
    )
    if db_stats is not None:
        print(
            f"  db: {plain_counts.queries - db_stats.loads} of {plain_counts.queries} "
            f"queries avoided ({db_stats.hits} hits, {db_stats.coalesced} joined in flight); "
            + invalidation,
            file=out,
        )
    else:
        print("  db: not run (pass --dsn postgresql://... for cached queries)", file=out)
    snapshot = tour.monitor.snapshot()
    routes = snapshot["http"]["routes"]
    lag = snapshot["loop"]["lag"]
    timed = sum(route["count"] for route in routes)
    statements = len(snapshot["db"]["statements"])
    print(
        f"  monitor: {timed} requests timed on {len(routes)} routes"
        + (f", {statements} SQL statements" if db is not None else "")
        + f", {len(snapshot['caches'])} caches and {len(snapshot['components'])} "
        "components watched; event-loop lag p99 "
        + (_ms(lag["p99"]) if lag["p99"] is not None else "n/a")
        + ("; dashboard: below" if args.serve else "; dashboard: add --serve"),
        file=out,
    )
    return cached_app


async def _show_invalidation(tour: _Tour, app: Starlette) -> str:
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


# -- serving ----------------------------------------------------------------------------


def parse_bind(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::1]:8000`` for IPv6); raise ``ArgumentTypeError`` if bad."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


async def _serve(app: Starlette, bind: str, out: TextIO) -> None:
    import uvicorn

    host, port = parse_bind(bind)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))

    # uvicorn re-raises the signal that stopped it once it has shut down; answer it here
    # so that the demo's own clean-up (Redis keys, the demo schema) still runs.
    def stop(signum: int, frame: FrameType | None) -> None:
        pass

    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, stop) for sig in handled}
    try:
        serving = asyncio.create_task(server.serve())
        while not serving.done():  # announce the URLs once the socket listens
            if server.started:
                shown = f"[{host}]" if ":" in host else host
                base = f"http://{shown}:{port}"
                print(
                    f"\nserving the cached app on {base}/ (Ctrl-C to stop)\n"
                    f"  dashboard: {base}{MONITOR_PATH}/\n"
                    f"  metrics:   {base}{MONITOR_PATH}/metrics",
                    file=out,
                    flush=True,
                )
                break
            await asyncio.sleep(0.02)
        await serving
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("stopped; cleaning up", file=out, flush=True)


# -- the command ------------------------------------------------------------------------


def _missing(*modules: str) -> list[str]:
    import importlib.util

    return [name for name in modules if importlib.util.find_spec(name) is None]


async def _tour(args: argparse.Namespace) -> int:
    out = sys.stdout
    stores = _Stores(args.redis)
    db = _Database(args.dsn) if args.dsn else None
    missing = _missing("starlette", "httpx")  # without them, part 1 only
    for flag, module, extras in (("--dsn", "asyncpg", "demo,db"), ("--serve", "uvicorn", "demo")):
        needed = _missing("starlette", "httpx", module) if getattr(args, flag[2:]) else []
        if needed:
            print(
                f"asyncperf demo: {flag} needs {', '.join(needed)}: "
                f"pip install 'asyncperf[{extras}]'",
                file=sys.stderr,
            )
            return 2
    try:
        problem = await stores.check()
        if problem is not None:
            print(f"asyncperf demo: Redis at {_redact(args.redis)}: {problem}", file=sys.stderr)
            return 2
        from .monitor import PerformanceMonitor

        monitor = PerformanceMonitor()
        if db is not None:
            try:
                await db.open(monitor)
            except Exception as exc:  # unreachable, refused, bad credentials, no rights
                print(f"asyncperf demo: PostgreSQL at {_redact(db.dsn)}: {exc}", file=sys.stderr)
                return 2
        print(
            f"asyncperf {__version__} demo: a tour of the cache, HTTP response cache, "
            "LLM cache, cached queries and monitor",
            file=out,
        )
        print(f"caches: {stores.describe()}", file=out)
        if db is not None:
            print(
                f"database: PostgreSQL at {_redact(db.dsn)}, "
                f"{db.table} ({ORDERS:,} rows, dropped at exit)",
                file=out,
            )
        await _cache_part(args, stores, out)
        if missing:
            print(
                f"\npart 2 (the app tour) needs {' and '.join(missing)}: "
                "pip install 'asyncperf[demo]'",
                file=out,
            )
            return 0
        tour = _make_tour(args, stores, monitor, db)
        if db is not None:
            await db.watch(_required(tour.db_cache))
        app = await _app_part(tour, out)
        if args.serve:
            await _serve(app, args.serve, out)
        return 0
    finally:
        try:
            if db is not None:
                await db.close()
        finally:
            await stores.aclose()


class _LLMTotals:
    """The LLM cache's totals for the monitor, which reads one level of fields."""

    monitor_kind = "llm_cache"

    def __init__(self, llm: LLMCache) -> None:
        self.llm = llm

    def statistics(self) -> UsageStatistics:
        return self.llm.statistics().total


def _required(cache: Cache | None) -> Cache:
    assert cache is not None
    return cache


def _make_tour(
    args: argparse.Namespace,
    stores: _Stores,
    monitor: PerformanceMonitor,
    db: _Database | None,
) -> _Tour:
    from .http import ResponseCache
    from .llm import LLMCache

    http_store = stores.make("http")
    llm_store = stores.make("llm")
    db_cache = stores.make("db") if db is not None else None
    response_cache = ResponseCache(http_store, compression_level=3)
    llm = LLMCache(llm_store, ttl=3600)
    watched: Iterable[tuple[object, str]] = [
        (http_store, "http"),
        (llm_store, "llm"),
        (response_cache, "responses"),
        (_LLMTotals(llm), "answers"),
    ]
    if db_cache is not None:
        watched = [*watched, (db_cache, "queries")]
    for component, name in watched:
        monitor.watch(component, name=name)
    return _Tour(
        args=args,
        stores=stores,
        monitor=monitor,
        db=db,
        response_cache=response_cache,
        llm=llm,
        db_cache=db_cache,
        model=FakeModel(args.speed, args.seed),
    )


def run(args: argparse.Namespace) -> int:
    """Run ``asyncperf demo`` with parsed arguments; return the exit status."""
    return asyncio.run(_tour(args))
