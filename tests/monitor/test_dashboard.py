"""The dashboard page in headless Chromium (Debian's ``chromium``), driven over CDP.

Checks that the page loads with no console errors or exceptions, that every chart has
plotted points after a few polls, and saves a screenshot to
``tests/monitor/artifacts/dashboard.png`` (git-ignored there) and to the test's tmp dir.
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


async def test_dashboard_renders_charts_without_console_errors(tmp_path: Path) -> None:
    binary = chromium_binary()
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
        profile = tmp_path / "profile"
        process = await asyncio.create_subprocess_exec(
            binary,
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
                    for domain in ("Runtime", "Log", "Page"):
                        await tools.call(f"{domain}.enable")
                    await tools.call("Page.navigate", url=f"{url}/_asyncperf/")
                    state: dict[str, Any] = {}
                    for _ in range(300):
                        state = await tools.evaluate("JSON.stringify(window.asyncperfDashboard)")
                        state = json.loads(state) if state else {}
                        points = state.get("points", {})
                        if state.get("polls", 0) >= 6 and all(
                            points.get(c, 0) >= 2 for c in CHARTS
                        ):
                            break
                        await asyncio.sleep(0.1)
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
                    tools.reader.cancel()
        finally:
            load.cancel()
            process.terminate()
            await process.wait()
    assert errors == [], errors
    assert state.get("errors") == 0
    assert state.get("polls", 0) >= 6, state
    for chart in CHARTS:
        assert state["points"].get(chart, 0) >= 2, (chart, state)
    assert "/items/{item_id}" in tables
    assert "default" in tables
    assert image.startswith(b"\x89PNG")
