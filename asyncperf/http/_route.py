"""Per-route overrides: the ``cache_policy`` decorator and what it attaches."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from .._exceptions import ConfigurationError
from ..cache.internal import check_ttl

__all__ = ["ATTRIBUTE", "RoutePolicy", "cache_policy", "route_policy_of"]

ATTRIBUTE: Final = "__asyncperf_cache_policy__"
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """How the response cache treats one route's responses.

    Attributes:
        ttl: Freshness lifetime in this cache, replacing what the response says (for
            heuristically cacheable statuses). ``no-store``, ``private``, ``no-cache``,
            ``Authorization`` and ``Set-Cookie`` rules still apply. The Cache-Control
            sent downstream is unchanged.
        stale_while_revalidate: Seconds a stale response may be served while one
            revalidation runs, when the response does not say.
        stale_if_error: Seconds a stale response may be served when the app fails,
            when the response does not say.
        tags: Tags for invalidation; ``{name}`` placeholders are filled from the route's
            path parameters (``"user:{user_id}"``).
        enabled: ``False`` never stores or serves this route from the cache.
        transcode: Override of the cache's ``transcode`` option for this route
            (``False``: keep the app's content coding and ``Vary`` as sent).
    """

    ttl: float | None = None
    stale_while_revalidate: float | None = None
    stale_if_error: float | None = None
    tags: tuple[str, ...] = ()
    enabled: bool = True
    transcode: bool | None = None

    def expand_tags(self, params: Mapping[str, Any] | None) -> tuple[str, ...]:
        """Return the tags with ``{name}`` placeholders filled from ``params``."""
        if not self.tags:
            return ()
        params = params or {}  # a RequestView built with params=None

        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            return str(params[name]) if name in params else match.group(0)

        return tuple(_PLACEHOLDER.sub(fill, tag) for tag in self.tags)


def cache_policy(
    ttl: float | None = None,
    *,
    stale_while_revalidate: float | None = None,
    stale_if_error: float | None = None,
    tags: Iterable[str] = (),
    enabled: bool = True,
    transcode: bool | None = None,
) -> Callable[[F], F]:
    """Attach response-cache options to a route handler (Starlette, FastAPI or aiohttp).

    The handler is returned unchanged (no wrapper), so framework introspection of its
    signature keeps working, and the decorator may sit above or below the route
    decorator.

    Args:
        ttl: Freshness lifetime in seconds for this route, overriding the response's
            own (the header sent downstream is unchanged).
        stale_while_revalidate: Default stale-while-revalidate window in seconds.
        stale_if_error: Default stale-if-error window in seconds.
        tags: Invalidation tags; ``{param}`` placeholders take path parameters.
        enabled: ``False`` keeps this route out of the cache entirely.
        transcode: ``False`` stores and serves this route's bodies as the app coded
            them, ``Vary`` untouched; ``None`` follows the cache's option.

    Returns:
        A decorator that records the policy on the handler.

    Raises:
        ConfigurationError: A bad number of seconds or tag.

    Example:
        >>> @cache_policy(ttl=60, tags=["user:{user_id}"])
        ... async def get_user(request): ...
    """
    if isinstance(tags, str):
        raise ConfigurationError(f"tags must be a list of str, not a single str ({tags!r})")
    checked_tags = tuple(tags)
    for tag in checked_tags:
        if not isinstance(tag, str) or not tag:
            raise ConfigurationError(f"every tag must be a non-empty str, got {tag!r}")
    policy = RoutePolicy(
        ttl=check_ttl(ttl),
        stale_while_revalidate=check_ttl(stale_while_revalidate, "stale_while_revalidate"),
        stale_if_error=check_ttl(stale_if_error, "stale_if_error"),
        tags=checked_tags,
        enabled=bool(enabled),
        transcode=None if transcode is None else bool(transcode),
    )

    def decorate(handler: F) -> F:
        setattr(handler, ATTRIBUTE, policy)
        _POLICIES.clear()  # it, or a handler wrapping it, may have been seen without
        return handler

    return decorate


# Handlers seen, with their policy (or None): a miss asks for its route's on every request.
# Emptied whenever cache_policy decorates a handler; bounded, as handlers are few.
_POLICIES: dict[object, RoutePolicy | None] = {}
_POLICY_SLOTS: Final = 1024


def route_policy_of(handler: object) -> RoutePolicy | None:
    """Return the policy attached to ``handler`` (or its wrapped function), if any."""
    try:
        return _POLICIES[handler]
    except (KeyError, TypeError):  # not seen yet, or unhashable
        pass
    policy = _attached(handler)
    if len(_POLICIES) < _POLICY_SLOTS:
        try:
            _POLICIES[handler] = policy
        except TypeError:
            pass
    return policy


def _attached(handler: object) -> RoutePolicy | None:
    seen = 0
    while handler is not None and seen < 8:
        policy = getattr(handler, ATTRIBUTE, None)
        if isinstance(policy, RoutePolicy):
            return policy
        handler = getattr(handler, "__wrapped__", None)
        seen += 1
    return None
