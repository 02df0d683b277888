"""Responses from the app: what is kept, stored, refreshed by a 304 or a HEAD.

A buffered response is split into the fields stored and this cache's own, its storage
is planned by :func:`~asyncperf.http.plan_storage` after the reply is sent, and a
revalidation's 304 (RFC 9111 §4.3.4) or a HEAD (§4.3.5) updates the stored entry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from ._conditional import etag_matches
from ._keys import body_etag
from ._policy import Plan, parse_delta, parse_directives, parse_http_date, storage_plan, vary_names
from ._reply import Serving
from ._route import RoutePolicy
from ._stored import StoredResponse
from ._types import (
    BYPASS,
    DROPPED,
    DROPPED_OWNED,
    HOP_BY_HOP,
    MISS,
    NOT_STORED,
    PLAIN,
    RECOMPUTED,
    REVALIDATE,
    Lookup,
    Reply,
    RequestView,
    header_map,
)
from ._writes import PendingWrite

__all__ = ["Ingest"]


class Ingest(Serving):
    """The layer of :class:`~asyncperf.http.ResponseCache` that takes the app's responses."""

    def _split_internal(
        self, headers: list[tuple[str, str]]
    ) -> tuple[list[tuple[str, str]], dict[str, str], list[str], str | None]:
        """Remove this cache's fields (lower-casing names); return the rest as a list and
        as a :func:`header_map`, the tags and the targeted Cache-Control value."""
        internal = self._internal
        fields = dict(headers) if type(headers) is list else {}
        if fields and len(fields) == len(headers) and "".join(fields).islower():
            # The common response: a list of lower-case names (as both glues give), none
            # repeated. Without one of ours, it is kept whole (its pairs, as tuples).
            if internal.isdisjoint(fields):
                return list(fields.items()), fields, [], None
        kept: list[tuple[str, str]] = []
        fields = {}
        tags: list[str] = []
        targeted: str | None = None
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
        transcode = self.transcode if route is None or route.transcode is None else route.transcode
        owned = transcode and (app_coding is None or app_coding.strip().lower() == "identity")
        cache_control = fields_map.get("cache-control")
        transformable = owned and (
            not cache_control
            or "no-transform" not in cache_control.lower()  # no need to parse, then
            or "no-transform" not in parse_directives(cache_control)
        )
        app_etag = fields_map.get("etag")
        etag = app_etag or (body_etag(body) if status == 200 else "")
        last_modified = date = None
        names: tuple[str, ...] = ()
        if "last-modified" in fields_map:
            last_modified = parse_http_date(fields_map["last-modified"])
        if "date" in fields_map:
            date = parse_http_date(fields_map["date"])
        if "vary" in fields_map:
            names = vary_names(fields_map["vary"]) or ()
            if owned and names:
                names = tuple(name for name in names if name != "accept-encoding")
        drop = DROPPED_OWNED if owned else DROPPED
        connection = fields_map.get("connection")
        if connection:
            drop = drop | {token.strip().lower() for token in connection.split(",")}
        stored_fields = [(name, value) for name, value in fields if name not in drop]
        size = len(body)
        if not owned:
            coding = app_coding or "identity"
        elif transformable and size >= self.min_compress_size:
            coding = PLAIN
        else:
            coding = "identity"
        miss_compress = self.miss_compress_size
        reply_coding = coding
        if coding == PLAIN and (miss_compress is None or size < miss_compress):
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
            plan=NOT_STORED,
            vary=names,
            app_etag=app_etag is not None,
            app_last_modified=last_modified is not None,
            as_sent=not transcode,
        )
        key = ""
        job: Callable[[], Awaitable[bool]] | None = None
        if lookup is not None and size <= self.max_body_size:
            key = (
                self.variant_key(lookup.primary, names, request.headers)
                if names
                else lookup.primary
            )
            packed: bytes | None = None
            if reply_coding == PLAIN:
                # The reply may be zstd: pack now, and the client gets the very bytes stored.
                packed = self.codings.pack(body, self.min_compress_size)
                if packed is None:
                    coding = reply_entry.coding = "identity"
                else:
                    reply_entry.packed = packed
            # Whether and how long to store is decided after the reply is sent: the
            # client does not wait for it (nor for compression, nor for the store). The
            # reply's entry becomes the stored one then: its reply is built by that time.
            job = self._store_job(
                request,
                lookup,
                reply_entry,
                body if packed is None else packed,
                coding if packed is None else "zstd",
                fields_map,
                targeted,
                tags,
                route,
            )
        cache_status = "asyncperf; fwd=bypass"
        if lookup is not None:
            cache_status = f"asyncperf; fwd={lookup.forward}"
            if lookup.action == REVALIDATE:
                cache_status += f"; fwd-status={status}"
        # The Age of an upstream's response goes on, plus the time it took to get here
        # (RFC 9111 §4.2.3); a response the app made itself has none.
        upstream_age = parse_delta(fields_map["age"].strip()) if "age" in fields_map else None
        age = (
            None if upstream_age is None else upstream_age + max(0.0, response_time - request_time)
        )
        request_headers = request.headers
        if reply_entry.coding == "identity" and not (
            status == 200
            and ("if-none-match" in request_headers or "if-modified-since" in request_headers)
        ):
            # What serve_now answers for a body sent as the app made it (the common miss),
            # without weighing codings it cannot choose: no 304 to consider, no coding.
            raw = self._fields(reply_entry, "identity", True)[1]
            reply = self._plain_reply(
                request, reply_entry, label, "identity", raw, body, age, cache_status, False
            )
        else:
            reply = await self.serve(  # serve tries serve_now first
                request,
                reply_entry,
                label,
                key=key,
                age=age,
                cache_status=cache_status,
                from_cache=False,
            )
        if job is not None:
            # Registered once the reply is built (and before it is sent): a lookup of this
            # URL from now on runs or waits for the write instead of reading around it.
            assert lookup is not None
            reply.write = PendingWrite(self, lookup.primary, job)
        return reply

    def _store_job(
        self,
        request: RequestView,
        lookup: Lookup,
        entry: StoredResponse,
        body: bytes,
        coding: str,
        fields: Mapping[str, str],
        targeted: str | None,
        tags: list[str],
        route: RoutePolicy | None,
    ) -> Callable[[], Awaitable[bool]]:
        async def store() -> bool:
            entry.body, entry.coding = body, coding
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
                if lookup.action != REVALIDATE:  # a failed revalidation keeps its entry
                    self._no_coalescing(lookup.primary)
                return False
            # The entry (this write's own) becomes what is stored: stripped fields removed,
            # body packed with zstd (PLAIN: this cache owns a transformable coding).
            if plan.strip:
                entry.headers = [
                    (name, value) for name, value in entry.headers if name not in plan.strip
                ]
            if coding == PLAIN:
                packed = self.codings.pack(body, self.min_compress_size)
                if packed is None:
                    entry.coding = "identity"
                else:
                    entry.body, entry.coding = packed, "zstd"
            entry.plan = plan
            await self._write(request, lookup, entry, plan, tags, route)
            lookup.stored = True
            if self._passes:
                self._passes.pop(lookup.primary, None)  # storable again: coalesce again
            return True

        return store

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
        return storage_plan(
            status,
            request.headers,
            response_headers,
            request_time,
            response_time,
            self.shared,
            self.default_ttl,
            route.ttl if route is not None else None,
            self.stale_while_revalidate if swr is None else swr,
            self.stale_if_error if sie is None else sie,
            self.store_set_cookie,
            targeted,
            self.heuristic,
            self.retain,
        )

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
        updates = {name for name, _ in fields} - RECOMPUTED - HOP_BY_HOP - {"content-encoding"}
        merged = [(name, value) for name, value in entry.headers if name not in updates]
        merged.extend((name, value) for name, value in fields if name in updates)
        merged_map = header_map(merged)
        sent = header_map(fields)
        sent_age = sent.get("age")
        if sent_age is not None:  # not stored, but the 304's Age dates the result (§4.2.3)
            merged_map = {**merged_map, "age": sent_age}
        if entry.app_etag:
            # The ETag is kept beside the fields, not in them: the plan must see the
            # validator too, or an ETag-only entry would lose its retention after a 304.
            merged_map = {**merged_map, "etag": sent.get("etag", entry.etag)}
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
            as_sent=entry.as_sent,
        )
        if plan is None:
            await self.cache.delete(lookup.key)
        else:
            await self._write(request, lookup, updated, plan, tags, route)
            lookup.stored = True  # requests waiting on this revalidation read it
        return updated

    async def update_from_head(
        self,
        request: RequestView,
        lookup: Lookup,
        *,
        status: int,
        headers: list[tuple[str, str]],
        route: RoutePolicy | None,
        request_time: float,
        response_time: float,
    ) -> bool:
        """Update a stored GET response from the app's 200 to a HEAD (RFC 9111 §4.3.5).

        When the HEAD names the stored representation (same ETag, or without ETags the
        same Last-Modified) its fields update the entry as a 304's would; when it names
        another, the entry no longer describes the resource and is removed. Returns
        whether the entry was updated.
        """
        entry = lookup.entry
        if entry is None or status != 200:
            return False
        fields = header_map(self._split_internal(headers)[0])
        head_etag = fields.get("etag")
        if head_etag is not None or entry.app_etag:
            same = head_etag is not None and entry.app_etag and etag_matches(head_etag, entry.etag)
        else:
            modified = parse_http_date(fields.get("last-modified"))
            same = entry.app_last_modified and modified == entry.last_modified
        if not same:
            await self.cache.delete(lookup.key)
            self._forget_decoded(lookup.key)
            return False
        await self.refresh(
            request,
            lookup,
            headers=headers,
            route=route,
            request_time=request_time,
            response_time=response_time,
        )
        return True

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
        self,
        headers: list[tuple[str, str]],
        label: str,
        *,
        cacheable: bool,
        route: RoutePolicy | None = None,
    ) -> list[tuple[str, str]]:
        """Return a streamed response's headers: ours removed, Vary and status added."""
        kept = self.downstream_headers(headers)
        transcode = self.transcode if route is None or route.transcode is None else route.transcode
        if (
            cacheable
            and transcode
            and not any(
                name == "vary" and ("accept-encoding" in value.lower() or value.strip() == "*")
                for name, value in kept
            )
        ):
            kept.append(("vary", "Accept-Encoding"))
        self._status_fields(
            kept, label, "asyncperf; fwd=" + ("uri-miss" if cacheable else "bypass")
        )
        return kept
