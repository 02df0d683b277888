"""``asyncperf demo``: a tour of what has landed, ending in what caching saved.

Part 1 is the scripted workload on :class:`~asyncperf.Cache` (``get_or_set`` under a
Zipf load, a stampede on one cold key, warming). Part 2 builds a Starlette app in
process: a slow JSON endpoint behind the HTTP response cache, an ``/ask`` endpoint whose
answers come from a fake chat model through the LLM cache, a ``/report`` endpoint whose
SQL goes through ``cached_fetch`` when ``--dsn`` is given, and the performance monitor
around it all. A bounded load drives it through ``httpx.ASGITransport`` (no sockets),
once without caching and once with it, and the report compares the two. ``--serve``
then keeps the cached app running under uvicorn, with the dashboard at ``/_asyncperf/``.

The parts: :mod:`.tour` (the command: checks, then the two parts in order), :mod:`.app`
(the app, its fake model, stores and database), :mod:`.load` (the load runs, measured and
returned), :mod:`.report` (all the printing) and :mod:`.serve` (``--serve``). This is the
command's implementation, not a public API. The command imports it only when it runs, and
it imports starlette, httpx, uvicorn and asyncpg only where it uses them, so
``import asyncperf`` stays light.
"""

from __future__ import annotations

from .serve import parse_bind
from .tour import run

__all__ = ["parse_bind", "run"]
