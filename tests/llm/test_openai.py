"""cached_openai against a real OpenAI-compatible HTTP endpoint on loopback, via the SDK."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from asyncperf import Cache, MemoryStore
from asyncperf.llm import LLMCache
from asyncperf.llm.openai import CachedStream, cached_openai
from tests.llm.conftest import FakeProvider


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn's loop and the SDK's default transport are asyncio


@pytest.fixture
async def client(provider: FakeProvider) -> AsyncIterator[openai.AsyncOpenAI]:
    sdk = openai.AsyncOpenAI(api_key="test", base_url=provider.base_url, max_retries=0)
    try:
        yield sdk
    finally:
        await sdk.close()


def ask(content: str = "What is the capital of France?", **params: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "temperature": 0,
        "messages": [{"role": "user", "content": content}],
        **params,
    }


async def test_a_hit_returns_the_sdk_type(provider: FakeProvider, client: Any) -> None:
    llm = LLMCache(Cache(MemoryStore()))
    cached = cached_openai(client, llm)
    first = await cached.chat.completions.create(**ask())
    second = await cached.chat.completions.create(**ask())
    assert isinstance(first, ChatCompletion)
    assert isinstance(second, ChatCompletion)
    assert second == first
    assert provider.calls == 1
    stats = llm.statistics().total
    assert stats.money_saved > 0
    assert stats.prompt_tokens_saved == first.usage.prompt_tokens


async def test_every_change_reaches_the_provider(provider: FakeProvider, client: Any) -> None:
    cached = cached_openai(client, LLMCache(Cache(MemoryStore())))
    variants = [ask(), ask(model="gpt-4o"), ask(max_tokens=5), ask(seed=1), ask("other?"),
                ask(extra_body={"top_k": 3}), ask(stop=["x"])]  # fmt: skip
    for variant in variants:
        await cached.chat.completions.create(**variant)
    assert provider.calls == len(variants)
    assert provider.bodies[5]["top_k"] == 3


async def test_a_burst_makes_one_upstream_call(provider: FakeProvider, client: Any) -> None:
    provider.delay = 0.2
    llm = LLMCache(Cache(MemoryStore()))
    cached = cached_openai(client, llm)
    results = await asyncio.gather(*(cached.chat.completions.create(**ask()) for _ in range(20)))
    assert provider.calls == 1
    assert all(r == results[0] for r in results)
    assert llm.statistics().total.coalesced == 19


async def test_a_failing_burst_shares_the_error(provider: FakeProvider, client: Any) -> None:
    provider.delay = 0.2
    cached = cached_openai(client, LLMCache(Cache(MemoryStore())))
    results = await asyncio.gather(
        *(cached.chat.completions.create(**ask("FAIL400")) for _ in range(5)),
        return_exceptions=True,
    )
    assert provider.calls == 1
    assert all(isinstance(r, openai.BadRequestError) for r in results)
    with pytest.raises(openai.BadRequestError):
        await cached.chat.completions.create(**ask("FAIL400"))
    assert provider.calls == 2  # errors are not cached


async def test_sampled_requests_are_not_cached(provider: FakeProvider, client: Any) -> None:
    cached = cached_openai(client, LLMCache(Cache(MemoryStore())))
    request = ask()
    del request["temperature"]  # OpenAI's default is 1
    await cached.chat.completions.create(**request)
    await cached.chat.completions.create(**request)
    assert provider.calls == 2


async def test_tenants_are_isolated(provider: FakeProvider, client: Any) -> None:
    llm = LLMCache(Cache(MemoryStore()))
    a = cached_openai(client, llm, tenant="a")
    b = a.with_tenant("b")
    await a.chat.completions.create(**ask())
    await b.chat.completions.create(**ask())
    await a.chat.completions.create(**ask())
    assert provider.calls == 2


async def collect(stream: Any) -> list[ChatCompletionChunk]:
    return [chunk async for chunk in stream]


def shapes(chunks: list[ChatCompletionChunk]) -> list[dict[str, Any]]:
    return [c.model_dump(exclude_unset=True) for c in chunks]


async def test_a_stream_is_stored_once_complete_and_replayed(
    provider: FakeProvider, client: Any
) -> None:
    llm = LLMCache(Cache(MemoryStore()))
    cached = cached_openai(client, llm)
    request = ask(stream=True, stream_options={"include_usage": True})
    live = await cached.chat.completions.create(**request)
    assert isinstance(live, CachedStream)
    assert not live.replayed
    first = await collect(live)
    replay = await cached.chat.completions.create(**request)
    assert replay.replayed
    second = await collect(replay)
    assert provider.calls == 1
    assert shapes(second) == shapes(first)  # same chunks, same boundaries
    assert first[-1].choices == []
    assert first[-1].usage is not None
    text = "".join(c.choices[0].delta.content or "" for c in first if c.choices)
    assert text.strip() == "Answer from gpt-4o-mini to: What is the capital of France?"
    stats = llm.statistics().total
    assert (stats.exact_hits, stats.estimated_usage) == (1, 0)
    assert stats.completion_tokens_saved == first[-1].usage.completion_tokens
    # A plain request is another key: its answer has another shape.
    await cached.chat.completions.create(**ask())
    assert provider.calls == 2


async def test_a_stream_without_usage_is_estimated(provider: FakeProvider, client: Any) -> None:
    llm = LLMCache(Cache(MemoryStore()))
    cached = cached_openai(client, llm)
    async with await cached.chat.completions.create(**ask(stream=True)) as stream:
        await collect(stream)
    await collect(await cached.chat.completions.create(**ask(stream=True)))
    stats = llm.statistics().total
    assert provider.calls == 1
    assert stats.estimated_usage == 2  # the call and the hit
    assert stats.completion_tokens_saved > 0


async def test_a_stream_closed_early_is_not_stored(provider: FakeProvider, client: Any) -> None:
    cached = cached_openai(client, LLMCache(Cache(MemoryStore())))
    stream = await cached.chat.completions.create(**ask(stream=True))
    async for _ in stream:
        break
    await stream.close()
    await collect(await cached.chat.completions.create(**ask(stream=True)))
    assert provider.calls == 2
    await collect(await cached.chat.completions.create(**ask(stream=True)))
    assert provider.calls == 2


async def test_a_broken_stream_is_not_stored(provider: FakeProvider, client: Any) -> None:
    cached = cached_openai(client, LLMCache(Cache(MemoryStore())))
    request = ask("BREAK please", stream=True)
    for _ in range(2):
        with pytest.raises(openai.APIConnectionError):
            await collect(await cached.chat.completions.create(**request))
    assert provider.calls == 2
    llm_stats = cached.llm.statistics().total
    assert (llm_stats.upstream_calls, llm_stats.errors, llm_stats.exact_hits) == (2, 2, 0)


async def test_a_stream_burst_makes_one_call(provider: FakeProvider, client: Any) -> None:
    provider.delay = 0.2
    llm = LLMCache(Cache(MemoryStore()))
    cached = cached_openai(client, llm)
    request = ask(stream=True, stream_options={"include_usage": True})

    async def one() -> list[dict[str, Any]]:
        return shapes(await collect(await cached.chat.completions.create(**request)))

    results = await asyncio.gather(*(one() for _ in range(10)))
    assert provider.calls == 1
    assert all(r == results[0] for r in results)
    assert llm.statistics().total.coalesced == 9


async def test_other_attributes_pass_through(client: Any) -> None:
    cached = cached_openai(client, LLMCache(Cache(MemoryStore())))
    assert cached.base_url == client.base_url
    assert cached.chat.completions.with_raw_response is not None
    assert "tenant=None" in repr(cached)


async def test_a_streamed_hit_leaves_no_flight_behind(provider: FakeProvider, client: Any) -> None:
    llm = LLMCache(Cache(MemoryStore()))
    cached = cached_openai(client, llm)
    request = ask(stream=True)
    await collect(await cached.chat.completions.create(**request))  # stored
    replay = await cached.chat.completions.create(**request)  # an exact hit
    assert replay.replayed
    await collect(replay)
    assert llm.stream_flights == {}
    assert provider.calls == 1
    await llm.cache.clear()
    live = await cached.chat.completions.create(**request)
    assert not live.replayed  # not the old flight's answer replayed as "coalesced"
    await collect(live)
    assert provider.calls == 2
    assert llm.stream_flights == {}
    stats = llm.statistics().total
    assert (stats.exact_hits, stats.coalesced, stats.upstream_calls) == (1, 0, 2)


async def test_base_url_and_extra_query_are_in_the_key(provider: FakeProvider) -> None:
    llm = LLMCache(Cache(MemoryStore()), similarity=True)
    # Two "providers" (the same loopback server under two host names) serving one model.
    other_url = provider.base_url.replace("127.0.0.1", "localhost")
    sdk_a = openai.AsyncOpenAI(api_key="test", base_url=provider.base_url, max_retries=0)
    sdk_b = openai.AsyncOpenAI(api_key="test", base_url=other_url, max_retries=0)
    try:
        a, b = cached_openai(sdk_a, llm), cached_openai(sdk_b, llm)
        await a.chat.completions.create(**ask())
        # Another endpoint: neither a's entry nor one similar to it.
        await b.chat.completions.create(**ask("what is the capital of france"))
        assert provider.calls == 2
        await b.chat.completions.create(**ask())
        await a.chat.completions.create(**ask("what is the capital of france"))
        assert provider.calls == 2  # each endpoint's own entries still serve it
        v1 = ask(extra_query={"api-version": "2024-02-01"})
        v2 = ask(extra_query={"api-version": "2024-10-21"})
        await a.chat.completions.create(**v1)
        await a.chat.completions.create(**v2)
        assert provider.calls == 4
        await a.chat.completions.create(**v1)
        assert provider.calls == 4  # v1 hit
    finally:
        await sdk_a.close()
        await sdk_b.close()


@pytest.mark.parametrize("word", ["TRUNCATE", "FILTER"])
async def test_truncated_answers_are_not_stored(
    provider: FakeProvider, client: Any, word: str
) -> None:
    llm = LLMCache(Cache(MemoryStore()), similarity=True)
    cached = cached_openai(client, llm)
    plain = ask(f"Tell me a long story {word}", max_tokens=5)
    streamed = {**plain, "stream": True}
    for _ in range(2):
        first = await cached.chat.completions.create(**plain)
        assert first.choices[0].finish_reason in ("length", "content_filter")
        chunks = await collect(await cached.chat.completions.create(**streamed))
        assert chunks[-1].choices[0].finish_reason in ("length", "content_filter")
    assert provider.calls == 4  # neither the answer nor the stream was served again
    stats = llm.statistics()
    assert stats.total.not_stored == 4
    assert (stats.total.exact_hits, stats.total.similarity_hits) == (0, 0)
    assert stats.similarity.indexed == 0
    # Complete answers are still stored.
    await cached.chat.completions.create(**ask())
    await cached.chat.completions.create(**ask())
    assert provider.calls == 5


async def test_store_finish_reasons_is_configurable(provider: FakeProvider, client: Any) -> None:
    llm = LLMCache(Cache(MemoryStore()), store_finish_reasons={"stop", "length"})
    assert llm.store_finish_reasons == frozenset({"stop", "length"})
    cached = cached_openai(client, llm)
    for _ in range(2):
        await cached.chat.completions.create(**ask("Tell me a long story TRUNCATE"))
    assert provider.calls == 1
    assert llm.statistics().total.not_stored == 0
