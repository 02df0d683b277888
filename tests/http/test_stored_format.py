"""The stored byte format: what is written reads back whole, and earlier entries still read."""

from __future__ import annotations

import math
import struct

import orjson
import pytest

from asyncperf.http._policy import Plan
from asyncperf.http._stored import StoredResponse, decode, encode_marker


def _plan(**changes: object) -> Plan:
    fields: dict[str, object] = {
        "lifetime": 60.0,
        "initial_age": 2.5,
        "always_revalidate": False,
        "no_stale": False,
        "stale_while_revalidate": 0.0,
        "stale_if_error": 0.0,
        "authorized_ok": False,
        "strip": frozenset(),
        "retain": 0.0,
    }
    fields.update(changes)
    return Plan(**fields)  # type: ignore[arg-type]


def _entry(plan: Plan, **changes: object) -> StoredResponse:
    entry = StoredResponse(
        200,
        [("content-type", "application/json"), ("x-a", "1"), ("x-a", "2")],
        b"\x28\xb5\x2f\xfd body bytes",
        "zstd",
        1989,
        '"0123456789abcdef0123"',
        1_700_000_000.0,
        1_700_000_001.25,
        1_700_000_001.5,
        plan,
        ("accept-language",),
        True,
        False,
    )
    for name, value in changes.items():
        setattr(entry, name, value)
    return entry


FIELDS = (
    "status",
    "headers",
    "body",
    "coding",
    "size",
    "etag",
    "last_modified",
    "request_time",
    "response_time",
    "plan",
    "vary",
    "app_etag",
    "app_last_modified",
    "as_sent",
)


@pytest.mark.parametrize(
    ("plan", "changes"),
    [
        (_plan(), {}),
        (
            _plan(
                always_revalidate=True,
                no_stale=True,
                stale_while_revalidate=30.0,
                stale_if_error=300.0,
                authorized_ok=True,
                strip=frozenset({"set-cookie", "x-private"}),
                retain=86_400.0,
            ),
            {"as_sent": True, "coding": "br", "app_last_modified": True},
        ),
    ],
    ids=["plain", "every-field-set"],
)
def test_an_entry_reads_back_field_for_field(plan: Plan, changes: dict[str, object]) -> None:
    entry = _entry(plan, **changes)
    blob = entry.encode()
    assert blob[:4] == b"APR2"
    back = decode(blob)
    assert isinstance(back, StoredResponse)
    for name in FIELDS:
        assert getattr(back, name) == getattr(entry, name), name
    assert type(back.plan) is Plan
    assert type(back.plan.strip) is frozenset


def test_an_invalid_age_stays_always_stale_through_the_store() -> None:
    back = decode(_entry(_plan(initial_age=math.inf)).encode())
    assert isinstance(back, StoredResponse)
    assert back.plan.initial_age >= 1e18 > back.plan.lifetime


def test_an_entry_written_in_the_earlier_layout_still_reads() -> None:
    """APR1: the JSON header an object with named keys, as earlier releases wrote it."""
    meta = orjson.dumps(
        {
            "s": 203,
            "h": [["content-type", "text/plain"]],
            "c": "identity",
            "n": 5,
            "e": '"abc"',
            "lm": 10.0,
            "rq": 11.0,
            "rs": 12.0,
            "v": ["accept"],
            "ae": True,
            "al": True,
            "p": [120.0, 1.0, True, False, 5.0, 6.0, True, ["set-cookie"], 7.0],
        }
    )
    back = decode(b"APR1" + struct.pack(">I", len(meta)) + meta + b"hello")
    assert isinstance(back, StoredResponse)
    assert (back.status, back.headers, back.body, back.coding, back.size) == (
        203,
        [("content-type", "text/plain")],
        b"hello",
        "identity",
        5,
    )
    assert (back.etag, back.last_modified, back.request_time, back.response_time) == (
        '"abc"',
        10.0,
        11.0,
        12.0,
    )
    assert back.vary == ("accept",)
    assert back.app_etag
    assert back.app_last_modified
    assert not back.as_sent
    assert back.plan == _plan(
        lifetime=120.0,
        initial_age=1.0,
        always_revalidate=True,
        stale_while_revalidate=5.0,
        stale_if_error=6.0,
        authorized_ok=True,
        strip=frozenset({"set-cookie"}),
        retain=7.0,
    )


def test_markers_and_foreign_bytes() -> None:
    assert decode(encode_marker(("accept-language", "cookie"))) == ("accept-language", "cookie")
    assert decode(b"short") is None
    assert decode(b"XXXX\x00\x00\x00\x02{}") is None  # another magic
    assert decode(b"APR2\x00\x00\x00\x03{{{") is None  # not JSON
    assert decode("not bytes") is None
