"""Behaviour of ``@cached`` on coroutine functions, plain functions, methods and more."""

from __future__ import annotations

import inspect
import math
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import pytest

from asyncperf import (
    BaseStore,
    Cache,
    ConfigurationError,
    Entry,
    MemoryStore,
    cached,
    get_default_cache,
    set_default_cache,
)
from asyncperf.cache import _decorators

from ..conftest import FakeClock


class DictStore(BaseStore):
    """A minimal async-only store: no sync path, so sync functions cannot use it."""

    backend_name = "dict"

    def __init__(self) -> None:
        self.clock = time.monotonic
        self.data: dict[str, Entry] = {}

    async def get(self, key: str) -> Entry | None:
        return self.data.get(key)

    async def set(self, key: str, entry: Entry, ttl: float | None) -> None:
        self.data[key] = entry

    async def delete(self, key: str) -> bool:
        return self.data.pop(key, None) is not None

    async def invalidate_tags(self, tags: Sequence[str]) -> int:
        return 0

    async def clear(self, prefix: str = "") -> int:
        doomed = [key for key in self.data if key.startswith(prefix)]
        for key in doomed:
            del self.data[key]
        return len(doomed)


@cached
async def add(x: int, y: int = 2) -> int:
    """Module-level function for exact default-key assertions (key_for touches no cache)."""
    return x + y


@cached
def concat(a: Any, *rest: Any, **options: Any) -> str:
    return f"{a}{rest}{options}"


@pytest.fixture
def cache() -> Cache:
    return Cache(MemoryStore())


@pytest.fixture
def restore_default_cache() -> Iterator[None]:
    saved = _decorators._default_cache
    yield
    _decorators._default_cache = saved


async def wait_until_coalesced(cache: Cache, count: int) -> None:
    """Yield to the event loop until ``count`` callers wait on a running load."""
    for _ in range(1_000):
        if cache.statistics().coalesced >= count:
            return
        await anyio.sleep(0)


# -- async and sync functions -------------------------------------------------------------


async def test_async_function_loads_once_per_arguments(cache: Cache) -> None:
    calls: list[int] = []

    @cached(cache=cache)
    async def square(x: int) -> int:
        calls.append(x)
        return x * x

    assert await square(3) == 9
    assert await square(3) == 9
    assert await square(4) == 16
    assert await square(3) == 9
    assert calls == [3, 4]
    stats = cache.statistics()
    assert (stats.hits, stats.misses, stats.loads, stats.sets) == (2, 2, 2, 2)


async def test_async_function_result_is_visible_through_the_cache(cache: Cache) -> None:
    @cached(cache=cache, key="sq:{x}")
    async def square(x: int) -> int:
        return x * x

    assert await square(5) == 25
    assert await cache.get("sq:5") == 25


def test_cached_async_function_is_still_a_coroutine_function(cache: Cache) -> None:
    # Frameworks (FastAPI, Starlette, pytest, anyio.to_thread users) decide whether to
    # await a callable with inspect.iscoroutinefunction.
    @cached(cache=cache)
    async def fetch(x: int) -> int:
        return x

    # Python 3.12+ can mark any callable; on 3.11 frameworks check __call__ as well.
    if sys.version_info >= (3, 12):
        assert inspect.iscoroutinefunction(fetch)
    assert inspect.iscoroutinefunction(fetch.__call__)


def test_sync_function_stays_sync_and_caches(cache: Cache) -> None:
    calls: list[str] = []

    @cached(cache=cache)
    def parse(text: str) -> dict[str, str]:
        calls.append(text)
        return {"text": text}

    assert not inspect.iscoroutinefunction(parse)
    first = parse("a")
    assert not inspect.isawaitable(first)
    assert first == {"text": "a"}
    assert parse("a") is first  # a MemoryStore keeps the very object
    assert parse("b") == {"text": "b"}
    assert calls == ["a", "b"]
    assert cache.statistics().loads == 2


async def test_bare_decorator_uses_the_default_cache(restore_default_cache: None) -> None:
    default = Cache(MemoryStore())
    set_default_cache(default)
    calls = 0

    @cached
    async def one() -> int:
        nonlocal calls
        calls += 1
        return 1

    assert one.cache is default
    assert await one() == 1
    assert await one() == 1
    assert calls == 1
    assert default.statistics().loads == 1


