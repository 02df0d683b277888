"""The sans-IO rules, without a server: RFC 9111 storage/freshness, RFC 9110 conditionals
and content-coding negotiation."""

from __future__ import annotations

import math

import pytest

from asyncperf.http import choose_encoding, is_not_modified, plan_storage
from asyncperf.http._conditional import (
    FORWARD,
    etag_matches,
    if_range_matches,
    parse_range,
    resolve_range,
)
from asyncperf.http._policy import (
    current_age,
    decide_reuse,
    format_http_date,
    parse_directives,
    parse_http_date,
    vary_names,
    vary_values,
)

NOW = 1_750_000_000.0
DATE = format_http_date(NOW)


def plan(status: int = 200, request: dict | None = None, **response: str):
    headers = {name.replace("_", "-"): value for name, value in response.items()}
    return plan_storage(
        status=status,
        request_headers=request or {},
        response_headers=headers,
        request_time=NOW,
        response_time=NOW,
    )


def test_directives_parse_case_quotes_duplicates_and_garbage() -> None:
    parsed = parse_directives('Max-Age=60, private="Set-Cookie, X-A", max-age=5, ,foo, no-cache')
    # A repeated max-age resolves to the most restrictive (RFC 9111 §4.2.1).
    assert parsed == {"max-age": "5", "private": "Set-Cookie, X-A", "foo": None, "no-cache": None}


@pytest.mark.parametrize(
    ("headers", "lifetime"),
    [
        ({"cache_control": "max-age=60"}, 60.0),
        ({"cache_control": "s-maxage=10, max-age=60"}, 10.0),
        ({"cache_control": "max-age=abc, public"}, 0.0),  # invalid: stale, kept for SWR/validation
        ({"expires": format_http_date(NOW + 30), "date": DATE}, 30.0),
        ({"expires": format_http_date(NOW + 30), "cache_control": "max-age=5"}, 5.0),
        ({"last_modified": format_http_date(NOW - 1000), "date": DATE}, 100.0),
    ],
)
def test_freshness_lifetime(headers: dict, lifetime: float) -> None:
    result = plan(**headers)
    if lifetime == 0.0:
        assert result is None  # nothing to keep: no freshness, no stale window
    else:
        assert result is not None
        assert result.lifetime == lifetime


def test_invalid_expires_means_expired() -> None:
    assert plan(expires="0") is None
    assert plan(expires="Thu, 01 Jan 2099 00:00:00 +0200") is None  # not GMT


@pytest.mark.parametrize(
    ("status", "request_headers", "response", "stored"),
    [
        (200, {}, {"cache_control": "no-store, max-age=60"}, False),
        (200, {"cache-control": "no-store"}, {"cache_control": "max-age=60"}, False),
        (200, {}, {"cache_control": "private, max-age=60"}, False),
        (200, {}, {"cache_control": 'private="x-user", max-age=60'}, True),
        (200, {"authorization": "Bearer x"}, {"cache_control": "max-age=60"}, False),
        (200, {"authorization": "Bearer x"}, {"cache_control": "public, max-age=60"}, True),
        (200, {"authorization": "Bearer x"}, {"cache_control": "s-maxage=60"}, True),
        (200, {}, {"cache_control": "max-age=60", "set_cookie": "a=b"}, False),
        (200, {}, {"cache_control": "max-age=60", "vary": "*"}, False),
        (206, {}, {"cache_control": "max-age=60"}, False),
        # Any final status with explicit freshness (RFC 9111 §3); errors need it.
        (500, {}, {"cache_control": "max-age=60"}, True),
        (503, {}, {"cache_control": "s-maxage=5"}, True),
        (500, {}, {"last_modified": "Tue, 01 Jul 2025 10:00:00 GMT"}, False),
        (503, {}, {"etag": '"x"'}, False),
        (304, {}, {"cache_control": "max-age=60"}, False),
        (302, {}, {"cache_control": "max-age=60"}, True),
        (302, {}, {}, False),
        (200, {}, {}, False),  # no explicit freshness, no Last-Modified, no default TTL
    ],
)
def test_storability(status, request_headers, response, stored: bool) -> None:
    assert (plan(status, request_headers, **response) is not None) is stored


