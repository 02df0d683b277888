"""ResponseCache: keys, storage, reuse decisions and replies, shared by ASGI and aiohttp.

The framework glue turns a request into a :class:`RequestView`, asks :meth:`lookup`
what to do, and hands the app's response to :meth:`ResponseCache.complete` (buffered
bodies), :meth:`ResponseCache.refresh` (a 304 to a revalidation) or
:meth:`ResponseCache.store_streamed`; it sends the :class:`Reply` it gets back.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import urljoin, urlsplit

import anyio

from .._exceptions import ConfigurationError
from ..cache import Cache
from ..cache.internal import check_ttl, lease_store, plain_memory_store
from ._coding import MAX_ZSTD_LEVEL, Codings, TranscodeCache
from ._policy import (
    Plan,
    choose_encoding,
    current_age,
    etag_matches,
    format_http_date,
    is_not_modified,
    parse_delta,
    parse_directives,
    parse_http_date,
    plan_storage,
    vary_names,
    vary_values,
)
from ._route import RoutePolicy
from ._stored import StoredResponse, decode, encode_marker

__all__ = ["Lookup", "Reply", "RequestView", "ResponseCache", "ResponseCacheStatistics"]

logger = logging.getLogger("asyncperf.http")

HIT: Final = "HIT"
MISS: Final = "MISS"
STALE: Final = "STALE"
BYPASS: Final = "BYPASS"
REVALIDATE: Final = "REVALIDATE"
GATEWAY_TIMEOUT: Final = "GATEWAY_TIMEOUT"

SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
SERVER_ERRORS: Final = frozenset({500, 502, 503, 504})
# An identity body that may still be encoded for the client (never stored as such).
_PLAIN: Final = "plain"

# Fields never stored: hop-by-hop (RFC 9111 §3.1), recomputed on every reply, or ours.
_HOP_BY_HOP: Final = frozenset(
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
_RECOMPUTED: Final = frozenset({"content-length", "age", "etag"})
_DROPPED: Final = _HOP_BY_HOP | _RECOMPUTED
# ... and the coding, when this cache owns it (identity from the app).
_DROPPED_OWNED: Final = _DROPPED | {"content-encoding"}
# Fields a 304 carries when the 200 would (RFC 9110 §15.4.5).
_NOT_MODIFIED_FIELDS: Final = frozenset(
    {"content-location", "date", "etag", "vary", "cache-control", "expires", "set-cookie"}
)
# Codings this cache may send one stored body in (each with its own validator).
_OWN_CODINGS: Final = ("identity", "zstd", "br", "gzip")
_PREFIX_DEPTH: Final = 16
# Hit-for-pass: how long, and for how many URLs, an unstorable response stops coalescing.
_PASS_SECONDS: Final = 30.0
_PASS_SLOTS: Final = 4096
# Store writes in flight in tasks (aiohttp) before new ones run in their request instead.
_MAX_WRITERS: Final = 256
# Cross-process coalescing without the Redis subscription yet: look again this often.
_UNSUBSCRIBED_RECHECK: Final = 0.05
_DECODED_SLOTS: Final = 512


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

    @property
    def hit_rate(self) -> float:
        """Hits (fresh and stale) over cacheable lookups; 0.0 before any."""
        served = self.hits + self.stale
        total = served + self.misses
        return served / total if total else 0.0


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

    __slots__ = ("headers", "host", "method", "params", "path", "query", "scheme")

    def __init__(
        self,
        *,
        method: str,
        scheme: str,
        host: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        params: Mapping[str, object] | None = None,
    ) -> None:
        self.method = method
        self.scheme = scheme
        self.host = host
        self.path = path
        self.query = query
        self.headers = headers
        self.params: Mapping[str, object] = params or {}

    @property
    def target(self) -> str:
        """Path and query, as in the request line."""
        return f"{self.path}?{self.query}" if self.query else self.path


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

    @property
    def leader(self) -> bool:
        """This request asks the app for a URL other requests in this process wait on."""
        return self.flight is not None


@dataclass(slots=True)
class Reply:
    """A response to send: status, header list (lower-case names) and full body.

    For HEAD the body is still the full one (its length is the Content-Length); the
    glue sends no body. ``write`` is the store write of a response from the app, to run
    once the reply is sent (:meth:`ResponseCache.store` or :meth:`ResponseCache.store_later`).
    """

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    label: str
    write: PendingWrite | None = None


def header_map(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Return ``{lower-case name: joined values}`` for a header list."""
    result: dict[str, str] = {}
    for name, value in headers:
        name = name.lower()
        previous = result.get(name)
        result[name] = value if previous is None else f"{previous}, {value}"
    return result


