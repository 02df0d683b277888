"""Value codec (orjson against signed pickle) and body compression (zstd, gzip, brotli).

Values: asyncperf's ``Codec`` encodes a JSON-able value with orjson by default, or with
pickle signed by HMAC-SHA256 (``Codec(pickle=True, secret=...)``); bodies of 1 KB and more
are zstd-3 compressed by both. The variants of a group run round-robin in one test (blocks
of operations, order reversed every other cycle, median per variant), against the bare
serializer as the floor.

Groups:
    codec-dict-encode / codec-dict-decode: the 5-field dict of the memory benchmarks
        (about 100 bytes, never compressed). Floor: ``orjson.dumps`` / ``orjson.loads``;
        also bare ``pickle.dumps`` / ``pickle.loads`` (unsigned), asyncperf ``Codec()`` and
        ``Codec(pickle=True, secret=...)``.
    codec-list-encode / codec-list-decode: a list of 145 product dicts (about 20 KB as
        JSON), the same variants (the codecs compress it), plus ``Codec()`` with
        compression turned off, to show what zstd costs.
    codec-ratio-<size> / codec-compress-<size> / codec-decompress-<size>: a 20 KB and a
        200 KB JSON list page compressed by zstd (levels 3 and 19), gzip-6 (floor) and
        brotli (quality 4 and 11): ratio (x), compression and decompression speed (MB/s of
        the identity body; best batch within a time budget). Also in ``extra_info``.

No timing is asserted; every codec is checked to round-trip, and a signed pickle with one
flipped byte is refused.
"""

from __future__ import annotations

import functools
import gzip
import pickle
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import brotli
import orjson
import pytest
import zstandard

from asyncperf import Codec, SerializationError
from asyncperf.cache import Entry
from bench._data import QUICK, VALUE
from bench._redis_support import Variant, round_robin

if TYPE_CHECKING:
    from bench.conftest import AsyncBench

SECRET = "bench-secret-0123456789abcdef"
CYCLES = 3 if QUICK else 9


def items(rows: int) -> list[dict[str, Any]]:
    """Product records like the peer study's JSON API list page."""
    return [
        {
            "id": i,
            "sku": f"SKU-{i:06d}",
            "name": f"Product number {i}",
            "price": round(i * 1.37, 2),
            "stock": i % 17,
            "tags": ["new", "sale"] if i % 3 else ["clearance"],
            "updated_at": f"2025-07-{i % 28 + 1:02d}T10:00:00Z",
        }
        for i in range(rows)
    ]


def page(rows: int) -> bytes:
    """A JSON list page of ``rows`` records (145 rows: ~20 KB, 1450 rows: ~200 KB)."""
    return orjson.dumps({"items": items(rows), "page": 1, "total": rows})


LIST_VALUE = items(145)
assert 19_000 <= len(orjson.dumps(LIST_VALUE)) <= 21_000

# Operations per round-robin block: ~20-50 ms of the slowest variant in full mode.
VALUES: dict[str, tuple[Any, int]] = {
    "dict": (VALUE, 1_000 if QUICK else 20_000),
    "list": (LIST_VALUE, 50 if QUICK else 500),
}


def repeat(function: Callable[[Any], object], argument: Any, ops: int) -> Callable[[], Any]:
    """An ``async def`` performing ``function(argument)`` ``ops`` times (one block)."""

    async def run() -> None:
        for _ in range(ops):
            function(argument)

    return run


def codec_groups(abench: AsyncBench, name: str, direction: str) -> None:
    value, ops = VALUES[name]
    json_codec = Codec()
    pickle_codec = Codec(pickle=True, secret=SECRET)
    plain_codec = Codec(compress_threshold=1 << 30)
    protocol = pickle.HIGHEST_PROTOCOL
    payloads = {
        "orjson": orjson.dumps(value),
        "pickle": pickle.dumps(value, protocol=protocol),
        "codec": json_codec.encode(value),
        "codec-pickle": pickle_codec.encode(value),
        "codec-plain": plain_codec.encode(value),
    }
    # Behaviour: every codec round-trips; a tampered signed pickle is refused unread.
    assert orjson.loads(payloads["orjson"]) == value
    assert pickle.loads(payloads["pickle"]) == value
    assert json_codec.decode(payloads["codec"]) == value
    assert pickle_codec.decode(payloads["codec-pickle"]) == value
    assert plain_codec.decode(payloads["codec-plain"]) == value
    tampered = bytearray(payloads["codec-pickle"])
    tampered[-1] ^= 0x01
    with pytest.raises(SerializationError):
        pickle_codec.decode(bytes(tampered))
    compressed = name == "list"
    # What RedisStore sends: the value with its expiry and freshness times.
    entry = Entry(value, expires_at=time.time() + 300, fresh_until=time.time() + 300)
    entry_payload = json_codec.encode_entry(entry)
    assert json_codec.decode_entry(entry_payload).value == value
    assert (json_codec.encode(value) != plain_codec.encode(value)) is compressed

    if direction == "encode":
        rows = [
            ("orjson.dumps", orjson.dumps, value),
            ("pickle.dumps (unsigned)", lambda v: pickle.dumps(v, protocol=protocol), value),
            ("asyncperf Codec (orjson)", json_codec.encode, value),
            ("asyncperf Codec (signed pickle)", pickle_codec.encode, value),
        ]
        if not compressed:
            rows.append(
                (
                    "asyncperf Codec.encode_entry (orjson, with times)",
                    json_codec.encode_entry,
                    entry,
                )
            )
        if compressed:
            rows.append(("asyncperf Codec (orjson, no zstd)", plain_codec.encode, value))
    else:
        rows = [
            ("orjson.loads", orjson.loads, payloads["orjson"]),
            ("pickle.loads (unsigned)", pickle.loads, payloads["pickle"]),
            ("asyncperf Codec (orjson)", json_codec.decode, payloads["codec"]),
            ("asyncperf Codec (signed pickle)", pickle_codec.decode, payloads["codec-pickle"]),
        ]
        if not compressed:
            rows.append(
                (
                    "asyncperf Codec.decode_entry (orjson, with times)",
                    json_codec.decode_entry,
                    entry_payload,
                )
            )
        if compressed:
            rows.append(
                ("asyncperf Codec (orjson, no zstd)", plain_codec.decode, payloads["codec-plain"])
            )
    variants = [
        Variant(label, repeat(function, argument, ops), ops, floor=index == 0)
        for index, (label, function, argument) in enumerate(rows)
    ]
    round_robin(abench, variants, rounds=CYCLES)
    if not compressed:
        abench.target("asyncperf Codec (orjson)", "max_ratio", 3.0, "<= 3x bare orjson")
    abench.benchmark.extra_info["payload_bytes"] = {k: len(v) for k, v in payloads.items()}


