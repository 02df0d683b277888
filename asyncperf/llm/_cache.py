"""LLMCache: exact answers by canonical request, in-flight joins, a guarded similarity layer."""

from __future__ import annotations

import logging
import time
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Literal, TypeGuard

import anyio
import anyio.to_thread

from .._exceptions import ConfigurationError
from ..cache import Cache
from ..cache.internal import Flight
from ._calibrate import CalibrationReport, sweep
from ._canonical import OPENAI_CHAT_DEFAULTS, canonical_request
from ._embed import Embedder, HashedNgramEmbedder, cosine
from ._guards import Guards, prompt_features, refusal
from ._index import IndexRecord, ScopedIndex, rank
from ._pricing import ModelPrice, PriceTable, Usage, usage_from_response
from ._request import (
    DEFAULT_STORE_FINISH_REASONS,
    DICT_CODEC,
    Prepared,
    ResponseCodec,
    _Counters,
    _tenant_part,
    finish_reasons,
)
from ._stats import LLMStatistics, SimilarityStatistics, UsageStatistics

__all__ = ["LLMCache", "Layer"]

logger = logging.getLogger("asyncperf.llm")

Layer = Literal["exact", "similarity", "coalesced"]
Call = Callable[[Any], Awaitable[Any]]

_ENTRY_VERSION: Final = 1
_MANIFEST_SHARDS: Final = 64
_MANIFEST_RECORDS: Final = 1024  # per shard; older records drop off (a lost similarity hit)

#: A similarity search over more entries than this (one scope) runs in a worker thread: the
#: scan is pure Python, about 15 microseconds an entry (4 ms at 256), and would stall the
#: event loop.
SEARCH_IN_THREAD_ABOVE: Final = 256


