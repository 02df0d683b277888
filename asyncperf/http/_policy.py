"""The sans-IO core: RFC 9111 storage and reuse rules, no I/O.

Everything here decides from header values and times alone, so the ASGI and aiohttp
glue share one set of rules and the rules are unit-testable without a server.
Header names are lower-case ``str``; a header map joins repeated fields with ``", "``.
The request-side fields of RFC 9110 (conditionals, ranges, Accept-Encoding) are in
:mod:`._conditional`.
"""

from __future__ import annotations

import calendar
import email.utils
import functools
import math
import re
from collections.abc import Iterable, Mapping
from typing import Final, NamedTuple

__all__ = [
    "GATEWAY_TIMEOUT",
    "HEURISTIC_FRACTION",
    "HEURISTIC_STATUSES",
    "HIT",
    "REVALIDATE",
    "STALE",
    "Directives",
    "Plan",
    "Reuse",
    "current_age",
    "decide_reuse",
    "format_http_date",
    "parse_delta",
    "parse_directives",
    "parse_http_date",
    "plan_storage",
    "storage_plan",
    "vary_names",
    "vary_values",
]

Directives = dict[str, str | None]
HeaderMap = Mapping[str, str]

# RFC 9110 §15.1: statuses a cache may store with heuristic freshness.
HEURISTIC_STATUSES: Final = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})
# Final statuses never stored: partial content (stored complete responses answer ranges)
# and a 304 (an answer to the client's own conditional, not a representation).
_NEVER_STORED: Final = frozenset({206, 304})
# Heuristic freshness from Last-Modified: 10 % of its age, capped at a day (RFC 9111 §4.2.2).
HEURISTIC_FRACTION: Final = 0.1
_HEURISTIC_CAP: Final = 86_400.0

_DIRECTIVE = re.compile(
    r'\s*([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)\s*(?:=(?:"((?:[^"\\]|\\.)*)"|([^,"]*)))?\s*(?:,|$)'
)
_DELTA = re.compile(r"[0-9]+")
# 2**31 is "infinity" for delta-seconds (RFC 9111 §1.2.2).
_DELTA_MAX: Final = 2**31


def parse_directives(value: str | None) -> Directives:
    """Parse a ``Cache-Control`` value into ``{directive: argument or None}``.

    Names are lower-cased; quoted arguments are unquoted. The syntax is RFC 9110's
    ``token [ "=" ( token / quoted-string ) ]``: an argument that starts with a space
    (``max-age= 60``) is kept as written, so it fails :func:`parse_delta` and counts as
    invalid. Repeated directives resolve to the most restrictive (RFC 9111 §4.2.1):
    the smaller delta (the larger for ``min-fresh``), an invalid delta over a valid one,
    an unqualified ``no-cache``/``private`` over a qualified one. Unknown directives
    are kept (and ignored by callers, as §5.2 requires).
    """
    directives: Directives = {}
    if not value:
        return directives
    if '"' not in value:
        # The common form (no quoted arguments) split by hand: a regex pass per request
        # costs several microseconds on the miss path.
        for part in value.split(","):
            name, equals, raw = part.partition("=")
            name = name.strip().lower()
            if not name or " " in name:
                continue
            parsed = raw.rstrip() if equals else None
            if name in directives:
                parsed = _restrictive(name, directives[name], parsed)
            directives[name] = parsed
        return directives
    position = 0
    length = len(value)
    while position < length:
        match = _DIRECTIVE.match(value, position)
        if match is None or match.end() == position:
            # Skip garbage up to the next comma rather than give up on the whole field.
            comma = value.find(",", position)
            if comma < 0:
                break
            position = comma + 1
            continue
        position = match.end()
        name = match.group(1).lower()
        quoted, token = match.group(2), match.group(3)
        argument: str | None = None
        if quoted is not None:
            argument = re.sub(r"\\(.)", r"\1", quoted)
        elif token is not None:
            argument = token.rstrip()
        if name in directives:
            argument = _restrictive(name, directives[name], argument)
        directives[name] = argument
    return directives


