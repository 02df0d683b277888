"""Calling an ASGI app directly, without a client or a server: what the app itself costs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_REQUEST: Message = {"type": "http.request", "body": b"", "more_body": False}


async def receive() -> Message:
    """An empty request body, whole."""
    return _REQUEST


async def send(message: Message) -> None:
    """Drop whatever the app sends."""


def get_scope(path: str, headers: Sequence[tuple[bytes, bytes]] = ((b"host", b"bench"),)) -> Scope:
    """An HTTP/1.1 GET scope for ``path`` (no query) with these request headers."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": list(headers),
        "client": ("127.0.0.1", 50000),
        "server": ("bench", 80),
    }
