"""The plain miss: the most common response from the app, answered in straight-line code.

Most misses look alike: a GET with no validators of its own, answered ``200`` in one
body message, with no coding, ``Vary``, ``Age``, ``Connection`` or field of this
cache's own. :meth:`~asyncperf.http.ResponseCache.complete` takes every response; this
layer builds the reply to those few shapes in one function, with the same bytes and
the same store write (``tests/http/test_plain.py`` compares the two over many shapes),
and declines (``None``) everything else, which then goes the general way.
"""

from __future__ import annotations

from ..cache.internal import set_now
from ._ingest import Ingest
from ._keys import body_etag
from ._policy import parse_http_date, plan_keep, storage_plan
from ._route import RoutePolicy
from ._stored import StoredResponse
from ._types import DROPPED_OWNED, MISS, NOT_STORED, PLAIN, Lookup, Reply, RequestView
from ._writes import PlainWrite

__all__ = ["PlainMiss"]


class PlainMiss(Ingest):
    """The plain-miss layer of :class:`~asyncperf.http.ResponseCache`."""

    # Response fields that send a response the general way (set up by __init__ with the
    # cache's own fields): a coding, variants, an upstream Age, Connection's own list.
    _unplain: frozenset[str]
    # The fields a plain miss's reply ends with before its Content-Length (X-Cache,
    # Cache-Status), as bytes, by the lookup's ``forward``.
    _miss_tails: dict[str, list[tuple[bytes, bytes]]]

    def plain_reply(
        self,
        request: RequestView,
        lookup: Lookup,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
        route: RoutePolicy | None,
        request_time: float,
        response_time: float,
    ) -> Reply | None:
        """What :meth:`complete` returns for a plain miss (its store write attached, to run
        once the reply is sent); ``None`` for any other response.

        ``headers`` must have lower-case names, as the ASGI glue decodes them (checking
        that again here cost a miss ~2.5k instructions: a join and a per-character scan).
        """
        if status != 200 or lookup.action != MISS or type(headers) is not list:
            return None
        if route is None:
            if not self.transcode:
                return None
        elif not route.enabled or not (
            self.transcode if route.transcode is None else route.transcode
        ):
            return None
        request_headers = request.headers
        if "if-none-match" in request_headers or "if-modified-since" in request_headers:
            return None  # a 304 may answer it
        size = len(body)
        if size > self.max_body_size:
            return None
        fields = dict(headers)
        if len(fields) != len(headers) or not self._unplain.isdisjoint(fields):
            return None
        cache_control = fields.get("cache-control")
        if cache_control and "no-transform" in cache_control.lower():
            return None
        coding = PLAIN if size >= self.min_compress_size else "identity"
        miss_compress = self.miss_compress_size
        if coding == PLAIN and miss_compress is not None and size >= miss_compress:
            return None  # the reply itself is compressed: the general way
        app_etag = fields.get("etag")
        etag = app_etag or body_etag(body)
        last_modified = date = None
        if "last-modified" in fields:
            last_modified = parse_http_date(fields["last-modified"])
        if "date" in fields:
            date = parse_http_date(fields["date"])
        dropped = DROPPED_OWNED.intersection(fields)  # Content-Length, at least, as a rule
        if dropped:
            stored = [(name, value) for name, value in headers if name not in dropped]
        else:
            stored = list(fields.items())
        entry = StoredResponse(  # positional (see the class): status, fields, body,
            200,  # coding, size, validators, times, plan, vary, the app's validators
            stored,
            body,
            "identity",
            size,
            etag,
            last_modified or date or response_time,
            request_time,
            response_time,
            NOT_STORED,
            (),
            app_etag is not None,
            last_modified is not None,
        )
        # The reply: the stored fields, Vary (hits may be coded otherwise), the ETag, then
        # this cache's fields and the length.
        raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in stored]
        raw.append((b"vary", b"Accept-Encoding"))
        raw.append((b"etag", etag.encode("latin-1")))
        tail = self._miss_tails.get(lookup.forward)
        if tail is None:
            tail = self._miss_tails[lookup.forward] = self._miss_tail(lookup.forward)
        raw += tail
        raw.append((b"content-length", b"%d" % size))
        return Reply(
            200,
            None,
            body,
            MISS,
            PlainWrite(self, request, lookup, entry, coding, fields, route),
            raw,
        )

    def plain_store(self, write: PlainWrite) -> bool | None:
        """The store job of a plain miss, without awaiting: whether it was stored;
        ``None`` when only ``Cache.set`` can store it (nothing is changed then)."""
        entry, lookup, route = write.entry, write.lookup, write.route
        request = write.request
        if route is None:
            plan = storage_plan(
                200,
                request.headers,
                write.fields,
                entry.request_time,
                entry.response_time,
                self.shared,
                self.default_ttl,
                None,
                self.stale_while_revalidate,
                self.stale_if_error,
                self.store_set_cookie,
                None,
                self.heuristic,
                self.retain,
            )
        else:
            plan = self._plan(
                request, 200, write.fields, entry.request_time, entry.response_time, route, None
            )
        primary = lookup.primary
        if plan is None:
            self._no_coalescing(primary)
            return False
        if plan.strip:
            entry.headers = [
                (name, value) for name, value in entry.headers if name not in plan.strip
            ]
        if write.coding == PLAIN:
            packed = self.codings.pack(write.body, self.min_compress_size)
            if packed is not None:
                entry.body, entry.coding = packed, "zstd"
        entry.plan = plan
        if not set_now(
            self.cache,
            primary,
            entry.encode(),
            keep if (keep := plan_keep(plan)) > 0.001 else 0.001,
            self._tags(request, (), route),
        ):
            # A cache Cache.set must write (a remote store, jitter, an unbounded TTL):
            # the awaited job does it all again (it starts from the app's body).
            return None
        self._stores += 1
        lookup.stored = True
        if self._passes:
            self._passes.pop(primary, None)  # storable again: coalesce again
        return True

    def _miss_tail(self, forward: str) -> list[tuple[bytes, bytes]]:
        """X-Cache and Cache-Status of a miss asked for ``forward``, as bytes."""
        tail: list[tuple[bytes, bytes]] = []
        if self.status_header is not None:
            tail.append((self.status_header.encode("latin-1"), MISS.encode("latin-1")))
        if self.cache_status:
            tail.append((b"cache-status", f"asyncperf; fwd={forward}".encode("latin-1")))
        return tail