_DELTA_DIRECTIVES: Final = frozenset(
    {"max-age", "s-maxage", "max-stale", "min-fresh", "stale-while-revalidate", "stale-if-error"}
)


def _restrictive(name: str, first: str | None, second: str | None) -> str | None:
    """Return the more restrictive argument of a directive given twice (RFC 9111 §4.2.1)."""
    if first == second:
        return first
    if name in _DELTA_DIRECTIVES:
        if name == "max-stale" and (first is None or second is None):
            return second if first is None else first  # a bound beats "any staleness"
        a, b = parse_delta(first), parse_delta(second)
        if name == "min-fresh":
            if a is None or b is None:
                return first if b is None else second  # an invalid min-fresh is ignored
            return first if a >= b else second
        if a is None or b is None:
            return first if a is None else second  # invalid: stale, the most restrictive
        return first if a <= b else second
    if name in ("no-cache", "private"):
        if first is None or second is None:
            return None  # unqualified: applies to the whole response
        return f"{first}, {second}"
    return first


def parse_delta(argument: str | None) -> int | None:
    """Return delta-seconds, or ``None`` when the argument is missing or invalid."""
    if argument is None or _DELTA.fullmatch(argument) is None:
        return None
    return min(int(argument), _DELTA_MAX)


def parse_http_date(value: str | None) -> float | None:
    """Return an HTTP date (IMF-fixdate, RFC 850 or asctime) as a POSIX time, or ``None``.

    Dates with a zone other than GMT/UTC are invalid (RFC 9110 §5.6.7).
    """
    if not value:
        return None
    parsed = email.utils.parsedate_tz(value.strip())
    if parsed is None:
        return None
    offset = parsed[9]
    if offset not in (0, None):
        return None
    try:
        return float(calendar.timegm(parsed[:6]))
    except (ValueError, OverflowError):
        return None


def format_http_date(timestamp: float) -> str:
    """Format a POSIX time as an IMF-fixdate."""
    return email.utils.formatdate(timestamp, usegmt=True)


def vary_names(value: str | None) -> tuple[str, ...] | None:
    """Return the sorted, lower-cased field names of a ``Vary`` value (``None`` for ``*``)."""
    if not value:
        return ()
    names = {name.strip().lower() for name in value.split(",")}
    names.discard("")
    if "*" in names:
        return None
    return tuple(sorted(names))


def vary_values(names: Iterable[str], headers: HeaderMap) -> tuple[str | None, ...]:
    """Return the normalised request values of ``names`` (``None`` where absent).

    Whitespace around list separators is insignificant (RFC 9111 §4.1), so it is
    removed (repeated fields arrive joined, so they compare as one list); fields whose
    values are case-insensitive tokens (codings, charsets, language tags) are
    lower-cased. An absent field only matches an absent field.
    """
    values: list[str | None] = []
    for name in names:
        value = headers.get(name)
        if value is None:
            values.append(None)
            continue
        value = ",".join(part.strip() for part in value.split(","))
        values.append(value.lower() if name in _CASELESS_FIELDS else value)
    return tuple(values)


# Request fields whose values compare case-insensitively (RFC 9110 §12.5).
_CASELESS_FIELDS: Final = frozenset({"accept-encoding", "accept-charset", "accept-language"})


