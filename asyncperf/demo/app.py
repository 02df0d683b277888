"""The demo's app and everything in it: the fake chat model, the stores, the database.

:func:`build_app` makes the Starlette app the tour drives: ``/products/{id}`` (a slow JSON
page behind the HTTP response cache), ``/ask`` (a fake chat model behind the LLM cache),
``/report/{region}`` (SQL through ``cached_fetch``, with ``--dsn``) and, in the cached app,
the monitor's dashboard. :class:`Stores` makes every cache of the tour, in memory or in one
Redis under a unique prefix; :class:`Database` owns the demo's table. starlette, asyncpg
and the HTTP, LLM and DB packages are imported only where they are used.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from ..cache import Cache, MemoryStore

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from ..db import TableInvalidation
    from ..http import ResponseCache
    from ..llm import LLMCache, UsageStatistics
    from ..monitor import PerformanceMonitor

__all__ = [
    "CONTEXT_TOKENS",
    "MODEL",
    "MODEL_SECONDS",
    "MONITOR_PATH",
    "ORDERS",
    "PRODUCTS",
    "QUESTIONS",
    "REGIONS",
    "SYSTEM_PROMPT",
    "Counts",
    "Database",
    "FakeModel",
    "LLMTotals",
    "Stores",
    "Tour",
    "build_app",
    "make_tour",
    "product_page",
    "redact",
]

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


def product_page(product_id: int) -> dict[str, Any]:
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
class Counts:
    """What one app ran (the loads the cache is there to avoid)."""

    product_loads: int = 0
    queries: int = 0


class Stores:
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
        return f"Redis at {redact(self.redis_url)}, keys under {self.prefix}-* (removed at exit)"

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
        try:
            for cache in self.caches:
                try:
                    if self.redis_url is not None:
                        await cache.clear()
                finally:
                    await cache.aclose()
        finally:
            self.caches.clear()
            if self.redis_url is not None:
                await self._remove_leftovers()

    async def _remove_leftovers(self) -> None:
        """Delete what is still under the prefix once every cache is closed.

        ``Cache.clear`` degrades like every cache call: on a loaded machine an operation
        past its 100 ms deadline opens a breaker and the clear skips Redis (seen in CI),
        and a background write may land after it. The promise "removed at exit" is
        kept here with the plain client, without the cache's deadlines.
        """
        assert self.redis_url is not None
        from ..cache import RedisStore

        sweeper = Cache.from_url(self.redis_url)
        store = getattr(sweeper.store, "primary", sweeper.store)  # the fallback's Redis
        try:
            if not isinstance(store, RedisStore):
                return
            client = store.client
            async with asyncio.timeout(30):
                keys = [key async for key in client.scan_iter(match=f"{self.prefix}-*", count=500)]
                for start in range(0, len(keys), 500):
                    await client.unlink(*keys[start : start + 500])
        except Exception as exc:  # the exit goes on: say what was left
            print(f"asyncperf demo: keys under {self.prefix}-* were not removed: {exc!r}")
        finally:
            await sweeper.aclose()


class Database:
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
        from ..db import setup_invalidation

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
class Tour:
    """Everything the cached app uses, and what the report reads."""

    args: argparse.Namespace
    stores: Stores
    monitor: PerformanceMonitor
    db: Database | None
    response_cache: ResponseCache
    llm: LLMCache
    db_cache: Cache | None
    model: FakeModel
    counts: Counts = field(default_factory=Counts)


def build_app(
    args: argparse.Namespace,
    model: FakeModel,
    counts: Counts,
    *,
    db: Database | None,
    tour: Tour | None,
) -> Starlette:
    """The demo app; with ``tour``, every cache and the monitor are in it."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import BaseRoute, Mount, Route

    from ..db import cached_fetch
    from ..http import ResponseCacheMiddleware, cache_policy
    from ..monitor import TimingMiddleware

    latency = args.latency_ms / 1000.0

    async def product(request: Request) -> Response:
        counts.product_loads += 1
        await asyncio.sleep(latency)  # the slow part: a database, a template, an API
        return JSONResponse(
            product_page(request.path_params["product_id"]),
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


class LLMTotals:
    """The LLM cache's totals for the monitor, which reads one level of fields."""

    monitor_kind = "llm_cache"

    def __init__(self, llm: LLMCache) -> None:
        self.llm = llm

    def statistics(self) -> UsageStatistics:
        return self.llm.statistics().total


def make_tour(
    args: argparse.Namespace,
    stores: Stores,
    monitor: PerformanceMonitor,
    db: Database | None,
) -> Tour:
    from ..http import ResponseCache
    from ..llm import LLMCache

    http_store = stores.make("http")
    llm_store = stores.make("llm")
    db_cache = stores.make("db") if db is not None else None
    response_cache = ResponseCache(http_store, compression_level=3)
    llm = LLMCache(llm_store, ttl=3600)
    # The response and LLM caches read through namespace views of their stores: those
    # views are the cache rows that move (watching the response cache adds its view).
    watched: Iterable[tuple[object, str]] = [
        (response_cache, "http"),
        (llm.cache, "llm"),
        (LLMTotals(llm), "answers"),
    ]
    if db_cache is not None:
        watched = [*watched, (db_cache, "queries")]
    for component, name in watched:
        monitor.watch(component, name=name)
    return Tour(
        args=args,
        stores=stores,
        monitor=monitor,
        db=db,
        response_cache=response_cache,
        llm=llm,
        db_cache=db_cache,
        model=FakeModel(args.speed, args.seed),
    )


def redact(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))