def test_qualified_private_strips_the_field_and_cookie_opt_in() -> None:
    result = plan(cache_control='private="X-User", max-age=60')
    assert result is not None
    assert result.strip == {"x-user"}
    opted = plan_storage(
        status=200,
        request_headers={},
        response_headers={"cache-control": "max-age=60", "set-cookie": "a=b"},
        request_time=NOW,
        response_time=NOW,
        store_set_cookie=True,
    )
    assert opted is not None
    assert "set-cookie" in opted.strip


def test_default_ttl_only_for_heuristic_statuses_and_route_ttl_wins() -> None:
    def with_defaults(status: int, **extra):
        return plan_storage(
            status=status,
            request_headers={},
            response_headers={},
            request_time=NOW,
            response_time=NOW,
            default_ttl=30,
            **extra,
        )

    assert with_defaults(200).lifetime == 30
    assert with_defaults(404).lifetime == 30
    assert with_defaults(302) is None  # not heuristically cacheable
    assert with_defaults(200, route_ttl=5).lifetime == 5


def test_targeted_cache_control_replaces_cache_control() -> None:
    result = plan_storage(
        status=200,
        request_headers={},
        response_headers={"cache-control": "no-cache, no-store"},
        request_time=NOW,
        response_time=NOW,
        targeted="max-age=600",
    )
    assert result is not None
    assert result.lifetime == 600
    assert not result.always_revalidate


def test_stale_rules() -> None:
    swr = plan(cache_control="max-age=10, stale-while-revalidate=30, stale-if-error=60")
    assert swr is not None
    assert (swr.stale_while_revalidate, swr.stale_if_error, swr.no_stale) == (30, 60, False)
    assert swr.keep == 70
    for directive in ("must-revalidate", "proxy-revalidate"):
        strict = plan(cache_control=f"max-age=10, stale-while-revalidate=30, {directive}")
        assert strict is not None
        assert strict.no_stale
        assert strict.keep == 10
    shared_max = plan(cache_control="s-maxage=10, stale-while-revalidate=30")
    assert shared_max is not None
    assert shared_max.no_stale


def test_age_arithmetic() -> None:
    headers = {"cache-control": "max-age=60", "age": "10", "date": format_http_date(NOW - 20)}
    result = plan_storage(
        status=200,
        request_headers={},
        response_headers=headers,
        request_time=NOW - 2,
        response_time=NOW,
    )
    assert result is not None
    assert result.initial_age == 20  # apparent age (20) beats corrected age (10 + 2)
    assert current_age(result.initial_age, NOW, NOW + 5) == 25
    invalid = plan_storage(
        status=200,
        request_headers={},
        response_headers={"cache-control": "max-age=60, stale-if-error=5", "age": "-1"},
        request_time=NOW,
        response_time=NOW,
    )
    assert invalid is not None
    assert math.isinf(invalid.initial_age)


def test_vary_names() -> None:
    assert vary_names("Accept-Language, X-Lang,accept-language") == ("accept-language", "x-lang")
    assert vary_names("X-A, *") is None
    assert vary_names(None) == ()


@pytest.mark.parametrize(
    ("header", "etag", "matches"),
    [
        ('"a"', '"a"', True),
        ('W/"a"', '"a"', True),
        ('"a"', 'W/"a"', True),
        ('"b", W/"a"', '"a"', True),
        ('"b"', '"a"', False),
        ("*", '"a"', True),
        ("a", '"a"', True),  # unquoted, tolerated
        ('"a"', None, False),
    ],
)
def test_weak_etag_comparison(header: str, etag: str | None, matches: bool) -> None:
    assert etag_matches(header, etag) is matches


def test_if_modified_since_rules() -> None:
    modified = NOW - 100
    later = {"if-modified-since": format_http_date(NOW)}
    earlier = {"if-modified-since": format_http_date(NOW - 1000)}
    assert is_not_modified(later, etag=None, last_modified=modified)
    assert not is_not_modified(earlier, etag=None, last_modified=modified)
    assert not is_not_modified({"if-modified-since": "garbage"}, etag=None, last_modified=modified)
    # If-None-Match wins over If-Modified-Since.
    assert not is_not_modified(
        {**later, "if-none-match": '"x"'}, etag='"y"', last_modified=modified
    )


