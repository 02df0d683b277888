"""Counters of the LLM cache, per model and tenant, and their frozen snapshots."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType

__all__ = ["LLMStatistics", "SimilarityStatistics", "UsageStatistics"]


@dataclass(frozen=True, slots=True)
class UsageStatistics:
    """What the cache did for one model and tenant (or in total).

    Attributes:
        requests: Requests asked of the cache.
        upstream_calls: Calls that reached the provider.
        exact_hits: Answered from an entry with the same canonical request.
        similarity_hits: Answered from a guarded similar entry.
        coalesced: Answered by joining an identical call already in flight.
        bypassed: Sent upstream uncached (temperature > 0 without opt-in).
        errors: Requests that raised (the provider's exception, shared by joined callers).
        not_stored: Completed calls returned but not stored because a choice ended with a
            ``finish_reason`` outside ``store_finish_reasons`` (``length``,
            ``content_filter``).
        prompt_tokens_saved: Prompt tokens of the answers served without a call.
        completion_tokens_saved: Completion tokens of those answers.
        money_spent: US dollars of the upstream calls (exact).
        money_saved: US dollars the served answers cost when first computed (exact).
        latency_saved: Seconds: the original call's latency minus the time the cache took,
            summed over served answers.
        unpriced: Calls or hits whose model has no price (their money counts as 0).
        estimated_usage: Calls or hits whose token counts were estimated, not reported.
    """

    requests: int = 0
    upstream_calls: int = 0
    exact_hits: int = 0
    similarity_hits: int = 0
    coalesced: int = 0
    bypassed: int = 0
    errors: int = 0
    not_stored: int = 0
    prompt_tokens_saved: int = 0
    completion_tokens_saved: int = 0
    money_spent: Decimal = Decimal(0)
    money_saved: Decimal = Decimal(0)
    latency_saved: float = 0.0
    unpriced: int = 0
    estimated_usage: int = 0

    @property
    def hits(self) -> int:
        """Requests answered without a call of their own (all layers and joins)."""
        return self.exact_hits + self.similarity_hits + self.coalesced

    @property
    def hit_rate(self) -> float:
        """``hits / requests`` (0.0 before the first request)."""
        return self.hits / self.requests if self.requests else 0.0


@dataclass(frozen=True, slots=True)
class SimilarityStatistics:
    """How the similarity layer decided.

    Attributes:
        enabled: A similarity layer is configured.
        embedder: The embedder's id ("" when disabled).
        threshold: The cosine a guarded match needs (``None``: not calibrated, serves
            nothing).
        lookups: Searches made (exact misses of eligible requests).
        hits: Searches that served an answer.
        refusals: Candidates above the threshold refused, by guard name; ``"deictic"``
            also counts queries never searched because they point outside themselves.
        nearest: Histogram of the best cosine of every search, hit or miss, in tenths
            (``nearest[9]`` counts 0.9 <= cosine <= 1.0).
        indexed: Entries in the in-process index.
        rebuilt: Entries loaded back from the store by index rebuilds.
    """

    enabled: bool = False
    embedder: str = ""
    threshold: float | None = None
    lookups: int = 0
    hits: int = 0
    refusals: Mapping[str, int] = field(default_factory=dict)
    nearest: tuple[int, ...] = (0,) * 10
    indexed: int = 0
    rebuilt: int = 0


@dataclass(frozen=True, slots=True)
class LLMStatistics:
    """A snapshot of :meth:`LLMCache.statistics`.

    Attributes:
        total: Everything, summed.
        by_model: Keyed by ``(model, tenant)``; ``tenant`` is ``None`` for unscoped calls.
        similarity: The similarity layer's decisions.
    """

    total: UsageStatistics
    by_model: Mapping[tuple[str, str | None], UsageStatistics]
    similarity: SimilarityStatistics

    @staticmethod
    def freeze(
        by_model: dict[tuple[str, str | None], UsageStatistics],
    ) -> Mapping[tuple[str, str | None], UsageStatistics]:
        """Return a read-only view of a copy of ``by_model``."""
        return MappingProxyType(dict(by_model))
