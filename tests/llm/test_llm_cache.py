"""LLMCache.complete(): exact layer, determinism, tenants, in-flight joins, similarity, costs."""

from __future__ import annotations

import copy
import random
import threading
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import anyio
import pytest

from asyncperf import Cache, ConfigurationError, MemoryStore, RedisStore
from asyncperf.llm import (
    Guards,
    HashedNgramEmbedder,
    LLMCache,
    PriceTable,
    Usage,
    canonical_request,
)
from tests.conftest import FakeClock
from tests.llm.conftest import completion


class Provider:
    """A ``call=`` stand-in that counts calls and can be slowed or made to fail."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate: anyio.Event | None = None
        self.fail: Exception | None = None

    async def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return completion(request)


def req(content: str = "What is the capital of France?", **params: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "temperature": 0}
    body.update(params)
    body.setdefault("messages", [{"role": "user", "content": content}])
    return body


async def test_exact_hit_returns_an_equal_copy() -> None:
    llm = LLMCache(Cache(MemoryStore()))
    provider = Provider()
    first = await llm.complete(req(), call=provider)
    second = await llm.complete(req(), call=provider)
    assert provider.calls == 1
    assert second == first
    second["choices"][0]["message"]["content"] = "mutated"
    third = await llm.complete(req(), call=provider)
    assert third == first  # a caller mutating its answer does not change the cache
    stats = llm.statistics()
    assert (stats.total.requests, stats.total.exact_hits, stats.total.upstream_calls) == (3, 2, 1)


# Every case changes one thing the answer may depend on: none may be served from another.
VARIANTS: list[dict[str, Any]] = [
    req(),
    req(model="gpt-4o"),
    req(temperature=0, top_p=0.5),
    req(max_tokens=10),
    req(max_completion_tokens=10),
    req(seed=7),
    req(stop=["\n"]),
    req(n=2),
    req(presence_penalty=0.5),
    req(frequency_penalty=0.5),
    req(logprobs=True),
    req(response_format={"type": "json_object"}),
    req(tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}]),
    req(
        tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        tool_choice="required",
    ),
    req(some_future_param="x"),
    req(user="u1"),
    req("What is the capital of france?"),
    req("What is the capital of France ?"),
    req("What is the capital of Spain?"),
    req(messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "What is the capital of France?"}]),
    req(messages=[{"role": "system", "content": "Be verbose."},
                  {"role": "user", "content": "What is the capital of France?"}]),
    req(messages=[{"role": "assistant", "content": "What is the capital of France?"}]),
    req(messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                  {"role": "user", "content": "What is the capital of France?"}]),
    req(messages=[{"role": "user", "content": "What is the capital of France?", "name": "bob"}]),
]  # fmt: skip


async def test_no_wrong_exact_hit_on_any_parameter_prompt_or_model_change() -> None:
    llm = LLMCache(Cache(MemoryStore()))
    provider = Provider()
    for variant in VARIANTS:
        await llm.complete(variant, call=provider)
    assert provider.calls == len(VARIANTS)  # wrong exact hits: 0
    keys = {llm.key(v) for v in VARIANTS}
    assert len(keys) == len(VARIANTS)
    for variant in VARIANTS:  # and each one is a hit for itself
        await llm.complete(copy.deepcopy(variant), call=provider)
    assert provider.calls == len(VARIANTS)


def test_defaults_are_filled_in_before_hashing() -> None:
    omitted = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    assert not canonical_request(omitted).deterministic  # omitted temperature is 1
    assert (
        canonical_request(omitted).digest
        == canonical_request({**omitted, "temperature": 1.0}).digest
    )
    assert (
        canonical_request(omitted).digest != canonical_request({**omitted, "temperature": 0}).digest
    )
    zero = canonical_request({**omitted, "temperature": 0})
    assert zero.digest == canonical_request({**omitted, "temperature": 0.0, "top_p": 1}).digest
    assert (
        zero.digest == canonical_request({**omitted, "temperature": 0, "n": 1, "seed": None}).digest
    )
    parts = {"role": "user", "content": [{"type": "text", "text": "x"}]}
    assert (
        canonical_request({**omitted, "temperature": 0, "messages": [parts]}).digest == zero.digest
    )
    reordered = {"temperature": 0, "messages": omitted["messages"], "model": "m"}
    assert canonical_request(reordered).digest == zero.digest
    assert canonical_request({**omitted, "temperature": 0, "x": 1}).digest != zero.digest
    ignored = canonical_request({**omitted, "temperature": 0, "user": "u"}, ignore=["user"])
    assert ignored.digest == zero.digest
    with pytest.raises(ConfigurationError):
        canonical_request({"messages": []})
    with pytest.raises(TypeError):
        canonical_request({**omitted, "x": object()})


async def test_nondeterministic_requests_go_upstream_unless_opted_in() -> None:
    provider = Provider()
    llm = LLMCache(Cache(MemoryStore()))
    sampled = req(temperature=0.7)
    omitted = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(3):
        await llm.complete(sampled, call=provider)
        await llm.complete(omitted, call=provider)
    assert provider.calls == 6
    assert llm.statistics().total.bypassed == 6
    opted = LLMCache(Cache(MemoryStore()), cache_nondeterministic=True)
    provider.calls = 0
    for _ in range(3):
        await opted.complete(sampled, call=provider)
    assert provider.calls == 1


async def test_tenants_never_share_entries_or_calls() -> None:
    llm = LLMCache(Cache(MemoryStore()))
    provider = Provider()
    provider.gate = anyio.Event()
    results: dict[str, Any] = {}

    async def ask(tenant: str | None, slot: str) -> None:
        results[slot] = await llm.complete(req(), call=provider, tenant=tenant)

    async with anyio.create_task_group() as tg:
        for slot, tenant in (("a1", "a"), ("a2", "a"), ("b1", "b"), ("n1", None)):
            tg.start_soon(ask, tenant, slot)
        await anyio.wait_all_tasks_blocked()
        provider.gate.set()
    assert provider.calls == 3  # one per tenant, the two "a" calls joined
    await llm.complete(req(), call=provider, tenant="c")
    assert provider.calls == 4
    stats = llm.statistics()
    assert stats.by_model[("gpt-4o-mini", "a")].coalesced == 1
    assert stats.by_model[("gpt-4o-mini", "b")].coalesced == 0
    with pytest.raises(ConfigurationError):
        await llm.complete(req(), call=provider, tenant="")


async def test_a_burst_of_identical_requests_makes_one_call() -> None:
    llm = LLMCache(Cache(MemoryStore()))
    provider = Provider()
    provider.gate = anyio.Event()
    results: list[Any] = []

    async def ask() -> None:
        results.append(await llm.complete(req(), call=provider))

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(ask)
        await anyio.wait_all_tasks_blocked()
        provider.gate.set()
    assert provider.calls == 1
    assert len(results) == 50
    assert all(r == results[0] for r in results)
    total = llm.statistics().total
    assert (total.upstream_calls, total.coalesced) == (1, 49)


async def test_a_failing_burst_shares_the_exception_and_stores_nothing() -> None:
    llm = LLMCache(Cache(MemoryStore()))
    provider = Provider()
    provider.gate = anyio.Event()
    provider.fail = RuntimeError("provider down")
    errors: list[BaseException] = []

    async def ask() -> None:
        try:
            await llm.complete(req(), call=provider)
        except RuntimeError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(ask)
        await anyio.wait_all_tasks_blocked()
        provider.gate.set()
    assert provider.calls == 1
    assert len(errors) == 10
    assert all(e is errors[0] for e in errors)
    assert llm.statistics().total.errors == 10
    provider.fail = None
    await llm.complete(req(), call=provider)
    assert provider.calls == 2  # the failure was not cached


async def test_entries_expire_with_the_ttl() -> None:
    clock = FakeClock()
    llm = LLMCache(Cache(MemoryStore(clock=clock)), ttl=60)
    provider = Provider()
    await llm.complete(req(), call=provider)
    clock.advance(59)
    await llm.complete(req(), call=provider)
    assert provider.calls == 1
    clock.advance(2)
    await llm.complete(req(), call=provider)
    assert provider.calls == 2


async def test_complete_needs_a_mapping_response() -> None:
    llm = LLMCache(Cache(MemoryStore()))

    async def text_call(request: dict[str, Any]) -> str:
        return "plain text"

    with pytest.raises(TypeError, match="JSON mapping"):
        await llm.complete(req(), call=text_call)


# -- similarity -----------------------------------------------------------------------------


async def test_similarity_serves_near_repeats_and_refuses_traps() -> None:
    llm = LLMCache(Cache(MemoryStore()), similarity=True)
    provider = Provider()
    await llm.complete(req("What is the capital of France?"), call=provider)
    near = ["what is the capitol of france", "Hey, what is the capital of France please?",
            "What is the capital of France!!", "WHAT IS THE CAPITAL OF FRANCE?"]  # fmt: skip
    for text in near:
        answer = await llm.complete(req(text), call=provider)
        assert answer["choices"][0]["message"]["content"].endswith("France?")
    assert provider.calls == 1
    traps = ["What is the capital of Spain?", "What is not the capital of France?",
             "What was the capital of France in 1900?", "What is the capital of this?"]  # fmt: skip
    for text in traps:
        await llm.complete(req(text), call=provider)
    assert provider.calls == 1 + len(traps)
    stats = llm.statistics()
    assert stats.total.similarity_hits == len(near)
    assert stats.similarity.refusals["deictic"] == 1
    assert sum(stats.similarity.nearest) == stats.similarity.lookups


async def test_similarity_is_scoped_before_the_search() -> None:
    llm = LLMCache(Cache(MemoryStore()), similarity=True)
    provider = Provider()
    await llm.complete(req("What is the capital of France?"), call=provider)
    others = [
        req("what is the capital of france", model="gpt-4o"),
        req("what is the capital of france", max_tokens=5),
        req(messages=[{"role": "system", "content": "Answer in German."},
                      {"role": "user", "content": "what is the capital of france"}]),
        req(messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"},
                      {"role": "user", "content": "what is the capital of france"}]),
    ]  # fmt: skip
    for other in others:
        await llm.complete(other, call=provider)
    await llm.complete(req("what is the capital of france"), call=provider, tenant="t2")
    assert provider.calls == 1 + len(others) + 1
    # Nothing was refused by a guard: the other scopes were never searched at all.
    assert llm.statistics().similarity.refusals == {}


async def test_the_index_is_rebuilt_from_the_store_in_a_new_process() -> None:
    cache = Cache(MemoryStore())
    provider = Provider()
    first = LLMCache(cache, similarity=True)
    for city in ("France", "Spain", "Peru"):
        await first.complete(req(f"What is the capital of {city}?"), call=provider)
    restarted = LLMCache(cache, similarity=True)  # a new process: empty index, same store
    await restarted.complete(req("what is the capital of peru"), call=provider)
    assert provider.calls == 3
    stats = restarted.statistics().similarity
    assert (stats.rebuilt, stats.hits) == (3, 1)
    assert await LLMCache(cache, similarity=True).rebuild_index() == 3


async def test_expired_entries_leave_the_index() -> None:
    clock = FakeClock()
    llm = LLMCache(Cache(MemoryStore(clock=clock)), similarity=True, ttl=10)
    provider = Provider()
    await llm.complete(req("What is the capital of France?"), call=provider)
    clock.advance(11)
    await llm.complete(req("what is the capital of france"), call=provider)
    assert provider.calls == 2


async def test_a_user_embedder_without_threshold_serves_nothing_until_calibrated() -> None:
    class Embedder(HashedNgramEmbedder):
        def __init__(self) -> None:
            super().__init__()
            self.id = "mine"
            self.default_threshold = None

    llm = LLMCache(Cache(MemoryStore()), similarity=Embedder())
    provider = Provider()
    await llm.complete(req("What is the capital of France?"), call=provider)
    await llm.complete(req("what is the capital of france"), call=provider)
    assert provider.calls == 2
    assert llm.threshold is None
    llm.threshold = 0.75
    await llm.complete(req("what is the capital of France"), call=provider)
    assert provider.calls == 2


def test_configuration_errors() -> None:
    cache = Cache(MemoryStore())
    with pytest.raises(ConfigurationError):
        LLMCache(cache, threshold=2.0)
    with pytest.raises(ConfigurationError):
        LLMCache(cache, similarity="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        LLMCache(cache, lock="global")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        LLMCache("cache")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        LLMCache(cache).calibrate([])
    with pytest.raises(ConfigurationError):
        LLMCache(cache, prices={"m": ("-1", "2")})


def test_guards_can_be_relaxed_or_extended() -> None:
    llm = LLMCache(Cache(MemoryStore()), similarity=True)
    assert llm.would_serve("What is the capital of France?", "what is the capitol of france")[0]
    assert not llm.would_serve("Is it safe?", "is it safe")[0]
    relaxed = LLMCache(Cache(MemoryStore()), similarity=True, guards=Guards(deictic=False))
    assert relaxed.would_serve("Is it safe?", "is it safe")[0]
    vetoed = LLMCache(
        Cache(MemoryStore()), similarity=True, guards=Guards(predicate=lambda a, b: False)
    )
    assert vetoed.would_serve("What is X?", "what is X")[2] == "predicate"


# -- money ----------------------------------------------------------------------------------

PRICES = {"gpt-4o-mini": ("0.15", "0.60", "0.075"), "big-model": ("3", "15")}


async def test_money_saved_equals_the_ground_truth_of_a_simulated_trace() -> None:
    rng = random.Random(5)
    table = PriceTable(PRICES, base={})
    llm = LLMCache(Cache(MemoryStore()), prices=PRICES)
    prompts = [f"Question number {i}?" for i in range(40)]
    models = ["gpt-4o-mini", "big-model", "unpriced-model"]
    tenants = [None, "acme", "globex"]
    seen: set[tuple[str, str, str | None, float]] = set()
    truth_saved: dict[tuple[str, str | None], Decimal] = {}
    truth_spent: dict[tuple[str, str | None], Decimal] = {}
    truth_tokens = 0

    async def call(request: dict[str, Any]) -> dict[str, Any]:
        body = completion(request)
        body["usage"]["prompt_tokens_details"]["cached_tokens"] = (
            len(request["messages"][0]["content"]) % 5
        )
        return body

    for _ in range(600):
        model, tenant, prompt = rng.choice(models), rng.choice(tenants), rng.choice(prompts)
        temperature = rng.choice([0, 0, 0, 0.5])
        request = {"model": model, "temperature": temperature,
                   "messages": [{"role": "user", "content": prompt}]}  # fmt: skip
        expected = await call(request)
        usage = Usage(expected["usage"]["prompt_tokens"], expected["usage"]["completion_tokens"],
                      expected["usage"]["prompt_tokens_details"]["cached_tokens"])  # fmt: skip
        cost = table.cost(model, usage) or Decimal(0)
        ident = (model, prompt, tenant, temperature)
        if temperature == 0 and ident in seen:
            truth_saved[(model, tenant)] = truth_saved.get((model, tenant), Decimal(0)) + cost
            truth_tokens += usage.prompt_tokens + usage.completion_tokens
        else:
            truth_spent[(model, tenant)] = truth_spent.get((model, tenant), Decimal(0)) + cost
        seen.add(ident)
        await llm.complete(request, call=call, tenant=tenant)
    stats = llm.statistics()
    for key, saved in truth_saved.items():
        assert stats.by_model[key].money_saved == saved  # exact Decimal equality
    for key, spent in truth_spent.items():
        assert stats.by_model[key].money_spent == spent
    assert stats.total.money_saved == sum(truth_saved.values())
    assert stats.total.money_saved > 0
    tokens = stats.total.prompt_tokens_saved + stats.total.completion_tokens_saved
    assert tokens == truth_tokens
    assert stats.by_model[("unpriced-model", None)].unpriced > 0
    assert isinstance(stats.total.money_saved, Decimal)
    assert stats.total.latency_saved >= 0.0


def test_price_table_prefix_and_exact_money() -> None:
    table = PriceTable()
    usage = Usage(prompt_tokens=1_000, completion_tokens=500, cached_tokens=200)
    # 800 x 0.15 + 200 x 0.075 + 500 x 0.60 micro-dollars per token-million.
    assert table.cost("gpt-4o-mini-2024-07-18", usage) == Decimal("0.000435")
    assert table.cost("gpt-4o-2024-08-06", usage) == Decimal("0.007250")
    assert table.cost("unknown", usage) is None
    mine = PriceTable({"gpt-4o-mini": (0.1, 0.2)})
    assert mine.cost("gpt-4o-mini", Usage(10, 10)) == Decimal("0.000003")
    assert "gpt-4o" in table


@pytest.mark.redis
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # redis.asyncio needs asyncio
async def test_entries_live_in_redis_as_json_and_the_index_rebuilds_from_it() -> None:
    namespace = f"llm-test-{random.randrange(1 << 30)}"
    cache = Cache(RedisStore("redis://127.0.0.1:6379/0"), fallback=None)
    try:
        provider = Provider()
        llm = LLMCache(cache, similarity=True, namespace=namespace, ttl=60)
        first = await llm.complete(req("What is the capital of France?"), call=provider)
        assert await llm.complete(req("What is the capital of France?"), call=provider) == first
        restarted = LLMCache(cache, similarity=True, namespace=namespace, ttl=60)
        assert (
            await restarted.complete(req("what is the capitol of france"), call=provider) == first
        )
        assert provider.calls == 1
        assert restarted.statistics().similarity.rebuilt == 1
        assert cache.statistics().errors == 0
    finally:
        await cache.namespace(namespace).clear()
        await cache.aclose()


async def test_complete_does_not_store_truncated_answers() -> None:
    llm = LLMCache(Cache(MemoryStore()))
    calls = 0

    async def call(request: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        answer = completion(request)
        answer["choices"][0]["finish_reason"] = "length"
        return answer

    for _ in range(2):
        answer = await llm.complete(req(max_tokens=3), call=call)
        assert answer["choices"][0]["finish_reason"] == "length"
    assert calls == 2
    assert await llm.cache.get(llm.key(req(max_tokens=3))) is None
    assert llm.statistics().total.not_stored == 2
    with pytest.raises(ConfigurationError, match="store_finish_reasons"):
        LLMCache(Cache(MemoryStore()), store_finish_reasons="stop")


class ThreadRecordingEmbedder(HashedNgramEmbedder):
    """The default embedder, noting which threads embed (it is not ``blocking``)."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[int] = set()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.threads.add(threading.get_ident())
        return super().embed(texts)


