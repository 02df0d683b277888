"""The payload codec: JSON, raw bytes, signed pickle, zstd, entry metadata, corruption."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import math
import pickle
import random
import struct
from typing import Any

import orjson
import pytest
import zstandard

from asyncperf import (
    Cache,
    Codec,
    ConfigurationError,
    Entry,
    MemoryStore,
    SerializationError,
    cached,
)
from asyncperf.cache import _codec
from asyncperf.cache._codec import (
    FLAG_META,
    FLAG_TAGS,
    FLAG_ZSTD,
    FORMAT_JSON,
    FORMAT_PICKLE,
    FORMAT_RAW,
    MAGIC,
    VERSION,
)

SECRET = "s3cret-s3cret-s3cret"
OTHER_SECRET = b"another-secret-of-enough-length"

FORGED_PICKLE_RAN: list[str] = []


def _forged_side_effect(marker: str) -> str:
    FORGED_PICKLE_RAN.append(marker)
    return marker


class Trap:
    """Unpickling this calls _forged_side_effect: proof that a payload was unpickled."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_forged_side_effect, ("unpickled",))


@dataclasses.dataclass(frozen=True)
class PickledPoint:
    x: int
    y: int


class Opaque:
    pass


def fmt(payload: bytes) -> int:
    return payload[2] & 0x03


def flags(payload: bytes) -> int:
    return payload[2]


_U32 = struct.Struct(">I")


def body_offset(payload: bytes) -> int:
    """Where the body starts, following the documented wire format: header (3 bytes),
    [signature 32 bytes, pickle only], [metadata 3 doubles], [tags u32 + list], body u32."""
    pos = 3
    if fmt(payload) == FORMAT_PICKLE:
        pos += 32
    if flags(payload) & FLAG_META:
        pos += 3 * 8
    if flags(payload) & FLAG_TAGS:
        pos += _U32.size + _U32.unpack_from(payload, pos)[0]
    return pos + _U32.size


def body(payload: bytes) -> bytes:
    """The payload's body; asserts that its u32 length prefix matches what follows."""
    start = body_offset(payload)
    (length,) = _U32.unpack_from(payload, start - _U32.size)
    assert length == len(payload) - start, "body length prefix does not match the body"
    return payload[start:]


def build(flag_bits: int, data: bytes, *, signature: bytes = b"") -> bytes:
    """A payload with no metadata or tags: header, [signature], body length, body."""
    return bytes((MAGIC, VERSION, flag_bits)) + signature + _U32.pack(len(data)) + data


def users(count: int = 200) -> list[dict[str, Any]]:
    """A realistic, compressible but not trivially repetitive JSON value."""
    return [{"id": i, "name": f"user-{i}", "email": f"user{i}@example.com"} for i in range(count)]


@pytest.fixture
def codec() -> Codec:
    return Codec()


@pytest.fixture
def pickle_codec() -> Codec:
    return Codec(pickle=True, secret=SECRET)


@pytest.fixture(autouse=True)
def _reset_forged_flag() -> None:
    FORGED_PICKLE_RAN.clear()


def test_wire_constants() -> None:
    assert (MAGIC, VERSION) == (0xA7, 1)
    assert (FORMAT_JSON, FORMAT_RAW, FORMAT_PICKLE) == (0, 1, 2)
    assert (FLAG_ZSTD, FLAG_META, FLAG_TAGS) == (0x04, 0x08, 0x10)


# -- JSON -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1, "b": [1, 2.5, None, True, False], "c": {"nested": "x"}},
        {},
        [],
        [1, "two", 3.0, None],
        "",
        "héllo \U0001f600",
        0,
        -5,
        2**63 - 1,
        -(2**63),
        0.1,
        -1.5e-300,
        True,
        False,
        None,
    ],
    ids=repr,
)
def test_json_round_trip(codec: Codec, value: Any) -> None:
    payload = codec.encode(value)
    assert payload[0] == MAGIC
    assert payload[1] == VERSION
    assert flags(payload) == FORMAT_JSON  # small: no compression, no metadata
    assert payload[3:] == _U32.pack(len(orjson.dumps(value))) + orjson.dumps(value)
    assert body(payload) == orjson.dumps(value)
    decoded = codec.decode(payload)
    assert decoded == value
    assert type(decoded) is type(value)