def test_http_dates() -> None:
    assert parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777.0
    assert parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == 784111777.0
    assert parse_http_date("Sun Nov  6 08:49:37 1994") == 784111777.0
    assert parse_http_date("0") is None


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "identity"),
        ("gzip, deflate, br, zstd", "zstd"),
        ("gzip, br", "br"),
        ("gzip;q=1.0, zstd;q=0.5", "gzip"),
        ("zstd;q=0", "identity"),
        ("*", "zstd"),
        ("*;q=0.5, gzip;q=0.8", "gzip"),
        ("identity;q=0, gzip;q=0", "identity"),  # nothing acceptable: identity anyway
        ("gzip;q=abc, br", "br"),
    ],
)
def test_choose_encoding(accept: str | None, expected: str) -> None:
    assert choose_encoding(accept, ("zstd", "br", "gzip")) == expected


def test_choose_encoding_without_brotli() -> None:
    assert choose_encoding("br, gzip;q=0.9", ("zstd", "gzip")) == "gzip"


# -- revalidation, retention, heuristics (RFC 9111 §4.2, §4.3) --------------------------


def retained(status: int = 200, **response: str):
    headers = {name.replace("_", "-"): value for name, value in response.items()}
    return plan_storage(
        status=status,
        request_headers={},
        response_headers=headers,
        request_time=NOW,
        response_time=NOW,
        retain=600.0,
    )


def test_a_validator_keeps_a_response_past_its_freshness_for_revalidation() -> None:
    with_etag = retained(cache_control="max-age=1", etag='"a"')
    assert with_etag is not None
    assert with_etag.keep == 601.0
    assert retained(cache_control="max-age=1").keep == 1.0  # nothing to revalidate with
    # Stale on arrival (Age past max-age), or no-cache: kept only because it can be validated.
    stale = retained(cache_control="max-age=60", age="7200", etag='"a"')
    assert stale is not None
    assert stale.keep == 600.0
    assert retained(cache_control="max-age=60", age="7200") is None
    no_cache = retained(cache_control="no-cache", last_modified=format_http_date(NOW - 10))
    # (fresh for 1 s by the heuristic: a tenth of the 10 s since Last-Modified)
    assert no_cache is not None
    assert no_cache.always_revalidate
    assert no_cache.keep == 601.0
    # must-revalidate forbids serving stale, not keeping it to revalidate.
    strict = retained(cache_control="max-age=5, must-revalidate, stale-if-error=60", etag='"a"')
    assert strict is not None
    assert strict.keep == 605.0


def test_heuristic_freshness_is_a_fraction_of_last_modified_age_and_can_be_off() -> None:
    headers = {"last-modified": format_http_date(NOW - 1000), "date": DATE}

    def with_heuristic(fraction: float | None, status: int = 200):
        return plan_storage(
            status=status,
            request_headers={},
            response_headers=headers,
            request_time=NOW,
            response_time=NOW,
            heuristic=fraction,
        )

    assert with_heuristic(0.5).lifetime == 500.0
    assert with_heuristic(None) is None
    assert with_heuristic(0.1, status=500) is None  # an error needs explicit freshness
    assert with_heuristic(0.1, status=404).lifetime == 100.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("max-age= 3600", {"max-age": " 3600"}),  # a space after "=": invalid, so stale
        ("max-age=3600 , public", {"max-age": "3600", "public": None}),
        ("max-age=60, max-age=abc", {"max-age": "abc"}),  # invalid wins: stale
        ("min-fresh=5, min-fresh=9", {"min-fresh": "9"}),
        ("max-stale, max-stale=5", {"max-stale": "5"}),
        ('no-cache="set-cookie", no-cache', {"no-cache": None}),
        ('max-age="10", max-age=20', {"max-age": "10"}),
    ],
)
def test_invalid_and_conflicting_directives_resolve_to_the_most_restrictive(
    value: str, expected: dict
) -> None:
    assert parse_directives(value) == expected


def test_an_invalid_max_age_makes_the_response_stale() -> None:
    spaced = plan(cache_control="max-age= 3600, stale-while-revalidate=30")
    assert spaced is not None
    assert spaced.lifetime == 0.0


def reuse(age: float, request_cc: str = "", **response: str):
    stored = plan(**response)
    assert stored is not None
    return decide_reuse(stored, age, parse_directives(request_cc))


