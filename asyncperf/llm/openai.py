"""A drop-in cache for ``openai.AsyncOpenAI`` chat completions, streaming included.

Example:
    >>> client = cached_openai(openai.AsyncOpenAI(), LLMCache(Cache(MemoryStore())))
    >>> async def main():
    ...     return await client.chat.completions.create(
    ...         model="gpt-4o-mini", temperature=0,
    ...         messages=[{"role": "user", "content": "hi"}])

Needs the ``llm`` extra: ``pip install 'asyncperf[llm]'``.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Final

try:
    import openai
    from openai.types.chat import ChatCompletion, ChatCompletionChunk
except ImportError as exc:  # pragma: no cover - exercised without the extra only
    raise ImportError(
        "asyncperf.llm.openai needs the openai package: pip install 'asyncperf[llm]'"
    ) from exc

import anyio

from ..cache.internal import Flight
from ._cache import LLMCache
from ._pricing import Usage
from ._request import Prepared

__all__ = ["CachedOpenAI", "CachedStream", "cached_openai"]

# Transport options of the SDK: they change how a request travels, not what it asks.
# ``extra_query`` is not one of them (Azure's ``api-version`` selects the API): it is
# keyed under ``_ENDPOINT``, with the client's ``base_url``.
_TRANSPORT: Final = frozenset({"extra_headers", "extra_query", "extra_body", "timeout"})
#: Where the request goes, as a key field: no provider parameter starts with "$".
_ENDPOINT: Final = "$endpoint"
_UNSET: Final = tuple(
    t for t in (getattr(openai, "NotGiven", None), getattr(openai, "Omit", None)) if t
)


def _usage(usage: Any) -> Usage | None:
    if usage is None:
        return None
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", 0) if details is not None else 0
    return Usage(
        int(getattr(usage, "prompt_tokens", 0) or 0),
        int(getattr(usage, "completion_tokens", 0) or 0),
        int(cached or 0),
    )


class _CompletionCodec:
    """``ChatCompletion`` objects as JSON text and back (the SDK's own type on a hit)."""

    def encode(self, response: Any) -> tuple[str, Usage | None]:
        if not isinstance(response, ChatCompletion):
            raise TypeError(f"expected a ChatCompletion, got {type(response).__qualname__}")
        return response.model_dump_json(exclude_unset=True), _usage(response.usage)

    def decode(self, body: str) -> Any:
        return ChatCompletion.model_validate_json(body)


_CODEC: Final = _CompletionCodec()


def _request(kwargs: Mapping[str, Any], base_url: str) -> dict[str, Any]:
    """Return what the SDK sends as the body (set arguments plus ``extra_body``), plus
    where it goes (``base_url`` and ``extra_query``) under ``_ENDPOINT``: two providers
    serving one model name never share entries."""
    request = {
        name: value
        for name, value in kwargs.items()
        if name not in _TRANSPORT and not isinstance(value, _UNSET)
    }
    extra = kwargs.get("extra_body")
    if isinstance(extra, Mapping):
        request.update(extra)
    endpoint: dict[str, Any] = {"base_url": base_url}
    query = kwargs.get("extra_query")
    if isinstance(query, Mapping) and query:
        endpoint["query"] = dict(query)
    request[_ENDPOINT] = endpoint
    return request


def _estimate(request: Mapping[str, Any], completion_chars: int) -> Usage:
    """Rough token counts (4 characters a token) when a stream reported no usage."""
    prompt_chars = 0
    for message in request.get("messages", ()):
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str):
            prompt_chars += len(content)
    return Usage(math.ceil(prompt_chars / 4), math.ceil(completion_chars / 4), 0, estimated=True)


class CachedStream:
    """An async iterator of ``ChatCompletionChunk``: the provider's stream, or a replay.

    Use it like the SDK's ``AsyncStream``: ``async for chunk in stream``, ``async with``,
    ``await stream.close()``. Close a stream you stop reading early (``async with`` does):
    an interrupted stream is never stored, and identical requests waiting on it then make
    their own call.
    """

    def __init__(self, chunks: AsyncIterator[ChatCompletionChunk], *, replayed: bool) -> None:
        self._chunks = chunks
        self.replayed = replayed

    def __aiter__(self) -> CachedStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        return await self._chunks.__anext__()

    async def close(self) -> None:
        """Stop the stream (the upstream connection too, on a miss)."""
        aclose = getattr(self._chunks, "aclose", None)
        if aclose is not None:
            await aclose()

    aclose = close

    async def __aenter__(self) -> CachedStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def _replay(bodies: list[str]) -> AsyncIterator[ChatCompletionChunk]:
    for body in bodies:
        yield ChatCompletionChunk.model_validate_json(body)