def test_tuples_come_back_as_lists(codec: Codec) -> None:
    assert codec.decode(codec.encode((1, 2, (3, "x")))) == [1, 2, [3, "x"]]
    assert codec.decode(codec.encode({"t": (1,)})) == {"t": [1]}


def test_documented_lossy_json_forms(codec: Codec) -> None:
    assert codec.decode(codec.encode(datetime.date(2024, 1, 2))) == "2024-01-02"
    assert codec.decode(codec.encode(PickledPoint(1, 2))) == {"x": 1, "y": 2}


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan], ids=repr)
def test_non_finite_floats_are_not_silently_turned_into_none(codec: Codec, value: float) -> None:
    # JSON has no inf/nan: the codec must refuse them or bring them back, never answer None.
    try:
        payload = codec.encode(value, key="k")
    except SerializationError:
        return
    decoded = codec.decode(payload)
    assert decoded is not None
    assert decoded == value or (math.isnan(value) and math.isnan(decoded))


@pytest.mark.parametrize(
    "value",
    [[1.0, math.nan], {"a": {"b": math.inf}}, (0, -math.inf)],
    ids=["in-list", "nested-dict", "in-tuple"],
)
def test_nested_non_finite_floats_are_refused(codec: Codec, value: Any) -> None:
    with pytest.raises(SerializationError, match="'k'"):
        codec.encode(value, key="k")


# -- raw bytes ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [b"", b"\x00\x01\xff", b"abc" * 10], ids=repr)
def test_bytes_round_trip_raw(codec: Codec, value: bytes) -> None:
    payload = codec.encode(value)
    assert flags(payload) == FORMAT_RAW
    assert payload[3:] == _U32.pack(len(value)) + value
    assert body(payload) == value
    decoded = codec.decode(payload)
    assert decoded == value
    assert type(decoded) is bytes


@pytest.mark.parametrize("wrap", [bytearray, memoryview], ids=lambda wrap: wrap.__name__)
def test_bytes_like_values_come_back_as_bytes(codec: Codec, wrap: Any) -> None:
    payload = codec.encode(wrap(b"data"))
    assert fmt(payload) == FORMAT_RAW
    decoded = codec.decode(payload)
    assert decoded == b"data"
    assert type(decoded) is bytes


def test_decode_accepts_bytes_like_payloads(codec: Codec) -> None:
    payload = codec.encode({"a": 1})
    assert codec.decode(bytearray(payload)) == {"a": 1}
    assert codec.decode(memoryview(payload)) == {"a": 1}


# -- compression ----------------------------------------------------------------------------


def test_large_compressible_json_is_compressed(codec: Codec) -> None:
    value = {"text": "a" * 100_000, "users": users()}
    plain = orjson.dumps(value)
    payload = codec.encode(value)
    assert fmt(payload) == FORMAT_JSON
    assert flags(payload) & FLAG_ZSTD
    assert len(payload) < len(plain) // 10
    assert body(payload)[:4] == b"\x28\xb5\x2f\xfd"
    assert codec.decode(payload) == value


def test_large_compressible_bytes_are_compressed_and_stay_raw(codec: Codec) -> None:
    value = b"0123456789" * 10_000
    payload = codec.encode(value)
    assert flags(payload) == FORMAT_RAW | FLAG_ZSTD
    assert len(payload) < len(value) // 10
    decoded = codec.decode(payload)
    assert decoded == value
    assert type(decoded) is bytes


def test_compression_threshold_is_inclusive() -> None:
    codec = Codec(compress_threshold=100)
    at_threshold = codec.encode("a" * 98)  # '"' + 98 + '"' = 100 bytes of body
    below = codec.encode("a" * 97)
    assert flags(at_threshold) == FORMAT_JSON | FLAG_ZSTD
    assert flags(below) == FORMAT_JSON
    assert codec.decode(at_threshold) == "a" * 98
    assert codec.decode(below) == "a" * 97


def test_small_values_are_not_compressed(codec: Codec) -> None:
    value = "a" * 500
    payload = codec.encode(value)
    assert flags(payload) == FORMAT_JSON
    assert len(payload) == 3 + 4 + 502
    assert body(payload) == b'"' + b"a" * 500 + b'"'


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_incompressible_bytes_are_stored_uncompressed(codec: Codec, seed: int) -> None:
    value = random.Random(seed).randbytes(4096)
    payload = codec.encode(value)
    assert flags(payload) == FORMAT_RAW
    assert payload == bytes((MAGIC, VERSION, FORMAT_RAW)) + _U32.pack(len(value)) + value
    assert codec.decode(payload) == value


