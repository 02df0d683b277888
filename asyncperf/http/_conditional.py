"""The sans-IO request fields of RFC 9110: conditionals, byte ranges and content codings.

Beside :mod:`._policy` (storage and reuse), these decide how a stored response answers one
request: ``304`` or not, which bytes of it, in which coding. Pure functions, no I/O.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Final

from ._policy import HeaderMap, parse_http_date

__all__ = [
    "FORWARD",
    "choose_encoding",
    "etag_matches",
    "if_range_matches",
    "is_not_modified",
    "parse_accept_encoding",
    "parse_range",
    "resolve_range",
]


# -- byte ranges (RFC 9110 §14) ------------------------------------------------------------

FORWARD: Final = "forward"
_BYTE_RANGE = re.compile(r"\s*bytes\s*=\s*([0-9]*)\s*-\s*([0-9]*)\s*", re.IGNORECASE)


def parse_range(value: str) -> tuple[int | None, int | None] | str | None:
    """Parse a ``Range`` value this cache can answer from a stored complete response.

    Returns:
        ``(first, last)`` for one byte range (``last`` ``None``: to the end; ``first``
        ``None``: the suffix of ``last`` bytes); :data:`FORWARD` for what the app should
        answer itself (several ranges, another unit); ``None`` for an invalid value,
        which is ignored (a full response answers it).
    """
    match = _BYTE_RANGE.fullmatch(value)
    if match is None:
        unit, equals, ranges = value.partition("=")
        if not equals or unit.strip().lower() != "bytes" or "," in ranges:
            return FORWARD if equals else None
        return None
    first, last = match.group(1), match.group(2)
    if not first:
        return (None, int(last)) if last else None
    start = int(first)
    if not last:
        return (start, None)
    end = int(last)
    return (start, end) if end >= start else None


def resolve_range(spec: tuple[int | None, int | None], size: int) -> tuple[int, int] | None:
    """Return the inclusive ``(first, last)`` byte positions of ``spec`` in ``size``
    bytes, or ``None`` when unsatisfiable (answered ``416``)."""
    first, last = spec
    if first is None:
        length = last or 0
        if length == 0 or size == 0:
            return None
        return (max(0, size - length), size - 1)
    if first >= size:
        return None
    return (first, size - 1 if last is None else min(last, size - 1))


def if_range_matches(value: str, etag: str, last_modified: float | None) -> bool:
    """Return whether an ``If-Range`` value names the stored representation.

    An entity-tag matches by strong comparison (a weak tag never does); a date matches
    only when it equals the Last-Modified exactly (RFC 9110 §13.1.5).
    """
    value = value.strip()
    if value.startswith('"') or value[:2] in ("W/", "w/"):
        return not value.startswith(("W/", "w/")) and bool(etag) and value == etag
    if last_modified is None:
        return False
    return parse_http_date(value) == last_modified


# -- conditional requests (RFC 9110 §13) ---------------------------------------------------


def _opaque(tag: str) -> str:
    tag = tag.strip()
    if tag[:2] in ("W/", "w/"):
        tag = tag[2:].strip()
    if not (len(tag) >= 2 and tag[0] == '"' and tag[-1] == '"'):
        tag = f'"{tag}"'  # tolerate unquoted entity-tags some clients send
    return tag


def etag_matches(if_none_match: str, etag: str | None) -> bool:
    """Return whether an ``If-None-Match`` value matches ``etag`` (weak comparison).

    Handles lists and ``*`` (which matches any current representation).
    """
    value = if_none_match.strip()
    if value == "*":
        return True
    if not etag:
        return False
    ours = _opaque(etag)
    return any(_opaque(tag) == ours for tag in value.split(",") if tag.strip())


def is_not_modified(
    request_headers: HeaderMap,
    *,
    etag: str | None,
    last_modified: float | None,
) -> bool:
    """Return whether a GET/HEAD with these headers is answered with 304.

    ``If-None-Match`` takes precedence; ``If-Modified-Since`` counts only without it,
    with one valid date, against ``last_modified`` (the Last-Modified, else the Date).
    """
    inm = request_headers.get("if-none-match")
    if inm is not None:
        return etag_matches(inm, etag)
    ims = request_headers.get("if-modified-since")
    if ims is None or last_modified is None or "," in ims.split("GMT", 1)[-1]:
        return False
    since = parse_http_date(ims)
    return since is not None and last_modified <= since


# -- content codings (RFC 9110 §12.5.3) ----------------------------------------------------

# At equal q: smallest and fastest to serve first (zstd is what the store holds).
_PREFERENCE: Final = ("zstd", "br", "gzip", "identity")
_IDENTITY_DEFAULT_Q: Final = 0.001


def parse_accept_encoding(value: str) -> dict[str, float]:
    """Return ``{coding: q}`` for an ``Accept-Encoding`` value (invalid q counts as 0)."""
    accepted: dict[str, float] = {}
    for item in value.split(","):
        parts = item.split(";")
        coding = parts[0].strip().lower()
        if not coding:
            continue
        q = 1.0
        for parameter in parts[1:]:
            name, _, raw = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(raw.strip())
                except ValueError:
                    q = 0.0
                if not 0.0 <= q <= 1.0:
                    q = 0.0
        accepted.setdefault(coding, q)
    return accepted


def choose_encoding(accept_encoding: str | None, available: Iterable[str]) -> str:
    """Pick the content coding to send among ``available`` (identity is always possible).

    Without ``Accept-Encoding``, identity. Codings not listed take the ``*`` weight;
    identity not listed is acceptable (ranked below listed codings) unless ``*;q=0``.
    When nothing is acceptable, identity is sent anyway (RFC 9110 allows it, not a 406).
    """
    if not accept_encoding:
        return "identity"
    return _choose_encoding(
        accept_encoding, available if type(available) is tuple else tuple(available)
    )


@functools.lru_cache(maxsize=256)
def _choose_encoding(accept_encoding: str, available: tuple[str, ...]) -> str:
    """:func:`choose_encoding`, memoised: clients send a handful of distinct values, and
    parsing one with its q-values costs more than the rest of serving a hit's headers."""
    accepted = parse_accept_encoding(accept_encoding)
    star = accepted.get("*")
    offered = set(available)
    best = "identity"
    best_q = 0.0
    for coding in _PREFERENCE:
        if coding != "identity" and coding not in offered:
            continue
        q = accepted.get(coding)
        if q is None:
            if star is not None:
                q = star
            else:
                # Unlisted identity stays acceptable, but below every listed coding.
                q = _IDENTITY_DEFAULT_Q if coding == "identity" else 0.0
        # Strictly greater: the earlier coding wins ties.
        if q > best_q:
            best, best_q = coding, q
    return best
