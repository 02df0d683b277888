"""Redis get hit and set with TTL, sequential and from 100 concurrent tasks.

Every variant talks to the session's throwaway redis-server (``redis_server`` fixture),
holds the same 1000 keys with the same 5-field dicts under its own key prefix, and runs at
its defaults, as users run it. The baseline is raw ``redis.asyncio`` (default pool, hiredis
parser) with ``orjson`` for the value: what any cache on Redis has to pay.

The variants of a group run round-robin inside one test (``round_robin``: blocks of
operations, the order reversed every other cycle, median per variant), the peer study's
method: on a shared, noisy machine, back-to-back tests drift apart by more than the 10 %
the get target allows.

Groups:
    redis-get: one caller, ``REDIS_OPS`` gets of present keys per block. Target: asyncperf
        at most 1.10x raw GET + ``orjson.loads``. Two ``diag:`` rows split asyncperf's cost:
        raw GET on the redis-py client RedisStore builds (its pool and timeouts), the same
        GET sent on a pooled connection without ``execute_command`` (as RedisStore sends a
        lone GET on a client of its own), and RedisStore with ``batching=False``.
    redis-set-ttl: one caller, writes with a 300 s TTL (raw: ``SET ... EX 300`` of
        ``orjson.dumps``), plus raw SET in a one-command pipeline (how RedisStore sends a
        lone set). No target; reported.
    redis-100-tasks: 100 tasks started at once, each doing ``GETS_PER_TASK`` gets of random
        present keys (the same seeded sequences for every variant), in keys per second. The
        floor is raw GET on redis-py's default pool. Target: asyncperf (gets of the same
        loop turn batched into one MGET) at least 3x raw. Raw MGET of each task's keys in
        one call is the ceiling batching can approach.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import orjson
import pytest
import redis.asyncio as redis_asyncio
from aiocache import RedisCache
from cashews import Cache as CashewsCache

from asyncperf.cache import Cache, RedisStore
from bench._data import KEYS, VALUE, VALUES
from bench._redis_support import (
    GETS_PER_TASK,
    REDIS_OPS,
    REDIS_ROUNDS,
    TASKS,
    WAVE_ROUNDS,
    RedisServer,
    Variant,
    round_robin,
    wave,
)

if TYPE_CHECKING:
    from bench.conftest import AsyncBench

pytestmark = [
    # aiocache 0.12.3 calls redis-py's deprecated setex() and close(); cashews 7.6 close().
    pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning"),
]

TTL = 300
AP = "asyncperf Cache(RedisStore(url, prefix), fallback=None)"
AP_URL = 'asyncperf Cache.from_url("redis://...") (default: +memory fallback)'
AIOCACHE = "aiocache RedisCache (default timeout=5)"
CASHEWS = 'cashews Cache().setup("redis://...") (pickle)'

Body = Callable[[Sequence[str]], Awaitable[None]]


def _keys(prefix: str) -> list[str]:
    return [prefix + key for key in KEYS]


def _block(body: Body, keys: Sequence[str], ops: int = REDIS_OPS) -> Callable[[], Awaitable[None]]:
    """``body`` over ``ops`` keys cycling through ``keys``: one block of a round-robin."""
    sequence = (list(keys) * -(-ops // len(keys)))[:ops]
    return functools.partial(body, sequence)


def _reads(get: Callable[[str], Awaitable[Any]], decode: bool = False) -> Body:
    async def body(keys: Sequence[str]) -> None:
        for key in keys:
            value = await get(key)
            if decode:
                orjson.loads(value)

    return body


# -- the clients, filled with the data set ------------------------------------------------


class Clients:
    """Every contender's client, each holding the 1000 keys under its own prefix."""

    def __init__(self, abench: AsyncBench, server: RedisServer) -> None:
        self.abench = abench
        url = server.url
        self.raw = redis_asyncio.Redis.from_url(url)  # redis-py's defaults
        # The redis-py client RedisStore builds for a URL (its pool and timeouts), used raw.
        self.store_client = RedisStore(url, prefix="bench:diag:")
        self.asyncperf = Cache(RedisStore(url, prefix="bench:ap:"), fallback=None)
        self.no_batching = Cache(RedisStore(url, prefix="bench:ap:", batching=False), fallback=None)
        self.from_url = Cache.from_url(url)
        self.aiocache = RedisCache(endpoint="127.0.0.1", port=server.port)
        self.cashews = CashewsCache()
        self.cashews.setup(url)
        abench.run(self._fill())

    async def _fill(self) -> None:
        pipe = self.raw.pipeline(transaction=False)
        for key, value in VALUES.items():
            pipe.set("bench:raw:" + key, orjson.dumps(value), ex=TTL)
        await pipe.execute()
        await self.asyncperf.set_many(VALUES, ttl=TTL)
        await self.from_url.set_many(VALUES, ttl=TTL)
        await self.aiocache.multi_set(
            [("bench:aio:" + key, value) for key, value in VALUES.items()], ttl=TTL
        )
        await self.cashews.set_many(
            {"bench:cs:" + key: value for key, value in VALUES.items()}, expire=TTL
        )

    def check(self, prefix: str = "", value: Any = None) -> None:
        """Every contender reads back the right value (peers' misses are silent)."""
        key = KEYS[7]
        want = VALUES[key] if value is None else value
        run = self.abench.run
        assert orjson.loads(run(self.raw.get(f"bench:raw:{prefix}{key}"))) == want
        assert run(self.asyncperf.get(prefix + key)) == want
        assert run(self.from_url.get(prefix + key)) == want
        assert run(self.aiocache.get(f"bench:aio:{prefix}{key}")) == want
        assert run(self.cashews.get(f"bench:cs:{prefix}{key}")) == want

    def close(self) -> None:
        run = self.abench.run
        run(self.raw.aclose())
        run(self.store_client.aclose())
        for cache in (self.asyncperf, self.no_batching, self.from_url):
            run(cache.aclose())
        run(self.aiocache.close())
        run(self.cashews.close())