@pytest.mark.parametrize(
    "magic", [b"\x28\xb5\x2f\xfd", b"\x1f\x8b"], ids=["zstd-magic", "gzip-magic"]
)
def test_bodies_with_a_compressed_magic_are_not_compressed_again(
    codec: Codec, magic: bytes
) -> None:
    value = magic + b"a" * 50_000  # would shrink a lot if compressed
    payload = codec.encode(value)
    assert flags(payload) == FORMAT_RAW
    assert len(payload) == 3 + 4 + len(value)
    assert body(payload) == value
    assert codec.decode(payload) == value


def test_real_zstd_frames_are_not_compressed_twice(codec: Codec) -> None:
    original = random.Random(9).randbytes(3000) + b"x" * 100_000
    frame = zstandard.ZstdCompressor(level=3).compress(original)
    assert len(frame) >= codec.compress_threshold
    payload = codec.encode(frame)
    assert flags(payload) == FORMAT_RAW
    assert body(payload) == frame
    assert codec.decode(payload) == frame


@pytest.mark.parametrize("level", [1, 19])
def test_compression_levels_at_the_bounds(level: int) -> None:
    codec = Codec(compression_level=level)
    value = users()
    payload = codec.encode(value)
    assert flags(payload) & FLAG_ZSTD
    assert Codec().decode(payload) == value


@pytest.mark.parametrize("level", [0, 20, -1, 100, True, 3.0, "3", None], ids=repr)
def test_compression_level_out_of_range_is_refused(level: Any) -> None:
    with pytest.raises(ConfigurationError, match="compression_level"):
        Codec(compression_level=level)


@pytest.mark.parametrize("threshold", [-1, True, 1.5, "1", None], ids=repr)
def test_bad_compress_threshold_is_refused(threshold: Any) -> None:
    with pytest.raises(ConfigurationError, match="compress_threshold"):
        Codec(compress_threshold=threshold)


@pytest.mark.parametrize("size", [0, -1])
def test_bad_max_decompressed_size_is_refused(size: int) -> None:
    with pytest.raises(ConfigurationError, match="max_decompressed_size"):
        Codec(max_decompressed_size=size)


def test_max_decompressed_size_is_enforced() -> None:
    value = "a" * 10_000
    payload = Codec().encode(value)
    assert flags(payload) & FLAG_ZSTD
    with pytest.raises(SerializationError, match="max_decompressed_size"):
        Codec(max_decompressed_size=1_000).decode(payload)
    assert Codec(max_decompressed_size=10_002).decode(payload) == value


def test_max_decompressed_size_is_enforced_without_a_content_size() -> None:
    frame = zstandard.ZstdCompressor(write_content_size=False).compress(b"a" * 10_000)
    assert zstandard.frame_content_size(frame) == -1
    payload = build(FORMAT_RAW | FLAG_ZSTD, frame)
    with pytest.raises(SerializationError):
        Codec(max_decompressed_size=1_000).decode(payload)
    assert Codec(max_decompressed_size=20_000).decode(payload) == b"a" * 10_000


# -- entries ---------------------------------------------------------------------------------


def test_entry_metadata_round_trip(codec: Codec) -> None:
    entry = Entry(
        {"v": 1}, expires_at=1234.5, fresh_until=1200.25, load_time=0.125, tags=("a", "b:ü")
    )
    payload = codec.encode_entry(entry, key="k")
    assert flags(payload) == FORMAT_JSON | FLAG_META | FLAG_TAGS
    decoded = codec.decode_entry(payload)
    assert decoded.value == {"v": 1}
    assert decoded.expires_at == 1234.5
    assert decoded.fresh_until == 1200.25
    assert decoded.load_time == 0.125
    assert decoded.tags == ("a", "b:ü")
    assert type(decoded.tags) is tuple


def test_entry_metadata_none_times_and_no_tags(codec: Codec) -> None:
    payload = codec.encode_entry(Entry("x", load_time=2.0))
    assert flags(payload) == FORMAT_JSON | FLAG_META
    decoded = codec.decode_entry(payload)
    assert decoded.value == "x"
    assert decoded.expires_at is None
    assert decoded.fresh_until is None
    assert decoded.load_time == 2.0
    assert decoded.tags == ()


