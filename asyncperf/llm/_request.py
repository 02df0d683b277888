"""What one completion carries through LLMCache: the prepared request, its counters, the codec.

Kept apart from :mod:`._cache` so that the cache's flow (lookup, join, store, similarity)
reads on its own; :mod:`.openai` uses :class:`Prepared` too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any, Final, Protocol

import orjson

from .._exceptions import ConfigurationError
from ._canonical import CanonicalRequest
from ._guards import PromptFeatures
from ._pricing import Usage, usage_from_response
from ._stats import UsageStatistics

#: The ``finish_reason`` values of a complete answer; ``length`` (cut at ``max_tokens``)
#: and ``content_filter`` (cut by the provider's filter) are not, and are never stored.
DEFAULT_STORE_FINISH_REASONS: Final = frozenset({"stop", "tool_calls", "function_call"})


def finish_reasons(response: Any) -> list[Any]:
    """Return the ``finish_reason`` of each choice of a chat completion (a mapping or an
    SDK object); ``[]`` when it has no ``choices`` list."""
    choices = (
        response.get("choices")
        if isinstance(response, Mapping)
        else getattr(response, "choices", None)
    )
    if not isinstance(choices, list | tuple):
        return []
    return [
        choice.get("finish_reason")
        if isinstance(choice, Mapping)
        else getattr(choice, "finish_reason", None)
        for choice in choices
    ]


class ResponseCodec(Protocol):
    """How a provider's response becomes an entry and back (dicts, SDK objects)."""

    def encode(self, response: Any) -> tuple[str, Usage | None]:
        """Return the response as JSON text and the usage it reports."""
        ...

    def decode(self, body: str) -> Any:
        """Rebuild a response from :meth:`encode`'s JSON text."""
        ...


class _DictCodec:
    """Responses that are JSON mappings (OpenAI's chat completion shape)."""

    def encode(self, response: Any) -> tuple[str, Usage | None]:
        if not isinstance(response, Mapping):
            raise TypeError(
                "LLMCache.complete() needs call= to return a JSON mapping (an OpenAI-style "
                f"chat completion dict), got {type(response).__qualname__}; for the openai "
                "SDK use asyncperf.llm.openai.cached_openai"
            )
        return orjson.dumps(response).decode(), usage_from_response(response)

    def decode(self, body: str) -> Any:
        return orjson.loads(body)


DICT_CODEC: Final = _DictCodec()


@dataclass(slots=True)
class _Counters:
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

    def snapshot(self) -> UsageStatistics:
        return UsageStatistics(**{f.name: getattr(self, f.name) for f in fields(self)})

    def add(self, other: _Counters) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass(slots=True)
class Prepared:
    """One request on its way through the cache (internal to asyncperf.llm)."""

    canonical: CanonicalRequest
    tenant: str | None
    key: str
    scope: str | None
    counters: _Counters
    started: float
    features: PromptFeatures | None = None
    vector: Sequence[float] | None = None
    refused: dict[str, int] = field(default_factory=dict)


def _tenant_part(tenant: str | None) -> str:
    if tenant is None:
        return "-"
    if not isinstance(tenant, str) or not tenant:
        raise ConfigurationError(f"tenant must be a non-empty str or None, got {tenant!r}")
    return "t" + hashlib.blake2b(tenant.encode(), digest_size=12).hexdigest()