class _Completions:
    def __init__(self, owner: CachedOpenAI) -> None:
        self._owner = owner

    def __getattr__(self, name: str) -> Any:
        # Everything but create() (parse, with_raw_response...) goes to the SDK uncached.
        return getattr(self._owner.client.chat.completions, name)

    async def create(self, **kwargs: Any) -> Any:
        """``client.chat.completions.create(...)``, answered from the cache when it can be.

        Returns the SDK's ``ChatCompletion``, or for ``stream=True`` a
        :class:`CachedStream` of ``ChatCompletionChunk`` (the SDK's ``AsyncStream`` itself
        when the request is not cacheable).
        """
        owner = self._owner
        upstream = owner.client.chat.completions
        request = _request(kwargs, str(owner.client.base_url))

        async def call(_: Any) -> Any:
            return await upstream.create(**kwargs)

        if request.get("stream"):
            return await _stream(owner.llm, request, call, owner.tenant)
        return await owner.llm.complete_with(request, call=call, tenant=owner.tenant, codec=_CODEC)


async def _stream(llm: LLMCache, request: dict[str, Any], call: Any, tenant: str | None) -> Any:
    prepared = llm.prepare(request, tenant)
    if not llm.cacheable(prepared):
        return await llm.bypass(prepared, call, request, None)
    flights = llm.stream_flights
    while True:
        flight = flights.get(prepared.key)
        if flight is None:
            break
        await flight.event.wait()
        if flight.abandoned:
            continue  # the leader's reader stopped early: look again, maybe lead
        if flight.error is not None:
            prepared.counters.errors += 1
            raise flight.error
        llm.record_hit(prepared, flight.value, "coalesced")
        return CachedStream(_replay(flight.value["body"]), replayed=True)
    # Registered before the lookup awaits, so identical requests arriving meanwhile join.
    flight = flights[prepared.key] = Flight()
    try:
        found = await llm.lookup(prepared)
        if found is not None:
            value, layer = found
            try:
                flight.resolve(value)  # the requests that joined meanwhile replay it too
            finally:
                # A served flight is done: left registered, it would answer every later
                # identical stream as "coalesced", past the entry's TTL or a clear().
                if flights.get(prepared.key) is flight:
                    del flights[prepared.key]
            llm.record_hit(prepared, value, layer)
            return CachedStream(_replay(value["body"]), replayed=True)
        started = time.perf_counter()
        try:
            upstream = await call(request)
        except Exception as exc:
            prepared.counters.upstream_calls += 1
            prepared.counters.errors += 1
            flight.fail(exc)
            raise
    except BaseException:
        flight.abandon()
        if flights.get(prepared.key) is flight:
            del flights[prepared.key]
        raise
    if flight.event.is_set() and flights.get(prepared.key) is flight:
        del flights[prepared.key]
    recorder = _Recorder(llm, prepared, flight, upstream, started, request)
    return CachedStream(recorder, replayed=False)