def test_entry_metadata_with_expiry_but_no_freshness(codec: Codec) -> None:
    decoded = codec.decode_entry(codec.encode_entry(Entry(1, expires_at=5.0, tags=("t",))))
    assert (decoded.expires_at, decoded.fresh_until, decoded.tags) == (5.0, None, ("t",))


def test_compressed_entry_with_metadata_round_trip(codec: Codec) -> None:
    entry = Entry(users(), expires_at=99.0, fresh_until=50.0, load_time=0.5, tags=("users",))
    payload = codec.encode_entry(entry)
    assert flags(payload) == FORMAT_JSON | FLAG_ZSTD | FLAG_META | FLAG_TAGS
    decoded = codec.decode_entry(payload)
    assert decoded.value == users()
    assert (decoded.expires_at, decoded.fresh_until, decoded.load_time) == (99.0, 50.0, 0.5)
    assert decoded.tags == ("users",)


def test_bare_encode_has_no_metadata(codec: Codec) -> None:
    payload = codec.encode("v")
    assert not flags(payload) & FLAG_META
    decoded = codec.decode_entry(payload)
    assert (decoded.value, decoded.expires_at, decoded.fresh_until) == ("v", None, None)
    assert (decoded.load_time, decoded.tags) == (0.0, ())
    assert codec.encode_entry(Entry("v", expires_at=1.0), with_meta=False) == payload


# -- values the codec cannot encode ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (object(), "object"),
        ({1, 2}, "set"),
        (frozenset({1}), "frozenset"),
        ({1: "a"}, "dict"),
        (Opaque(), "Opaque"),
        (2**64, "int"),
        ([1, object()], "list"),
    ],
    ids=lambda item: item if isinstance(item, str) else None,
)
def test_non_encodable_values_name_the_type_and_key(
    codec: Codec, value: Any, type_name: str
) -> None:
    with pytest.raises(SerializationError) as info:
        codec.encode(value, key="user:42")
    message = str(info.value)
    assert f"value of type {type_name} " in message
    assert "'user:42'" in message
    assert isinstance(info.value, TypeError)


def test_non_encodable_entry_names_the_key(codec: Codec) -> None:
    with pytest.raises(SerializationError, match="'the-key'"):
        codec.encode_entry(Entry({3}), key="the-key")


async def test_cache_set_of_a_non_encodable_value_stores_nothing() -> None:
    store = MemoryStore(codec=Codec())
    cache = Cache(store)
    with pytest.raises(SerializationError, match=r"object.*'user:1'|'user:1'.*object"):
        await cache.set("user:1", object())
    assert await cache.get("user:1", "missing") == "missing"
    assert len(store) == 0
    assert cache.statistics().sets == 0
    with pytest.raises(SerializationError, match="set"):
        await cache.set("user:2", {1, 2}, ttl=10, tags=["t"])
    assert not await cache.exists("user:2")
    assert await cache.invalidate_tags("t") == 0


async def test_cache_set_many_with_a_non_encodable_value_stores_nothing() -> None:
    store = MemoryStore(codec=Codec())
    cache = Cache(store)
    with pytest.raises(SerializationError, match="'b'"):
        await cache.set_many({"a": 1, "b": object(), "c": 3})
    assert await cache.get_many(["a", "b", "c"]) == {}
    assert len(store) == 0


async def test_cached_function_returning_a_non_encodable_value_raises() -> None:
    cache = Cache(MemoryStore(codec=Codec()))
    calls = 0

    @cached(cache=cache, key="f")
    async def f() -> set[int]:
        nonlocal calls
        calls += 1
        return {1}

    with pytest.raises(SerializationError, match="'f'"):
        await f()
    with pytest.raises(SerializationError):
        await f()
    assert calls == 2
    assert len(cache.store) == 0  # type: ignore[arg-type]


async def test_encoded_memory_store_values_round_trip_as_documented() -> None:
    cache = Cache(MemoryStore(codec=Codec()))
    value = {"list": [1, 2], "tuple": (3, 4)}
    await cache.set("k", value)
    value["list"].append(99)  # the stored copy is isolated from later mutation
    assert await cache.get("k") == {"list": [1, 2], "tuple": [3, 4]}
    await cache.set("b", b"\x00raw")
    assert await cache.get("b") == b"\x00raw"


# -- corrupt payloads -----------------------------------------------------------------------