# -- TTL ----------------------------------------------------------------------------------


async def test_ttl_expires_with_the_store_clock(clock: FakeClock) -> None:
    cache = Cache(MemoryStore(clock=clock))
    calls = 0

    @cached(ttl=10, cache=cache)
    async def value() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert await value() == 1
    clock.advance(9.5)
    assert await value() == 1
    clock.advance(0.5)  # exactly at expiry: gone
    assert await value() == 2
    clock.advance(9.9)
    assert await value() == 2
    assert calls == 2


def test_ttl_expires_for_sync_functions(clock: FakeClock) -> None:
    cache = Cache(MemoryStore(clock=clock))
    calls = 0

    @cached(ttl=5, cache=cache)
    def value() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert value() == 1
    clock.advance(4.9)
    assert value() == 1
    clock.advance(0.1)
    assert value() == 2
    assert calls == 2


async def test_default_ttl_of_the_cache_applies(clock: FakeClock) -> None:
    cache = Cache(MemoryStore(clock=clock), default_ttl=3)
    calls = 0

    @cached(cache=cache)
    async def value() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert await value() == 1
    clock.advance(2.9)
    assert await value() == 1
    clock.advance(0.1)
    assert await value() == 2


@pytest.mark.parametrize(
    "ttl",
    [0, -1, -0.5, math.nan, math.inf, -math.inf, True, False, "5", [5]],
    ids=repr,
)
def test_bad_ttl_is_refused_at_decoration(ttl: Any) -> None:
    with pytest.raises(ConfigurationError, match="ttl"):
        cached(ttl=ttl)


@pytest.mark.parametrize("stale_ttl", [0, -1, math.nan, math.inf, True, "5"], ids=repr)
def test_bad_stale_ttl_is_refused_at_decoration(stale_ttl: Any) -> None:
    with pytest.raises(ConfigurationError, match="stale_ttl"):
        cached(ttl=1, stale_ttl=stale_ttl)