class Plan(NamedTuple):
    """How a response may be stored and reused, decided when it arrives.

    Immutable (a named tuple: one is made for every response stored, and a tuple is made
    in half the time of a frozen dataclass).

    Attributes:
        lifetime: Freshness lifetime in seconds.
        initial_age: The corrected initial age (RFC 9111 §4.2.3) at ``response_time``.
        always_revalidate: ``no-cache``: every reuse needs validation.
        no_stale: ``must-revalidate``, ``proxy-revalidate`` or ``s-maxage``: never serve stale.
        stale_while_revalidate: Seconds past freshness the response may be served while
            one revalidation runs (RFC 5861).
        stale_if_error: Seconds past freshness the response may be served when the app fails.
        authorized_ok: The response explicitly allows reuse for requests with
            ``Authorization`` (``public``, ``s-maxage`` or ``must-revalidate``).
        strip: Header fields to drop before storing (``private="F"``, ``no-cache="F"``,
            ``Set-Cookie`` when opted in).
        retain: Seconds a response with a validator (ETag or Last-Modified) is kept past
            its freshness, to be revalidated rather than fetched again.
    """

    lifetime: float
    initial_age: float
    always_revalidate: bool
    no_stale: bool
    stale_while_revalidate: float
    stale_if_error: float
    authorized_ok: bool
    strip: frozenset[str]
    retain: float = 0.0

    @property
    def keep(self) -> float:
        """Seconds the store keeps the response from now: what is left of its freshness,
        then the longest of its stale windows and its retention for revalidation."""
        return plan_keep(self)


def plan_keep(plan: Plan) -> float:
    """:attr:`Plan.keep` as a function, for the store writes (a property costs CPython
    3.11 a generic lookup and a new frame; a plain call is specialised)."""
    # Comparisons, not max(): the builtin parses its keywords on every call (~250
    # instructions each on CPython 3.11).
    fresh_left = plan.lifetime - plan.initial_age
    if fresh_left < 0.0:
        fresh_left = 0.0
    window = 0.0
    if not plan.no_stale:
        window = plan.stale_while_revalidate
        if plan.stale_if_error > window:
            window = plan.stale_if_error
    return fresh_left + (window if window > plan.retain else plan.retain)


def _qualified_fields(argument: str | None) -> frozenset[str]:
    if not argument:
        return frozenset()
    return frozenset(name.strip().lower() for name in argument.split(",") if name.strip())


def _seconds(value: float | None) -> float:
    return 0.0 if value is None else float(value)


def plan_storage(
    *,
    status: int,
    request_headers: HeaderMap,
    response_headers: HeaderMap,
    request_time: float,
    response_time: float,
    shared: bool = True,
    default_ttl: float | None = None,
    route_ttl: float | None = None,
    stale_while_revalidate: float | None = None,
    stale_if_error: float | None = None,
    store_set_cookie: bool = False,
    targeted: str | None = None,
    heuristic: float | None = HEURISTIC_FRACTION,
    retain: float = 0.0,
) -> Plan | None:
    """Decide whether a response to a GET may be stored, and for how long.

    Args:
        status: The response status.
        request_headers: The request's header map.
        response_headers: The response's header map.
        request_time: When the request went to the app (POSIX seconds).
        response_time: When the response arrived.
        shared: Behave as a shared cache (``private`` forbids storing, ``s-maxage`` counts).
        default_ttl: Lifetime for heuristically cacheable responses without explicit
            freshness (instead of the Last-Modified heuristic).
        route_ttl: A route's override of the lifetime (heuristically cacheable statuses only).
        stale_while_revalidate: Default window when the response gives none.
        stale_if_error: Default window when the response gives none.
        store_set_cookie: Store responses with ``Set-Cookie`` (without the cookie).
        targeted: The value of the targeted cache-control field (RFC 9213) if present.
        heuristic: Without ``default_ttl``, the fraction of the time since Last-Modified
            a heuristically cacheable response without explicit freshness stays fresh
            (RFC 9111 §4.2.2; capped at a day). ``None``: such responses are not stored.
        retain: Seconds a response carrying ETag or Last-Modified is kept past its
            freshness for revalidation (so one stale on arrival may still be stored).

    Any final status except 206 and 304 may be stored with explicit freshness
    (``max-age``, ``s-maxage``, ``Expires``); without it only the heuristically
    cacheable statuses (:data:`HEURISTIC_STATUSES`), so an error is never stored unless
    the app says for how long.

    Returns:
        The plan, or ``None`` when the response must not be stored.
    """
    return storage_plan(
        status,
        request_headers,
        response_headers,
        request_time,
        response_time,
        shared,
        default_ttl,
        route_ttl,
        stale_while_revalidate,
        stale_if_error,
        store_set_cookie,
        targeted,
        heuristic,
        retain,
    )


