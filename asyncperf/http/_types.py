"""The vocabulary the response cache and its framework glue share: labels, request
and reply views, the lookup decision, statistics and the header-field sets."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from ._policy import GATEWAY_TIMEOUT, HIT, REVALIDATE, STALE, Plan
from ._stored import StoredResponse

__all__ = [
    "BYPASS",
    "FROM_CACHE",
    "GATEWAY_TIMEOUT",
    "HIT",
    "MISS",
    "REVALIDATE",
    "SAFE_METHODS",
    "SERVER_ERRORS",
    "STALE",
    "Lookup",
    "Reply",
    "RequestView",
    "ResponseCacheStatistics",
    "header_map",
]

MISS: Final = "MISS"
BYPASS: Final = "BYPASS"
# The lookups answered without the app (ResponseCache.cached_reply).
FROM_CACHE: Final = frozenset({HIT, STALE, GATEWAY_TIMEOUT})

SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# Answers stale-if-error may replace (RFC 5861 §4: any 500-599).
SERVER_ERRORS: Final = frozenset(range(500, 600))
# An identity body that may still be encoded for the client (never stored as such).
PLAIN: Final = "plain"

# Fields never stored: hop-by-hop (RFC 9111 §3.1), recomputed on every reply, or ours.
HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "te",
        "transfer-encoding",
        "upgrade",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authentication-info",
        "proxy-authorization",
        "trailer",
    }
)
RECOMPUTED: Final = frozenset({"content-length", "age", "etag"})
DROPPED: Final = HOP_BY_HOP | RECOMPUTED
# ... and the coding, when this cache owns it (identity from the app).
DROPPED_OWNED: Final = DROPPED | {"content-encoding"}
# Fields a 304 carries when the 200 would (RFC 9110 §15.4.5).
NOT_MODIFIED_FIELDS: Final = frozenset(
    {"content-location", "date", "etag", "vary", "cache-control", "expires", "set-cookie"}
)
# Codings this cache may send one stored body in (each with its own validator).
OWN_CODINGS: Final = ("identity", "zstd", "br", "gzip")


@dataclass(frozen=True, slots=True)
class ResponseCacheStatistics:
    """Counters of one :class:`ResponseCache` since it was created.

    Attributes:
        hits: Responses served from the cache without calling the app (including
            those revalidated by a 304 from the app).
        misses: Cacheable requests that went to the app.
        stale: Stale responses served (stale-while-revalidate or stale-if-error).
        bypasses: Requests the cache did not look up (unsafe methods, ranges, routes
            opted out).
        stores: Responses written to the cache.
        revalidations: Revalidations sent to the app (foreground and background).
        not_modified: 304 responses sent to clients.
        invalidations: Invalidation calls (API and unsafe methods).
        bytes_served: Body bytes sent from the cache.
        bytes_saved: Body bytes content coding saved on the wire (identity minus sent).
        errors: Background revalidations and store writes that failed.
        coalesced: Misses that waited for a concurrent request's response to the same URL
            and were answered from it (also counted in ``hits``).
        ranges: Range requests answered from the cache (``206`` or ``416``; also
            counted in ``hits``).
    """

    hits: int
    misses: int
    stale: int
    bypasses: int
    stores: int
    revalidations: int
    not_modified: int
    invalidations: int
    bytes_served: int
    bytes_saved: int
    errors: int
    coalesced: int = 0
    ranges: int = 0

    @property
    def hit_rate(self) -> float:
        """Hits (fresh and stale) over cacheable lookups; 0.0 before any."""
        served = self.hits + self.stale
        total = served + self.misses
        return served / total if total else 0.0


# The params of a request no route has matched yet: shared and read-only, so the ASGI
# glue makes no dict per request.
NO_PARAMS: Final[Mapping[str, object]] = MappingProxyType({})


# No generated repr: the headers hold credentials (Authorization, Cookie). Not kw_only:
# the glue builds one per request positionally (keywords cost CPython 3.11 about 3x).
@dataclass(slots=True, eq=False, repr=False)
class RequestView:
    """What the cache needs from a request, framework-independent.

    Args:
        method: Upper-case method.
        scheme: ``http`` or ``https``.
        host: The Host header (or server address).
        path: The raw path.
        query: The raw query string, without ``?``.
        headers: Lower-case names; repeated fields joined with ``", "``.
        params: Path parameters of the matched route (for tag templates).
    """

    method: str
    scheme: str
    host: str
    path: str
    query: str
    headers: Mapping[str, str]
    params: Mapping[str, object] = field(default_factory=dict)

    @property
    def target(self) -> str:
        """Path and query, as in the request line."""
        return request_target(self)


def request_target(request: RequestView) -> str:
    """:attr:`RequestView.target` as a function, for the hot paths (CPython 3.11 reads a
    property through a generic lookup and a new frame; a plain call is specialised)."""
    return f"{request.path}?{request.query}" if request.query else request.path


@dataclass(slots=True)
class Lookup:
    """What :meth:`ResponseCache.lookup` found, and what the glue should do next.

    Attributes:
        action: ``HIT``, ``STALE`` (serve, then revalidate in the background),
            ``REVALIDATE`` (ask the app, conditionally), ``MISS``, ``BYPASS`` or
            ``GATEWAY_TIMEOUT`` (``only-if-cached`` and nothing usable).
        primary: The URL's storage key ("" when bypassing).
        key: The storage key of the variant found (or of the primary).
        entry: The stored response, when one was found.
        age: Its current age in seconds.
        stale_if_error: The entry may replace an error from the app.
        forward: Why the app is asked (for ``Cache-Status``).
        stored: The response to this request was written to the store.
        flight: Set when this request leads (request coalescing): the
            ``[deadline, Event | None]`` entry other requests for the URL wait on; the glue
            calls :meth:`ResponseCache.release` once its response is stored, or known not
            to be.
        lease: The token of the Redis lease a ``coalesce="distributed"`` leader holds.
        range: The byte range a ``HIT`` answers with ``206`` (see
            :func:`~asyncperf.http._conditional.parse_range`).
    """

    action: str
    primary: str = ""
    key: str = ""
    entry: StoredResponse | None = None
    age: float = 0.0
    stale_if_error: bool = False
    forward: str = "uri-miss"
    stored: bool = False
    flight: list[Any] | None = None
    lease: str | None = None
    range: tuple[int | None, int | None] | None = None

    @property
    def leader(self) -> bool:
        """This request asks the app for a URL other requests in this process wait on."""
        return self.flight is not None


class Reply:
    """A response to send: status, header list (lower-case names) and full body.

    For HEAD the body is still the full one (its length is the Content-Length); the
    glue sends no body. ``write`` is the store write of a response from the app, to run
    once the reply is sent (:meth:`ResponseCache.store` or :meth:`ResponseCache.store_later`).
    ``raw`` is the header list as bytes when the reply was built that way (the ASGI glue
    sends it as is); ``headers`` is then decoded from it only when asked for.
    """

    __slots__ = ("_headers", "body", "label", "raw", "status", "write")

    def __init__(
        self,
        status: int,
        headers: list[tuple[str, str]] | None,
        body: bytes,
        label: str,
        write: Any = None,
        raw: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        if headers is None and raw is None:
            raise ValueError("a Reply needs its headers as text or as bytes")
        self.status = status
        self._headers = headers
        self.body = body
        self.label = label
        self.write: Any = write  # a PendingWrite (see _writes.py)
        self.raw = raw

    @property
    def headers(self) -> list[tuple[str, str]]:
        """The header list as ``(lower-case name, value)`` text pairs."""
        headers = self._headers
        if headers is None:
            assert self.raw is not None
            headers = self._headers = [
                (name.decode("latin-1"), value.decode("latin-1")) for name, value in self.raw
            ]
        return headers

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.label}, {len(self.body)} bytes)"


def header_map(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Return ``{lower-case name: joined values}`` for a header list."""
    result: dict[str, str] = {}
    for name, value in headers:
        name = name.lower()
        previous = result.get(name)
        result[name] = value if previous is None else f"{previous}, {value}"
    return result


# The plan of a reply that is not stored (it is only ever served once, to this client).
NOT_STORED: Final = Plan(
    0.0,
    0.0,
    always_revalidate=True,
    no_stale=True,
    stale_while_revalidate=0.0,
    stale_if_error=0.0,
    authorized_ok=False,
    strip=frozenset(),
)