def _random_garbage(seed: int) -> bytes:
    data = random.Random(seed).randbytes(64)
    return bytes([data[0] if data[0] != MAGIC else 0]) + data[1:]


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xa7",
        b"\xa7\x01",
        _random_garbage(1),
        _random_garbage(2),
        _random_garbage(3),
        b'{"a": 1}',  # bare JSON from another library
        pickle.dumps({"a": 1}),  # a bare pickle
        zstandard.ZstdCompressor().compress(b"x" * 100),  # a bare zstd frame
    ],
    ids=[
        "empty",
        "magic-only",
        "no-flags",
        "random1",
        "random2",
        "random3",
        "json",
        "pickle",
        "zstd",
    ],
)
def test_foreign_payloads_are_refused(codec: Codec, payload: bytes) -> None:
    with pytest.raises(SerializationError, match="not an asyncperf payload"):
        codec.decode(payload)


def test_random_body_after_a_valid_json_header_is_refused(codec: Codec) -> None:
    payload = build(FORMAT_JSON, b"\xff\xfe{not json")
    with pytest.raises(SerializationError, match="corrupt"):
        codec.decode(payload)


def test_wrong_magic_is_refused(codec: Codec) -> None:
    payload = bytearray(codec.encode({"a": 1}))
    payload[0] = 0xA6
    with pytest.raises(SerializationError, match="bad magic"):
        codec.decode(bytes(payload))


@pytest.mark.parametrize("version", [0, 2, 255])
def test_wrong_version_is_refused(codec: Codec, version: int) -> None:
    payload = bytearray(codec.encode({"a": 1}))
    payload[1] = version
    with pytest.raises(SerializationError, match=f"version {version}"):
        codec.decode(bytes(payload))


def test_unknown_format_is_refused(codec: Codec) -> None:
    payload = bytearray(codec.encode({"a": 1}))
    payload[2] = 0x03
    with pytest.raises(SerializationError, match="unknown payload format 3"):
        codec.decode(bytes(payload))


