"""A real OpenAI-compatible HTTP endpoint on loopback, and helpers shared by the LLM tests.

The server is a Starlette app served by uvicorn in a thread (its own event loop, so the
tests' loop, asyncio or trio, only ever talks to it over TCP). It counts calls, answers
chat completions with realistic bodies and ``usage``, and streams SSE chunks the way the
OpenAI API does (a role delta, content deltas, a ``finish_reason`` chunk, an optional usage
chunk with empty ``choices``, then ``[DONE]``).

Control words in the last user message: ``FAIL400`` answers 400; ``BREAK`` drops the
connection after two streamed chunks (an interrupted stream); ``TRUNCATE`` and ``FILTER``
end the answer with ``finish_reason`` ``length`` and ``content_filter``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def answer_for(body: dict[str, Any]) -> str:
    """The deterministic answer the fake provider gives."""
    last = body["messages"][-1]["content"]
    return f"Answer from {body['model']} to: {last}"


def usage_for(body: dict[str, Any], answer: str) -> dict[str, Any]:
    prompt = sum(len(str(m.get("content", ""))) for m in body["messages"])
    return {
        "prompt_tokens": prompt // 4 + 7,
        "completion_tokens": len(answer) // 4 + 1,
        "total_tokens": prompt // 4 + 7 + len(answer) // 4 + 1,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


class FakeProvider:
    """State of the loopback provider: counts, a delay, recorded bodies."""

    def __init__(self) -> None:
        self.calls = 0
        self.by_prompt: Counter[str] = Counter()
        self.delay = 0.0
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.base_url = ""

    def reset(self) -> None:
        with self.lock:
            self.calls = 0
            self.by_prompt.clear()
            self.bodies.clear()
            self.delay = 0.0

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        with self.lock:
            self.calls += 1
            self.by_prompt[body["messages"][-1]["content"]] += 1
            self.bodies.append(body)
        if self.delay:
            await asyncio.sleep(self.delay)
        last = body["messages"][-1]["content"]
        if "FAIL400" in last:
            return JSONResponse(
                {"error": {"message": "bad request", "type": "invalid_request_error"}},
                status_code=400,
            )
        answer = answer_for(body)
        finish = (
            "length" if "TRUNCATE" in last else "content_filter" if "FILTER" in last else "stop"
        )
        created = int(time.time())
        ident = f"chatcmpl-{self.calls}"
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": ident,
                    "object": "chat.completion",
                    "created": created,
                    "model": body["model"] + "-2024-07-18",
                    "system_fingerprint": "fp_test",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": answer, "refusal": None},
                            "logprobs": None,
                            "finish_reason": finish,
                        }
                    ],
                    "usage": usage_for(body, answer),
                }
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            data: dict[str, Any] = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": body["model"] + "-2024-07-18",
                "system_fingerprint": "fp_test",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                data["usage"] = None
            return data

        async def events() -> AsyncIterator[bytes]:
            pieces = [{"role": "assistant", "content": ""}]
            pieces += [{"content": word + " "} for word in answer.split(" ")]
            for index, delta in enumerate(pieces):
                if "BREAK" in last and index == 2:
                    raise ConnectionResetError("provider dropped the stream")
                yield f"data: {json.dumps(chunk(delta, None))}\n\n".encode()
            yield f"data: {json.dumps(chunk({}, finish))}\n\n".encode()
            if include_usage:
                final = {**chunk({}, None), "choices": [], "usage": usage_for(body, answer)}
                yield f"data: {json.dumps(final)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def provider_server() -> Iterator[FakeProvider]:
    """The loopback provider, started once for the session."""
    provider = FakeProvider()
    app = Starlette(routes=[Route("/v1/chat/completions", provider.chat, methods=["POST"])])
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="fake-openai", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fake provider did not start")
        time.sleep(0.01)
    provider.base_url = f"http://127.0.0.1:{port}/v1"
    try:
        yield provider
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def provider(provider_server: FakeProvider) -> FakeProvider:
    """The loopback provider with fresh counters."""
    provider_server.reset()
    return provider_server


def completion(body: dict[str, Any], answer: str | None = None) -> dict[str, Any]:
    """A chat completion dict like the provider's (for ``call=`` stand-ins)."""
    text = answer if answer is not None else answer_for(body)
    return {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "created": 1,
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": usage_for(body, text),
    }