def _asyncperf_info(cache: Cache) -> dict[str, Any]:
    stats = cache.statistics()
    store: Any = cache.store
    remote = store.primary if hasattr(store, "primary") else store
    redis_stats = remote.statistics()
    assert stats.misses == 0, stats
    assert stats.errors == 0, stats
    assert stats.hits > 0
    return {
        "hits": stats.hits,
        "batches": redis_stats.batches,
        "keys_per_batch": round(redis_stats.batched_keys / redis_stats.batches, 1)
        if redis_stats.batches
        else 0,
    }


def _same_client_note(
    abench: AsyncBench, medians: dict[str, float] | None, label: str, diag_prefix: str
) -> None:
    """Note asyncperf's cost over raw calls on the very client (pool, timeouts) it uses."""
    if not medians:
        return
    diag = next(value for name, value in medians.items() if name.startswith(diag_prefix))
    ratio = medians[label] / diag
    abench.benchmark.extra_info["same_client_ratio"] = round(ratio, 3)
    abench.note(
        f"{label}: {ratio:.3f}x raw on the same redis-py client RedisStore builds "
        f"(+{(medians[label] - diag) / 1000:.1f} µs/op)"
    )


def _pooled_get(client: Any) -> Callable[[str], Awaitable[Any]]:
    """GET through redis-py's public pool and connection API, without ``execute_command``
    (its retry loop, event dispatch and observability records)."""
    pool = client.connection_pool

    async def get(key: str) -> Any:
        connection = await pool.get_connection()
        try:
            await connection.send_command("GET", key)
            return await connection.read_response()
        finally:
            await pool.release(connection)

    return get


@pytest.fixture
def clients(abench: AsyncBench, redis_server: RedisServer) -> Any:
    contenders = Clients(abench, redis_server)
    yield contenders
    contenders.close()


# -- sequential get hit ---------------------------------------------------------------------


@pytest.mark.benchmark(group="redis-get")
def test_get_sequential(abench: AsyncBench, clients: Clients) -> None:
    raw_keys = _keys("bench:raw:")
    variants = [
        Variant(
            "raw redis.asyncio GET + orjson.loads (RAW)",
            _block(_reads(clients.raw.get, decode=True), raw_keys),
            REDIS_OPS,
            floor=True,
        ),
        Variant(f"{AP}.get", _block(_reads(clients.asyncperf.get), KEYS), REDIS_OPS),
        Variant(f"{AP_URL}.get", _block(_reads(clients.from_url.get), KEYS), REDIS_OPS),
        Variant(
            "diag: raw GET + orjson.loads on the redis-py client RedisStore builds",
            _block(_reads(clients.store_client.client.get, decode=True), raw_keys),
            REDIS_OPS,
        ),
        Variant(
            "diag: raw GET + orjson.loads on a pooled connection of that client, no "
            "execute_command (how RedisStore sends a lone GET)",
            _block(_reads(_pooled_get(clients.store_client.client), decode=True), raw_keys),
            REDIS_OPS,
        ),
        Variant(
            "diag: asyncperf RedisStore(batching=False)",
            _block(_reads(clients.no_batching.get), KEYS),
            REDIS_OPS,
        ),
        Variant(
            f"{AIOCACHE}.get", _block(_reads(clients.aiocache.get), _keys("bench:aio:")), REDIS_OPS
        ),
        Variant(
            f"{CASHEWS}.get", _block(_reads(clients.cashews.get), _keys("bench:cs:")), REDIS_OPS
        ),
    ]
    medians = round_robin(abench, variants, rounds=REDIS_ROUNDS)
    _same_client_note(abench, medians, f"{AP}.get", "diag: raw GET + orjson.loads")
    clients.check()
    abench.benchmark.extra_info.update(
        asyncperf=_asyncperf_info(clients.asyncperf), from_url=_asyncperf_info(clients.from_url)
    )
    abench.target(f"{AP}.get", "max_ratio", 1.10, "<= 1.10x raw")
    abench.target(f"{AP_URL}.get", "max_ratio", 1.10, "<= 1.10x raw")


# -- sequential set with TTL ---------------------------------------------------------------


