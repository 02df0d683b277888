"""The dashboard page in headless Chromium (Debian's ``chromium``), driven over CDP.

Checks that the page loads with no console errors or exceptions, that every chart has
plotted points after a few polls and moves under load (two polls, different data), and
saves a screenshot to ``tests/monitor/artifacts/dashboard.png`` (git-ignored there) and to
the test's tmp dir. A second test blocks the server's loop from a route and waits for the
stall panel to name the blocking function, newest first, with its text escaped.
A missing Chromium fails the test: CI installs it (``apt-get install chromium``).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from asyncperf import Cache, MemoryStore
from asyncperf.monitor import PerformanceMonitor
from tests.monitor._support import serve

ARTIFACTS = Path(__file__).parent / "artifacts"
CHARTS = ("latency", "rate", "hits", "lag", "cpu", "memory")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "headless Chromium is required for the dashboard test and was not found: "
        "install Debian's package with `apt-get install -y chromium`",
        pytrace=False,
    )


class DevTools:
    """A minimal Chrome DevTools Protocol client over one page's websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            data = json.loads(message.data)
            if "id" in data and data["id"] in self.pending:
                self.pending.pop(data["id"]).set_result(data)
            else:
                self.events.append(data)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self.ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[ident] = future
        await self.ws.send_str(json.dumps({"id": ident, "method": method, "params": params}))
        reply = await asyncio.wait_for(future, 30)
        assert "error" not in reply, reply
        return reply["result"]

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def errors(self) -> list[str]:
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(json.dumps(params["exceptionDetails"])[:500])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(json.dumps(params.get("args"))[:500])
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(params["entry"].get("text", "")[:500])
        return found


def app_with_traffic(monitor: PerformanceMonitor, cache: Cache) -> Starlette:
    async def item(request: Request) -> Response:
        key = f"item:{int(request.path_params['item_id']) % 5}"
        value = await cache.get_or_set(key, lambda: {"key": key}, ttl=60)
        return PlainTextResponse(str(value))

    app = Starlette(
        routes=[
            Route("/items/{item_id}", item),
            Mount("/_asyncperf", app=monitor.asgi_app(refresh_seconds=0.25)),
        ]
    )
    app.add_middleware(monitor.asgi_middleware)
    return app


