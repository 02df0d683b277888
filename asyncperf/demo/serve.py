"""``asyncperf demo --serve``: keep the cached app running under uvicorn until a signal,
with a light stream of the tour's own traffic so the dashboard has something to show.

:func:`parse_bind` checks ``HOST:PORT`` with the standard library only, so the command
line can validate ``--serve`` before anything else loads; uvicorn is imported when serving.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING, TextIO

from .app import MONITOR_PATH

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["parse_bind", "serve"]


def parse_bind(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::1]:8000`` for IPv6); raise ``ArgumentTypeError`` if bad."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


async def _background_load(base: str, plan: list[tuple[str, str]], rate: float) -> None:
    """GET the plan's URLs from ``base`` over and over, ``rate`` requests a second."""
    import httpx

    async with httpx.AsyncClient(base_url=base, timeout=10.0) as client:
        for _, url in itertools.cycle(plan):
            with contextlib.suppress(httpx.HTTPError):  # the server is stopping, or busy
                await client.get(url)
            await asyncio.sleep(1.0 / rate)


async def serve(
    app: Starlette,
    bind: str,
    out: TextIO,
    *,
    plan: Sequence[tuple[str, str]] = (),
    rate: float = 0.0,
) -> None:
    """Serve ``app`` on ``bind`` until SIGINT/SIGTERM; with ``rate`` > 0, also send it
    ``plan``'s requests (the tour's traffic) at ``rate`` a second through the socket."""
    import uvicorn

    host, port = parse_bind(bind)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))

    # uvicorn re-raises the signal that stopped it once it has shut down; answer it here
    # so that the demo's own clean-up (Redis keys, the demo schema) still runs.
    def stop(signum: int, frame: FrameType | None) -> None:
        pass

    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, stop) for sig in handled}
    load: asyncio.Task[None] | None = None
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
                if rate > 0 and plan:
                    load = asyncio.create_task(_background_load(base, list(plan), rate))
                    print(
                        f"  load:      {rate:g} requests/s of the tour's traffic, so the "
                        "dashboard moves (--serve-load 0: none)",
                        file=out,
                        flush=True,
                    )
                break
            await asyncio.sleep(0.02)
        await serving
    finally:
        if load is not None:
            load.cancel()
            # Cancelled, or already ended by an error of its own: the clean-up runs either way.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await load
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("stopped; cleaning up", file=out, flush=True)