@pytest.mark.benchmark(group="redis-set-ttl")
def test_set_sequential(abench: AsyncBench, clients: Clients) -> None:
    raw, prefix = clients.raw, "set:"

    async def raw_set(keys: Sequence[str]) -> None:
        for key in keys:
            await raw.set(key, orjson.dumps(VALUE), ex=TTL)

    async def raw_pipeline_set(keys: Sequence[str]) -> None:
        for key in keys:
            pipe = raw.pipeline(transaction=False)
            pipe.set(key, orjson.dumps(VALUE), px=TTL * 1000)
            await pipe.execute()

    store_client = clients.store_client.client

    async def store_set(keys: Sequence[str]) -> None:
        for key in keys:
            await store_client.set(key, orjson.dumps(VALUE), px=TTL * 1000)

    def writes(cache: Any, **options: Any) -> Body:
        async def body(keys: Sequence[str]) -> None:
            for key in keys:
                await cache.set(key, VALUE, **options)

        return body

    raw_keys = _keys("bench:raw:" + prefix)
    variants = [
        Variant(
            "raw redis.asyncio SET EX 300 + orjson.dumps (RAW)",
            _block(raw_set, raw_keys),
            REDIS_OPS,
            floor=True,
        ),
        Variant(
            f"{AP}.set(ttl=300)",
            _block(writes(clients.asyncperf, ttl=TTL), _keys(prefix)),
            REDIS_OPS,
        ),
        Variant(
            f"{AP_URL}.set(ttl=300)",
            _block(writes(clients.from_url, ttl=TTL), _keys(prefix)),
            REDIS_OPS,
        ),
        Variant(
            "diag: raw SET PX + orjson.dumps on the redis-py client RedisStore builds",
            _block(store_set, raw_keys),
            REDIS_OPS,
        ),
        Variant(
            "diag: raw SET PX in a 1-command pipeline + orjson.dumps",
            _block(raw_pipeline_set, raw_keys),
            REDIS_OPS,
        ),
        Variant(
            f"{AIOCACHE}.set(ttl=300)",
            _block(writes(clients.aiocache, ttl=TTL), _keys("bench:aio:" + prefix)),
            REDIS_OPS,
        ),
        Variant(
            f"{CASHEWS}.set(expire=300)",
            _block(writes(clients.cashews, expire=TTL), _keys("bench:cs:" + prefix)),
            REDIS_OPS,
        ),
    ]
    medians = round_robin(abench, variants, rounds=REDIS_ROUNDS)
    _same_client_note(abench, medians, f"{AP}.set(ttl=300)", "diag: raw SET PX + orjson.dumps")
    abench.target(f"{AP}.set(ttl=300)", "max_ratio", 1.10, "<= 1.10x raw")
    clients.check(prefix, VALUE)
    assert clients.asyncperf.statistics().errors == 0
    assert clients.from_url.statistics().errors == 0


# -- 100 concurrent tasks ----------------------------------------------------------------------


def _sequences(prefix: str) -> list[list[str]]:
    """The keys each of the 100 tasks reads, in order: the same for every variant."""
    rng = random.Random(100)
    return [[prefix + rng.choice(KEYS) for _ in range(GETS_PER_TASK)] for _ in range(TASKS)]


@pytest.mark.benchmark(group="redis-100-tasks")
def test_get_100_tasks(abench: AsyncBench, clients: Clients) -> None:
    raw = clients.raw
    total = TASKS * GETS_PER_TASK

    async def raw_mget(keys: Sequence[str]) -> None:
        for value in await raw.mget(keys):
            orjson.loads(value)

    def variant(label: str, task: Body, prefix: str, *, floor: bool = False) -> Variant:
        return Variant(label, functools.partial(wave, task, _sequences(prefix)), total, floor)

    variants = [
        variant(
            "raw redis.asyncio GET, default pool (RAW)", _reads(raw.get), "bench:raw:", floor=True
        ),
        variant("raw GET + orjson.loads, default pool", _reads(raw.get, decode=True), "bench:raw:"),
        variant(
            f"ceiling: raw MGET of each task's {GETS_PER_TASK} keys + orjson",
            raw_mget,
            "bench:raw:",
        ),
        variant(f"{AP}.get (auto-MGET)", _reads(clients.asyncperf.get), ""),
        variant(f"{AP_URL}.get", _reads(clients.from_url.get), ""),
        variant(f"{AIOCACHE}.get", _reads(clients.aiocache.get), "bench:aio:"),
        variant(f"{CASHEWS}.get (default pool)", _reads(clients.cashews.get), "bench:cs:"),
    ]
    round_robin(abench, variants, rounds=WAVE_ROUNDS, unit="keys/s")
    clients.check()
    abench.benchmark.extra_info.update(
        tasks=TASKS,
        gets_per_task=GETS_PER_TASK,
        asyncperf=_asyncperf_info(clients.asyncperf),
        from_url=_asyncperf_info(clients.from_url),
    )
    abench.target(f"{AP}.get (auto-MGET)", "min_ratio", 3.0, ">= 3x raw")
    abench.target(f"{AP_URL}.get", "min_ratio", 3.0, ">= 3x raw")
