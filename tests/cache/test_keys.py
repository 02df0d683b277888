"""Key checks, long-key hashing and canonical argument forms."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import hashlib
import math
import types
import uuid
from typing import Any

import pytest

from asyncperf import Cache, ConfigurationError, MemoryStore
from asyncperf.cache._keys import (
    MAX_KEY_LENGTH,
    CallKeyBuilder,
    canonical,
    check_key,
    hash_long_key,
)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


@dataclasses.dataclass
class Query:
    where: dict[str, Any]
    fields: set[str]
    at: Point


class Account:
    def __init__(self, number: int) -> None:
        self.number = number

    def __cache_key__(self) -> str:
        return f"acct-{self.number}"


class Money:
    def __init__(self, cents: int) -> None:
        self.cents = cents

    def __repr__(self) -> str:
        return f"Money({self.cents})"


class Plain:
    pass


class Name(str):
    pass


class Count(int):
    pass


class Ratio(float):
    pass


class Items(list):  # type: ignore[type-arg]
    pass


class Mixin:
    pass


class TaggedName(str, Mixin):
    pass


Pair = collections.namedtuple("Pair", "a b")


def module_function() -> None:
    return None


# -- check_key ------------------------------------------------------------------------------


def test_max_key_length() -> None:
    assert MAX_KEY_LENGTH == 200


@pytest.mark.parametrize("key", ["", "k", "user:1", "ü" * 200, "x" * MAX_KEY_LENGTH])
def test_check_key_keeps_short_str_keys(key: str) -> None:
    assert check_key(key) is key


def test_check_key_turns_str_subclasses_into_plain_str() -> None:
    result = check_key(Name("user:1"))
    assert type(result) is str
    assert result == "user:1"


def test_check_key_hashes_str_subclasses_over_the_limit() -> None:
    long = "p" * 300
    result = check_key(Name(long))
    assert type(result) is str
    assert result == hash_long_key(long)


@pytest.mark.parametrize(
    "key", [1, 1.5, b"user:1", None, ("a",), ["a"], object()], ids=lambda key: type(key).__name__
)
def test_check_key_refuses_non_str(key: Any) -> None:
    with pytest.raises(TypeError, match="cache keys must be str") as info:
        check_key(key)
    assert type(key).__qualname__ in str(info.value)


@pytest.mark.parametrize("key", [1, b"k", None, ("k",)], ids=lambda key: type(key).__name__)
async def test_cache_operations_refuse_non_str_keys(key: Any) -> None:
    cache = Cache(MemoryStore())
    with pytest.raises(TypeError, match="cache keys must be str"):
        await cache.set(key, 1)
    with pytest.raises(TypeError, match="cache keys must be str"):
        await cache.get(key)
    with pytest.raises(TypeError, match="cache keys must be str"):
        await cache.delete(key)
    with pytest.raises(TypeError, match="cache keys must be str"):
        await cache.exists(key)
    with pytest.raises(TypeError, match="cache keys must be str"):
        await cache.get_or_set(key, lambda: 1)
    with pytest.raises(TypeError, match="cache keys must be str"):
        await cache.get_many(["ok", key])
    with pytest.raises(TypeError, match="cache keys must be str"):
        await cache.set_many({key: 1})
    assert len(cache.store) == 0  # type: ignore[arg-type]


async def test_cache_accepts_str_subclass_keys_as_their_plain_value() -> None:
    cache = Cache(MemoryStore())
    await cache.set(Name("k"), 1)
    assert await cache.get("k") == 1
    assert await cache.get(Name("k")) == 1
    assert cache.store.keys() == ["k"]  # type: ignore[attr-defined]
    assert type(cache.store.keys()[0]) is str  # type: ignore[attr-defined]


# -- long keys ------------------------------------------------------------------------------


def test_hash_long_key_format() -> None:
    key = "report:" + "x" * 250
    expected_digest = hashlib.blake2b(key.encode(), digest_size=20).hexdigest()
    assert hash_long_key(key) == key[:64] + "#" + expected_digest
    assert len(hash_long_key(key)) == 64 + 1 + 40


def test_long_keys_are_hashed_deterministically() -> None:
    key = "a" * 201
    assert check_key(key) == check_key("a" * 201) == hash_long_key(key)
    assert len(check_key(key)) == 105
    assert check_key(key).startswith("a" * 64 + "#")


def test_keys_at_the_limit_are_not_hashed() -> None:
    assert check_key("b" * 200) == "b" * 200
    assert check_key("b" * 201) != "b" * 201
    assert len(check_key("b" * 201)) <= MAX_KEY_LENGTH


def test_long_keys_differing_after_the_kept_prefix_do_not_collide() -> None:
    base = "tenant:42:" + "q" * 300
    one, two = base + "1", base + "2"
    assert check_key(one) != check_key(two)
    assert check_key(one)[:65] == check_key(two)[:65] == base[:64] + "#"
    assert check_key(base) not in (check_key(one), check_key(two))


@pytest.mark.parametrize("length", [201, 500, 10_000, 1_000_000])
def test_hashed_length_is_bounded(length: int) -> None:
    hashed = check_key("k" * length)
    assert len(hashed) == 105
    assert len(hashed) <= MAX_KEY_LENGTH


def test_hashing_handles_non_ascii_and_lone_surrogates() -> None:
    emoji = "\U0001f600" * 250
    assert (
        hash_long_key(emoji)
        == emoji[:64] + "#" + hashlib.blake2b(emoji.encode(), digest_size=20).hexdigest()
    )
    surrogate = "\ud800" * 250
    assert hash_long_key(surrogate).startswith("\ud800" * 64 + "#")


async def test_cache_hashes_long_keys_consistently() -> None:
    cache = Cache(MemoryStore())
    long = "search:" + "term " * 100
    other = long + "!"
    await cache.set(long, "result")
    assert await cache.get(long) == "result"
    assert await cache.get(other) is None
    assert cache.store.keys() == [hash_long_key(long)]  # type: ignore[attr-defined]
    assert await cache.exists(long)
    assert await cache.get_or_set(long, lambda: "never") == "result"
    assert await cache.get_many([long, other]) == {long: "result"}
    assert await cache.delete(long) is True
    assert len(cache.store) == 0  # type: ignore[arg-type]


async def test_namespaced_cache_hashes_then_prefixes() -> None:
    cache = Cache(MemoryStore())
    view = cache.namespace("ns")
    long = "z" * 300
    await view.set(long, 1)
    assert cache.store.keys() == ["ns:" + hash_long_key(long)]  # type: ignore[attr-defined]
    assert await view.get(long) == 1
    assert await cache.get(long) is None


# -- canonical: scalars ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "None"),
        (True, "True"),
        (False, "False"),
        (0, "0"),
        (-17, "-17"),
        (2**100, str(2**100)),
        ("", "''"),
        ("it's", '"it\'s"'),
        ("a,b", "'a,b'"),
        (1.5, "1.5"),
        (1.0, "1.0"),
        (-0.0, "-0.0"),
        (1e300, "1e+300"),
        (b"\x00ab", "b'\\x00ab'"),
    ],
    ids=repr,
)
def test_canonical_scalars(value: Any, expected: str) -> None:
    assert canonical(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (math.nan, "float('nan')"),
        (math.inf, "float('inf')"),
        (-math.inf, "float('-inf')"),
    ],
    ids=repr,
)
def test_canonical_non_finite_floats(value: float, expected: str) -> None:
    assert canonical(value) == expected
    assert canonical(float(expected[7:-2])) == expected


def test_canonical_keeps_bool_int_float_str_apart() -> None:
    forms = [canonical(value) for value in (1, True, 1.0, "1", b"1", None, "None")]
    assert len(set(forms)) == len(forms)


# -- canonical: containers ------------------------------------------------------------------


def test_canonical_dict_order_does_not_matter() -> None:
    one = {"b": 2, "a": 1, "c": [3]}
    two = {"c": [3], "a": 1, "b": 2}
    assert canonical(one) == canonical(two) == "{'a':1,'b':2,'c':[3]}"


def test_canonical_dict_with_mixed_key_types() -> None:
    assert canonical({2: "x", "1": "y", None: 0}) == "{'1':'y',2:'x',None:0}"
    assert canonical({1: "a"}) != canonical({"1": "a"})


def test_canonical_set_order_does_not_matter() -> None:
    one = {"pear", "apple", "fig"}
    two = {"fig", "pear", "apple"}
    assert canonical(one) == canonical(two) == "set('apple','fig','pear')"
    assert canonical(frozenset(two)) == "frozenset('apple','fig','pear')"
    assert canonical({3, 1, 2}) == "set(1,2,3)"


def test_canonical_tuple_and_list_are_distinct() -> None:
    assert canonical((1, 2)) == "(1,2)"
    assert canonical([1, 2]) == "[1,2]"
    assert canonical(()) == "()"
    assert canonical([]) == "[]"
    assert canonical((1,)) != canonical(1)
    assert canonical(((1, 2),)) != canonical([[1, 2]])


def test_canonical_empty_set_and_empty_dict_are_distinct() -> None:
    # set() and {} are not equal, so f(set()) must not be served f({})'s result
    assert canonical(set()) != canonical({})
    assert canonical(frozenset()) != canonical({})
    assert (canonical(set()), canonical(frozenset()), canonical({})) == (
        "set()",
        "frozenset()",
        "{}",
    )


def test_canonical_strings_with_separators_do_not_collide() -> None:
    assert canonical(["a,b"]) != canonical(["a", "b"])
    assert canonical({"a": "b:c"}) != canonical({"a:b": "c"})
    assert canonical(("(1)",)) != canonical(((1,),))


def test_canonical_nested() -> None:
    value = {"k": [1, (2, {"x": {3, 1}})], "a": {"z": None, "b": (1.5, math.inf)}}
    expected = "{'a':{'b':(1.5,float('inf')),'z':None},'k':[1,(2,{'x':set(1,3)})]}"
    assert canonical(value) == expected
    reordered = {"a": {"b": (1.5, math.inf), "z": None}, "k": [1, (2, {"x": {1, 3}})]}
    assert canonical(reordered) == expected


def test_canonical_mappings_that_are_not_dicts() -> None:
    assert canonical(types.MappingProxyType({"b": 1, "a": 2})) == "{'a':2,'b':1}"
    assert canonical(collections.OrderedDict([("b", 1), ("a", 2)])) == "{'a':2,'b':1}"


# -- canonical: rich types ------------------------------------------------------------------


def test_canonical_enums() -> None:
    assert canonical(Color.RED) == "Color.RED"
    assert canonical(Level.HIGH) == "Level.HIGH"
    assert canonical(Level.HIGH) != canonical(2)
    assert canonical([Color.BLUE, Level.LOW]) == "[Color.BLUE,Level.LOW]"


def test_canonical_dataclasses() -> None:
    assert canonical(Point(1, 2)) == "Point(x=1,y=2)"
    query = Query(where={"b": 1, "a": 2}, fields={"name", "id"}, at=Point(0, -1))
    assert canonical(query) == (
        "Query(where={'a':2,'b':1},fields=set('id','name'),at=Point(x=0,y=-1))"
    )
    assert canonical(Point(1, 2)) != canonical(Point(2, 1))


def test_canonical_dataclass_with_unkeyable_field_raises() -> None:
    with pytest.raises(TypeError, match="Plain"):
        canonical(Query(where={}, fields=set(), at=Plain()))  # type: ignore[arg-type]


def test_canonical_dates_times_uuids_decimals() -> None:
    assert canonical(datetime.datetime(2024, 1, 2, 3, 4, 5)) == "datetime(2024-01-02T03:04:05)"
    aware = datetime.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=datetime.UTC)
    assert canonical(aware) == "datetime(2024-01-02T03:04:05.000006+00:00)"
    assert canonical(datetime.date(2024, 2, 29)) == "date(2024-02-29)"
    assert canonical(datetime.time(23, 59)) == "time(23:59:00)"
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert canonical(ident) == "UUID(12345678-1234-5678-1234-567812345678)"
    assert canonical(decimal.Decimal("1.50")) == "Decimal(1.50)"
    assert canonical(decimal.Decimal("1.50")) != canonical(1.5)
    assert canonical(datetime.date(2024, 1, 2)) != canonical(datetime.datetime(2024, 1, 2))


def test_canonical_uses_cache_key_method() -> None:
    assert canonical(Account(42)) == "Account(acct-42)"
    assert canonical([Account(1), Account(2)]) == "[Account(acct-1),Account(acct-2)]"


def test_canonical_uses_a_custom_repr() -> None:
    assert canonical(Money(250)) == "Money(250)"
    assert canonical({"price": Money(1)}) == "{'price':Money(1)}"


@pytest.mark.parametrize(
    "value",
    [Plain(), [1, Plain()], {"k": Plain()}, {Plain()}, (Plain(),)],
    ids=["bare", "in-list", "in-dict", "in-set", "in-tuple"],
)
def test_canonical_refuses_default_repr_objects(value: Any) -> None:
    with pytest.raises(TypeError) as info:
        canonical(value)
    message = str(info.value)
    assert "Plain" in message
    assert "__cache_key__" in message
    assert "key=" in message


def test_canonical_refuses_bare_object() -> None:
    with pytest.raises(TypeError, match="memory address"):
        canonical(object())


def test_canonical_never_embeds_a_memory_address() -> None:
    # A function's repr shows its address, so such a key differs in every process.
    for value in (module_function, lambda: None):
        try:
            form = canonical(value)
        except TypeError:
            continue
        assert " at 0x" not in form, form


def test_canonical_functions_and_classes_by_name_lambdas_and_locals_refused() -> None:
    assert canonical(module_function) == f"{__name__}.module_function"
    assert canonical(Plain) == f"{__name__}.Plain"
    assert canonical(len) == "builtins.len"

    def local() -> None:
        return None

    for value in (lambda: None, local):
        with pytest.raises(TypeError, match="memory address"):
            canonical(value)


# -- canonical: subclasses of builtins ------------------------------------------------------


def test_canonical_builtin_subclasses_use_their_plain_value() -> None:
    assert canonical(Name("a")) == canonical("a") == "'a'"
    assert canonical(Count(3)) == canonical(3) == "3"
    assert canonical(Ratio(0.5)) == canonical(0.5) == "0.5"
    assert canonical(Items([1, 2])) == canonical([1, 2]) == "[1,2]"
    assert canonical(Pair(1, "b")) == canonical((1, "b")) == "(1,'b')"


def test_canonical_str_subclass_with_a_mixin() -> None:
    assert canonical(TaggedName("a")) == "'a'"

    class TaggedCount(int, Mixin):
        pass

    assert canonical(TaggedCount(7)) == canonical(7) == "7"


# -- CallKeyBuilder ---------------------------------------------------------------------


def fetch(x: int, y: int = 2, *, z: str = "z") -> None:
    return None


def test_call_keys_bind_defaults() -> None:
    builder = CallKeyBuilder(fetch)
    expected = f"{__name__}:fetch(x=1,y=2,z='z')"
    assert builder.key((1,), {}) == expected
    assert builder.key((1, 2), {}) == expected
    assert builder.key((), {"x": 1}) == expected
    assert builder.key((1,), {"y": 2}) == expected
    assert builder.key((), {"z": "z", "y": 2, "x": 1}) == expected
    assert builder.key((1, 3), {}) == f"{__name__}:fetch(x=1,y=3,z='z')"


def test_call_keys_bind_returns_names_and_defaults() -> None:
    builder = CallKeyBuilder(fetch)
    assert builder.bind((1,), {}) == {"x": 1, "y": 2, "z": "z"}
    assert builder.bind((1, 5), {"z": "q"}) == {"x": 1, "y": 5, "z": "q"}


def test_call_keys_refuse_bad_calls() -> None:
    builder = CallKeyBuilder(fetch)
    with pytest.raises(TypeError):
        builder.key((), {})
    with pytest.raises(TypeError):
        builder.key((1, 2, 3), {})
    with pytest.raises(TypeError):
        builder.key((1,), {"nope": 1})


def test_call_keys_without_defaults_on_the_fast_path() -> None:
    def pair(a: int, b: int) -> None:
        return None

    builder = CallKeyBuilder(pair)
    assert builder.key((1, 2), {}).endswith("pair(a=1,b=2)")
    with pytest.raises(TypeError):
        builder.key((1,), {})


def test_call_keys_skip_self() -> None:
    class Service:
        def run(self, job: str) -> None:
            return None

    builder = CallKeyBuilder(Service.run)
    assert builder.key((Service(), "j"), {}) == builder.key((Service(), "j"), {})
    assert builder.key((Service(), "j"), {}).endswith("Service.run(job='j')")


def test_call_keys_with_varargs_and_varkw() -> None:
    def f(a: int, *args: int, flag: bool = False, **kwargs: Any) -> None:
        return None

    builder = CallKeyBuilder(f)
    prefix = f"{__name__}:test_call_keys_with_varargs_and_varkw.<locals>.f"
    assert builder.key((1, 2, 3), {"d": [1], "c": {2}}) == (
        f"{prefix}(a=1,*(2,3),flag=False,c=set(2),d=[1])"
    )
    assert builder.key((1,), {"flag": True}) == f"{prefix}(a=1,*(),flag=True)"


def test_call_keys_with_a_template() -> None:
    builder = CallKeyBuilder(fetch, template="f:{x}:{z}")
    assert builder.key((1,), {}) == "f:1:z"
    assert builder.key((), {"x": 7, "z": "q"}) == "f:7:q"


@pytest.mark.parametrize("template", ["{w}", "{x}:{w.attr}", "{w[0]}", "{0}", "{}"])
def test_call_keys_refuse_templates_naming_unknown_parameters(template: str) -> None:
    with pytest.raises(ConfigurationError, match="not a parameter") as info:
        CallKeyBuilder(fetch, template=template)
    assert "x, y, z" in str(info.value)


def test_call_keys_accept_attribute_and_index_templates() -> None:
    builder = CallKeyBuilder(fetch, template="{x.real}:{z[0]}")
    assert builder.key((5,), {"z": "abc"}) == "5:a"