def storage_plan(
    status: int,
    request_headers: HeaderMap,
    response_headers: HeaderMap,
    request_time: float,
    response_time: float,
    shared: bool,
    default_ttl: float | None,
    route_ttl: float | None,
    stale_while_revalidate: float | None,
    stale_if_error: float | None,
    store_set_cookie: bool,
    targeted: str | None,
    heuristic: float | None,
    retain: float,
) -> Plan | None:
    """:func:`plan_storage` with positional arguments: the cache's own call, once per
    response stored (fourteen keywords cost more than the rest of the plan)."""
    get = response_headers.get
    rules = _rules(
        status,
        request_headers.get("cache-control"),
        "authorization" in request_headers,
        get("cache-control"),
        targeted,
        "set-cookie" in response_headers,
        get("vary"),
        "expires" in response_headers,
        shared,
        default_ttl,
        route_ttl,
        stale_while_revalidate,
        stale_if_error,
        store_set_cookie,
        heuristic,
    )
    if rules is None:
        return None
    date_value = get("date")
    date = parse_http_date(date_value) if date_value else None
    lifetime = rules.lifetime
    if rules.source == _FROM_EXPIRES:
        expires = parse_http_date(get("expires"))
        # An invalid Expires (0, a bad format) means "already expired" (RFC 9111 §5.3).
        lifetime = 0.0 if expires is None else max(0.0, expires - (date or response_time))
    elif rules.source == _FROM_LAST_MODIFIED:
        modified = parse_http_date(get("last-modified"))
        if modified is None:
            return None
        since = (date or response_time) - modified
        lifetime = min(_HEURISTIC_CAP, max(0.0, since * (heuristic or 0.0)))
    if date is None and "age" not in response_headers:
        # initial_age() of an app's own response (a comparison: max() costs more)
        age = response_time - request_time if response_time > request_time else 0.0
    else:
        age = initial_age(response_headers, request_time, response_time, date)
    if "etag" not in response_headers and "last-modified" not in response_headers:
        retain = 0.0
    # Plan.keep, computed once: nothing to keep, nothing stored.
    if lifetime <= age and rules.window <= 0.0 and retain <= 0.0:
        return None
    return new_plan(
        Plan,
        (
            lifetime,
            age,
            rules.always_revalidate,
            rules.no_stale,
            rules.stale_while_revalidate,
            rules.stale_if_error,
            rules.authorized_ok,
            rules.strip,
            retain,
        ),
    )


# ``new_plan(Plan, (every field, in order))`` makes a Plan without the named tuple's
# Python-level __new__ (one frame fewer on every response stored or decoded).
new_plan: Final = tuple.__new__


# Where a storable response's lifetime comes from (RFC 9111 §4.2.1, in that order).
_EXPLICIT: Final = 0  # route override, s-maxage, max-age or default_ttl: known up front
_FROM_EXPIRES: Final = 1  # Expires minus Date: per response
_FROM_LAST_MODIFIED: Final = 2  # heuristic from Last-Modified: per response


class _Rules(NamedTuple):
    source: int
    lifetime: float
    always_revalidate: bool
    no_stale: bool
    stale_while_revalidate: float
    stale_if_error: float
    authorized_ok: bool
    strip: frozenset[str]
    window: float  # Plan.keep's stale window: 0 when no_stale, else the longer one