# The plan of a reply that is not stored (it is only ever served once, to this client).
_NOT_STORED: Final = Plan(
    0.0,
    0.0,
    always_revalidate=True,
    no_stale=True,
    stale_while_revalidate=0.0,
    stale_if_error=0.0,
    authorized_ok=False,
    strip=frozenset(),
)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    """Return the asyncio event loop this code runs in (``None`` under trio)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _digest(data: bytes, size: int = 12) -> str:
    return base64.urlsafe_b64encode(hashlib.blake2b(data, digest_size=size).digest()).decode()


def _body_etag(body: bytes) -> str:
    """Return a strong validator for a body this cache hashes itself.

    128 bits of SHA-1: hardware-accelerated on current CPUs, twice as fast as BLAKE2b
    here. A collision needs two bodies crafted by whoever writes the app's responses,
    who can serve anything anyway (keys built from request data use BLAKE2b,
    :func:`_digest`).
    """
    return f'"{hashlib.sha1(body, usedforsecurity=False).hexdigest()[:32]}"'


def _coded_etag(etag: str, coding: str) -> str:
    """Return a validator specific to ``coding`` (RFC 9110 §8.8.1: one tag per coding)."""
    if coding in ("identity", _PLAIN):
        return etag
    if etag.endswith('"'):
        return f'{etag[:-1]}-{coding}"'
    return etag


def _normalize_path(path: str) -> str:
    path = "/" + path.strip("/")
    return path


def prefix_tags(path: str) -> list[str]:
    """Return the ``p:`` tags of every path-segment prefix of ``path`` (capped in depth)."""
    tags: list[str] = []  # no "p:/": invalidate(prefix="/") clears the namespace instead
    current = "p:"
    for segment in [segment for segment in path.split("/") if segment][:_PREFIX_DEPTH]:
        current += "/" + segment
        tags.append(current)
    return tags


def _prefix_tag(prefix: str) -> str:
    segments = [segment for segment in prefix.split("/") if segment][:_PREFIX_DEPTH]
    return "p:/" + "/".join(segments)


def _url_target(url: str) -> str:
    if "://" in url:
        parts = urlsplit(url)
        path = parts.path or "/"
        return f"{path}?{parts.query}" if parts.query else path
    return url if url.startswith("/") else "/" + url


class PendingWrite:
    """A response's store write, run once: by its request after the reply is sent, or
    first by a lookup of the same URL, an invalidation or :meth:`ResponseCache.flush`
    (which then wait for it rather than read around it)."""

    __slots__ = ("_done", "_job", "_owner", "_previous", "_primary", "_state", "stored")

    def __init__(
        self, owner: ResponseCache, primary: str, job: Callable[[], Awaitable[bool]]
    ) -> None:
        self._owner = owner
        self._primary = primary
        self._job = job
        self._state = 0  # 0: waiting, 1: running, 2: done
        self._done: anyio.Event | None = None
        self.stored = False  # the store took the response (set once run)
        # An earlier unfinished write for the same URL (another variant, or a response
        # that was not coalesced): written first, so whoever waits for this one waits for
        # both, and the older response never lands after the newer.
        self._previous = owner._pending.get(primary)
        owner._pending[primary] = self

    async def run(self) -> None:
        """Write the response, or wait for the write already under way.

        The write is shielded from cancellation: whichever request runs it (its own, or a
        lookup or invalidation that needs it first), a client going away does not lose it.
        """
        if self._state:
            if self._state == 1:
                if self._done is None:
                    self._done = anyio.Event()
                await self._done.wait()
            return
        self._state = 1
        owner = self._owner
        try:
            if owner._writes_suspend:
                with anyio.CancelScope(shield=True):
                    await self._write()
            else:
                # A plain MemoryStore writes without ever suspending, so nothing can cancel
                # the write midway: a shield (~10 µs on asyncio) would protect nothing.
                await self._write()
        except Exception:
            owner.count_error()
            logger.warning("storing the response to %s failed", self._primary, exc_info=True)
        finally:
            self._state = 2
            if owner._pending.get(self._primary) is self:
                del owner._pending[self._primary]
            if self._done is not None:
                self._done.set()

    async def _write(self) -> None:
        previous, self._previous = self._previous, None
        if previous is not None:
            await previous.run()
        self.stored = await self._job()


class ResponseCache:
    """An RFC 9111 shared HTTP cache for Starlette/FastAPI and aiohttp apps.

    Use it through :class:`~asyncperf.http.ResponseCacheMiddleware` (ASGI) or
    :func:`asyncperf.http.aiohttp.response_cache_middleware`; both apply the same rules.

    Args:
        cache: Where responses are stored (memory, Redis, tiered): entries go through
            its public API with tags, so invalidation reaches every process sharing it.
        default_ttl: Freshness in seconds for responses without explicit freshness, for
            statuses RFC 9111 lets a cache store heuristically (200, 203, 204, 300, 301,
            308, 404, 405, 410, 414, 501). The Cache-Control sent downstream is unchanged.
        shared: Behave as a shared cache (the default and the safe choice). ``False``
            keys entries by ``Authorization`` and ``Cookie`` as well, and stores
            ``private`` responses: a per-user cache.
        max_body_size: Largest body, in bytes, the cache buffers, validates and stores.
            Larger or streamed-and-unbounded responses pass through.
        compression_level: zstd level of stored bodies, 1 to 19 (levels above 19 need
            windows RFC 9659 forbids).
        store_set_cookie: Store responses carrying ``Set-Cookie`` (without the cookie).
        namespace: The namespace of ``cache`` the responses live in.
        status_header: The header reporting ``HIT``/``MISS``/``STALE``/``BYPASS``
            (``None``: none).
        cache_status: Also send an RFC 9211 ``Cache-Status`` field.
        tags_header: Response field listing invalidation tags (comma or space
            separated); removed before the response is sent.
        targeted_header: Response field with cache directives for this cache only
            (RFC 9213); when valid it replaces Cache-Control here, and it is removed
            before the response is sent.
        stale_while_revalidate: Default window in seconds when a response gives none.
        stale_if_error: Default window in seconds when a response gives none.
        min_compress_size: Bodies smaller than this are stored raw.
        miss_compress_size: Smallest body sent compressed when it comes from the app (a
            miss, a revalidation answered 200, a bypassed GET). Smaller ones go out as the
            app made them: on a miss the client then pays no decoding for bytes it would
            have got from the app anyway, and compression for storage happens after the
            response is sent. Hits are always served in the negotiated coding. ``0``:
            compress every such response; ``None``: never.
        gzip_level: gzip level for clients that do not accept zstd.
        brotli_quality: brotli quality (when the ``brotli`` extra is installed).
        transcode_cache_size: Bytes of gzip/br re-encodings kept for hot entries.
        coalesce: Concurrent misses for one URL in this process make one request to the
            app; the others wait for its response and are answered from the store. A URL
            whose response could not be stored is not coalesced for the next 30 seconds.
            ``"distributed"``: across processes too, through a lease in the cache's Redis
            (a Redis-backed cache only; one more round trip per miss to take it).
        coalesce_timeout: Longest wait, in seconds, for another request's response before
            asking the app anyway.
        clock: Wall clock in POSIX seconds (HTTP dates are wall-clock times).

    Raises:
        ConfigurationError: An option is out of range.

    Example:
        >>> from asyncperf import Cache
        >>> rc = ResponseCache(Cache(), default_ttl=30)
    """

    monitor_kind = "http_cache"  # the metric prefix PerformanceMonitor.watch uses

    def __init__(
        self,
        cache: Cache,
        *,
        default_ttl: float | None = None,
        shared: bool = True,
        max_body_size: int = 1 << 20,
        compression_level: int = 3,
        store_set_cookie: bool = False,
        namespace: str = "http",
        status_header: str | None = "X-Cache",
        cache_status: bool = True,
        tags_header: str | None = "Cache-Tag",
        targeted_header: str | None = "Asyncperf-Cache-Control",
        stale_while_revalidate: float | None = None,
        stale_if_error: float | None = None,
        min_compress_size: int = 512,
        miss_compress_size: int | None = 16 << 10,
        gzip_level: int = 6,
        brotli_quality: int = 4,
        transcode_cache_size: int = 8 << 20,
        coalesce: bool | Literal["distributed"] = True,
        coalesce_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(cache, Cache):
            raise ConfigurationError(f"cache must be an asyncperf Cache, got {cache!r}")
        for name, value, low, high in (
            ("max_body_size", max_body_size, 0, 1 << 40),
            ("compression_level", compression_level, 1, MAX_ZSTD_LEVEL),
            ("min_compress_size", min_compress_size, 0, 1 << 40),
            ("gzip_level", gzip_level, 1, 9),
            ("brotli_quality", brotli_quality, 0, 11),
            ("transcode_cache_size", transcode_cache_size, 0, 1 << 40),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigurationError(f"{name} must be an int in [{low}, {high}], got {value!r}")
        if miss_compress_size is not None and (
            isinstance(miss_compress_size, bool)
            or not isinstance(miss_compress_size, int)
            or miss_compress_size < 0
        ):
            raise ConfigurationError(
                f"miss_compress_size must be an int >= 0 or None, got {miss_compress_size!r}"
            )
        self.cache = cache.namespace(namespace) if namespace else cache
        self.default_ttl = check_ttl(default_ttl, "default_ttl")
        self.shared = bool(shared)
        self.max_body_size = max_body_size
        self.compression_level = compression_level
        self.store_set_cookie = bool(store_set_cookie)
        self.status_header = status_header.lower() if status_header else None
        self.cache_status = bool(cache_status)
        self.tags_header = tags_header.lower() if tags_header else None
        self.targeted_header = targeted_header.lower() if targeted_header else None
        self.stale_while_revalidate = check_ttl(stale_while_revalidate, "stale_while_revalidate")
        self.stale_if_error = check_ttl(stale_if_error, "stale_if_error")
        self.min_compress_size = min_compress_size
        self.miss_compress_size = miss_compress_size
        if coalesce not in (True, False, "distributed"):
            raise ConfigurationError(
                f"coalesce must be True, False or 'distributed', got {coalesce!r}"
            )
        self.coalesce = bool(coalesce)
        self._distributed = coalesce == "distributed"
        if self._distributed and lease_store(cache) is None:
            raise ConfigurationError(
                "coalesce='distributed' needs a Redis-backed cache (RedisStore, "
                f"Cache.from_url('redis://...'), Cache.tiered); this one uses "
                f"{type(cache.store).__name__}"
            )
        self.coalesce_timeout = check_ttl(coalesce_timeout, "coalesce_timeout")
        self._flight_life = self.coalesce_timeout or _PASS_SECONDS
        self.codings = Codings(
            zstd_level=compression_level, gzip_level=gzip_level, brotli_quality=brotli_quality
        )
        self.transcoded = TranscodeCache(transcode_cache_size)
        self.clock = clock
        self._internal = frozenset(
            name
            for name in (self.tags_header, self.targeted_header, self.status_header)
            if name is not None
        ) | {"cache-status"}
        self._revalidating: set[str] = set()
        # Store writes not yet finished, by primary key: a miss is stored after its reply
        # is sent; a lookup of that URL, an invalidation or flush() waits for its write.
        self._pending: dict[str, PendingWrite] = {}
        self._writes_suspend = plain_memory_store(cache) is None
        self._writers: set[asyncio.Task[None]] = set()
        # Decoded entries by key, reused while the store returns the very same bytes object
        # (a MemoryStore does): a hit then skips parsing the header.
        self._decoded: OrderedDict[str, tuple[bytes, StoredResponse | tuple[str, ...]]] = (
            OrderedDict()
        )
        self._hits = self._misses = self._stale = self._bypasses = self._stores = 0
        self._revalidations = self._not_modified = self._invalidations = self._errors = 0
        self._bytes_served = self._bytes_saved = self._coalesced = 0
        # Request coalescing: URLs being fetched by a leader (an Event once someone waits),
        # and URLs whose last response could not be stored (hit-for-pass: not coalesced).
        self._flights: dict[str, list[Any]] = {}  # primary: [deadline, Event | None]
        self._passes: OrderedDict[str, float] = OrderedDict()

    def __repr__(self) -> str:
        return f"ResponseCache({self.cache!r}, shared={self.shared})"

    # -- statistics -----------------------------------------------------------------------

    def statistics(self) -> ResponseCacheStatistics:
        """Return the counters as a frozen snapshot."""
        return ResponseCacheStatistics(
            hits=self._hits,
            misses=self._misses,
            stale=self._stale,
            bypasses=self._bypasses,
            stores=self._stores,
            revalidations=self._revalidations,
            not_modified=self._not_modified,
            invalidations=self._invalidations,
            bytes_served=self._bytes_served,
            bytes_saved=self._bytes_saved,
            errors=self._errors,
            coalesced=self._coalesced,
        )

    def count_bypass(self) -> None:
        """Count a request the cache let through without looking up."""
        self._bypasses += 1

    def count_revalidated_hit(self) -> None:
        """Count an entry served after the app confirmed it with a 304."""
        self._hits += 1

    def count_stale_if_error(self) -> None:
        """Count a stale entry served in place of an error from the app."""
        self._stale += 1

    def count_error(self) -> None:
        """Count a failed background revalidation."""
        self._errors += 1

    # -- keys -----------------------------------------------------------------------------

    def primary_key(self, request: RequestView) -> str:
        """Return the storage key of a request's URL (per user when not shared)."""
        key = f"{request.scheme}://{request.host}{request.target}"
        if not self.shared:
            credentials = (
                f"{request.headers.get('authorization', '')}\n{request.headers.get('cookie', '')}"
            )
            key += "#u=" + _digest(credentials.encode("latin-1", "replace"))
        return key

    @staticmethod
    def variant_key(primary: str, names: tuple[str, ...], headers: Mapping[str, str]) -> str:
        """Return the secondary key of the variant ``headers`` select."""
        values = "\n".join(
            "\x00" if value is None else value for value in vary_values(names, headers)
        )
        return f"{primary}#v={_digest(values.encode('latin-1', 'replace'))}"

    async def _read(self, key: str) -> StoredResponse | tuple[str, ...] | None:
        blob = await self.cache.get(key)
        if blob is None:
            self._decoded.pop(key, None)
            return None
        known = self._decoded.get(key)
        if known is not None and known[0] is blob:
            return known[1]
        value = decode(blob)
        if value is not None and isinstance(blob, bytes):
            self._decoded[key] = (blob, value)
            if len(self._decoded) > _DECODED_SLOTS:
                self._decoded.popitem(last=False)
        return value

    # -- lookup ---------------------------------------------------------------------------

    def now(self) -> float:
        """Return the current wall-clock time of this cache."""
        return self.clock()

    async def lookup(self, request: RequestView) -> Lookup:
        """Decide how to answer a GET or HEAD: from the cache, or by asking the app.

        Args:
            request: The request.

        Returns:
            The decision, with the stored response when one applies.
        """
        headers = request.headers
        if (  # semantics this cache forwards instead of evaluating (no generator: hot path)
            "range" in headers
            or "if-match" in headers
            or "if-unmodified-since" in headers
            or "if-range" in headers
        ):
            self._bypasses += 1
            return Lookup(BYPASS, forward="bypass")
        primary = self.primary_key(request)
        request_cc = parse_directives(headers.get("cache-control"))
        if not request_cc and "no-cache" in headers.get("pragma", "").lower():
            request_cc = {"no-cache": None}
        waited = False
        while True:
            if self._pending:
                write = self._pending.get(primary)
                if write is not None:
                    await write.run()  # read your own writes: this URL's store first
            found = await self._read(primary)
            key = primary
            if isinstance(found, tuple):
                key = self.variant_key(primary, found, headers)
                variant = await self._read(key)
                found = variant if isinstance(variant, StoredResponse) else None
            if found is not None and not (
                self.shared and "authorization" in headers and not found.plan.authorized_ok
            ):
                break
            if "only-if-cached" in request_cc:
                return Lookup(GATEWAY_TIMEOUT, primary, key)
            if waited or not self._coalescible(request, primary, request_cc):
                self._misses += 1
                return Lookup(MISS, primary, key)
            flights = self._flights
            flight = flights.get(primary)
            if flight is None or flight[0] < time.monotonic():
                # Nobody asks the app for this URL (or its leader outlived the timeout,
                # never released): this request does. The Event is made only if needed.
                flight = flights[primary] = [time.monotonic() + self._flight_life, None]
                leader = Lookup(MISS, primary, key, flight=flight)
                if self._distributed and await self._led_elsewhere(leader):
                    # Another process asked the app and has answered (or given up): look
                    # again, with this process's waiters.
                    await self.release(leader)
                    waited = True
                    continue
                self._misses += 1
                return leader
            event = flight[1]
            if event is None:
                event = flight[1] = anyio.Event()
            with anyio.move_on_after(self.coalesce_timeout):
                await event.wait()
            waited = True  # then look again, once: served if the leader's response was stored
        plan = found.plan
        age = current_age(plan.initial_age, found.response_time, self.clock())
        staleness = age - plan.lifetime
        stale_if_error = not plan.no_stale and staleness <= max(
            plan.stale_if_error, float(parse_delta(request_cc.get("stale-if-error")) or 0)
        )
        lookup = Lookup(HIT, primary, key, found, age, stale_if_error)
        forced = "no-cache" in request_cc or plan.always_revalidate
        max_age = parse_delta(request_cc.get("max-age")) if "max-age" in request_cc else None
        if max_age is None and "max-age" in request_cc:
            max_age = 0  # an invalid request max-age asks for validation
        # max-age=0 is how clients ask for revalidation (a reload): honour it as such.
        if max_age is not None and (max_age == 0 or age > max_age):
            forced = True
        min_fresh = parse_delta(request_cc.get("min-fresh"))
        fresh = staleness < 0 and (min_fresh is None or -staleness >= min_fresh)
        if not forced:
            if fresh:
                self._hits += 1
                if waited:
                    self._coalesced += 1
                return lookup
            if "max-stale" in request_cc and not plan.no_stale:
                allowed = parse_delta(request_cc["max-stale"])
                if request_cc["max-stale"] is None or (
                    allowed is not None and staleness <= allowed
                ):
                    self._stale += 1
                    lookup.action = STALE
                    lookup.forward = ""
                    return lookup
            if not plan.no_stale and staleness <= plan.stale_while_revalidate:
                self._stale += 1
                lookup.action = STALE
                return lookup
        if "only-if-cached" in request_cc:
            lookup.action = GATEWAY_TIMEOUT
            return lookup
        self._revalidations += 1
        lookup.action = REVALIDATE
        asked = "no-cache" in request_cc or (
            max_age is not None and (max_age == 0 or age > max_age)
        )
        lookup.forward = "request" if asked else "stale"
        return lookup

    def claim_revalidation(self, lookup: Lookup) -> bool:
        """Return True for the one caller that should revalidate this stale entry now."""
        if lookup.key in self._revalidating:
            return False
        self._revalidating.add(lookup.key)
        self._revalidations += 1
        return True

    def _coalescible(
        self, request: RequestView, primary: str, request_cc: Mapping[str, str | None]
    ) -> bool:
        """Whether a miss may wait for a concurrent request's response to the same URL."""
        if not self.coalesce or request.method != "GET":
            return False  # HEAD misses are not stored
        if "no-cache" in request_cc or "max-age" in request_cc or "no-store" in request_cc:
            return False  # the client asks the origin itself, or forbids storing
        if self.shared and "authorization" in request.headers:
            return False  # its response is rarely shareable: nobody should wait for it
        if "text/event-stream" in request.headers.get("accept", ""):
            return False  # an event stream is never stored, and may never end
        passes = self._passes
        if passes:
            until = passes.get(primary)
            if until is not None:
                if self.clock() < until:
                    return False
                del passes[primary]
        return True

    async def release(self, lookup: Lookup) -> None:
        """Wake the requests waiting on this leader's response (idempotent).

        Called by the glue once the response is stored, or known not to be; a URL whose
        response was not stored is then not coalesced for a while (hit-for-pass), so
        uncacheable routes never make concurrent requests queue behind each other. A
        distributed leader writes its response first, then releases its lease, which
        wakes the other processes' waiters.
        """
        flight, lookup.flight = lookup.flight, None
        if flight is None:
            return
        primary = lookup.primary
        if not lookup.stored and primary not in self._pending:
            self._no_coalescing(primary)
        if self._flights.get(primary) is flight:
            del self._flights[primary]
        if flight[1] is not None:
            flight[1].set()
        token, lookup.lease = lookup.lease, None
        if token is not None:
            with anyio.CancelScope(shield=True):
                write = self._pending.get(primary)
                if write is not None:
                    await write.run()  # other processes cannot see our unwritten response
                try:
                    await self.cache.store.release_lease(self._lease_name(primary), token)  # type: ignore[attr-defined]
                except Exception:  # it expires on its own after coalesce_timeout
                    logger.debug("releasing the lease on %s failed", primary, exc_info=True)

    def _lease_name(self, primary: str) -> str:
        return f"{self.cache.name}:{primary}"

    async def _led_elsewhere(self, lookup: Lookup) -> bool:
        """Take the cross-process lease on the URL, or wait for the process holding it.

        Returns True when another process held it (and has released it, or the wait timed
        out): the caller looks again. False when this request holds it, or when Redis
        cannot be asked now (then it leads for this process only).
        """
        store: Any = self.cache.store
        if not store.available():
            return False
        name = self._lease_name(lookup.primary)
        token = uuid.uuid4().hex
        try:
            held_for = await store.try_lease(name, token, self._flight_life)
        except Exception:
            logger.debug("taking the lease on %s failed", lookup.primary, exc_info=True)
            return False
        if held_for == 0.0:
            lookup.lease = token
            return False

        async def answered() -> bool:
            return await self._read(lookup.primary) is not None

        deadline = time.monotonic() + min(self._flight_life, held_for + 0.05)
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                if not await store.ensure_listener():
                    remaining = min(remaining, _UNSUBSCRIBED_RECHECK)  # a release may be missed
                if await store.wait_for_lease(name, remaining, answered):
                    break
        except Exception:
            logger.debug("waiting for the lease on %s failed", lookup.primary, exc_info=True)
        return True

    def _no_coalescing(self, primary: str) -> None:
        """Remember that ``primary``'s response was not stored (hit-for-pass)."""
        passes = self._passes
        passes[primary] = self.clock() + _PASS_SECONDS
        passes.move_to_end(primary)
        if len(passes) > _PASS_SLOTS:
            passes.popitem(last=False)

    def release_revalidation(self, lookup: Lookup) -> None:
        """Let the next stale hit on this entry revalidate it again."""
        self._revalidating.discard(lookup.key)

    def revalidation_headers(self, entry: StoredResponse) -> list[tuple[str, str]]:
        """Return the validators to send the app (RFC 9111 §4.3.1), when it has its own."""
        extra: list[tuple[str, str]] = []
        if entry.app_etag:
            extra.append(("if-none-match", entry.etag))
        if entry.app_last_modified:
            extra.append(("if-modified-since", format_http_date(entry.last_modified)))
        return extra

    # -- replies --------------------------------------------------------------------------

    def _status_fields(self, headers: list[tuple[str, str]], label: str, cache_status: str) -> None:
        if self.status_header is not None:
            headers.append((self.status_header, label))
        if self.cache_status:
            headers.append(("cache-status", cache_status))

    def gateway_timeout(self) -> Reply:
        """Return the 504 that answers ``only-if-cached`` when nothing usable is stored."""
        headers = [("content-type", "text/plain; charset=utf-8"), ("content-length", "15")]
        self._status_fields(headers, MISS, "asyncperf; fwd=miss; detail=only-if-cached")
        return Reply(504, headers, b"Gateway Timeout", MISS)

    async def serve(
        self,
        request: RequestView,
        entry: StoredResponse,
        label: str,
        *,
        key: str = "",
        age: float | None = None,
        cache_status: str = "",
        from_cache: bool = True,
    ) -> Reply:
        """Build the reply for ``entry``: 304 or full body in the negotiated coding.

        Args:
            request: The request being answered.
            entry: The response to send.
            label: ``HIT``, ``MISS``, ``STALE`` or ``BYPASS``.
            key: The entry's storage key (names re-encodings kept for hot entries).
            age: The entry's current age (``None``: no ``Age`` field, fresh from the app).
            cache_status: The ``Cache-Status`` value.
            from_cache: The body comes from the cache (counts towards ``bytes_served``).
        """
        coding = "identity"
        if entry.coding == "zstd" or entry.coding == _PLAIN:
            coding = choose_encoding(request.headers.get("accept-encoding"), self.codings.available)
        elif entry.coding != "identity":
            coding = entry.coding  # the app's own coding, sent as it came
        owned = entry.coding in ("zstd", _PLAIN, "identity")
        etag = _coded_etag(entry.etag, coding) if owned else entry.etag
        headers = list(entry.headers)
        for name, value in headers:  # a loop, not any(<generator>): this runs on every hit
            if name == "vary" and "accept-encoding" in value.lower():
                break
        else:
            headers.append(("vary", "Accept-Encoding"))
        if etag:
            headers.append(("etag", etag))
        if age is not None:
            headers.append(("age", str(int(min(age, 2**31)))))
        if not cache_status:
            cache_status = f"asyncperf; hit; ttl={int(entry.plan.lifetime - (age or 0.0))}"
        self._status_fields(headers, label, cache_status)
        request_headers = request.headers
        if (
            entry.status == 200
            and ("if-none-match" in request_headers or "if-modified-since" in request_headers)
            and request.method in ("GET", "HEAD")
        ):
            held = etag
            if owned and etag and "if-none-match" in request_headers:
                held = self._held_etag(request_headers["if-none-match"], entry.etag, etag)
            if is_not_modified(request_headers, etag=held, last_modified=entry.last_modified):
                self._not_modified += 1
                kept = [
                    (name, held if name == "etag" else value)
                    for name, value in headers
                    if name in _NOT_MODIFIED_FIELDS
                    or name in ("age", "cache-status", self.status_header)
                    or (name == "last-modified" and not held)
                ]
                return Reply(304, kept, b"", label)
        if coding == "identity" and entry.coding != "zstd":
            body = entry.body  # identity, the app's own coding, or plain identity at hand
        elif coding == "zstd" and entry.coding == "zstd":
            body = entry.body  # the stored bytes
        else:
            body = await self._body(entry, coding, key)
        if owned and coding != "identity":
            headers.append(("content-encoding", coding))
            self._bytes_saved += max(0, entry.size - len(body))
        headers.append(("content-length", str(len(body))))
        if from_cache and request.method == "GET":
            self._bytes_served += len(body)
        return Reply(entry.status, headers, body, label)

    @staticmethod
    def _held_etag(if_none_match: str, etag: str, chosen: str) -> str:
        """Return the validator of the coding the client holds, when it is current.

        One body has one validator per coding (a miss may go out in identity, its hits in
        zstd); a client holding any of them holds the current content, so its tag is the
        one a 304 confirms. Otherwise the tag of the coding chosen now.
        """
        if etag_matches(if_none_match, chosen):
            return chosen
        for coding in _OWN_CODINGS:
            held = _coded_etag(etag, coding)
            if held != chosen and etag_matches(if_none_match, held):
                return held
        return chosen

    async def _body(self, entry: StoredResponse, coding: str, key: str) -> bytes:
        codings = self.codings
        if entry.coding == "zstd":
            if coding == "zstd":
                return entry.body
            slot = (key, entry.etag, coding)
            if key:
                kept = self.transcoded.get(slot)
                if kept is not None:
                    return kept
            identity = await codings.run(entry.size, codings.unpack, entry.body, entry.size)
            body = (
                identity
                if coding == "identity"
                else await codings.run(entry.size, codings.encode, identity, coding)
            )
            if key:
                self.transcoded.put(slot, body)
            return body
        if entry.coding == _PLAIN and coding != "identity":
            if coding == "zstd" and entry.packed is not None:
                return entry.packed
            return await codings.run(entry.size, codings.encode, entry.body, coding)
        return entry.body

    # -- responses from the app -----------------------------------------------------------

    def _split_internal(
        self, headers: list[tuple[str, str]]
    ) -> tuple[list[tuple[str, str]], dict[str, str], list[str], str | None]:
        """Remove this cache's fields (lower-casing names); return the rest as a list and
        as a :func:`header_map`, the tags and the targeted Cache-Control value."""
        kept: list[tuple[str, str]] = []
        fields: dict[str, str] = {}
        tags: list[str] = []
        targeted: str | None = None
        internal = self._internal
        for name, value in headers:
            name = name.lower()
            if name in internal:
                if name == self.tags_header:
                    tags.extend(tag for tag in value.replace(",", " ").split() if tag)
                elif name == self.targeted_header:
                    targeted = value if targeted is None else f"{targeted}, {value}"
                continue
            kept.append((name, value))
            previous = fields.get(name)
            fields[name] = value if previous is None else f"{previous}, {value}"
        return kept, fields, tags, targeted

    def downstream_headers(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Return a passed-through response's headers without this cache's own fields."""
        return self._split_internal(headers)[0]

    async def complete(
        self,
        request: RequestView,
        lookup: Lookup | None,
        *,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
        route: RoutePolicy | None,
        request_time: float,
        response_time: float,
    ) -> Reply:
        """Store a buffered response when allowed, and build the reply to send.

        Args:
            request: The request.
            lookup: The lookup that sent the request to the app (``None``: not cacheable,
                e.g. a bypassed GET).
            status: The app's status.
            headers: The app's headers (any case).
            body: The whole body.
            route: The matched route's policy.
            request_time: When the request went to the app.
            response_time: When the response came back.
        """
        fields, fields_map, tags, targeted = self._split_internal(headers)
        label = MISS if lookup is not None else BYPASS
        if route is not None and not route.enabled:
            if lookup is not None and lookup.action == MISS:
                # Counted as a miss before the route said "not cached": it was a bypass.
                self._misses -= 1
                self._bypasses += 1
            lookup, label = None, BYPASS
        app_coding = fields_map.get("content-encoding")
        owned = app_coding is None or app_coding.strip().lower() == "identity"
        cache_control = fields_map.get("cache-control")
        transformable = owned and (
            not cache_control
            or "no-transform" not in cache_control.lower()  # no need to parse, then
            or "no-transform" not in parse_directives(cache_control)
        )
        app_etag = fields_map.get("etag")
        etag = app_etag or (_body_etag(body) if status == 200 else "")
        last_modified = parse_http_date(fields_map.get("last-modified"))
        date = parse_http_date(fields_map.get("date"))
        names = vary_names(fields_map.get("vary")) or ()
        if owned and names:
            names = tuple(name for name in names if name != "accept-encoding")
        drop = _DROPPED_OWNED if owned else _DROPPED
        connection = fields_map.get("connection")
        if connection:
            drop = drop | {token.strip().lower() for token in connection.split(",")}
        stored_fields = [(name, value) for name, value in fields if name not in drop]
        size = len(body)
        if not owned:
            coding = app_coding or "identity"
        elif transformable and size >= self.min_compress_size:
            coding = _PLAIN
        else:
            coding = "identity"
        miss_compress = self.miss_compress_size
        reply_coding = coding
        if coding == _PLAIN and (miss_compress is None or size < miss_compress):
            reply_coding = "identity"  # sent as the app made it; compressed for storage later
        reply_entry = StoredResponse(
            status=status,
            headers=stored_fields,
            body=body,
            coding=reply_coding,
            size=size,
            etag=etag,
            last_modified=last_modified or date or response_time,
            request_time=request_time,
            response_time=response_time,
            plan=_NOT_STORED,
            vary=names,
            app_etag=app_etag is not None,
            app_last_modified=last_modified is not None,
        )
        key = ""
        write: PendingWrite | None = None
        if lookup is not None and size <= self.max_body_size:
            key = (
                self.variant_key(lookup.primary, names, request.headers)
                if names
                else lookup.primary
            )
            packed: bytes | None = None
            if reply_coding == _PLAIN:
                # The reply may be zstd: pack now, and the client gets the very bytes stored.
                packed = self.codings.pack(body, self.min_compress_size)
                if packed is None:
                    coding = reply_entry.coding = "identity"
                else:
                    reply_entry.packed = packed
            # Whether and how long to store is decided after the reply is sent: the
            # client does not wait for it (nor for compression, nor for the store).
            stored = reply_entry.copy(
                body=body if packed is None else packed,
                coding=coding if packed is None else "zstd",
            )
            job = self._store_job(
                request, lookup, stored, fields_map, targeted, transformable, tags, route
            )
            write = PendingWrite(self, lookup.primary, job)
        forward = lookup.forward if lookup is not None else "bypass"
        reply = await self.serve(
            request,
            reply_entry,
            label,
            key=key,
            cache_status=f"asyncperf; fwd={forward}",
            from_cache=False,
        )
        reply.write = write
        return reply

    def _store_job(
        self,
        request: RequestView,
        lookup: Lookup,
        entry: StoredResponse,
        fields: Mapping[str, str],
        targeted: str | None,
        transformable: bool,
        tags: list[str],
        route: RoutePolicy | None,
    ) -> Callable[[], Awaitable[bool]]:
        async def store() -> bool:
            plan = self._plan(
                request,
                entry.status,
                fields,
                entry.request_time,
                entry.response_time,
                route,
                targeted,
            )
            if plan is None:
                self._no_coalescing(lookup.primary)
                return False
            stored = self._storable(entry, plan, transformable)
            await self._write(request, lookup, stored, plan, tags, route)
            lookup.stored = True
            if self._passes:
                self._passes.pop(lookup.primary, None)  # storable again: coalesce again
            return True

        return store

    # -- write-behind ---------------------------------------------------------------------

    async def store(self, reply: Reply) -> None:
        """Write the response behind ``reply`` to the store now (after sending it)."""
        if reply.write is not None:
            await reply.write.run()

    async def store_later(self, reply: Reply) -> None:
        """Write the response behind ``reply`` after the caller returns (asyncio: in a
        task; elsewhere right now), for glue that cannot act after sending."""
        write = reply.write
        if write is None:
            return
        loop = _running_loop()
        if loop is None or len(self._writers) >= _MAX_WRITERS:
            await write.run()  # not on asyncio, or the store is falling behind: write now
            return
        task = loop.create_task(write.run(), name="asyncperf-http-store")
        self._writers.add(task)
        task.add_done_callback(self._writers.discard)

    async def flush(self) -> None:
        """Wait until every response this process has answered is written to the store.

        Misses are stored just after their reply is sent; a lookup of the same URL and
        every invalidation wait for the writes under way. Call this before shutting the
        event loop down, or in tests that read the store directly.
        """
        for write in list(self._pending.values()):  # those of responses answered by now
            await write.run()

    def _plan(
        self,
        request: RequestView,
        status: int,
        response_headers: Mapping[str, str],
        request_time: float,
        response_time: float,
        route: RoutePolicy | None,
        targeted: str | None,
    ) -> Plan | None:
        """Decide storage for a response, with the route's overrides over the cache's."""
        swr = route.stale_while_revalidate if route is not None else None
        sie = route.stale_if_error if route is not None else None
        return plan_storage(
            status=status,
            request_headers=request.headers,
            response_headers=response_headers,
            request_time=request_time,
            response_time=response_time,
            shared=self.shared,
            default_ttl=self.default_ttl,
            route_ttl=route.ttl if route is not None else None,
            stale_while_revalidate=self.stale_while_revalidate if swr is None else swr,
            stale_if_error=self.stale_if_error if sie is None else sie,
            store_set_cookie=self.store_set_cookie,
            targeted=targeted,
        )

    def _storable(self, entry: StoredResponse, plan: Plan, transformable: bool) -> StoredResponse:
        """Make ``entry`` (this write's own copy) what is stored: stripped fields removed,
        body packed with zstd, the plan set."""
        if plan.strip:
            entry.headers = [
                (name, value) for name, value in entry.headers if name not in plan.strip
            ]
        if entry.coding == _PLAIN:
            entry.coding = "identity"
            if transformable:
                packed = self.codings.pack(entry.body, self.min_compress_size)
                if packed is not None:
                    entry.body, entry.coding = packed, "zstd"
        entry.plan = plan
        return entry

    def _tags(
        self, request: RequestView, tags: Iterable[str], route: RoutePolicy | None
    ) -> list[str]:
        target = request.target
        all_tags = prefix_tags(request.path)
        if all_tags and all_tags[-1][2:] == target:
            # A plain URL's own prefix tag names what its URL tag names (invalidate(prefix)
            # asks for both): one tag, one index set fewer per stored response.
            all_tags[-1] = "u:" + target
        else:
            all_tags.append("u:" + target)
        if tags:
            all_tags.extend(["t:" + tag for tag in tags])
        if route is not None:
            all_tags.extend("t:" + tag for tag in route.expand_tags(request.params))
        return all_tags

    async def _write(
        self,
        request: RequestView,
        lookup: Lookup,
        entry: StoredResponse,
        plan: Plan,
        tags: Iterable[str],
        route: RoutePolicy | None,
    ) -> str:
        ttl = max(plan.keep, 0.001)
        all_tags = self._tags(request, tags, route)
        blob = entry.encode()
        primary = lookup.primary
        if entry.vary:
            key = self.variant_key(primary, entry.vary, request.headers)
            await self.cache.set(primary, encode_marker(entry.vary), ttl=ttl, tags=all_tags)
        else:
            key = primary
        await self.cache.set(key, blob, ttl=ttl, tags=all_tags)
        self._stores += 1
        return key

    async def refresh(
        self,
        request: RequestView,
        lookup: Lookup,
        *,
        headers: list[tuple[str, str]],
        route: RoutePolicy | None,
        request_time: float,
        response_time: float,
    ) -> StoredResponse:
        """Update the stored entry from the app's 304 to a revalidation (RFC 9111 §4.3.4).

        The 304's fields replace the stored ones (except Content-Length); freshness is
        decided again from the result and the entry is stored again.
        """
        entry = lookup.entry
        assert entry is not None
        fields, _, tags, targeted = self._split_internal(headers)
        updates = {name for name, _ in fields} - _RECOMPUTED - _HOP_BY_HOP - {"content-encoding"}
        merged = [(name, value) for name, value in entry.headers if name not in updates]
        merged.extend((name, value) for name, value in fields if name in updates)
        merged_map = header_map(merged)
        plan = self._plan(
            request, entry.status, merged_map, request_time, response_time, route, targeted
        )
        updated = StoredResponse(
            status=entry.status,
            headers=merged,
            body=entry.body,
            coding=entry.coding,
            size=entry.size,
            etag=entry.etag,
            last_modified=entry.last_modified,
            request_time=request_time,
            response_time=response_time,
            plan=plan or entry.plan,
            vary=entry.vary,
            app_etag=entry.app_etag,
            app_last_modified=entry.app_last_modified,
        )
        if plan is None:
            await self.cache.delete(lookup.key)
        else:
            await self._write(request, lookup, updated, plan, tags, route)
        return updated

    async def store_streamed(
        self,
        request: RequestView,
        lookup: Lookup,
        *,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
        route: RoutePolicy | None,
        request_time: float,
        response_time: float,
    ) -> bool:
        """Store a streamed response that turned out small enough; return whether stored.

        The client already got the app's own headers and chunks; later hits are served
        like any buffered entry.
        """
        reply = await self.complete(
            request,
            lookup,
            status=status,
            headers=headers,
            body=body,
            route=route,
            request_time=request_time,
            response_time=response_time,
        )
        await self.store(reply)
        return reply.write is not None and reply.write.stored

    def pass_through_headers(
        self, headers: list[tuple[str, str]], label: str, *, cacheable: bool
    ) -> list[tuple[str, str]]:
        """Return a streamed response's headers: ours removed, Vary and status added."""
        kept = self.downstream_headers(headers)
        if cacheable and not any(
            name == "vary" and ("accept-encoding" in value.lower() or value.strip() == "*")
            for name, value in kept
        ):
            kept.append(("vary", "Accept-Encoding"))
        self._status_fields(
            kept, label, "asyncperf; fwd=" + ("uri-miss" if cacheable else "bypass")
        )
        return kept

    # -- invalidation ---------------------------------------------------------------------

    async def invalidate(
        self, url: str | None = None, prefix: str | None = None, tags: Iterable[str] = ()
    ) -> int:
        """Remove cached responses by URL, path prefix and/or tags, in every process.

        Args:
            url: A path with its query (``"/users/1?full=1"``) or an absolute URL; all
                hosts and all variants of it are removed.
            prefix: A path prefix on segment boundaries: ``"/users"`` removes ``/users``,
                ``/users/1`` and ``/users?page=2``, not ``/usersettings``.
            tags: Tags given by the ``Cache-Tag`` response field or a route's
                :func:`~asyncperf.http.cache_policy`.

        Returns:
            How many stored entries (responses and Vary markers) were removed.

        Raises:
            ConfigurationError: ``tags`` is a single string.
        """
        if isinstance(tags, str):
            raise ConfigurationError(f"tags must be a list of str, not a single str ({tags!r})")
        wanted: list[str] = []
        if url is not None:
            wanted.append("u:" + _url_target(url))
        if prefix is not None:
            tag = _prefix_tag(_normalize_path(prefix))
            if tag == "p:/":
                removed = await self.clear()
                self._invalidations += 1
                return removed + (await self.invalidate(url=url, tags=tags) if url or tags else 0)
            wanted.append(tag)
            if "?" not in tag:
                wanted.append("u:" + tag[2:])  # the prefix itself, as a URL (see _tags)
        wanted.extend("t:" + tag for tag in tags)
        if not wanted:
            return 0
        await self.flush()  # a response answered before this call is removed by it too
        self._invalidations += 1
        self._decoded.clear()
        return await self.cache.invalidate_tags(*wanted)

    async def invalidate_after_unsafe(
        self, request: RequestView, status: int, headers: Iterable[tuple[str, str]]
    ) -> None:
        """Invalidate the target URI (and same-origin Location/Content-Location) after an
        unsafe method answered 2xx or 3xx (RFC 9111 §4.4)."""
        if not 200 <= status < 400:
            return
        targets = {request.target}
        base = f"{request.scheme}://{request.host}{request.target}"
        for name, value in headers:
            if name.lower() in ("location", "content-location") and value:
                absolute = urlsplit(urljoin(base, value.strip()))
                if absolute.netloc == request.host and absolute.scheme in ("http", "https"):
                    path = absolute.path or "/"
                    targets.add(f"{path}?{absolute.query}" if absolute.query else path)
        await self.flush()
        self._invalidations += 1
        self._decoded.clear()
        await self.cache.invalidate_tags(*("u:" + target for target in sorted(targets)))

    async def clear(self) -> int:
        """Remove every cached response of this cache's namespace; return how many."""
        await self.flush()
        self._decoded.clear()
        return await self.cache.clear()
