"""Token usage and money: exact, in :class:`~decimal.Decimal` US dollars."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from .._exceptions import ConfigurationError

__all__ = ["DEFAULT_PRICES", "ModelPrice", "PriceTable", "Usage", "usage_from_response"]

_MILLION: Final = Decimal(1_000_000)


def _decimal(value: Any, name: str) -> Decimal:
    if isinstance(value, float):
        # Decimal(0.1) is 0.1000000000000000055...: go through the shortest repr instead.
        value = repr(value)
    try:
        result = Decimal(value)
    except Exception as exc:
        raise ConfigurationError(f"{name} must be a number of dollars, got {value!r}") from exc
    if not result.is_finite() or result < 0:
        raise ConfigurationError(f"{name} must be finite and >= 0, got {value!r}")
    return result


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """US dollars per one million tokens.

    Attributes:
        input: Prompt tokens.
        output: Completion tokens (reasoning tokens included, as providers bill them).
        cached_input: Prompt tokens the provider served from its own prompt cache
            (default: the ``input`` price).
    """

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None

    @classmethod
    def of(cls, value: ModelPrice | Mapping[str, Any] | tuple[Any, ...]) -> ModelPrice:
        """Build a price from a ``ModelPrice``, a mapping or an ``(input, output[, cached])``
        tuple of numbers or strings (``"0.15"``; floats go through their repr).

        Raises:
            ConfigurationError: A price is missing, negative or not a number.
        """
        if isinstance(value, ModelPrice):
            return value
        if isinstance(value, Mapping):
            items = (value.get("input"), value.get("output"), value.get("cached_input"))
        elif isinstance(value, tuple) and len(value) in (2, 3):
            items = (value[0], value[1], value[2] if len(value) == 3 else None)
        else:
            raise ConfigurationError(f"a model price is (input, output[, cached]), got {value!r}")
        if items[0] is None or items[1] is None:
            raise ConfigurationError(f"a model price needs input and output, got {value!r}")
        cached = None if items[2] is None else _decimal(items[2], "cached_input")
        return cls(_decimal(items[0], "input"), _decimal(items[1], "output"), cached)


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens one completion used.

    Attributes:
        prompt_tokens: Prompt tokens, cached ones included.
        completion_tokens: Completion tokens, reasoning ones included.
        cached_tokens: Prompt tokens the provider served from its prompt cache.
        estimated: The provider reported no usage (a stream without
            ``stream_options={"include_usage": True}``); the counts are estimates.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    estimated: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the usage as JSON data (how entries store it)."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "estimated": self.estimated,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Usage:
        """Read what :meth:`to_dict` wrote (missing counts are 0)."""
        if not data:
            return cls()
        return cls(
            int(data.get("prompt_tokens") or 0),
            int(data.get("completion_tokens") or 0),
            int(data.get("cached_tokens") or 0),
            bool(data.get("estimated", False)),
        )


def usage_from_response(response: Mapping[str, Any]) -> Usage | None:
    """Return the ``usage`` of an OpenAI-style response or chunk dict, if it has one."""
    usage = response.get("usage")
    if not isinstance(usage, Mapping):
        return None
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, Mapping) else 0
    return Usage(
        int(usage.get("prompt_tokens") or 0),
        int(usage.get("completion_tokens") or 0),
        int(cached or 0),
    )


#: Published list prices (USD per 1M tokens) when this table was written. They change:
#: pass ``prices=`` to :class:`~asyncperf.llm.LLMCache` to override or add models.
DEFAULT_PRICES: Final[Mapping[str, ModelPrice]] = {
    "gpt-4o": ModelPrice(Decimal("2.50"), Decimal("10.00"), Decimal("1.25")),
    "gpt-4o-mini": ModelPrice(Decimal("0.15"), Decimal("0.60"), Decimal("0.075")),
    "gpt-4.1": ModelPrice(Decimal("2.00"), Decimal("8.00"), Decimal("0.50")),
    "gpt-4.1-mini": ModelPrice(Decimal("0.40"), Decimal("1.60"), Decimal("0.10")),
    "gpt-4.1-nano": ModelPrice(Decimal("0.10"), Decimal("0.40"), Decimal("0.025")),
    "o3-mini": ModelPrice(Decimal("1.10"), Decimal("4.40"), Decimal("0.55")),
    "gpt-3.5-turbo": ModelPrice(Decimal("0.50"), Decimal("1.50")),
}


class PriceTable:
    """Per-model prices; a model name also matches its dated variants by longest prefix
    (``gpt-4o-mini-2024-07-18`` is priced as ``gpt-4o-mini``).

    Args:
        prices: Models to add or override, on top of ``base``.
        base: The starting table (default :data:`DEFAULT_PRICES`; ``{}`` for none).
    """

    def __init__(
        self,
        prices: Mapping[str, ModelPrice | Mapping[str, Any] | tuple[Any, ...]] | None = None,
        *,
        base: Mapping[str, ModelPrice] = DEFAULT_PRICES,
    ) -> None:
        table = dict(base)
        for model, price in (prices or {}).items():
            table[model] = ModelPrice.of(price)
        self._table = table
        self._by_length = sorted(table, key=len, reverse=True)
        self._resolved: dict[str, ModelPrice | None] = {}

    def price(self, model: str) -> ModelPrice | None:
        """Return the price for ``model`` (exact name, else longest prefix), or ``None``."""
        try:
            return self._resolved[model]
        except KeyError:
            pass
        found = self._table.get(model)
        if found is None:
            found = next(
                (self._table[name] for name in self._by_length if model.startswith(name + "-")),
                None,
            )
        self._resolved[model] = found
        return found

    def cost(self, model: str, usage: Usage) -> Decimal | None:
        """Return what ``usage`` of ``model`` costs in US dollars (exact), or ``None`` when
        the model has no price."""
        price = self.price(model)
        if price is None:
            return None
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        cached_price = price.input if price.cached_input is None else price.cached_input
        micro = (
            (usage.prompt_tokens - cached) * price.input
            + cached * cached_price
            + usage.completion_tokens * price.output
        )
        return micro / _MILLION

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self.price(model) is not None

    def __repr__(self) -> str:
        return f"PriceTable({len(self._table)} models)"