class _Recorder:
    """Pass the provider's chunks through, and store them once the stream completes.

    The entry is written only after the provider's stream ended with a ``finish_reason``
    in ``LLMCache.store_finish_reasons``: a stream that fails, or that its reader closes
    early, is never stored, and the identical requests waiting on it are told (they get
    the error, or start over); a truncated one (``length``, ``content_filter``) is
    replayed to the requests that joined it, and not stored.
    """

    def __init__(
        self,
        llm: LLMCache,
        prepared: Prepared,
        flight: Flight,
        upstream: Any,
        started: float,
        request: Mapping[str, Any],
    ) -> None:
        self._llm = llm
        self._prepared = prepared
        self._flight = flight
        self._upstream = upstream
        self._chunks: AsyncIterator[ChatCompletionChunk] = upstream.__aiter__()
        self._started = started
        self._request = request
        self._bodies: list[str] = []
        self._usage: Usage | None = None
        self._finished = False
        self._reasons: list[str] = []
        self._completion_chars = 0
        self._done = False

    def __aiter__(self) -> _Recorder:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        if self._done:
            raise StopAsyncIteration
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            await self._complete()
            raise
        except BaseException as exc:
            await self._end(exc)
            raise
        self._bodies.append(chunk.model_dump_json(exclude_unset=True))
        if chunk.usage is not None:
            self._usage = _usage(chunk.usage)
        for choice in chunk.choices:
            if choice.finish_reason is not None:
                self._finished = True
                self._reasons.append(choice.finish_reason)
            content = choice.delta.content if choice.delta is not None else None
            if content:
                self._completion_chars += len(content)
        return chunk

    async def _complete(self) -> None:
        self._done = True
        llm, prepared, flight = self._llm, self._prepared, self._flight
        try:
            latency = time.perf_counter() - self._started
            usage = self._usage or _estimate(self._request, self._completion_chars)
            llm.record_call(prepared, usage)
            if self._finished:
                value = llm.entry(prepared, "stream", self._bodies, usage, latency)
                if llm.storable(prepared, self._reasons):
                    await llm.cache.set(prepared.key, value, ttl=llm.ttl)
                    flight.resolve(value)
                    await llm.index(prepared)
                else:  # truncated (length, content_filter): joined streams replay it once
                    flight.resolve(value)
        finally:
            await self._release()

    async def _end(self, exc: BaseException | None) -> None:
        """Settle an interrupted stream: count the call, tell the waiters, close upstream."""
        self._done = True
        self._prepared.counters.upstream_calls += 1
        if isinstance(exc, Exception):
            self._prepared.counters.errors += 1
            self._flight.fail(exc)
        await self._release()

    async def _release(self) -> None:
        self._flight.abandon()  # no-op once resolved or failed
        flights = self._llm.stream_flights
        if flights.get(self._prepared.key) is self._flight:
            del flights[self._prepared.key]
        with anyio.CancelScope(shield=True):
            await self._upstream.close()

    async def aclose(self) -> None:
        """Stop reading: the stream is not stored, and upstream is closed."""
        if not self._done:
            await self._end(None)

    def __del__(self) -> None:
        # Dropped without being read to the end or closed: free the waiters at least.
        if not self._done:
            self._flight.abandon()
            flights = self._llm.stream_flights
            if flights.get(self._prepared.key) is self._flight:
                del flights[self._prepared.key]


class _Chat:
    def __init__(self, owner: CachedOpenAI) -> None:
        self._owner = owner
        self.completions = _Completions(owner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._owner.client.chat, name)


class CachedOpenAI:
    """An ``openai.AsyncOpenAI`` whose ``chat.completions.create`` goes through an
    :class:`~asyncperf.llm.LLMCache`; every other attribute is the client's own.

    Args:
        client: The SDK client (any OpenAI-compatible ``base_url``).
        llm: The cache.
        tenant: Entries and in-flight calls are shared only within this tenant.
    """

    def __init__(self, client: openai.AsyncOpenAI, llm: LLMCache, *, tenant: str | None = None):
        self.client = client
        self.llm = llm
        self.tenant = tenant
        self.chat = _Chat(self)

    def with_tenant(self, tenant: str | None) -> CachedOpenAI:
        """Return a wrapper of the same client and cache for another tenant."""
        return CachedOpenAI(self.client, self.llm, tenant=tenant)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def __repr__(self) -> str:
        return f"CachedOpenAI(client={self.client!r}, llm={self.llm!r}, tenant={self.tenant!r})"


def cached_openai(
    client: openai.AsyncOpenAI, llm: LLMCache, tenant: str | None = None
) -> CachedOpenAI:
    """Wrap ``client`` so chat completions are answered from ``llm`` when they can be.

    ``create(**kwargs)`` keys on the request body the SDK would send (``extra_body``
    included), the client's ``base_url`` and ``extra_query`` (e.g. Azure's
    ``api-version``); ``extra_headers`` and ``timeout`` are left out. A hit returns
    the SDK's own ``ChatCompletion``; ``stream=True`` returns chunks of the same shape as
    the provider's, replayed without delay.

    Args:
        client: An ``openai.AsyncOpenAI`` (or compatible) client.
        llm: The :class:`~asyncperf.llm.LLMCache` to use.
        tenant: Scope entries and in-flight calls to this tenant.
    """
    return CachedOpenAI(client, llm, tenant=tenant)
