"""One process of the distributed stampede (``test_distributed_stampede.py``).

Run as ``python -m bench._stampede_worker URL CALLERS LOCK``. It builds one
``Cache.from_url(URL + "?prefix=bench-stampede:")``, prints ``ready`` and then, for every
``go <wave>`` line on stdin, starts ``CALLERS`` concurrent ``get_or_set`` calls on the cold
key ``report:<wave>`` with ``lock=LOCK``. The loader INCRs ``bench-stampede-loads:<wave>``
in Redis (so loads are counted across processes) and sleeps 50 ms. It answers each wave
with one JSON line: callers that got the value, loads run here, seconds, cache counters.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import orjson
import redis.asyncio as redis_asyncio

from asyncperf.cache import Cache
from bench._data import VALUE

LOAD_SECONDS = 0.05
TTL = 60


async def main(url: str, callers: int, lock: Any) -> None:
    cache = Cache.from_url(f"{url}?prefix=bench-stampede:")
    counter = redis_asyncio.Redis.from_url(url)
    await counter.ping()
    await cache.get("warm-up")  # the pool's first connection, outside the timed waves
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", flush=True)
    while line := (await reader.readline()).decode().strip():
        command, wave = line.split()
        assert command == "go", line
        loads = 0

        async def loader(wave: str = wave) -> dict[str, object]:
            nonlocal loads
            loads += 1
            await counter.incr(f"bench-stampede-loads:{wave}")
            await asyncio.sleep(LOAD_SECONDS)
            return VALUE

        before = cache.statistics()
        started = time.perf_counter()
        results = await asyncio.gather(
            *(
                cache.get_or_set(f"report:{wave}", loader, ttl=TTL, lock=lock)
                for _ in range(callers)
            )
        )
        seconds = time.perf_counter() - started
        after = cache.statistics()
        answer = {
            "ok": sum(result == VALUE for result in results),
            "loads": loads,
            "seconds": seconds,
            "coalesced": after.coalesced - before.coalesced,
            "lock_waits": after.lock_waits - before.lock_waits,
            "lock_timeouts": after.lock_timeouts - before.lock_timeouts,
            "errors": after.errors - before.errors,
        }
        sys.stdout.write(orjson.dumps(answer).decode() + "\n")
        sys.stdout.flush()
    await cache.aclose()
    await counter.aclose()


if __name__ == "__main__":
    url, callers, lock = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    asyncio.run(main(url, callers, None if lock == "none" else lock))
