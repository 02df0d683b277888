"""ResponseCache: the facade, its options, the lookup and invalidation.

The framework glue turns a request into a :class:`RequestView`, asks :meth:`lookup`
what to do (the reuse rules are :func:`~asyncperf.http._policy.decide_reuse`, sans-IO),
and hands the app's response to :meth:`ResponseCache.complete` (buffered bodies),
:meth:`ResponseCache.refresh` (a 304 to a revalidation) or
:meth:`ResponseCache.store_streamed`; it sends the :class:`Reply` it gets back. The
layers below (``_base`` to ``_ingest``) each hold one part of that work.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Literal
from urllib.parse import urljoin, urlsplit

import anyio

from .._exceptions import ConfigurationError
from ..cache import Cache
from ..cache.internal import check_ttl, lease_store, plain_memory_store
from ._coalescing import PASS_SECONDS
from ._coding import MAX_ZSTD_LEVEL, Codings, TranscodeCache
from ._ingest import Ingest
from ._keys import normalize_path, prefix_tag, url_target
from ._policy import current_age, parse_delta, parse_directives
from ._stored import StoredResponse
from ._types import (
    BYPASS,
    GATEWAY_TIMEOUT,
    HIT,
    MISS,
    REVALIDATE,
    STALE,
    Lookup,
    RequestView,
    ResponseCacheStatistics,
)

__all__ = ["ResponseCache"]


class ResponseCache(Ingest):
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
        self._flight_life = self.coalesce_timeout or PASS_SECONDS
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
        self._revalidating = set()
        # Store writes not yet finished, by primary key: a miss is stored after its reply
        # is sent; a lookup of that URL, an invalidation or flush() waits for its write.
        self._pending = {}
        self._writes_suspend = plain_memory_store(cache) is None
        self._writers = set()
        # Decoded entries by key, reused while the store returns the very same bytes object
        # (a MemoryStore does): a hit then skips parsing the header.
        self._decoded = OrderedDict()
        self._hits = self._misses = self._stale = self._bypasses = self._stores = 0
        self._revalidations = self._not_modified = self._invalidations = self._errors = 0
        self._bytes_served = self._bytes_saved = self._coalesced = 0
        # Request coalescing: URLs being fetched by a leader (an Event once someone waits),
        # and URLs whose last response could not be stored (hit-for-pass: not coalesced).
        self._flights = {}  # primary: [deadline, Event | None]
        self._passes = OrderedDict()

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

    def release_revalidation(self, lookup: Lookup) -> None:
        """Let the next stale hit on this entry revalidate it again."""
        self._revalidating.discard(lookup.key)

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
            wanted.append("u:" + url_target(url))
        if prefix is not None:
            tag = prefix_tag(normalize_path(prefix))
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