@pytest.mark.parametrize(
    ("age", "request_cc", "response_cc", "action", "forward"),
    [
        (10, "", "max-age=60", "HIT", ""),
        (70, "", "max-age=60", "REVALIDATE", "stale"),
        (70, "", "max-age=60, stale-while-revalidate=30", "STALE", "stale"),
        (10, "no-cache", "max-age=60", "REVALIDATE", "request"),
        (10, "max-age=0", "max-age=60", "REVALIDATE", "request"),
        (10, "max-age=5", "max-age=60", "REVALIDATE", "request"),
        (10, "max-age=abc", "max-age=60", "REVALIDATE", "request"),
        (10, "min-fresh=40", "max-age=60", "HIT", ""),
        (10, "min-fresh=55", "max-age=60", "REVALIDATE", "stale"),
        (70, "max-stale", "max-age=60", "STALE", ""),
        (70, "max-stale=20", "max-age=60", "STALE", ""),
        (90, "max-stale=20", "max-age=60", "REVALIDATE", "stale"),
        (70, "max-stale", "max-age=60, must-revalidate", "REVALIDATE", "stale"),
        (10, "", "max-age=60, no-cache", "REVALIDATE", "stale"),
        (70, "only-if-cached", "max-age=60", "GATEWAY_TIMEOUT", ""),
        (10, "only-if-cached", "max-age=60", "HIT", ""),
    ],
)
def test_decide_reuse_follows_request_and_response_directives(
    age: float, request_cc: str, response_cc: str, action: str, forward: str
) -> None:
    decided = reuse(age, request_cc, cache_control=response_cc)
    assert (decided.action, decided.forward) == (action, forward)


def test_stale_if_error_window_from_response_or_request() -> None:
    assert reuse(70, "", cache_control="max-age=60, stale-if-error=30").stale_if_error
    assert not reuse(100, "", cache_control="max-age=60, stale-if-error=30").stale_if_error
    assert reuse(100, "stale-if-error=60", cache_control="max-age=60").stale_if_error
    assert not reuse(70, "", cache_control="max-age=60, must-revalidate").stale_if_error


@pytest.mark.parametrize(
    ("value", "size", "expected"),
    [
        ("bytes=0-9", 100, (0, 9)),
        ("bytes=90-", 100, (90, 99)),
        ("bytes=-10", 100, (90, 99)),
        ("bytes=-500", 100, (0, 99)),
        ("bytes=50-500", 100, (50, 99)),
        ("BYTES = 5 - 6", 100, (5, 6)),
        ("bytes=100-", 100, None),  # unsatisfiable: 416
        ("bytes=-0", 100, None),
    ],
)
def test_single_byte_ranges(value: str, size: int, expected) -> None:
    spec = parse_range(value)
    assert isinstance(spec, tuple)
    assert resolve_range(spec, size) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes=0-1,5-6", FORWARD),  # several ranges: the app answers
        ("items=0-1", FORWARD),  # another unit: the app may know it
        ("bytes=9-1", None),  # invalid: ignored, the whole body answers
        ("bytes=", None),
        ("nonsense", None),
    ],
)
def test_ranges_this_cache_does_not_answer(value: str, expected) -> None:
    assert parse_range(value) == expected


def test_if_range_needs_a_strong_match() -> None:
    modified = NOW - 100
    assert if_range_matches('"a"', '"a"', modified)
    assert not if_range_matches('W/"a"', '"a"', modified)
    assert not if_range_matches('"b"', '"a"', modified)
    assert if_range_matches(format_http_date(modified), '"a"', modified)
    assert not if_range_matches(format_http_date(modified - 1), '"a"', modified)
    assert not if_range_matches(format_http_date(modified), '"a"', None)


def test_vary_values_are_normalised_where_the_syntax_allows() -> None:
    spaced = vary_values(["accept-language"], {"accept-language": "EN-us ,  fr;q=0.5"})
    assert spaced == vary_values(["accept-language"], {"accept-language": "en-US,fr;q=0.5"})
    assert vary_values(["x-token"], {"x-token": "Abc"}) != vary_values(
        ["x-token"], {"x-token": "abc"}
    )
    assert vary_names("Accept-Encoding, *") is None  # Vary: * never matches
