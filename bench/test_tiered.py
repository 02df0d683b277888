"""Tiered cache: a get that the in-process tier (L1) answers, in front of Redis (L2).

Group ``tiered-l1-get``: reads of 1000 keys that are all in L1, ``OPS`` awaits per block
(the loop shape of ``test_memory.py``), the variants round-robin in one test, against the
async floor (an ``async def`` around ``dict.get``). Target: asyncperf
``Cache.tiered(l2=RedisStore(url, prefix=...))`` at most 3x the async floor. The peer is
cashews with ``client_side=True`` (L1 kept coherent with ``CLIENT TRACKING ... BCAST``,
available since Redis 6). asyncperf's plain ``Cache(MemoryStore())`` get is shown for
reference.

Behaviour checked, not timed: every asyncperf read is an L1 hit and sends no GET/MGET to
Redis (``INFO commandstats`` around a pass over all keys); and after another client
removes a key, each L1 stops serving it. The invalidation lag is printed in the summary
(asserted for asyncperf, recorded for cashews, at its defaults and with ``?protocol=2``).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import pytest
import redis.asyncio as redis_asyncio
from cashews import Cache as CashewsCache

from asyncperf.cache import Cache, MemoryStore, RedisStore, TieredStore
from bench._data import KEYS, OPS, ROUNDS, VALUES
from bench._redis_support import RedisServer, Variant, command_diff, round_robin

if TYPE_CHECKING:
    from bench.conftest import AsyncBench

pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning")

TTL = 300
TIERED = "asyncperf Cache.tiered(l2=RedisStore(url, prefix)).get (L1 hit)"
CASHEWS = 'cashews Cache().setup("redis://...", client_side=True).get (L1 hit)'
_READS = ("get", "mget")


def _reads(get: Callable[[str], Awaitable[Any]]) -> Callable[[Sequence[str]], Awaitable[None]]:
    async def body(keys: Sequence[str]) -> None:
        for key in keys:
            await get(key)

    return body


def _remote_reads(server: RedisServer, body: Callable[[], Awaitable[None]], abench: Any) -> int:
    """GET/MGET commands Redis saw while ``body()`` ran."""
    before = server.command_counts()
    abench.run(body())
    diff = command_diff(before, server.command_counts())
    return sum(diff.get(name, 0) for name in _READS)


async def _invalidation_lag(
    read: Callable[[], Awaitable[object]], remove: Callable[[], Awaitable[object]]
) -> float | None:
    """Seconds until ``read()`` stops returning the value after ``remove()``; None: > 1 s."""
    assert await read() is not None
    started = time.perf_counter()
    await remove()
    while time.perf_counter() - started < 1.0:
        if await read() is None:
            return time.perf_counter() - started
        await asyncio.sleep(0.001)
    return None


def _lag_text(seconds: float | None) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds is not None else "never (> 1 s): STALE reads"


@pytest.mark.benchmark(group="tiered-l1-get")
def test_l1_get(abench: AsyncBench, redis_server: RedisServer) -> None:
    url = redis_server.url
    data = dict(VALUES)

    async def floor_get(key: str) -> object:
        return data.get(key)

    memory = Cache(MemoryStore())
    tiered = Cache.tiered(l2=RedisStore(url, prefix="bench:tiered:"))
    other = Cache.tiered(l2=RedisStore(url, prefix="bench:tiered:"))  # another "process"
    cashews = CashewsCache()
    cashews.setup(url, client_side=True)
    raw = redis_asyncio.Redis.from_url(url)
    store = tiered.store
    assert isinstance(store, TieredStore)

    async def fill() -> None:
        await memory.set_many(VALUES, ttl=TTL)
        # L1 is flushed whenever the invalidation feed (re)connects: connect first.
        for cache in (tiered, other):
            l2: Any = cache.store
            for _ in range(50):
                if await l2.l2.ensure_listener():
                    break
            assert l2.coherent
        await tiered.set_many(VALUES, ttl=TTL)
        await cashews.init()
        for key, value in VALUES.items():
            await cashews.set(key, value, expire=TTL)
        for key in KEYS:  # cashews fills its L1 on read
            assert await cashews.get(key) == VALUES[key]

    abench.run(fill())
    assert len(store.l1) == len(KEYS)
    variants = [
        Variant(
            "async def around dict.get (ASYNC FLOOR)",
            functools.partial(_reads(floor_get), KEYS * (OPS // len(KEYS))),
            OPS,
            floor=True,
        ),
        Variant(
            "asyncperf Cache(MemoryStore()).get (reference)",
            functools.partial(_reads(memory.get), KEYS * (OPS // len(KEYS))),
            OPS,
        ),
        Variant(TIERED, functools.partial(_reads(tiered.get), KEYS * (OPS // len(KEYS))), OPS),
        Variant(CASHEWS, functools.partial(_reads(cashews.get), KEYS * (OPS // len(KEYS))), OPS),
    ]
    round_robin(abench, variants, rounds=ROUNDS)
    abench.target(TIERED, "max_ratio", 3.0, "<= 3x async floor")

    # Behaviour: asyncperf's L1 answers everything, Redis sees no read.
    stats = tiered.statistics()
    assert stats.misses == 0, stats
    tiered_reads = _remote_reads(redis_server, functools.partial(_reads(tiered.get), KEYS), abench)
    assert tiered_reads == 0
    cashews_reads = _remote_reads(
        redis_server, functools.partial(_reads(cashews.get), KEYS), abench
    )

    # Invalidation: another client removes a key; how long until each L1 stops serving it?
    lag = abench.run(_invalidation_lag(lambda: tiered.get(KEYS[0]), lambda: other.delete(KEYS[0])))

    async def cashews_lag(client: CashewsCache, key: str) -> float | None:
        await asyncio.sleep(0.2)  # let its own writes' invalidations drain first
        return await _invalidation_lag(
            lambda: client.get(key), lambda: raw.delete("cashews:" + key)
        )

    lag_cashews = abench.run(cashews_lag(cashews, KEYS[1]))
    resp2 = CashewsCache()  # the same, with RESP2 on the wire (redis-py 8 defaults to RESP3)
    resp2.setup(url + "?protocol=2", client_side=True)
    abench.run(resp2.init())
    abench.run(resp2.set(KEYS[2], VALUES[KEYS[2]], expire=TTL))
    lag_resp2 = abench.run(cashews_lag(resp2, KEYS[2]))

    abench.benchmark.extra_info.update(
        redis_version=redis_server.version,
        asyncperf_remote_reads_per_1000_hits=tiered_reads,
        cashews_remote_reads_per_1000_hits=cashews_reads,
        asyncperf_invalidation_lag_s=lag,
        cashews_invalidation_lag_s=lag_cashews,
        cashews_resp2_invalidation_lag_s=lag_resp2,
    )
    abench.note(
        f"tiered L1 (Redis {redis_server.version}): GET/MGET sent per 1000 L1 hits: asyncperf "
        f"{tiered_reads}, cashews {cashews_reads}. A key deleted by another client left L1 "
        f"after: asyncperf {_lag_text(lag)} (pub/sub); cashews client_side at its defaults "
        f"(redis-py 8: RESP3) {_lag_text(lag_cashews)}, with ?protocol=2 {_lag_text(lag_resp2)}"
    )
    assert lag is not None, "asyncperf's L1 kept serving a key another cache deleted"
    for close in (resp2.close, cashews.close, raw.aclose, tiered.aclose, other.aclose):
        abench.run(close())
