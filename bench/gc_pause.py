"""What a big response cache costs the garbage collector: a full collection's pause.

Stores ``--responses`` (default 100,000) 2 KB JSON responses through
``ResponseCacheMiddleware`` over a plain ``MemoryStore``, hits each one once, then times
``gc.collect()`` (the best of three) and counts the objects the collector tracks, for
the default decoded-entry memo and for ``decoded_entries=0``. Every object the store
keeps per response is walked by each full collection: what a hit saves by keeping
decoded entries is paid here. Usage::

    .venv/bin/python -m bench.gc_pause [--responses N]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time

from starlette.applications import Starlette
from starlette.routing import Route

from asyncperf import Cache, MemoryStore
from asyncperf.http import ResponseCache, ResponseCacheMiddleware
from bench._asgi import get_scope, receive, send
from bench.test_http import _CLIENT_HEADERS, instant


async def _fill(responses: int, decoded_entries: int) -> tuple[float, int]:
    rc = ResponseCache(
        Cache(MemoryStore(max_entries=10 * responses)), decoded_entries=decoded_entries
    )
    app = ResponseCacheMiddleware(Starlette(routes=[Route("/items/{n}", instant)]), rc)
    for headers in (_CLIENT_HEADERS, ((b"host", b"bench"),)):  # store each, then hit each
        for n in range(responses):
            await app(get_scope(f"/items/{n}", headers), receive, send)
    assert rc.statistics().hits == responses, rc.statistics()
    gc.collect()
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        gc.collect()
        best = min(best, time.perf_counter() - started)
    tracked = len(gc.get_objects())
    del app, rc
    gc.collect()
    return best, tracked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=100_000)
    args = parser.parse_args()
    print(f"{args.responses:,} responses stored and hit once")
    for label, decoded in (("decoded_entries=0", 0), ("default (4,096)", 4096)):
        pause, tracked = asyncio.run(_fill(args.responses, decoded))
        print(f"  {label:<18} full collection {pause * 1e3:7.1f} ms, {tracked:>9,} objects tracked")


if __name__ == "__main__":
    main()