@functools.lru_cache(maxsize=1024)
def _rules(
    status: int,
    request_cache_control: str | None,
    authorization: bool,
    cache_control: str | None,
    targeted: str | None,
    set_cookie: bool,
    vary: str | None,
    expires: bool,
    shared: bool,
    default_ttl: float | None,
    route_ttl: float | None,
    stale_while_revalidate: float | None,
    stale_if_error: float | None,
    store_set_cookie: bool,
    heuristic: float | None,
) -> _Rules | None:
    """What :func:`plan_storage` decides from directives alone (``None``: not storable).

    An app answers most requests with the same few header values, so this is memoised:
    the times and dates of each response are applied by the caller.
    """
    if status < 200 or status > 599 or status in _NEVER_STORED:
        return None
    request_cc = parse_directives(request_cache_control)
    if "no-store" in request_cc:
        return None
    directives = parse_directives(cache_control)
    if targeted is not None:
        # RFC 9213: a valid targeted field replaces Cache-Control for this cache.
        targeted_directives = parse_directives(targeted)
        if targeted_directives:
            directives = targeted_directives
    if "no-store" in directives and "must-understand" not in directives:
        return None
    strip: set[str] = set()
    if "private" in directives:
        fields = _qualified_fields(directives["private"])
        if shared and not fields:
            return None
        strip |= fields
    if "no-cache" in directives:
        strip |= _qualified_fields(directives["no-cache"])
    always_revalidate = "no-cache" in directives and not directives["no-cache"]
    if set_cookie and "set-cookie" not in strip:
        if not store_set_cookie:
            return None
        strip.add("set-cookie")
    authorized_ok = any(name in directives for name in ("public", "s-maxage", "must-revalidate"))
    if shared and authorization and not authorized_ok:
        return None
    if vary_names(vary) is None:
        return None  # Vary: * never matches (RFC 9111 §4.1)

    source = _EXPLICIT
    lifetime: float | None = None
    if route_ttl is not None:
        lifetime = route_ttl if status in HEURISTIC_STATUSES else None
    if lifetime is None and shared and "s-maxage" in directives:
        lifetime = _seconds(parse_delta(directives["s-maxage"]))
    if lifetime is None and "max-age" in directives:
        lifetime = _seconds(parse_delta(directives["max-age"]))
    if lifetime is None and expires:
        source = _FROM_EXPIRES
    elif lifetime is None and status in HEURISTIC_STATUSES:
        if default_ttl is not None:
            lifetime = default_ttl
        elif heuristic is not None:
            source = _FROM_LAST_MODIFIED
        else:
            return None
    elif lifetime is None:
        return None  # no explicit freshness, and not heuristically cacheable

    swr = parse_delta(directives.get("stale-while-revalidate"))
    sie = parse_delta(directives.get("stale-if-error"))
    no_stale = any(name in directives for name in ("must-revalidate", "proxy-revalidate")) or (
        shared and "s-maxage" in directives
    )
    swr_seconds = _seconds(swr if swr is not None else stale_while_revalidate)
    sie_seconds = _seconds(sie if sie is not None else stale_if_error)
    return _Rules(
        source=source,
        lifetime=float(lifetime or 0.0),
        always_revalidate=always_revalidate,
        no_stale=no_stale,
        stale_while_revalidate=swr_seconds,
        stale_if_error=sie_seconds,
        authorized_ok=authorized_ok,
        strip=frozenset(strip),
        window=0.0 if no_stale else max(swr_seconds, sie_seconds),
    )


def initial_age(
    response_headers: HeaderMap, request_time: float, response_time: float, date: float | None
) -> float:
    """Return the corrected initial age of a response (RFC 9111 §4.2.3).

    An invalid ``Age`` (a list, negative, not a number) makes the response stale
    (§5.1): it counts as infinitely old.
    """
    age_value = response_headers.get("age")
    age = 0.0
    if age_value is not None:
        parsed = parse_delta(age_value.strip())
        if parsed is None:
            return math.inf
        age = float(parsed)
    apparent = max(0.0, response_time - date) if date is not None else 0.0
    corrected = age + max(0.0, response_time - request_time)
    return max(apparent, corrected)