def _truncated_cases() -> list[Any]:
    codec = Codec()
    json_payload = codec.encode({"key": "value", "n": [1, 2, 3]})
    compressed = codec.encode(users())
    with_meta = codec.encode_entry(Entry("v", expires_at=1.0, load_time=0.5))
    with_tags = codec.encode_entry(Entry("v", tags=("alpha", "beta")))
    meta_end = 3 + 24
    return [
        pytest.param(json_payload[:-1], id="json-minus-1"),
        pytest.param(json_payload[:5], id="json-head"),
        pytest.param(json_payload[:3], id="header-only"),
        pytest.param(compressed[:-1], id="zstd-minus-1"),
        pytest.param(compressed[: len(compressed) // 2], id="zstd-half"),
        pytest.param(with_meta[:10], id="in-metadata"),
        pytest.param(with_tags[: meta_end + 2], id="in-tags-length"),
        pytest.param(with_tags[: meta_end + 4 + 5], id="in-tags"),
    ]


@pytest.mark.parametrize("payload", _truncated_cases())
def test_truncated_payloads_are_refused(codec: Codec, payload: bytes) -> None:
    with pytest.raises(SerializationError):
        codec.decode_entry(payload)


@pytest.mark.parametrize(
    "value", [random.Random(5).randbytes(300), 1234567890], ids=["raw-bytes", "json-int"]
)
def test_truncated_uncompressed_payloads_are_refused(codec: Codec, value: Any) -> None:
    # The module docstring promises that a truncated payload raises SerializationError.
    payload = codec.encode(value)
    assert not flags(payload) & FLAG_ZSTD
    with pytest.raises(SerializationError):
        codec.decode(payload[:-1])


@pytest.mark.parametrize(
    "value", [b"raw", {"a": 1}, users()], ids=["raw-bytes", "json", "json-zstd"]
)
@pytest.mark.parametrize("change", ["minus-1", "plus-1", "padded"])
def test_body_length_prefix_must_match_the_body(codec: Codec, value: Any, change: str) -> None:
    payload = codec.encode(value)
    assert codec.decode(payload) == value
    if change == "padded":
        bad = payload + b"\x00"
    else:
        start = body_offset(payload)
        length = _U32.unpack_from(payload, start - 4)[0] + (1 if change == "plus-1" else -1)
        bad = payload[: start - 4] + _U32.pack(length) + payload[start:]
    with pytest.raises(SerializationError, match="truncated"):
        codec.decode(bad)


def test_flipped_byte_in_compressed_body_header_is_refused(codec: Codec) -> None:
    payload = bytearray(codec.encode(users()))
    assert flags(payload) & FLAG_ZSTD
    start = body_offset(bytes(payload))
    assert payload[start : start + 4] == b"\x28\xb5\x2f\xfd"
    payload[start] ^= 0xFF  # the zstd frame magic
    with pytest.raises(SerializationError, match="corrupt"):
        codec.decode(bytes(payload))


def test_no_flipped_byte_in_a_compressed_body_goes_unnoticed(codec: Codec) -> None:
    value = users()
    payload = codec.encode(value)
    assert flags(payload) & FLAG_ZSTD
    silently_wrong = []
    for position in range(3, len(payload)):
        corrupt = bytearray(payload)
        corrupt[position] ^= 0x01
        try:
            decoded = codec.decode(bytes(corrupt))
        except SerializationError:
            continue
        if decoded != value:
            silently_wrong.append(position)
    assert silently_wrong == []


async def test_corrupt_stored_payload_reads_as_a_counted_miss() -> None:
    store = MemoryStore(codec=Codec())
    cache = Cache(store)
    await cache.set("k", {"a": 1})
    assert isinstance(store._data["k"].value, bytes)
    store._data["k"].value = build(FORMAT_JSON, b"{broken")
    assert await cache.get("k", "default") == "default"
    stats = cache.statistics()
    assert (stats.errors, stats.misses, stats.hits) == (1, 1, 0)
    assert store.statistics().decode_errors == 1
    assert "k" not in store._data  # dropped, so the next read is a plain miss
    assert await cache.get("k") is None
    assert cache.statistics().errors == 1


@pytest.mark.parametrize(
    "corrupt",
    [
        b"garbage",
        b"",
        b"\xa7\x02\x00\x00\x00\x00\x02{}",
        build(FORMAT_JSON | FLAG_ZSTD, b"\x28\xb5\x2f\xfd\x00"),
    ],
    ids=["garbage", "empty", "version", "bad-zstd"],
)
async def test_corrupt_stored_payload_through_get_or_set_reloads(corrupt: bytes) -> None:
    store = MemoryStore(codec=Codec())
    cache = Cache(store)
    await cache.set("k", "old")
    store._data["k"].value = corrupt
    assert await cache.get_or_set("k", lambda: "new") == "new"
    assert await cache.get("k") == "new"
    stats = cache.statistics()
    assert (stats.errors, stats.loads) == (1, 1)


async def test_corrupt_stored_payload_is_not_reported_as_existing() -> None:
    store = MemoryStore(codec=Codec())
    cache = Cache(store)
    await cache.set("k", "old")
    store._data["k"].value = build(FORMAT_JSON, b"{")
    assert await cache.exists("k") is False
    assert cache.statistics().errors == 1


def test_corrupt_stored_payload_for_a_sync_cached_function() -> None:
    store = MemoryStore(codec=Codec())
    cache = Cache(store)
    calls = 0

    @cached(cache=cache, key="s")
    def f() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert f() == 1
    store._data["s"].value = b"\x00junk"
    assert f() == 2
    assert f() == 2
    assert cache.statistics().errors == 1


# -- pickle ---------------------------------------------------------------------------------


def test_pickle_requires_a_secret() -> None:
    with pytest.raises(ConfigurationError, match="secret"):
        Codec(pickle=True)


@pytest.mark.parametrize("secret", ["short", "x" * 15, b"", b"y" * 15], ids=repr)
def test_short_secrets_are_refused(secret: str | bytes) -> None:
    with pytest.raises(ConfigurationError, match="at least 16 bytes"):
        Codec(pickle=True, secret=secret)


@pytest.mark.parametrize("secret", ["x" * 16, b"y" * 16, "é" * 8, bytearray(b"z" * 32)], ids=repr)
def test_secrets_of_sixteen_bytes_or_more_are_accepted(secret: Any) -> None:
    codec = Codec(pickle=True, secret=secret)
    assert codec.decode(codec.encode((1, 2))) == (1, 2)


@pytest.mark.parametrize(
    "value",
    [
        (1, 2),
        (1, (2, 3)),
        {1, 2, 3},
        frozenset({"a"}),
        {1: "a", (2, 3): {4}},
        PickledPoint(1, 2),
        decimal.Decimal("1.50"),
        datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        math.inf,
    ],
    ids=repr,
)
def test_pickle_round_trips_exactly(pickle_codec: Codec, value: Any) -> None:
    payload = pickle_codec.encode(value)
    assert fmt(payload) == FORMAT_PICKLE
    decoded = pickle_codec.decode(payload)
    assert decoded == value
    assert type(decoded) is type(value)


def test_pickle_codec_still_stores_bytes_raw(pickle_codec: Codec) -> None:
    payload = pickle_codec.encode(b"blob")
    assert flags(payload) == FORMAT_RAW
    assert payload[3:] == _U32.pack(4) + b"blob"


def test_pickle_codec_reads_json_payloads(pickle_codec: Codec, codec: Codec) -> None:
    assert pickle_codec.decode(codec.encode({"a": [1]})) == {"a": [1]}


def test_pickle_entry_metadata_round_trip(pickle_codec: Codec) -> None:
    entry = Entry((1, {2}), expires_at=10.0, fresh_until=5.0, load_time=0.25, tags=("t",))
    payload = pickle_codec.encode_entry(entry)
    assert flags(payload) == FORMAT_PICKLE | FLAG_META | FLAG_TAGS
    decoded = pickle_codec.decode_entry(payload)
    assert decoded.value == (1, {2})
    assert (decoded.expires_at, decoded.fresh_until, decoded.load_time) == (10.0, 5.0, 0.25)
    assert decoded.tags == ("t",)


def test_large_pickles_are_compressed_and_signed(pickle_codec: Codec) -> None:
    value = tuple(users())
    payload = pickle_codec.encode(value)
    assert flags(payload) == FORMAT_PICKLE | FLAG_ZSTD
    assert pickle_codec.decode(payload) == value


def test_unpicklable_values_name_the_type_and_key(pickle_codec: Codec) -> None:
    with pytest.raises(SerializationError, match=r"cannot pickle value of type function.*'fn'"):
        pickle_codec.encode(lambda: None, key="fn")


def test_pickle_signed_with_another_secret_is_refused(pickle_codec: Codec) -> None:
    foreign = Codec(pickle=True, secret=OTHER_SECRET).encode(Trap())
    assert fmt(foreign) == FORMAT_PICKLE
    with pytest.raises(SerializationError, match="signature"):
        pickle_codec.decode(foreign)
    assert FORGED_PICKLE_RAN == []


def test_pickle_read_by_a_codec_with_pickle_off_is_refused(
    pickle_codec: Codec, codec: Codec
) -> None:
    payload = pickle_codec.encode(Trap())
    with pytest.raises(SerializationError, match="pickle off"):
        codec.decode(payload)
    assert FORGED_PICKLE_RAN == []


def test_forged_pickle_is_refused_without_being_unpickled(pickle_codec: Codec) -> None:
    trap = pickle.dumps(Trap())
    assert pickle.loads(trap) == "unpickled"  # the trap works...
    assert FORGED_PICKLE_RAN == ["unpickled"]
    FORGED_PICKLE_RAN.clear()
    for signature in (b"\x00" * 32, b"\xff" * 32, b""):
        forged = build(FORMAT_PICKLE, trap, signature=signature)
        with pytest.raises(SerializationError):
            pickle_codec.decode(forged)
    assert FORGED_PICKLE_RAN == []  # ...and was never sprung


@pytest.mark.parametrize("where", ["flags", "signature", "metadata", "body"])
def test_tampered_signed_pickle_is_refused(pickle_codec: Codec, where: str) -> None:
    payload = pickle_codec.encode_entry(Entry((1, 2), expires_at=100.0, tags=("t",)))
    assert pickle_codec.decode_entry(payload).value == (1, 2)
    position = {"flags": 2, "signature": 3, "metadata": 3 + 32 + 1, "body": len(payload) - 2}
    tampered = bytearray(payload)
    tampered[position[where]] ^= 0x01
    with pytest.raises(SerializationError):
        pickle_codec.decode_entry(bytes(tampered))


async def test_pickle_codec_through_an_encoded_memory_store() -> None:
    cache = Cache(MemoryStore(codec=Codec(pickle=True, secret=SECRET)))
    await cache.set("k", (1, {2, 3}))
    assert await cache.get("k") == (1, {2, 3})


def test_module_exports_codec_only() -> None:
    assert _codec.__all__ == ["Codec"]