@pytest.mark.benchmark(group="codec-dict-encode")
def test_codec_encode_dict(abench: AsyncBench) -> None:
    codec_groups(abench, "dict", "encode")


@pytest.mark.benchmark(group="codec-dict-decode")
def test_codec_decode_dict(abench: AsyncBench) -> None:
    codec_groups(abench, "dict", "decode")


@pytest.mark.benchmark(group="codec-list-encode")
def test_codec_encode_list_20kb(abench: AsyncBench) -> None:
    codec_groups(abench, "list", "encode")


@pytest.mark.benchmark(group="codec-list-decode")
def test_codec_decode_list_20kb(abench: AsyncBench) -> None:
    codec_groups(abench, "list", "decode")


# --------------------------------------------------------------------- body compression


def best_seconds(work: Callable[[], object], budget: float) -> float:
    """Best per-call time over doubling batches filling ``budget`` seconds (one call at least)."""
    best = float("inf")
    deadline = time.perf_counter() + budget
    calls = 1
    while True:
        started = time.perf_counter()
        for _ in range(calls):
            work()
        best = min(best, (time.perf_counter() - started) / calls)
        if time.perf_counter() >= deadline:
            return best
        calls = min(calls * 2, 256)


def compressors() -> list[tuple[str, Callable[[bytes], bytes], Callable[[bytes], bytes]]]:
    """(label, compress, decompress): zstd as asyncperf stores it, gzip, brotli."""
    zstd_3 = zstandard.ZstdCompressor(level=3)
    zstd_19 = zstandard.ZstdCompressor(level=19)
    unzstd = zstandard.ZstdDecompressor()
    return [
        ("zstd-3", zstd_3.compress, unzstd.decompress),
        ("zstd-19", zstd_19.compress, unzstd.decompress),
        ("gzip-6", lambda b: gzip.compress(b, compresslevel=6, mtime=0), gzip.decompress),
        ("brotli-4", lambda b: brotli.compress(b, quality=4), brotli.decompress),
        ("brotli-11", lambda b: brotli.compress(b, quality=11), brotli.decompress),
    ]


FLOOR = "gzip-6"


def record_in(
    abench: AsyncBench, group: str, label: str, value: float, unit: str, floor: bool
) -> None:
    """Record a row in ``group`` (one group per metric, so each has its gzip-6 floor)."""
    own = abench.benchmark.group
    abench.benchmark.group = group
    try:
        abench.record(label, value, unit, floor=floor)
    finally:
        abench.benchmark.group = own


@pytest.mark.benchmark(group="codec-compression")
@pytest.mark.parametrize(("rows", "size"), [(145, "20KB"), (1450, "200KB")])
def test_body_compression(abench: AsyncBench, rows: int, size: str) -> None:
    body = page(rows)
    lower, upper = (19_000, 21_000) if size == "20KB" else (190_000, 210_000)
    assert lower <= len(body) <= upper, len(body)
    # pytest-benchmark times zstd-3 compression (what the caches store); all codecs are
    # then timed alike below.
    store = zstandard.ZstdCompressor(level=3)
    abench.benchmark.pedantic(
        store.compress, args=(body,), rounds=5 if QUICK else 20, iterations=10
    )
    budget = 0.05 if QUICK else 0.3
    megabytes = len(body) / 1e6
    figures: dict[str, dict[str, float]] = {}
    for label, compress, decompress in compressors():
        packed = compress(body)
        assert decompress(packed) == body
        pack_s = best_seconds(functools.partial(compress, body), budget)
        unpack_s = best_seconds(functools.partial(decompress, packed), budget)
        figures[label] = {
            "bytes": len(packed),
            "ratio": round(len(body) / len(packed), 2),
            "compress_mb_s": round(megabytes / pack_s, 1),
            "decompress_mb_s": round(megabytes / unpack_s, 1),
        }
    abench.benchmark.extra_info.update(
        payload_bytes=len(body), budget_s=budget, codecs=figures, floor=FLOOR
    )
    if not abench.enabled:
        return
    for metric, key, unit in (
        ("ratio", "ratio", "x"),
        ("compress", "compress_mb_s", "MB/s"),
        ("decompress", "decompress_mb_s", "MB/s"),
    ):
        for label, figure in figures.items():
            group = f"codec-{metric}-{size}"
            record_in(abench, group, label, figure[key], unit, floor=label == FLOOR)
