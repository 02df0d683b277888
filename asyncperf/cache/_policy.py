"""Validated options: TTL seconds, tags, and the LoadPolicy of one kind of value."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Final, Literal

from .._exceptions import ConfigurationError

__all__ = [
    "LoadPolicy",
    "Loader",
    "LockMode",
    "check_positive_int",
    "check_tags",
    "check_ttl",
]

LockMode = Literal["local", "distributed"] | None
Loader = Callable[[], Any]

_LOCK_MODES: Final = ("local", "distributed", None)


def check_ttl(value: object, name: str = "ttl") -> float | None:
    """Return ``value`` as a TTL in seconds, or ``None``.

    Raises:
        ConfigurationError: Not a number, a bool, zero, negative, NaN or infinite.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(
            f"{name} must be a number of seconds or None, got {type(value).__qualname__}"
        )
    seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigurationError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return seconds


def check_positive_int(value: object, name: str) -> int:
    """Return ``value`` when it is an ``int`` >= 1 (a count or a size).

    Raises:
        ConfigurationError: Not an int (a bool is not one), or less than 1.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a positive int, got {value!r}")
    return value


def check_tags(tags: Iterable[str]) -> tuple[str, ...]:
    if isinstance(tags, str | bytes):
        raise ConfigurationError(
            f"tags must be a list of str, not a single {type(tags).__name__} ({tags!r})"
        )
    checked = tuple(tags)
    for tag in checked:
        if type(tag) is not str or not tag:
            raise ConfigurationError(f"every tag must be a non-empty str, got {tag!r}")
    return checked


class LoadPolicy:
    """How ``get_or_set`` treats one kind of value; validated once, reused per call.

    Args:
        ttl: Freshness in seconds (``None``: the cache's ``default_ttl``).
        stale_ttl: After freshness ends, serve the stale value for this many more seconds
            while one background refresh runs (stale-while-revalidate).
        stale_if_error: Serve the stale value when the loader raises: ``True`` keeps values
            for one extra ``ttl`` for that purpose, a number keeps them that many seconds.
        early_refresh: Probabilistic early refresh (XFetch): ``True`` (beta 1.0), a float
            beta (higher refreshes earlier), or ``False``.
        lock: ``"local"`` single-flight, ``"distributed"`` (also across processes through a
            store that supports locks; otherwise local), or ``None`` (no coalescing).
        store_if: Called with each loaded value; a false answer returns the value without
            storing it.
    """

    __slots__ = ("beta", "grace", "lock", "stale_ttl", "store_if", "ttl")

    def __init__(
        self,
        *,
        ttl: float | None = None,
        stale_ttl: float | None = None,
        stale_if_error: bool | float = False,
        early_refresh: bool | float = True,
        lock: LockMode = "local",
        store_if: Callable[[Any], bool] | None = None,
    ) -> None:
        self.ttl = check_ttl(ttl)
        self.stale_ttl = check_ttl(stale_ttl, "stale_ttl")
        if stale_if_error is True or stale_if_error is False:
            self.grace: float | Literal[True] | None = True if stale_if_error else None
        else:
            self.grace = check_ttl(stale_if_error, "stale_if_error")
        if early_refresh is True:
            self.beta = 1.0
        elif early_refresh is False:
            self.beta = 0.0
        else:
            beta = check_ttl(early_refresh, "early_refresh")
            assert beta is not None
            self.beta = beta
        if lock not in _LOCK_MODES:
            raise ConfigurationError(f"lock must be 'local', 'distributed' or None, got {lock!r}")
        self.lock = lock
        if store_if is not None and not callable(store_if):
            raise ConfigurationError("store_if must be a callable taking the loaded value")
        self.store_if = store_if

    def physical_ttl(self, ttl: float | None) -> tuple[float | None, float | None]:
        """Return ``(fresh_ttl, keep_ttl)``: how long the value is fresh, and kept."""
        if ttl is None:
            return None, None
        extra = self.stale_ttl or 0.0
        if self.grace is True:
            extra = max(extra, ttl)
        elif self.grace is not None:
            extra = max(extra, self.grace)
        return ttl, ttl + extra