@asynccontextmanager
async def open_page(url: str, profile: Path) -> AsyncIterator[DevTools]:
    """Start headless Chromium, open ``url`` in its page; yield the page's DevTools."""
    process = await asyncio.create_subprocess_exec(
        chromium_binary(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--remote-debugging-port=0",
        "--remote-debugging-address=127.0.0.1",
        f"--user-data-dir={profile}",
        "--window-size=1280,1600",
        "about:blank",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        browser_ws = None
        while browser_ws is None:
            line = await asyncio.wait_for(process.stderr.readline(), 30)
            assert line, "chromium exited before opening DevTools"
            match = re.search(rb"DevTools listening on (ws://\S+)", line)
            if match:
                browser_ws = match.group(1).decode()
        port = browser_ws.split(":")[2].split("/")[0]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                targets = await response.json()
            page = next(t for t in targets if t["type"] == "page")
            async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                tools = DevTools(ws)
                try:
                    for domain in ("Runtime", "Log", "Page"):
                        await tools.call(f"{domain}.enable")
                    await tools.call("Page.navigate", url=url)
                    yield tools
                finally:
                    tools.reader.cancel()
    finally:
        process.terminate()
        await process.wait()


async def dashboard_state(tools: DevTools) -> dict[str, Any]:
    state = await tools.evaluate("JSON.stringify(window.asyncperfDashboard)")
    return json.loads(state) if state else {}


async def test_dashboard_renders_charts_without_console_errors(tmp_path: Path) -> None:
    chromium_binary()
    cache = Cache(MemoryStore())
    monitor = PerformanceMonitor(loop_lag_interval=0.02, cache_probe_interval=0.1)
    monitor.watch(cache)
    app = app_with_traffic(monitor, cache)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:

        async def traffic() -> None:
            for index in itertools.count():
                await client.get(f"/items/{index}")
                await asyncio.sleep(0.005)

        load = asyncio.create_task(traffic())
        try:
            async with open_page(f"{url}/_asyncperf/", tmp_path / "profile") as tools:
                state: dict[str, Any] = {}
                for _ in range(300):
                    state = await dashboard_state(tools)
                    points = state.get("points", {})
                    if state.get("polls", 0) >= 6 and all(points.get(c, 0) >= 2 for c in CHARTS):
                        break
                    await asyncio.sleep(0.1)
                # The charts move: two polls later, more requests and a redrawn rate chart.
                before = state
                before_image = await tools.evaluate(RATE_IMAGE)
                for _ in range(100):
                    after = await dashboard_state(tools)
                    if after.get("polls", 0) >= before.get("polls", 0) + 2:
                        break
                    await asyncio.sleep(0.05)
                after_image = await tools.evaluate(RATE_IMAGE)
                shot = await tools.call("Page.captureScreenshot", format="png")
                image = base64.b64decode(shot["data"])
                (tmp_path / "dashboard.png").write_bytes(image)
                ARTIFACTS.mkdir(exist_ok=True)
                (ARTIFACTS / "dashboard.png").write_bytes(image)
                tables = await tools.evaluate(
                    "document.getElementById('routes').innerText + '\\n' + "
                    "document.getElementById('caches').innerText"
                )
                errors = tools.errors()
        finally:
            load.cancel()
    assert errors == [], errors
    assert state.get("errors") == 0
    assert state.get("polls", 0) >= 6, state
    for chart in CHARTS:
        assert state["points"].get(chart, 0) >= 2, (chart, state)
    assert after["requests"] > before["requests"] > 0, (before, after)
    for polled in (before, after):
        assert polled["latest"]["rate"]["req/s"] > 0, polled["latest"]
        assert polled["latest"]["latency"]["p50"] > 0, polled["latest"]
    # A rate computed from new counts each poll; a frozen chart repeats its last value.
    assert after["latest"]["rate"]["req/s"] != before["latest"]["rate"]["req/s"]
    assert after_image != before_image
    assert "/items/{item_id}" in tables
    assert "default" in tables
    assert image.startswith(b"\x89PNG")


RATE_IMAGE = "document.getElementById('chart-rate').toDataURL()"

# Compiled under a file name that is markup: innerHTML would make it an element (and run
# its handler); textContent shows it as text.
HOSTILE_FILE = "<img src=x onerror=window.pwned=1>.py"
_hostile: dict[str, Any] = {"time": time}
exec(  # a fixed string: a frame whose file name the panel must escape
    compile("def block_in_markup():\n    time.sleep(0.15)\n", HOSTILE_FILE, "exec"), _hostile
)
block_in_markup = _hostile["block_in_markup"]


def block_the_loop() -> None:
    time.sleep(0.15)  # deliberately blocking: the frame the stall panel must name


LINE_OF_SLEEP = block_the_loop.__code__.co_firstlineno + 1

STALLS = "document.getElementById('stalls')"


async def test_stall_panel_names_the_blocking_frame(tmp_path: Path) -> None:
    chromium_binary()
    monitor = PerformanceMonitor(cache_probe_interval=None)  # stalls over 100 ms

    async def blocking(request: Request) -> Response:
        block_the_loop()
        return PlainTextResponse("blocked")

    async def blocking_in_markup(request: Request) -> Response:
        block_in_markup()
        return PlainTextResponse("blocked")

    app = Starlette(
        routes=[
            Route("/block", blocking),
            Route("/markup", blocking_in_markup),
            Mount("/_asyncperf", app=monitor.asgi_app(refresh_seconds=0.25)),
        ]
    )
    app.add_middleware(monitor.asgi_middleware)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        async with open_page(f"{url}/_asyncperf/", tmp_path / "profile") as tools:

            async def stalls() -> list[dict[str, Any]]:
                found = await tools.evaluate(
                    f"Array.from({STALLS}.querySelectorAll('li.stall')).map(li => ({{"
                    "  summary: li.querySelector('summary').textContent,"
                    "  ms: li.querySelector('.ms').textContent,"
                    "  function: li.querySelector('.function').textContent,"
                    "  file: li.querySelector('.file').textContent,"
                    "  stack: li.querySelector('details > pre').textContent }))"
                )
                return found or []

            for _ in range(100):
                if (await dashboard_state(tools)).get("polls", 0) >= 1:
                    break
                await asyncio.sleep(0.05)
            empty = await tools.evaluate(f"{STALLS}.innerText")
            stalled_yet = monitor.slow_callbacks.value  # read after: the page can't be ahead
            assert (await client.get("/block")).status_code == 200
            await asyncio.sleep(0.05)  # two stalls, two records
            assert (await client.get("/markup")).status_code == 200
            entries: list[dict[str, Any]] = []
            for _ in range(200):
                entries = await stalls()
                if {"block_the_loop", "block_in_markup"} <= {e["function"] for e in entries}:
                    break
                await asyncio.sleep(0.05)
            count = await tools.evaluate("document.getElementById('stall-count').textContent")
            markup = await tools.evaluate(
                f"[{STALLS}.querySelectorAll('img').length, window.pwned === undefined]"
            )
            # The stack opens on a click, and stays open across the next polls.
            await tools.evaluate(f"{STALLS}.querySelector('li.stall:last-child summary').click()")
            await asyncio.sleep(0.6)
            still_open = await tools.evaluate(
                f"{STALLS}.querySelector('li.stall:last-child details').open"
            )
            errors = tools.errors()
    assert errors == [], errors
    # The test process may stall on its own (an SSL context loading its CA file, on a
    # loaded machine): find our two by their function, whatever else is listed.
    if stalled_yet == 0:
        assert "No stalls seen" in empty, empty
        assert "100 ms" in empty, empty
    functions = [entry["function"] for entry in entries]
    assert "block_the_loop" in functions, entries
    assert "block_in_markup" in functions, entries
    newest = entries[functions.index("block_in_markup")]
    older = entries[functions.index("block_the_loop")]
    assert functions.index("block_in_markup") < functions.index("block_the_loop"), functions
    assert newest["file"].startswith(HOSTILE_FILE + ":"), newest
    assert markup == [0, True], "the frame's file name was parsed as markup"
    assert older["file"].endswith("test_dashboard.py:" + str(LINE_OF_SLEEP)), older
    assert "in block_the_loop" in older["stack"], older
    for entry in (newest, older):
        blocked = float(entry["ms"].removesuffix(" ms"))
        assert 100 <= blocked < 1000, entry
    assert count.startswith(f"{int(monitor.slow_callbacks.value)} since start"), count
    assert still_open is True