class LLMCache:
    """Cache LLM completions: exact by default, similarity only when asked, never a guess.

    Every request is put in canonical form (provider defaults filled in, so an omitted
    ``temperature`` is 1, not 0) and hashed; the hash is the exact-layer key. Identical
    requests in flight at once make one upstream call. Requests whose temperature is above
    0 are sent upstream uncached unless ``cache_nondeterministic=True``. With a similarity
    layer, an exact miss is compared only with entries of the same scope (model, every
    parameter, system prompt, earlier turns, tenant) and served only when the cosine
    reaches the threshold *and* every guard agrees (numbers, negation, names, content
    words, no "this"/"above").

    Args:
        cache: Where entries live (any :class:`~asyncperf.Cache`: memory, Redis, tiered).
            Entries are JSON data, so every store can hold them.
        similarity: ``True`` for the default :class:`HashedNgramEmbedder`, an
            :class:`Embedder` for that one, ``False`` (default) for the exact layer only.
        threshold: The cosine a similarity match needs; default: the embedder's own
            calibrated value (``None`` for an embedder without one: the layer then serves
            nothing until :meth:`calibrate` sets one).
        embedder: An :class:`Embedder`; switches the similarity layer on.
        prices: Per-model prices (USD per 1M tokens) added to or overriding
            :data:`DEFAULT_PRICES`: ``{"my-model": ("0.15", "0.60")}`` or a
            :class:`PriceTable`.
        cache_nondeterministic: Also cache requests whose temperature is above 0 (every
            caller then gets the first sample).
        ttl: Seconds an entry lives (default: the cache's ``default_ttl``).
        namespace: The cache namespace entries live under.
        guards: Which similarity guards run (all by default).
        defaults: The provider's defaults for omitted parameters (OpenAI's by default).
        ignore_params: Parameters you vouch never change the answer (e.g. ``"user"``),
            left out of the key. Everything else, unknown parameters too, stays in it.
        lock: ``"local"`` joins identical calls in this process; ``"distributed"`` also
            across processes sharing a Redis-backed cache.
        max_index_entries: Size of the in-process similarity index.
        max_scope_entries: Entries of one scope the index keeps (least recently used go
            first); this bounds the cost of one search (pure Python, about 15 µs an
            entry; searches over more than 256 entries run in a worker thread).
        store_finish_reasons: The ``finish_reason`` values an answer may be stored with
            (default ``{"stop", "tool_calls", "function_call"}``). An answer with any
            other (``length``: cut at ``max_tokens``; ``content_filter``) is returned but
            not stored, and counted in ``not_stored``. A choice that reports no
            ``finish_reason`` (some compatible servers) does not prevent storing.

    Raises:
        ConfigurationError: An argument is invalid.

    Example:
        >>> llm = LLMCache(Cache(MemoryStore()))
        >>> async def main(call):
        ...     return await llm.complete({"model": "gpt-4o-mini", "temperature": 0,
        ...                                "messages": [{"role": "user", "content": "hi"}]},
        ...                               call=call)
    """

    monitor_kind = "llm_cache"  # the metric prefix PerformanceMonitor.watch uses

    def __init__(
        self,
        cache: Cache,
        *,
        similarity: bool | Embedder = False,
        threshold: float | None = None,
        embedder: Embedder | None = None,
        prices: PriceTable
        | Mapping[str, ModelPrice | Mapping[str, Any] | tuple[Any, ...]]
        | None = None,
        cache_nondeterministic: bool = False,
        ttl: float | None = None,
        namespace: str = "llm",
        guards: Guards | None = None,
        defaults: Mapping[str, Any] = OPENAI_CHAT_DEFAULTS,
        ignore_params: Iterable[str] = (),
        lock: Literal["local", "distributed"] = "local",
        max_index_entries: int = 100_000,
        max_scope_entries: int = 10_000,
        store_finish_reasons: Iterable[str] = DEFAULT_STORE_FINISH_REASONS,
    ) -> None:
        if not isinstance(cache, Cache):
            raise ConfigurationError(f"cache must be an asyncperf Cache, got {cache!r}")
        if similarity is not True and similarity is not False:
            if not isinstance(similarity, Embedder):
                raise ConfigurationError(
                    f"similarity must be a bool or an Embedder, got {similarity!r}"
                )
            if embedder is not None and embedder is not similarity:
                raise ConfigurationError("pass the embedder as similarity= or embedder=, not both")
            embedder = similarity
        if embedder is not None and not isinstance(embedder, Embedder):
            raise ConfigurationError(f"embedder must implement Embedder, got {embedder!r}")
        if embedder is None and similarity is True:
            embedder = HashedNgramEmbedder()
        if threshold is not None:
            threshold = self._check_threshold(threshold)
        if lock not in ("local", "distributed"):
            raise ConfigurationError(f"lock must be 'local' or 'distributed', got {lock!r}")
        self._cache = cache.namespace(namespace)
        self._ttl = ttl
        self._prices = prices if isinstance(prices, PriceTable) else PriceTable(prices)
        self._embedder = embedder
        self._threshold = (
            threshold
            if threshold is not None or embedder is None
            else getattr(embedder, "default_threshold", None)
        )
        self._guards = guards if guards is not None else Guards()
        self._defaults = dict(defaults)
        self._ignore = frozenset(ignore_params)
        self._nondeterministic = bool(cache_nondeterministic)
        if isinstance(store_finish_reasons, str) or not all(
            isinstance(reason, str) for reason in store_finish_reasons
        ):
            raise ConfigurationError(
                f"store_finish_reasons must be strings, got {store_finish_reasons!r}"
            )
        self._store_finish_reasons = frozenset(store_finish_reasons)
        self._lock: Literal["local", "distributed"] = lock
        for name, size in (
            ("max_index_entries", max_index_entries),
            ("max_scope_entries", max_scope_entries),
        ):
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise ConfigurationError(f"{name} must be a positive int, got {size!r}")
        self._index = ScopedIndex(max_index_entries, max_scope_entries)
        self._index_loaded = False
        self._index_lock = anyio.Lock()
        self._manifest_lock = anyio.Lock()
        self._counters: dict[tuple[str, str | None], _Counters] = {}
        self._lookups = self._similarity_hits = self._rebuilt = 0
        self._refusals: Counter[str] = Counter()
        self._nearest = [0] * 10
        self.stream_flights: dict[str, Flight] = {}

    @staticmethod
    def _check_threshold(threshold: object) -> float:
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not -1.0 <= threshold <= 1.0
        ):
            raise ConfigurationError(f"threshold must be a cosine in [-1, 1], got {threshold!r}")
        return float(threshold)

    # -- properties ----------------------------------------------------------------------

    @property
    def cache(self) -> Cache:
        """The cache view (namespace) entries live in."""
        return self._cache

    @property
    def threshold(self) -> float | None:
        """The cosine a similarity match needs (``None``: the layer serves nothing)."""
        return self._threshold

    @threshold.setter
    def threshold(self, value: float | None) -> None:
        self._threshold = None if value is None else self._check_threshold(value)

    @property
    def ttl(self) -> float | None:
        """Seconds entries live (``None``: the cache's ``default_ttl``)."""
        return self._ttl

    @property
    def embedder(self) -> Embedder | None:
        """The similarity layer's embedder (``None``: exact layer only)."""
        return self._embedder

    @property
    def prices(self) -> PriceTable:
        """The price table money is counted with."""
        return self._prices

    def key(self, request: Mapping[str, Any], *, tenant: str | None = None) -> str:
        """Return the exact-layer key of ``request`` (as stored under :attr:`cache`)."""
        canonical = canonical_request(request, defaults=self._defaults, ignore=self._ignore)
        return f"e:{_tenant_part(tenant)}:{canonical.digest}"

    # -- the request path ----------------------------------------------------------------

    def prepare(self, request: Mapping[str, Any], tenant: str | None) -> Prepared:
        """Canonicalise ``request`` and count it (internal to asyncperf.llm)."""
        started = time.perf_counter()
        canonical = canonical_request(request, defaults=self._defaults, ignore=self._ignore)
        part = _tenant_part(tenant)
        scope = None
        if canonical.scope is not None and self._embedder is not None:
            scope = f"{part}:{canonical.scope}"
        counters = self._counters.get((canonical.model, tenant))
        if counters is None:
            counters = self._counters[(canonical.model, tenant)] = _Counters()
        counters.requests += 1
        return Prepared(canonical, tenant, f"e:{part}:{canonical.digest}", scope, counters, started)

    @property
    def store_finish_reasons(self) -> frozenset[str]:
        """The ``finish_reason`` values an answer may be stored with."""
        return self._store_finish_reasons

    def storable(self, prepared: Prepared, reasons: Iterable[Any]) -> bool:
        """Whether a completed answer whose choices ended with ``reasons`` may be stored;
        a refusal is counted in ``not_stored`` (internal)."""
        allowed = self._store_finish_reasons
        if all(reason is None or reason in allowed for reason in reasons):
            return True
        prepared.counters.not_stored += 1
        return False

    def cacheable(self, prepared: Prepared) -> bool:
        """Whether ``prepared`` may be served from or stored in the cache."""
        return prepared.canonical.deterministic or self._nondeterministic

    async def complete(
        self, request: Mapping[str, Any], *, call: Call, tenant: str | None = None
    ) -> Any:
        """Return the completion for ``request``: cached, joined, or from ``call(request)``.

        Args:
            request: An OpenAI-style chat request (``model``, ``messages``, parameters).
            call: ``async def call(request) -> response``; the response must be a JSON
                mapping (usage, when present, is read from its ``usage``).
            tenant: Entries and in-flight calls are shared only within one tenant.

        Returns:
            What ``call`` returned, or an equal copy of it from the cache.

        Raises:
            Exception: Whatever ``call`` raised (every joined caller gets it too).
            ConfigurationError: The request has no model or messages.
        """
        return await self.complete_with(request, call=call, tenant=tenant, codec=DICT_CODEC)

    async def complete_with(
        self,
        request: Mapping[str, Any],
        *,
        call: Call,
        tenant: str | None,
        codec: ResponseCodec,
    ) -> Any:
        """:meth:`complete` with a response codec (how SDK objects are stored)."""
        prepared = self.prepare(request, tenant)
        if not self.cacheable(prepared):
            return await self.bypass(prepared, call, request, codec)
        found = await self.lookup(prepared)
        if found is not None:
            value, layer = found
            response = codec.decode(value["body"])
            self.record_hit(prepared, value, layer)
            return response
        original: list[Any] = []
        keep: list[bool] = []

        async def load() -> dict[str, Any]:
            started = time.perf_counter()
            try:
                response = await call(request)
            except Exception:
                prepared.counters.upstream_calls += 1
                raise
            latency = time.perf_counter() - started
            body, usage = codec.encode(response)
            self.record_call(prepared, usage)
            original.append(response)
            keep.append(self.storable(prepared, finish_reasons(response)))
            return self.entry(prepared, "completion", body, usage, latency)

        try:
            value = await self._cache.get_or_set(
                prepared.key,
                load,
                ttl=self._ttl,
                early_refresh=False,
                lock=self._lock,
                store_if=lambda _: all(keep),  # a truncated answer is returned, not stored
            )
        except Exception:
            prepared.counters.errors += 1
            raise
        if original:
            if all(keep):
                await self.index(prepared)
            return original[0]
        # Another caller's call (in flight, or stored between our lookup and now).
        response = codec.decode(value["body"])
        self.record_hit(prepared, value, "coalesced")
        return response

    async def bypass(
        self, prepared: Prepared, call: Call, request: Any, codec: ResponseCodec | None
    ) -> Any:
        """Send an uncacheable request upstream, counting it (internal)."""
        prepared.counters.bypassed += 1
        prepared.counters.upstream_calls += 1
        try:
            response = await call(request)
        except Exception:
            prepared.counters.errors += 1
            raise
        if codec is not None and isinstance(response, Mapping):
            self._spend(prepared, usage_from_response(response))
        elif codec is not None and hasattr(response, "usage"):
            _, usage = codec.encode(response)
            self._spend(prepared, usage)
        return response

    def entry(
        self,
        prepared: Prepared,
        kind: str,
        body: Any,
        usage: Usage | None,
        latency: float,
    ) -> dict[str, Any]:
        """Return the JSON entry stored for a completed call (internal)."""
        return {
            "v": _ENTRY_VERSION,
            "kind": kind,
            "body": body,
            "model": prepared.canonical.model,
            "usage": usage.to_dict() if usage is not None else None,
            "latency": latency,
            "created": time.time(),
        }

    # -- lookups -------------------------------------------------------------------------

    async def lookup(self, prepared: Prepared) -> tuple[dict[str, Any], Layer] | None:
        """Return ``(entry, layer)`` for a request the cache can answer, else ``None``."""
        value = await self._cache.get(prepared.key)
        if _valid(value):
            self._index.touch(prepared.key)
            return dict(value), "exact"
        if prepared.scope is not None and self._threshold is not None:
            found = await self._similar(prepared)
            if found is not None:
                return found, "similarity"
        return None

    async def _embed(self, texts: Sequence[str]) -> list[list[float]]:
        embedder = self._embedder
        assert embedder is not None
        if getattr(embedder, "blocking", False):
            return await anyio.to_thread.run_sync(embedder.embed, list(texts))
        return embedder.embed(texts)

    async def _similar(self, prepared: Prepared) -> dict[str, Any] | None:
        prompt = prepared.canonical.prompt
        assert prompt is not None
        assert prepared.scope is not None
        features = prepared.features = prompt_features(prompt)
        if self._guards.deictic and features.deictic:
            self._refusals["deictic"] += 1
            return None
        await self.ensure_index()
        vector = prepared.vector = (await self._embed([prompt]))[0]
        records = self._index.snapshot(prepared.scope)
        if len(records) > SEARCH_IN_THREAD_ABOVE:
            candidates = await anyio.to_thread.run_sync(rank, records, vector)
        else:
            candidates = rank(records, vector)
        self._lookups += 1
        best = candidates[0][0] if candidates else 0.0
        self._nearest[min(9, max(0, int(best * 10)))] += 1
        threshold = self._threshold
        assert threshold is not None
        for similarity, record in candidates:
            if similarity < threshold:
                break
            reason = refusal(self._guards, prompt, features, record.prompt, record.features)
            if reason is not None:
                self._refusals[reason] += 1
                continue
            value = await self._cache.get(record.key)
            if not _valid(value):
                self._index.remove(record.key)  # expired or evicted from the store
                continue
            self._similarity_hits += 1
            self._index.touch(record.key)
            return dict(value)
        return None

    # -- bookkeeping ---------------------------------------------------------------------

    def _spend(self, prepared: Prepared, usage: Usage | None) -> None:
        counters = prepared.counters
        if usage is None:
            counters.unpriced += 1
            return
        if usage.estimated:
            counters.estimated_usage += 1
        cost = self._prices.cost(prepared.canonical.model, usage)
        if cost is None:
            counters.unpriced += 1
        else:
            counters.money_spent += cost

    def record_call(self, prepared: Prepared, usage: Usage | None) -> None:
        """Count one upstream call and what it cost (internal)."""
        prepared.counters.upstream_calls += 1
        self._spend(prepared, usage)

    def record_hit(self, prepared: Prepared, value: Mapping[str, Any], layer: Layer) -> None:
        """Count an answer served without a call, and what it saved (internal)."""
        counters = prepared.counters
        if layer == "exact":
            counters.exact_hits += 1
        elif layer == "similarity":
            counters.similarity_hits += 1
        else:
            counters.coalesced += 1
        usage = Usage.from_dict(value.get("usage"))
        if value.get("usage") is None:
            counters.unpriced += 1
        else:
            if usage.estimated:
                counters.estimated_usage += 1
            counters.prompt_tokens_saved += usage.prompt_tokens
            counters.completion_tokens_saved += usage.completion_tokens
            cost = self._prices.cost(str(value.get("model", prepared.canonical.model)), usage)
            if cost is None:
                counters.unpriced += 1
            else:
                counters.money_saved += cost
        elapsed = time.perf_counter() - prepared.started
        counters.latency_saved += max(0.0, float(value.get("latency", 0.0)) - elapsed)

    # -- the similarity index ------------------------------------------------------------

    async def index(self, prepared: Prepared) -> None:
        """Add a freshly stored request to the similarity index and its manifest."""
        if prepared.scope is None or self._embedder is None:
            return
        prompt = prepared.canonical.prompt
        assert prompt is not None
        features = prepared.features or prompt_features(prompt)
        if features.deictic and self._guards.deictic:
            return  # never matched, so never indexed
        vector = prepared.vector or (await self._embed([prompt]))[0]
        self._index.add(IndexRecord(prepared.key, prepared.scope, prompt, features, vector))
        shard = f"ix:{int(prepared.canonical.digest[:8], 16) % _MANIFEST_SHARDS:02d}"
        try:
            async with self._manifest_lock:
                current = await self._cache.get(shard)
                records = list(current["records"]) if _is_manifest(current) else []
                records = [r for r in records if r[0] != prepared.key]
                records.append([prepared.key, prepared.scope, prompt])
                await self._cache.set(
                    shard, {"v": _ENTRY_VERSION, "records": records[-_MANIFEST_RECORDS:]}
                )
        except Exception as exc:  # the index still works in this process
            logger.warning("asyncperf.llm: could not record the index manifest: %r", exc)

    async def ensure_index(self) -> None:
        """Load the similarity index from the store once per process (first lookup)."""
        if self._index_loaded:
            return
        async with self._index_lock:
            if not self._index_loaded:
                await self.rebuild_index()

    async def rebuild_index(self) -> int:
        """Rebuild the in-process similarity index from the entries in the store.

        Entries record themselves in a small manifest (64 keys under the cache namespace)
        when they are stored; this reads it, drops records whose entry has expired, and
        embeds the prompts again with the current embedder (so an index never mixes
        embedders), in a worker thread so the event loop keeps running. Called
        automatically before the first similarity lookup.

        Returns:
            How many entries the index holds for the store's records.
        """
        self._index_loaded = True
        if self._embedder is None:
            return 0
        shards = [f"ix:{n:02d}" for n in range(_MANIFEST_SHARDS)]
        manifests = await self._cache.get_many(shards)
        records: dict[str, tuple[str, str]] = {}
        for shard in shards:
            current = manifests.get(shard)
            if _is_manifest(current):
                for key, scope, prompt in current["records"]:
                    records[key] = (scope, prompt)
        if not records:
            return 0
        alive = await self._cache.get_many(list(records))
        keys = [key for key in records if _valid(alive.get(key))]
        if not keys:
            return 0
        prompts = [records[key][1] for key in keys]
        embedder = self._embedder

        def build() -> list[IndexRecord]:
            # Embedding every prompt (2 s for 20 000 with the default embedder) and
            # extracting their features is CPU work: done here, off the event loop.
            vectors = embedder.embed(prompts)
            return [
                IndexRecord(
                    key, records[key][0], prompt, prompt_features(prompt), array("d", vector)
                )
                for key, prompt, vector in zip(keys, prompts, vectors, strict=True)
            ]

        for record in await anyio.to_thread.run_sync(build):
            self._index.add(record)
        self._rebuilt += len(keys)
        return len(keys)

    # -- calibration ---------------------------------------------------------------------

    def calibrate(
        self,
        pairs: Iterable[tuple[str, str, bool]],
        target_false_hit_rate: float = 0.01,
        *,
        apply: bool = True,
    ) -> CalibrationReport:
        """Choose the similarity threshold from labelled prompt pairs.

        Each pair is ``(stored prompt, new prompt, should_match)``; traps are the pairs
        that must not match. For every candidate threshold the pairs are scored as the
        cache would serve them (cosine at or above the threshold *and* every guard
        passing), and the lowest threshold whose 95 % Wilson upper bound on the share of
        traps served is within ``target_false_hit_rate`` is chosen. The report says what
        was chosen, from how many traps, the bound, the hit rate there, and why.

        Args:
            pairs: Labelled pairs; at least ``required_traps(target)`` traps (381 for 1 %)
                are needed to show the target at all.
            target_false_hit_rate: The bound on false hits to prove.
            apply: Set :attr:`threshold` to the choice (when one exists).

        Raises:
            ConfigurationError: No similarity layer, or a target outside (0, 1).
        """
        if self._embedder is None:
            raise ConfigurationError("calibrate() needs a similarity layer (similarity=True)")
        if not 0.0 < target_false_hit_rate < 1.0:
            raise ConfigurationError(
                f"target_false_hit_rate must be in (0, 1), got {target_false_hit_rate!r}"
            )
        labelled = [(str(a), str(b), bool(match)) for a, b, match in pairs]
        texts = sorted({text for a, b, _ in labelled for text in (a, b)})
        vectors = dict(zip(texts, self._embedder.embed(texts), strict=True))
        features = {text: prompt_features(text) for text in texts}
        refusals: Counter[str] = Counter()
        scored: list[tuple[float, bool, bool]] = []
        for stored, query, match in labelled:
            reason = refusal(self._guards, query, features[query], stored, features[stored])
            if reason is not None:
                refusals[reason] += 1
            scored.append((cosine(vectors[stored], vectors[query]), reason is None, match))
        report = sweep(scored, target_false_hit_rate, self._threshold, dict(refusals), apply)
        if apply and report.threshold is not None:
            self._threshold = report.threshold
        return report

    def would_serve(self, stored: str, query: str) -> tuple[bool, float, str | None]:
        """Return whether the similarity layer would answer ``query`` with the entry of
        ``stored`` (same scope assumed): ``(served, cosine, refusing guard or None)``."""
        if self._embedder is None or self._threshold is None:
            return False, 0.0, None
        vector_a, vector_b = self._embedder.embed([stored, query])
        similarity = cosine(vector_a, vector_b)
        reason = refusal(
            self._guards, query, prompt_features(query), stored, prompt_features(stored)
        )
        return reason is None and similarity >= self._threshold, similarity, reason

    # -- statistics ----------------------------------------------------------------------

    def statistics(self) -> LLMStatistics:
        """Return a snapshot: per model and tenant, the total, and the similarity layer."""
        total = _Counters()
        by_model: dict[tuple[str, str | None], UsageStatistics] = {}
        for scope, counters in self._counters.items():
            total.add(counters)
            by_model[scope] = counters.snapshot()
        embedder = self._embedder
        similarity = SimilarityStatistics(
            enabled=embedder is not None,
            embedder=getattr(embedder, "id", "") if embedder is not None else "",
            threshold=self._threshold,
            lookups=self._lookups,
            hits=self._similarity_hits,
            refusals=dict(self._refusals),
            nearest=tuple(self._nearest),
            indexed=len(self._index),
            rebuilt=self._rebuilt,
        )
        return LLMStatistics(total.snapshot(), LLMStatistics.freeze(by_model), similarity)

    def __repr__(self) -> str:
        return (
            f"LLMCache(cache={self._cache!r}, embedder={self._embedder!r}, "
            f"threshold={self._threshold!r})"
        )


def _valid(value: Any) -> TypeGuard[Mapping[str, Any]]:
    return isinstance(value, Mapping) and value.get("v") == _ENTRY_VERSION and "body" in value


def _is_manifest(value: Any) -> TypeGuard[Mapping[str, Any]]:
    return (
        isinstance(value, Mapping)
        and value.get("v") == _ENTRY_VERSION
        and isinstance(value.get("records"), list)
    )