def current_age(initial: float, response_time: float, now: float) -> float:
    """Return the current age: the initial age plus the time resident in the cache."""
    resident = now - response_time
    return initial + resident if resident > 0.0 else initial  # every lookup: no max()


# -- reuse of a stored response (RFC 9111 §4, §5.2.1) -------------------------------------

HIT: Final = "HIT"
STALE: Final = "STALE"
REVALIDATE: Final = "REVALIDATE"
GATEWAY_TIMEOUT: Final = "GATEWAY_TIMEOUT"


class Reuse(NamedTuple):
    """What :func:`decide_reuse` decided for one stored response and one request.

    Attributes:
        action: ``HIT`` (serve it), ``STALE`` (serve it stale; revalidate in the
            background unless ``forward`` is empty), ``REVALIDATE`` (ask the app,
            conditionally) or ``GATEWAY_TIMEOUT`` (``only-if-cached`` and unusable).
        forward: Why the app is asked, for ``Cache-Status``: ``"stale"`` (the entry is
            stale), ``"request"`` (the request asked for validation), ``""`` (it is not).
        stale_if_error: The entry may replace an error from the app (stale-if-error).
    """

    action: str
    forward: str
    stale_if_error: bool


_FRESH: Final = Reuse(HIT, "", True)
_FRESH_ONLY: Final = Reuse(HIT, "", False)


def decide_reuse(plan: Plan, age: float, request_cc: Directives) -> Reuse:
    """Decide how a stored response of current ``age`` may answer a request.

    Args:
        plan: The stored response's plan.
        age: Its current age in seconds (:func:`current_age`).
        request_cc: The request's Cache-Control directives (``Pragma: no-cache`` given
            as ``no-cache`` when there is no Cache-Control).

    Request directives follow RFC 9111 §5.2.1: ``max-age`` (``0`` or invalid asks for
    validation), ``min-fresh``, ``max-stale`` with or without a bound (never past
    ``must-revalidate``), ``no-cache`` and ``only-if-cached``; the response's
    ``no-cache`` always revalidates, its stale-while-revalidate window serves stale
    while one revalidation runs.
    """
    staleness = age - plan.lifetime
    if staleness < 0 and not request_cc and not plan.always_revalidate:
        # The common case, a fresh entry and a request without directives, answered first.
        return _FRESH if not plan.no_stale and staleness <= plan.stale_if_error else _FRESH_ONLY
    no_stale = plan.no_stale
    error_window = plan.stale_if_error
    if "stale-if-error" in request_cc:
        error_window = max(error_window, float(parse_delta(request_cc["stale-if-error"]) or 0))
    stale_if_error = not no_stale and staleness <= error_window
    asked = "no-cache" in request_cc
    if "max-age" in request_cc:
        max_age = parse_delta(request_cc["max-age"])
        # max-age=0 (or invalid) is how clients ask for revalidation (a reload).
        if not max_age or age > max_age:
            asked = True
    if not asked and not plan.always_revalidate:
        if staleness < 0:
            min_fresh = parse_delta(request_cc.get("min-fresh"))
            if min_fresh is None or -staleness >= min_fresh:
                return Reuse(HIT, "", stale_if_error)
        elif not no_stale:
            if "max-stale" in request_cc:
                bound = request_cc["max-stale"]
                allowed = parse_delta(bound)
                if bound is None or (allowed is not None and staleness <= allowed):
                    return Reuse(STALE, "", stale_if_error)
            window = plan.stale_while_revalidate
            if window > 0 and staleness <= window:  # no window: nothing served stale
                return Reuse(STALE, "stale", stale_if_error)
    if "only-if-cached" in request_cc:
        return Reuse(GATEWAY_TIMEOUT, "", stale_if_error)
    return Reuse(REVALIDATE, "request" if asked else "stale", stale_if_error)
