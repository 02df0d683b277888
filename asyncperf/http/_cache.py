"""ResponseCache: the facade, its options, the lookup, the dispatch and invalidation.

The framework glue (``_asgi.py``, ``aiohttp.py``) only moves bytes. It turns a request
into a :class:`RequestView` and asks :meth:`lookup` what to do (the reuse rules are
:func:`~asyncperf.http._policy.decide_reuse`, sans-IO). A lookup in ``FROM_CACHE`` gets
its reply from :meth:`ResponseCache.cached_reply` (and :meth:`revalidates_after` says
whether that request then revalidates the entry); otherwise the app's answer goes to
:meth:`ResponseCache.complete` (buffered bodies), :meth:`not_modified` (a 304 to a
revalidation), :meth:`stale_instead` (stale-if-error) or :meth:`store_streamed`, and the
glue sends the :class:`Reply` it gets back. The layers below (``_base`` to ``_ingest``)
each hold one part of that work.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, Final, Literal
from urllib.parse import urljoin, urlsplit

import anyio

from .._exceptions import ConfigurationError
from ..cache import Cache
from ..cache.internal import LATER, Later, check_ttl, lease_store, plain_memory_store
from ._coalescing import PASS_SECONDS
from ._coding import MAX_ZSTD_LEVEL, Codings, TranscodeCache
from ._conditional import FORWARD, parse_range
from ._keys import normalize_path, prefix_tag, url_target
from ._plain import PlainMiss
from ._policy import HEURISTIC_FRACTION, current_age, decide_reuse, parse_directives
from ._route import RoutePolicy
from ._stored import StoredResponse
from ._types import (
    BYPASS,
    GATEWAY_TIMEOUT,
    HIT,
    MISS,
    REVALIDATE,
    STALE,
    Lookup,
    Reply,
    RequestView,
    ResponseCacheStatistics,
)

__all__ = ["ResponseCache"]

_NO_DIRECTIVES: Final[dict[str, str | None]] = {}  # a request's, when it has none (read only)
# Request fields that take a lookup the awaited way (lookup, not lookup_now).
_UNPLAIN_REQUEST: Final = frozenset(
    {"if-match", "if-unmodified-since", "range", "cache-control", "pragma", "authorization"}
)


class ResponseCache(PlainMiss):
    """An RFC 9111 shared HTTP cache for Starlette/FastAPI and aiohttp apps.

    Use it through :class:`~asyncperf.http.ResponseCacheMiddleware` (ASGI) or
    :func:`asyncperf.http.aiohttp.response_cache_middleware`; both apply the same rules.

    Args:
        cache: Where responses are stored (memory, Redis, tiered): entries go through
            its public API with tags, so invalidation reaches every process sharing it.
        default_ttl: Freshness in seconds for responses without explicit freshness, for
            statuses RFC 9111 lets a cache store heuristically (200, 203, 204, 300, 301,
            308, 404, 405, 410, 414, 501). The Cache-Control sent downstream is unchanged.
        heuristic: Without ``default_ttl``, such responses stay fresh for this fraction
            of the time since their ``Last-Modified`` (RFC 9111 §4.2.2, capped at a day);
            ``None`` stores none of them.
        retain: Seconds a response with a validator (ETag or Last-Modified) is kept past
            its freshness, so the next request revalidates it (the app gets
            ``If-None-Match``/``If-Modified-Since`` and may answer 304) instead of
            fetching it whole. It is the store TTL beyond freshness, in memory or Redis.
            ``0``: drop entries when they go stale (and their stale windows end).
        transcode: Own the content coding: store bodies zstd-compressed and serve each
            client the coding it accepts (adding ``Vary: Accept-Encoding``). ``False``
            stores and serves the body exactly as the app coded it and leaves ``Vary``
            as the app wrote it (a CDN or proxy in front compresses, or the app
            already serves the coding it wants).
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
        decoded_entries: Stored responses kept decoded in this process, so a hit on one
            reads no header (at most 32 MB of stored bytes). Each is about ten objects
            the garbage collector walks (``python -m bench.gc_pause`` shows the pause
            they add). ``0``: decode on every hit.
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
        heuristic: float | None = HEURISTIC_FRACTION,
        retain: float = 600.0,
        transcode: bool = True,
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
        decoded_entries: int = 4096,
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
            ("decoded_entries", decoded_entries, 0, 1 << 24),
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
        if heuristic is not None and (
            isinstance(heuristic, bool)
            or not isinstance(heuristic, int | float)
            or not 0.0 < heuristic <= 1.0
        ):
            raise ConfigurationError(
                f"heuristic must be a fraction in (0, 1] or None, got {heuristic!r}"
            )
        self.heuristic = None if heuristic is None else float(heuristic)
        if (
            isinstance(retain, bool)
            or not isinstance(retain, int | float)
            or not math.isfinite(retain)
            or retain < 0
        ):
            raise ConfigurationError(f"retain must be a number of seconds >= 0, got {retain!r}")
        self.retain = float(retain)
        self.transcode = bool(transcode)
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
        self._unplain = self._internal | {"content-encoding", "vary", "connection", "age"}
        self._miss_tails = {}
        self._revalidating = set()
        # Store writes not yet finished, by primary key: a miss is stored after its reply
        # is sent; a lookup of that URL, an invalidation or flush() waits for its write.
        self._pending = {}
        self._writes_suspend = plain_memory_store(cache) is None
        self._writers = set()
        # Decoded entries by key, reused while the store returns the very same bytes object
        # (a MemoryStore does): a hit then skips parsing the header.
        self._decoded = OrderedDict()
        self._decoded_bytes = 0
        self.decoded_entries = decoded_entries
        self._hits = self._misses = self._stale = self._bypasses = self._stores = 0
        self._revalidations = self._not_modified = self._invalidations = self._errors = 0
        self._bytes_served = self._bytes_saved = self._coalesced = self._ranges = 0
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
            ranges=self._ranges,
        )

    def lookup_now(self, request: RequestView) -> Lookup | StoredResponse | tuple[str, ...] | Later:
        """:meth:`lookup` without awaiting, for a request with no directives, validators,
        preconditions, range or credentials: the decision when it is a miss or a fresh
        hit; else what it read (``LATER``: nothing, it read nothing and counted nothing),
        for ``await lookup(request, found)`` to go on from."""
        headers = request.headers
        if not _UNPLAIN_REQUEST.isdisjoint(headers) or self._distributed:
            return LATER
        primary = self.primary_key(request)
        if primary in self._flights or (self._pending and primary in self._pending):
            return LATER  # waits (for a leader, or a write) are lookup()'s
        found = self._read_now(primary)
        if found is None:
            if not (
                # _coalescible for a request without directives or credentials.
                self.coalesce
                and request.method == "GET"
                and "text/event-stream" not in headers.get("accept", "")
                and (not self._passes or self._coalescible(request, primary, _NO_DIRECTIVES))
            ):
                self._misses += 1
                return Lookup(MISS, primary, primary)
            # This request asks the app; concurrent ones for the URL wait on its flight.
            flight = self._flights[primary] = [time.monotonic() + self._flight_life, None]
            self._misses += 1
            # Positional (keywords cost more): entry, age, stale_if_error, forward, stored.
            return Lookup(MISS, primary, primary, None, 0.0, False, "uri-miss", False, flight)
        if type(found) is StoredResponse:
            plan = found.plan
            age = current_age(plan.initial_age, found.response_time, self.clock())
            action, forward, stale_if_error = decide_reuse(plan, age, _NO_DIRECTIVES)
            if action == HIT:
                self._hits += 1
                return Lookup(HIT, primary, primary, found, age, stale_if_error, forward)
        return found

    async def lookup(
        self,
        request: RequestView,
        found: StoredResponse | tuple[str, ...] | Later | None = LATER,
    ) -> Lookup:
        """Decide how to answer a GET or HEAD: from the cache, or by asking the app.

        Args:
            request: The request.
            found: What :meth:`lookup_now` read for this request, if it read (for it to
                go on from; ``LATER``: read the store).

        Returns:
            The decision, with the stored response when one applies.
        """
        headers = request.headers
        if "if-match" in headers or "if-unmodified-since" in headers:
            # Preconditions on the origin's state: the app evaluates them.
            self._bypasses += 1
            return Lookup(BYPASS, forward="bypass")
        byte_range = None
        if "range" in headers and request.method == "GET":  # HEAD ignores Range
            spec = parse_range(headers["range"])
            if spec == FORWARD:  # several ranges or another unit: the app answers
                self._bypasses += 1
                return Lookup(BYPASS, forward="bypass")
            if isinstance(spec, tuple):
                byte_range = spec  # If-Range is weighed when serving it
        primary = self.primary_key(request)
        request_cc = (
            parse_directives(headers["cache-control"]) if "cache-control" in headers else {}
        )
        if not request_cc and "pragma" in headers and "no-cache" in headers["pragma"].lower():
            request_cc = {"no-cache": None}
        waited = False
        given, found = found, None
        while True:
            if given is not LATER:
                found, given = given, LATER  # read by lookup_now (the first time round)
            else:
                if self._pending:
                    write = self._pending.get(primary)
                    if write is not None:
                        await write.run()  # read your own writes: this URL's store first
                found = self._read_now(primary)  # memory answers without a coroutine
                if found is LATER:
                    found = await self._read(primary)
            key = primary
            if isinstance(found, tuple):
                key = self.variant_key(primary, found, headers)
                variant = self._read_now(key)
                if variant is LATER:
                    variant = await self._read(key)
                found = variant if isinstance(variant, StoredResponse) else None
            if found is not None and not (
                self.shared and "authorization" in headers and not found.plan.authorized_ok
            ):
                age = current_age(found.plan.initial_age, found.response_time, self.clock())
                action, forward, stale_if_error = decide_reuse(found.plan, age, request_cc)
                if (
                    action != REVALIDATE
                    or waited
                    or byte_range is not None
                    # Stale again the moment a 304 freshens it (no-cache, max-age=0): a
                    # waiter would only revalidate after the leader, so nobody waits.
                    or found.plan.always_revalidate
                    or found.plan.lifetime <= 0
                    or not self._coalescible(request, primary, request_cc)
                ):
                    break
                # A stale entry to validate: one request asks the app, concurrent ones
                # wait for its 304 (or 200) and are then served what it stored.
                flight = self._flights.get(primary)
                if flight is None or flight[0] < time.monotonic():
                    flight = self._flights[primary] = [time.monotonic() + self._flight_life, None]
                    self._revalidations += 1
                    return Lookup(
                        REVALIDATE, primary, key, found, age, stale_if_error, forward, flight=flight
                    )
                await self._wait_for(flight)
                waited = True
                continue
            if "only-if-cached" in request_cc:
                return Lookup(GATEWAY_TIMEOUT, primary, key)
            if byte_range is not None:
                # Nothing stored to cut the range from: the app answers the range itself.
                self._bypasses += 1
                return Lookup(BYPASS, forward="bypass")
            if waited or not self._coalescible(request, primary, request_cc):
                self._misses += 1
                return Lookup(MISS, primary, key)
            flights = self._flights
            flight = flights.get(primary)
            now = time.monotonic()
            if flight is None or flight[0] < now:
                # Nobody asks the app for this URL (or its leader outlived the timeout,
                # never released): this request does. The Event is made only if needed.
                flight = flights[primary] = [now + self._flight_life, None]
                leader = Lookup(MISS, primary, key, flight=flight)
                if self._distributed and await self._led_elsewhere(leader):
                    # Another process asked the app and has answered (or given up): look
                    # again, with this process's waiters.
                    await self.release(leader)
                    waited = True
                    continue
                self._misses += 1
                return leader
            await self._wait_for(flight)
            waited = True  # then look again, once: served if the leader's response was stored
        if byte_range is not None:
            if action != HIT or found.status != 200:
                self._bypasses += 1  # only a fresh complete response answers a range here
                return Lookup(BYPASS, forward="bypass")
            self._hits += 1
            return Lookup(HIT, primary, key, found, age, stale_if_error, range=byte_range)
        if action == HIT:
            self._hits += 1
            if waited:
                self._coalesced += 1
        elif action == STALE:
            self._stale += 1
        elif action != GATEWAY_TIMEOUT:
            self._revalidations += 1
        return Lookup(action, primary, key, found, age, stale_if_error, forward)

    async def _wait_for(self, flight: list[Any]) -> None:
        """Wait (at most ``coalesce_timeout``) until the leader of ``flight`` releases it."""
        event = flight[1]
        if event is None:
            event = flight[1] = anyio.Event()
        with anyio.move_on_after(self.coalesce_timeout):
            await event.wait()

    # -- the dispatch both glues share (ASGI, aiohttp): they only move bytes -------------

    def cached_reply_now(self, request: RequestView, lookup: Lookup) -> Reply | None:
        """:meth:`cached_reply` without awaiting, for the common hit (a fresh, full,
        unconditional one with its body at hand); ``None``: ``await cached_reply``."""
        if lookup.action != HIT or lookup.range is not None:
            return None
        entry = lookup.entry
        assert entry is not None
        return self.serve_now(request, entry, HIT, key=lookup.key, age=lookup.age)

    async def cached_reply(self, request: RequestView, lookup: Lookup) -> Reply | None:
        """Return the reply a lookup gets without the app: a hit (or its range), a stale
        answer or the ``only-if-cached`` 504; ``None`` when the app must answer."""
        action, entry = lookup.action, lookup.entry
        if action == HIT:
            assert entry is not None
            if lookup.range is None:
                reply = self.serve_now(request, entry, HIT, key=lookup.key, age=lookup.age)
                if reply is not None:
                    return reply
            return await self.serve(
                request, entry, HIT, key=lookup.key, age=lookup.age, byte_range=lookup.range
            )
        if action == STALE:
            assert entry is not None
            return await self.serve(request, entry, STALE, key=lookup.key, age=lookup.age)
        if action == GATEWAY_TIMEOUT:
            return self.gateway_timeout()
        return None

    def revalidates_after(self, lookup: Lookup) -> bool:
        """Whether this request, answered stale, revalidates the entry after its reply
        (stale-while-revalidate: at most one such request per entry at a time)."""
        return lookup.action == STALE and lookup.forward != "" and self.claim_revalidation(lookup)

    async def not_modified(
        self,
        request: RequestView,
        lookup: Lookup,
        *,
        headers: list[tuple[str, str]],
        route: RoutePolicy | None,
        request_time: float,
        response_time: float,
        background: bool,
    ) -> Reply | None:
        """Apply the app's 304 to the stored entry (RFC 9111 §4.3.4); return the hit to
        send, or ``None`` for a background revalidation (its client has its answer)."""
        entry = await self.refresh(
            request,
            lookup,
            headers=headers,
            route=route,
            request_time=request_time,
            response_time=response_time,
        )
        if background:
            return None
        self._hits += 1  # the entry answers, confirmed
        return await self.serve(
            request,
            entry,
            HIT,
            key=lookup.key,
            age=entry.plan.initial_age,
            cache_status="asyncperf; fwd=stale; fwd-status=304",
        )

    async def stale_instead(self, request: RequestView, lookup: Lookup, cache_status: str) -> Reply:
        """Return the stale entry as the answer to the app's error (stale-if-error)."""
        entry = lookup.entry
        assert entry is not None
        self._stale += 1
        return await self.serve(
            request, entry, STALE, key=lookup.key, age=lookup.age, cache_status=cache_status
        )

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
        self._forget_decoded()
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
        self._forget_decoded()
        await self.cache.invalidate_tags(*("u:" + target for target in sorted(targets)))

    async def clear(self) -> int:
        """Remove every cached response of this cache's namespace; return how many."""
        await self.flush()
        self._forget_decoded()
        return await self.cache.clear()
