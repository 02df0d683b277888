"""``@cached``: cache async and sync functions, methods and classmethods."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, Generic, ParamSpec, TypeVar, overload

from .._exceptions import ConfigurationError
from ._cache import Cache, LoadPolicy, LockMode
from ._keys import CallKeyBuilder
from ._memory import MemoryStore

__all__ = [
    "AsyncCachedFunction",
    "CachedFunction",
    "cached",
    "get_default_cache",
    "set_default_cache",
]

P = ParamSpec("P")
R = TypeVar("R")

_default_cache: Cache | None = None


def get_default_cache() -> Cache:
    """Return the module default cache (an in-memory cache created on first use)."""
    global _default_cache
    if _default_cache is None:
        _default_cache = Cache(MemoryStore())
    return _default_cache


def set_default_cache(cache: Cache) -> None:
    """Make ``cache`` the one ``@cached`` uses when given no ``cache=``."""
    global _default_cache
    if not isinstance(cache, Cache):
        raise ConfigurationError(f"set_default_cache needs a Cache, got {type(cache).__name__}")
    _default_cache = cache


class CachedFunction(Generic[P, R]):
    """A function whose results are cached; made by :func:`cached`.

    Calling it behaves like the function (a coroutine function stays one, a plain function
    stays sync). ``invalidate(*args, **kwargs)`` drops the entry for those arguments and
    ``refresh(*args, **kwargs)`` recomputes and stores it; both are coroutines for async
    functions and plain calls for sync ones. ``key_for(*args, **kwargs)`` shows the key.
    """

    def __init__(
        self,
        func: Callable[P, R],
        *,
        cache: Cache | None,
        key: str | None,
        key_builder: Callable[..., str] | None,
        tags: Iterable[str],
        policy: LoadPolicy,
        condition: Callable[..., bool] | None,
    ) -> None:
        self._binding: str | None = None
        target: Any = func
        if isinstance(target, classmethod | staticmethod):
            self._binding = "class" if isinstance(target, classmethod) else "static"
            target = target.__func__
        func = target
        functools.update_wrapper(self, func)
        self.__wrapped__ = func
        self._func: Callable[..., Any] = func
        self._is_async = inspect.iscoroutinefunction(func)
        self._keys = CallKeyBuilder(
            func,
            template=key,
            skip_first={"class": True, "static": False}.get(self._binding or ""),
        )
        self._key_builder = key_builder
        if isinstance(tags, str):
            raise ConfigurationError("tags must be a list of templates, not a single str")
        self._tags = tuple(tags)
        for tag in self._tags:
            self._keys._check_template(tag)
        self._policy = policy
        self._condition = condition
        self._cache = cache
        if cache is not None and not self._is_async:
            cache._sync_store()  # raises ConfigurationError now rather than at first call

    def __repr__(self) -> str:
        return f"<cached {self._keys._prefix}>"

    @property
    def cache(self) -> Cache:
        """The cache this function uses now."""
        return self._cache if self._cache is not None else get_default_cache()

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if self._binding == "static":
            return self
        bound_type = _BoundAsync if self._is_async else _Bound
        if self._binding == "class":
            return bound_type(self, owner if owner is not None else type(instance))
        if instance is None:
            return self
        return bound_type(self, instance)

    # -- keys ------------------------------------------------------------------------------

    def _key_and_tags(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, list[str]]:
        if self._key_builder is not None:
            key = self._key_builder(self._func, args, kwargs)
            if not self._tags:
                return key, []
            bound = self._keys.bind(args, kwargs)
        else:
            bound = self._keys.bind(args, kwargs)
            key = self._keys.key_from(bound)
        return key, [tag.format(**bound) for tag in self._tags]

    def key_for(self, *args: Any, **kwargs: Any) -> str:
        """Return the cache key a call with these arguments uses."""
        return self._key_and_tags(args, kwargs)[0]

    # -- calls -------------------------------------------------------------------------

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._call(args, kwargs)  # type: ignore[no-any-return]

    def __new__(cls, func: Callable[..., Any], **options: Any) -> CachedFunction[P, R]:
        # A cached coroutine function must still look like one to frameworks (Starlette,
        # FastAPI) that check inspect.iscoroutinefunction(obj) or (obj.__call__).
        target = getattr(func, "__func__", func)
        if cls is CachedFunction and inspect.iscoroutinefunction(target):
            cls = AsyncCachedFunction
        return super().__new__(cls)

    def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any], refresh: bool = False) -> Any:
        # One body for calls and refreshes (a refresh loads now, whatever is cached, and
        # ignores ``condition``); a flag rather than a shared helper keeps a call at one
        # Python frame before the cache.
        if not refresh and self._condition is not None and not self._condition(*args, **kwargs):
            return self._func(*args, **kwargs)
        key, tags = self._key_and_tags(args, kwargs)
        cache = self.cache
        full = cache._key(key)
        checked_tags = cache._tags(tags)
        func = self._func

        def loader() -> Any:
            return func(*args, **kwargs)

        if self._is_async:
            load = cache._load_now if refresh else cache._get_or_load
        else:
            load = cache._refresh_sync if refresh else cache._get_or_load_sync
        return load(full, loader, self._policy, checked_tags)

    def _invalidate(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        key = self._key_and_tags(args, kwargs)[0]
        cache = self.cache
        if self._is_async:
            return cache.delete(key)
        return cache._sync_store().delete_entry(cache._key(key))

    def invalidate(self, *args: Any, **kwargs: Any) -> Any:
        """Drop the cached result for these arguments (await it for async functions)."""
        return self._invalidate(args, kwargs)

    def refresh(self, *args: Any, **kwargs: Any) -> Any:
        """Recompute and store the result for these arguments, and return it."""
        return self._call(args, kwargs, refresh=True)


class AsyncCachedFunction(CachedFunction[P, R]):
    """The :class:`CachedFunction` of a coroutine function: calling it is a coroutine."""

    def __init__(self, func: Callable[P, R], **options: Any) -> None:
        super().__init__(func, **options)
        mark = getattr(inspect, "markcoroutinefunction", None)
        if mark is not None:  # Python 3.12+: inspect.iscoroutinefunction(self) is True
            mark(self)

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:  # type: ignore[override]
        return await self._call(args, kwargs)


class _Bound:
    """A :class:`CachedFunction` bound to an instance or class."""

    __slots__ = ("_function", "_self")

    def __init__(self, function: CachedFunction[Any, Any], bound_to: Any) -> None:
        self._function = function
        self._self = bound_to

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._function._call((self._self, *args), kwargs)

    def invalidate(self, *args: Any, **kwargs: Any) -> Any:
        return self._function._invalidate((self._self, *args), kwargs)

    def refresh(self, *args: Any, **kwargs: Any) -> Any:
        return self._function._call((self._self, *args), kwargs, refresh=True)

    def key_for(self, *args: Any, **kwargs: Any) -> str:
        return self._function.key_for(self._self, *args, **kwargs)

    @property
    def __wrapped__(self) -> Any:
        return self._function.__wrapped__

    def __repr__(self) -> str:
        return f"<bound {self._function!r} of {self._self!r}>"


class _BoundAsync(_Bound):
    """A bound async cached function: calling it is a coroutine."""

    __slots__ = ()

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return await self._function._call((self._self, *args), kwargs)


@overload
def cached(func: Callable[P, R], /) -> CachedFunction[P, R]: ...


@overload
def cached(
    *,
    ttl: float | None = None,
    key: str | None = None,
    tags: Iterable[str] = (),
    cache: Cache | None = None,
    stale_ttl: float | None = None,
    stale_if_error: bool | float = False,
    early_refresh: bool | float = True,
    lock: LockMode = "local",
    condition: Callable[..., bool] | None = None,
    unless: Callable[[Any], bool] | None = None,
    key_builder: Callable[..., str] | None = None,
) -> Callable[[Callable[P, R]], CachedFunction[P, R]]: ...


def cached(
    func: Callable[P, R] | None = None,
    /,
    *,
    ttl: float | None = None,
    key: str | None = None,
    tags: Iterable[str] = (),
    cache: Cache | None = None,
    stale_ttl: float | None = None,
    stale_if_error: bool | float = False,
    early_refresh: bool | float = True,
    lock: LockMode = "local",
    condition: Callable[..., bool] | None = None,
    unless: Callable[[Any], bool] | None = None,
    key_builder: Callable[..., str] | None = None,
) -> CachedFunction[P, R] | Callable[[Callable[P, R]], CachedFunction[P, R]]:
    """Cache a function's results: ``async def`` and plain functions, methods, classmethods.

    Args:
        ttl: Freshness in seconds (default: the cache's ``default_ttl``).
        key: A template filled with the call's arguments by name, e.g. ``"user:{user_id}"``.
            By default the key is ``module:qualname(arg=value,...)`` built from canonical
            argument forms, the same in every process; ``self``/``cls`` are left out.
        tags: Tag templates, filled like ``key`` (``["user:{user_id}"]``).
        cache: The cache to use (default: :func:`get_default_cache` at call time).
            A sync function needs a MemoryStore-backed cache.
        stale_ttl: Stale-while-revalidate window (see :meth:`Cache.get_or_set`).
        stale_if_error: Serve stale values when the function raises.
        early_refresh: Probabilistic early refresh (XFetch).
        lock: ``"local"``, ``"distributed"`` or ``None`` (see :meth:`Cache.get_or_set`).
        condition: Called with the call's arguments; false bypasses the cache entirely.
        unless: Called with the result; true returns it without caching it.
        key_builder: ``(func, args, kwargs) -> str`` replacing the default key.

    Raises:
        ConfigurationError: A bad option, a key template naming an unknown parameter,
            or a sync function with a cache whose store has no sync path.

    Example:
        >>> @cached(ttl=60, key="user:{user_id}", tags=["user:{user_id}"])
        ... async def get_user(user_id: int) -> dict:
        ...     return {"id": user_id}
    """
    if unless is not None and not callable(unless):
        raise ConfigurationError("unless must be a callable taking the result")
    if condition is not None and not callable(condition):
        raise ConfigurationError("condition must be a callable taking the call's arguments")
    if key is not None and not isinstance(key, str):
        raise ConfigurationError(f"key must be a template str, got {type(key).__name__}")
    if cache is not None and not isinstance(cache, Cache):
        raise ConfigurationError(f"cache must be a Cache, got {type(cache).__name__}")
    policy = LoadPolicy(
        ttl=ttl,
        stale_ttl=stale_ttl,
        stale_if_error=stale_if_error,
        early_refresh=early_refresh,
        lock=lock,
        store_if=None if unless is None else (lambda value: not unless(value)),
    )

    def decorate(function: Callable[P, R]) -> CachedFunction[P, R]:
        return CachedFunction(
            function,
            cache=cache,
            key=key,
            key_builder=key_builder,
            tags=tags,
            policy=policy,
            condition=condition,
        )

    if func is not None:
        return decorate(func)
    return decorate