async def test_rebuild_and_large_searches_run_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncperf.llm._index as index_module

    cache = Cache(MemoryStore(max_entries=10_000))
    writer = LLMCache(cache, similarity=True)
    provider = Provider()
    for i in range(300):  # one scope, more entries than a search may scan on the loop
        await writer.complete(req(f"What is the population of town number {i}?"), call=provider)
    loop_thread = threading.get_ident()
    embedder = ThreadRecordingEmbedder()
    reader = LLMCache(cache, similarity=embedder)
    assert await reader.rebuild_index() == 300
    assert loop_thread not in embedder.threads  # 300 prompts embedded in a worker thread
    search_threads: set[int] = set()
    scalar = index_module.cosine

    def recording_cosine(a: Sequence[float], b: Sequence[float]) -> float:
        search_threads.add(threading.get_ident())
        return scalar(a, b)

    monkeypatch.setattr(index_module, "cosine", recording_cosine)
    answer = await reader.complete(req("what is the population of town number 7"), call=provider)
    assert answer["choices"][0]["message"]["content"].endswith("town number 7?")
    assert provider.calls == 300  # a similarity hit
    assert search_threads
    assert loop_thread not in search_threads  # the 300-entry scan ran in a worker thread


async def test_index_keeps_the_most_recently_used_entries_per_scope() -> None:
    llm = LLMCache(Cache(MemoryStore()), similarity=True, max_scope_entries=3)
    provider = Provider()
    questions = [f"What is the capital of {c}?" for c in ("France", "Spain", "Italy", "Peru")]
    for question in questions[:3]:
        await llm.complete(req(question), call=provider)
    await llm.complete(req(questions[0]), call=provider)  # France: used again
    await llm.complete(req(questions[3]), call=provider)  # Spain, least recently used, goes
    await llm.complete(req(questions[3], tenant_scope=1), call=provider)  # another scope
    assert llm.statistics().similarity.indexed == 4
    calls = provider.calls
    await llm.complete(req("what is the capital of france"), call=provider)
    assert provider.calls == calls  # still indexed: a similarity hit
    await llm.complete(req("what is the capital of spain"), call=provider)
    assert provider.calls == calls + 1  # dropped from the index: a miss
    with pytest.raises(ConfigurationError, match="max_scope_entries"):
        LLMCache(Cache(MemoryStore()), similarity=True, max_scope_entries=0)