@pytest.mark.parametrize(
    "options",
    [
        {"lock": "global"},
        {"unless": 5},
        {"condition": "yes"},
        {"key": 5},
        {"cache": object()},
        {"early_refresh": -1},
    ],
    ids=lambda options: next(iter(options)),
)
def test_bad_options_are_refused_at_decoration(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        cached(**options)


# -- keys, templates, tags ----------------------------------------------------------------


def test_default_key_format() -> None:
    assert add.key_for(1, 2) == f"{__name__}:add(x=1,y=2)"
    assert add.key_for(1) == f"{__name__}:add(x=1,y=2)"
    assert add.key_for(-3, y=10) == f"{__name__}:add(x=-3,y=10)"


def test_default_key_format_with_varargs_and_kwargs() -> None:
    key = concat.key_for("a", 1, (2,), z=[1], b="x")
    assert key == f"{__name__}:concat(a='a',*(1,(2)),b='x',z=[1])"
    assert concat.key_for("a") == f"{__name__}:concat(a='a',*())"


def test_default_key_of_a_local_function_uses_its_qualname(cache: Cache) -> None:
    @cached(cache=cache)
    async def local(name: str) -> str:
        return name

    expected = f"{__name__}:test_default_key_of_a_local_function_uses_its_qualname"
    assert local.key_for("n") == expected + ".<locals>.local(name='n')"


async def test_defaults_are_bound_into_the_key(cache: Cache) -> None:
    calls: list[tuple[int, int]] = []

    @cached(cache=cache)
    async def f(x: int, y: int = 2) -> int:
        calls.append((x, y))
        return x + y

    keys = {f.key_for(1), f.key_for(1, 2), f.key_for(1, y=2), f.key_for(x=1), f.key_for(y=2, x=1)}
    assert len(keys) == 1
    assert await f(1) == 3
    assert await f(1, y=2) == 3
    assert await f(x=1) == 3
    assert await f(1, 2) == 3
    assert await f(y=2, x=1) == 3
    assert calls == [(1, 2)]
    assert await f(1, 3) == 4
    assert calls == [(1, 2), (1, 3)]


async def test_keyword_order_does_not_matter(cache: Cache) -> None:
    calls = 0

    @cached(cache=cache)
    async def f(*, a: int, b: int, c: int = 0) -> int:
        nonlocal calls
        calls += 1
        return a * 100 + b * 10 + c

    assert f.key_for(a=1, b=2) == f.key_for(b=2, a=1) == f.key_for(c=0, b=2, a=1)
    assert await f(a=1, b=2) == 120
    assert await f(b=2, a=1) == 120
    assert calls == 1


async def test_argument_types_are_part_of_the_default_key(cache: Cache) -> None:
    @cached(cache=cache)
    async def f(x: Any) -> str:
        return type(x).__name__

    assert await f(1) == "int"
    assert await f("1") == "str"
    assert await f(1.0) == "float"
    assert await f(True) == "bool"
    assert await f((1,)) == "tuple"
    assert await f([1]) == "list"


async def test_key_template(cache: Cache) -> None:
    calls: list[int] = []

    @cached(cache=cache, key="user:{user_id}")
    async def get_user(user_id: int, verbose: bool = False) -> dict[str, int]:
        calls.append(user_id)
        return {"id": user_id}

    assert get_user.key_for(7) == "user:7"
    assert get_user.key_for(user_id=7, verbose=True) == "user:7"
    assert await get_user(7) == {"id": 7}
    assert await cache.get("user:7") == {"id": 7}
    # the template ignores `verbose`, so both calls share the entry
    assert await get_user(7, verbose=True) == {"id": 7}
    assert calls == [7]


def test_key_template_with_attribute_and_index_fields(cache: Cache) -> None:
    @cached(cache=cache, key="{user.name}:{ids[0]}")
    async def f(user: Any, ids: list[int]) -> None:
        return None

    class User:
        name = "ann"

    assert f.key_for(User(), [4, 5]) == "ann:4"


@pytest.mark.parametrize("template", ["user:{uid}", "{0}", "x:{}", "{self}"])
def test_unknown_template_field_is_refused(cache: Cache, template: str) -> None:
    async def get_user(user_id: int) -> None:
        return None

    with pytest.raises(ConfigurationError, match="not a parameter"):
        cached(cache=cache, key=template)(get_user)


def test_unknown_tag_template_field_is_refused(cache: Cache) -> None:
    async def get_user(user_id: int) -> None:
        return None

    with pytest.raises(ConfigurationError, match="not a parameter"):
        cached(cache=cache, tags=["user:{id}"])(get_user)


def test_tags_as_a_single_str_are_refused(cache: Cache) -> None:
    async def get_user(user_id: int) -> None:
        return None

    with pytest.raises(ConfigurationError, match="single str"):
        cached(cache=cache, tags="user:{user_id}")(get_user)


async def test_tags_and_invalidate_tags(cache: Cache) -> None:
    calls: list[int] = []

    @cached(cache=cache, key="user:{user_id}", tags=["user:{user_id}", "users"])
    async def get_user(user_id: int) -> dict[str, int]:
        calls.append(user_id)
        return {"id": user_id, "version": calls.count(user_id)}

    assert await get_user(1) == {"id": 1, "version": 1}
    assert await get_user(2) == {"id": 2, "version": 1}
    assert await cache.invalidate_tags("user:1") == 1
    assert await cache.invalidate_tags("user:1") == 0
    assert await get_user(2) == {"id": 2, "version": 1}
    assert await get_user(1) == {"id": 1, "version": 2}
    assert calls == [1, 2, 1]
    assert await cache.invalidate_tags("users") == 2
    assert await get_user(2) == {"id": 2, "version": 2}
    assert calls == [1, 2, 1, 2]


def test_tags_work_for_sync_functions(cache: Cache) -> None:
    calls: list[int] = []

    @cached(cache=cache, tags=["item:{n}"])
    def item(n: int) -> int:
        calls.append(n)
        return n

    assert item(1) == 1
    assert item(1) == 1
    assert anyio.run(cache.invalidate_tags, "item:1") == 1
    assert item(1) == 1
    assert calls == [1, 1]


async def test_tags_in_a_namespace_are_prefixed(cache: Cache) -> None:
    view = cache.namespace("ns")
    calls = 0

    @cached(cache=view, key="k:{n}", tags=["t:{n}"])
    async def f(n: int) -> int:
        nonlocal calls
        calls += 1
        return n

    await f(1)
    assert await cache.get("ns:k:1") == 1
    assert await cache.invalidate_tags("t:1") == 0  # the root cache's tag is another tag
    assert await view.invalidate_tags("t:1") == 1
    await f(1)
    assert calls == 2


async def test_key_builder_replaces_the_default_key(cache: Cache) -> None:
    seen: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = []

    def build(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        seen.append((func, args, kwargs))
        return f"kb:{args[0]}:{kwargs.get('flag', False)}"

    calls = 0

    @cached(cache=cache, key_builder=build, tags=["n:{n}"])
    async def f(n: int, flag: bool = False) -> int:
        nonlocal calls
        calls += 1
        return n * 2

    assert f.key_for(4) == "kb:4:False"
    assert seen[0][0] is f.__wrapped__
    assert seen[0][1:] == ((4,), {})
    assert await f(4) == 8
    assert await f(4) == 8
    assert await f(4, flag=True) == 8
    assert calls == 2
    assert await cache.get("kb:4:False") == 8
    assert await cache.get("kb:4:True") == 8
    # tag templates are still filled from the bound arguments
    assert await cache.invalidate_tags("n:4") == 2


# -- invalidate, refresh ------------------------------------------------------------------


async def test_invalidate_is_awaitable_for_async_functions(cache: Cache) -> None:
    calls = 0

    @cached(cache=cache)
    async def f(x: int, y: int = 0) -> int:
        nonlocal calls
        calls += 1
        return calls

    assert await f(1) == 1
    pending = f.invalidate(x=1, y=0)  # same key as f(1), spelled differently
    assert inspect.isawaitable(pending)
    assert await pending is True
    assert await f.invalidate(1) is False
    assert await f(1) == 2
    assert calls == 2


def test_invalidate_is_plain_for_sync_functions(cache: Cache) -> None:
    calls = 0

    @cached(cache=cache, key="v:{x}")
    def f(x: int) -> int:
        nonlocal calls
        calls += 1
        return calls

    assert f(1) == 1
    assert f(1) == 1
    assert f.invalidate(1) is True
    assert f.invalidate(1) is False
    assert f(1) == 2
    assert calls == 2


async def test_refresh_recomputes_and_stores(cache: Cache) -> None:
    calls = 0

    @cached(cache=cache, key="r:{x}")
    async def f(x: int) -> tuple[int, int]:
        nonlocal calls
        calls += 1
        return (x, calls)

    assert await f(1) == (1, 1)
    assert await f(1) == (1, 1)
    assert await f.refresh(1) == (1, 2)
    assert await cache.get("r:1") == (1, 2)
    assert await f(1) == (1, 2)
    assert calls == 2
    # refresh of an uncached call stores it too
    assert await f.refresh(2) == (2, 3)
    assert await f(2) == (2, 3)
    assert calls == 3


def test_refresh_recomputes_and_stores_for_sync_functions(cache: Cache) -> None:
    calls = 0

    @cached(cache=cache, key="r:{x}")
    def f(x: int) -> int:
        nonlocal calls
        calls += 1
        return calls

    assert f(1) == 1
    result = f.refresh(1)
    assert not inspect.isawaitable(result)
    assert result == 2
    assert f(1) == 2
    assert calls == 2


# -- methods, classmethods, staticmethods -------------------------------------------------


async def test_methods_leave_self_out_of_the_key(cache: Cache) -> None:
    class Repo:
        def __init__(self) -> None:
            self.calls: list[int] = []

        @cached(cache=cache)
        async def get(self, item_id: int) -> str:
            self.calls.append(item_id)
            return f"item-{item_id}"

    first, second = Repo(), Repo()
    assert await first.get(1) == "item-1"
    assert await second.get(1) == "item-1"  # shares first's entry
    assert await second.get(2) == "item-2"
    assert first.calls == [1]
    assert second.calls == [2]
    qualname = f"{__name__}:test_methods_leave_self_out_of_the_key.<locals>.Repo.get"
    assert first.get.key_for(1) == f"{qualname}(item_id=1)"
    assert second.get.key_for(item_id=1) == first.get.key_for(1)
    assert await first.get.invalidate(1) is True
    assert await second.get(1) == "item-1"
    assert second.calls == [2, 1]
    # called through the class with an explicit instance
    assert await Repo.get(first, 2) == "item-2"
    assert first.calls == [1]


async def test_method_template_sees_self_and_other_arguments(cache: Cache) -> None:
    class Repo:
        def __init__(self, name: str) -> None:
            self.name = name
            self.calls = 0

        @cached(cache=cache, key="{self.name}:{item_id}", tags=["{self.name}"])
        async def get(self, item_id: int) -> str:
            self.calls += 1
            return f"{self.name}-{item_id}"

    a, b = Repo("a"), Repo("b")
    assert a.get.key_for(3) == "a:3"
    assert await a.get(3) == "a-3"
    assert await b.get(3) == "b-3"
    assert await a.get(3) == "a-3"
    assert (a.calls, b.calls) == (1, 1)
    assert await cache.invalidate_tags("a") == 1
    assert await b.get(3) == "b-3"
    assert await a.get(3) == "a-3"
    assert (a.calls, b.calls) == (2, 1)
    assert await a.get.refresh(3) == "a-3"
    assert a.calls == 3


def test_sync_methods(cache: Cache) -> None:
    class Parser:
        calls = 0

        @cached(cache=cache)
        def parse(self, text: str) -> list[str]:
            type(self).calls += 1
            return text.split(",")

    assert Parser().parse("a,b") == ["a", "b"]
    assert Parser().parse("a,b") == ["a", "b"]
    assert Parser.calls == 1
    assert Parser().parse.invalidate("a,b") is True
    assert Parser().parse("a,b") == ["a", "b"]
    assert Parser.calls == 2


async def test_classmethod_with_cached_above(cache: Cache) -> None:
    class Repo:
        calls = 0

        @cached(cache=cache, key="repo:{name}")
        @classmethod
        async def load(cls, name: str) -> str:
            cls.calls += 1
            return f"{cls.__name__}:{name}"

    assert await Repo.load("x") == "Repo:x"
    assert await Repo().load("x") == "Repo:x"
    assert Repo.calls == 1
    assert Repo.load.key_for("x") == "repo:x"
    assert await Repo.load.invalidate("x") is True
    assert await Repo.load.refresh("x") == "Repo:x"
    assert Repo.calls == 2


async def test_classmethod_with_cached_below(cache: Cache) -> None:
    class Repo:
        calls = 0

        @classmethod
        @cached(cache=cache)
        async def load(cls, name: str) -> str:
            cls.calls += 1
            return f"{cls.__name__}:{name}"

    assert await Repo.load("x") == "Repo:x"
    assert await Repo().load("x") == "Repo:x"
    assert Repo.calls == 1
    qualname = f"{__name__}:test_classmethod_with_cached_below.<locals>.Repo.load"
    assert Repo.load.key_for("x") == f"{qualname}(name='x')"


def test_sync_classmethod(cache: Cache) -> None:
    class Config:
        calls = 0

        @cached(cache=cache)
        @classmethod
        def value(cls, name: str) -> str:
            cls.calls += 1
            return name.upper()

    assert Config.value("a") == "A"
    assert Config().value("a") == "A"
    assert Config.calls == 1


async def test_staticmethod(cache: Cache) -> None:
    class Math:
        calls = 0

        @cached(cache=cache, key="double:{x}")
        @staticmethod
        async def double(x: int) -> int:
            Math.calls += 1
            return 2 * x

    assert await Math.double(2) == 4
    assert await Math().double(2) == 4
    assert await Math.double(3) == 6
    assert Math.calls == 2
    assert Math.double.key_for(2) == "double:2"
    assert await cache.get("double:3") == 6


async def test_staticmethod_default_key(cache: Cache) -> None:
    class Math:
        @cached(cache=cache)
        @staticmethod
        async def add(x: int, y: int) -> int:
            return x + y

    qualname = f"{__name__}:test_staticmethod_default_key.<locals>.Math.add"
    assert Math.add.key_for(1, 2) == f"{qualname}(x=1,y=2)"
    assert await Math().add(1, 2) == 3


def test_first_parameter_named_cls_is_kept_when_not_a_method(cache: Cache) -> None:
    # Only a bound self/cls may be left out of the key: here `cls` is a real argument,
    # and leaving it out serves int's result for str.
    @cached(cache=cache)
    def describe(cls: type, n: int) -> str:
        return f"{cls.__name__}:{n}"

    class Factory:
        @cached(cache=cache)
        @staticmethod
        def make(cls: type, n: int) -> str:
            return f"{cls.__name__}:{n}"

    assert describe.key_for(int, 1) != describe.key_for(str, 1)
    assert Factory.make.key_for(int, 2) != Factory.make.key_for(str, 2)
    assert describe(int, 1) == "int:1"
    assert describe(str, 1) == "str:1"
    assert Factory.make(int, 2) == "int:2"
    assert Factory.make(str, 2) == "str:2"


# -- condition, unless ----------------------------------------------------------------------


async def test_condition_false_bypasses_the_cache(cache: Cache) -> None:
    calls: list[int] = []
    seen: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def only_positive(x: int, *, scale: int = 1) -> bool:
        seen.append(((x,), {"scale": scale}))
        return x > 0

    @cached(cache=cache, condition=only_positive)
    async def f(x: int, *, scale: int = 1) -> int:
        calls.append(x)
        return x * scale

    assert await f(-1) == -1
    assert await f(-1) == -1
    assert await f(-1, scale=3) == -3
    assert calls == [-1, -1, -1]
    assert len(cache.store) == 0  # type: ignore[arg-type]
    assert await f(2) == 2
    assert await f(2) == 2
    assert calls == [-1, -1, -1, 2]
    assert seen[2] == ((-1,), {"scale": 3})
    stats = cache.statistics()
    assert (stats.hits, stats.misses, stats.loads) == (1, 1, 1)


def test_condition_false_bypasses_the_cache_for_sync_functions(cache: Cache) -> None:
    calls = 0

    @cached(cache=cache, condition=lambda x: x != "nocache")
    def f(x: str) -> int:
        nonlocal calls
        calls += 1
        return calls

    assert f("nocache") == 1
    assert f("nocache") == 2
    assert f("ok") == 3
    assert f("ok") == 3


async def test_unless_true_skips_storing(cache: Cache) -> None:
    calls: list[int] = []
    results: list[Any] = []

    def is_empty(result: Any) -> bool:
        results.append(result)
        return result is None

    @cached(cache=cache, key="u:{x}", unless=is_empty)
    async def find(x: int) -> dict[str, int] | None:
        calls.append(x)
        return None if x < 0 else {"x": x}

    assert await find(-1) is None
    assert await find(-1) is None
    assert not await cache.exists("u:-1")
    assert await find(5) == {"x": 5}
    assert await find(5) == {"x": 5}
    assert await cache.get("u:5") == {"x": 5}
    assert calls == [-1, -1, 5]
    assert results == [None, None, {"x": 5}]


def test_unless_true_skips_storing_for_sync_functions(cache: Cache) -> None:
    calls = 0

    @cached(cache=cache, unless=lambda result: result % 2 == 1)
    def f() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert f() == 1  # odd: not stored
    assert f() == 2  # even: stored
    assert f() == 2
    assert calls == 2


# -- default cache -------------------------------------------------------------------------


def test_get_default_cache_is_created_once(restore_default_cache: None) -> None:
    _decorators._default_cache = None
    first = get_default_cache()
    assert isinstance(first, Cache)
    assert isinstance(first.store, MemoryStore)
    assert get_default_cache() is first


def test_set_default_cache_refuses_non_caches(restore_default_cache: None) -> None:
    with pytest.raises(ConfigurationError, match="needs a Cache"):
        set_default_cache(MemoryStore())  # type: ignore[arg-type]


async def test_default_cache_is_looked_up_at_call_time(restore_default_cache: None) -> None:
    calls = 0

    @cached(key="k:{x}")
    async def f(x: int) -> int:
        nonlocal calls
        calls += 1
        return x

    first, second = Cache(MemoryStore()), Cache(MemoryStore())
    set_default_cache(first)
    assert get_default_cache() is first
    assert f.cache is first
    assert await f(1) == 1
    assert await first.get("k:1") == 1
    set_default_cache(second)
    assert f.cache is second
    assert await f(1) == 1
    assert calls == 2
    assert await second.get("k:1") == 1
    assert await f.invalidate(1) is True
    assert await first.get("k:1") == 1


def test_sync_function_uses_the_default_cache(restore_default_cache: None) -> None:
    default = Cache(MemoryStore())
    set_default_cache(default)

    @cached(key="s:{x}")
    def f(x: int) -> int:
        return x + 1

    assert f(1) == 2
    assert anyio.run(default.get, "s:1") == 2


# -- stores without a sync path -----------------------------------------------------------


def test_sync_function_with_an_async_only_store_is_refused_at_decoration() -> None:
    cache = Cache(DictStore())

    def parse(text: str) -> str:
        return text

    with pytest.raises(ConfigurationError, match="MemoryStore"):
        cached(cache=cache)(parse)


async def test_async_function_with_an_async_only_store_works() -> None:
    store = DictStore()
    cache = Cache(store)
    calls = 0

    @cached(cache=cache, key="d:{x}")
    async def f(x: int) -> int:
        nonlocal calls
        calls += 1
        return x * 3

    assert await f(2) == 6
    assert await f(2) == 6
    assert calls == 1
    assert list(store.data) == ["d:2"]
    assert store.data["d:2"].value == 6
    assert await f.invalidate(2) is True
    assert store.data == {}


# -- single-flight, errors -----------------------------------------------------------------


async def test_concurrent_calls_share_one_load(cache: Cache) -> None:
    release = anyio.Event()
    calls = 0

    @cached(cache=cache)
    async def slow(x: int) -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return x * 10

    results: list[int] = []

    async def call() -> None:
        results.append(await slow(3))

    async with anyio.create_task_group() as group:
        for _ in range(10):
            group.start_soon(call)
        await wait_until_coalesced(cache, 9)
        calls_while_held = calls
        coalesced_while_held = cache.statistics().coalesced
        release.set()

    assert calls_while_held == 1
    assert coalesced_while_held == 9
    assert results == [30] * 10
    assert calls == 1
    assert cache.statistics().loads == 1
    assert await slow(3) == 30
    assert calls == 1


async def test_concurrent_calls_for_different_arguments_do_not_coalesce(cache: Cache) -> None:
    release = anyio.Event()
    calls: list[int] = []

    @cached(cache=cache)
    async def slow(x: int) -> int:
        calls.append(x)
        await release.wait()
        return x

    results: dict[int, int] = {}

    async def call(x: int) -> None:
        results[x] = await slow(x)

    async with anyio.create_task_group() as group:
        for x in range(4):
            group.start_soon(call, x)
        for _ in range(100):
            await anyio.sleep(0)
        release.set()

    assert sorted(calls) == [0, 1, 2, 3]
    assert results == {0: 0, 1: 1, 2: 2, 3: 3}
    assert cache.statistics().coalesced == 0


async def test_exceptions_propagate_and_are_not_cached(cache: Cache) -> None:
    calls = 0

    @cached(cache=cache)
    async def flaky(x: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise LookupError(f"boom {x}")
        return x

    with pytest.raises(LookupError, match="boom 1"):
        await flaky(1)
    assert not await cache.exists(flaky.key_for(1))
    assert await flaky(1) == 1
    assert await flaky(1) == 1
    assert calls == 2
    stats = cache.statistics()
    assert (stats.loads, stats.load_errors, stats.sets) == (2, 1, 1)


def test_exceptions_propagate_and_are_not_cached_for_sync_functions(cache: Cache) -> None:
    calls = 0

    @cached(cache=cache)
    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RuntimeError(f"attempt {calls}")
        return "ok"

    with pytest.raises(RuntimeError, match="attempt 1"):
        flaky()
    with pytest.raises(RuntimeError, match="attempt 2"):
        flaky()
    assert flaky() == "ok"
    assert flaky() == "ok"
    assert calls == 3


async def test_concurrent_callers_all_get_the_loader_error(cache: Cache) -> None:
    release = anyio.Event()
    calls = 0

    @cached(cache=cache)
    async def failing() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        raise KeyError("missing")

    errors: list[BaseException] = []

    async def call() -> None:
        try:
            await failing()
        except KeyError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as group:
        for _ in range(5):
            group.start_soon(call)
        await wait_until_coalesced(cache, 4)
        release.set()

    assert calls == 1
    assert len(errors) == 5
    assert all(error.args == ("missing",) for error in errors)
    assert cache.statistics().coalesced == 4
    assert not await cache.exists(failing.key_for())


def test_sync_single_flight_across_threads(cache: Cache) -> None:
    release = threading.Event()
    counter_lock = threading.Lock()
    calls = 0

    @cached(cache=cache)
    def slow(x: int) -> int:
        nonlocal calls
        with counter_lock:
            calls += 1
        assert release.wait(timeout=30)  # hang guard only
        return x + 100

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(slow, 1) for _ in range(8)]
        try:
            give_up = time.monotonic() + 30  # hang guard only
            while cache.statistics().coalesced < 7 and calls < 2:
                assert time.monotonic() < give_up, "threads never coalesced"
                time.sleep(0)  # yield the GIL
            coalesced_while_held = cache.statistics().coalesced
            calls_while_held = calls
        finally:
            release.set()
        results = [future.result(timeout=30) for future in futures]

    assert calls_while_held == 1
    assert coalesced_while_held == 7
    assert results == [101] * 8
    assert calls == 1
    assert cache.statistics().loads == 1
    assert slow(1) == 101
    assert calls == 1


def test_sync_single_flight_shares_errors_across_threads(cache: Cache) -> None:
    release = threading.Event()
    calls = 0

    @cached(cache=cache)
    def failing() -> int:
        nonlocal calls
        calls += 1
        assert release.wait(timeout=30)
        raise ValueError("bad input")

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(failing) for _ in range(4)]
        try:
            give_up = time.monotonic() + 30
            while cache.statistics().coalesced < 3 and calls < 2:
                assert time.monotonic() < give_up, "threads never coalesced"
                time.sleep(0)
        finally:
            release.set()
        errors = [future.exception(timeout=30) for future in futures]

    assert calls == 1
    assert all(isinstance(error, ValueError) for error in errors)
    assert [str(error) for error in errors] == ["bad input"] * 4


# -- stale-while-revalidate ----------------------------------------------------------------


async def test_stale_ttl_serves_stale_and_refreshes_in_background(clock: FakeClock) -> None:
    cache = Cache(MemoryStore(clock=clock))
    version = 0

    @cached(ttl=10, stale_ttl=30, cache=cache)
    async def config(name: str) -> str:
        nonlocal version
        version += 1
        return f"{name}-v{version}"

    assert await config("a") == "a-v1"
    clock.advance(15)  # stale, within the stale window
    assert await config("a") == "a-v1"
    await cache.wait_background()
    assert version == 2
    assert await config("a") == "a-v2"
    assert version == 2
    stats = cache.statistics()
    assert stats.stale_served == 1
    assert stats.background_refreshes == 1
    assert stats.loads == 2
    clock.advance(10 + 30)  # past freshness and the stale window of the refreshed value
    assert await config("a") == "a-v3"
    assert version == 3
    assert cache.statistics().stale_served == 1
    await cache.aclose()


async def test_stale_value_served_once_refresh_per_burst(clock: FakeClock) -> None:
    cache = Cache(MemoryStore(clock=clock))
    release = anyio.Event()
    version = 0

    @cached(ttl=10, stale_ttl=30, cache=cache)
    async def config() -> int:
        nonlocal version
        version += 1
        if version > 1:
            await release.wait()
        return version

    assert await config() == 1
    clock.advance(11)
    assert [await config() for _ in range(5)] == [1] * 5
    release.set()
    await cache.wait_background()
    assert version == 2
    assert await config() == 2
    assert cache.statistics().background_refreshes == 1
    await cache.aclose()


# -- stable keys across processes ----------------------------------------------------------


def test_default_key_is_the_same_in_every_process(tmp_path: Path) -> None:
    (tmp_path / "keymod_for_decorator_test.py").write_text(
        textwrap.dedent(
            """
            from asyncperf import cached

            @cached
            async def lookup(names, options, limit=10):
                return None
            """
        )
    )
    script = textwrap.dedent(
        """
        import sys
        sys.path.insert(0, sys.argv[1])
        import keymod_for_decorator_test as mod
        print(mod.lookup.key_for(
            frozenset({"alpha", "beta", "gamma", "delta", "epsilon"}),
            {"z": 1, "a": [1, 2], "m": {"y", "x"}},
        ))
        """
    )
    outputs = []
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=120,
        )
        outputs.append(done.stdout.strip())
    expected = (
        "keymod_for_decorator_test:lookup("
        "names=frozenset('alpha','beta','delta','epsilon','gamma'),"
        "options={'a':[1,2],'m':set('x','y'),'z':1},"
        "limit=10)"
    )
    assert outputs == [expected] * 3
