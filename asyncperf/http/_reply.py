"""Replies: a stored (or just received) response as sent to one client.

Content coding negotiated per request, one validator per coding, 304s for matching
conditionals, ``Age``, ``Cache-Status`` and single byte ranges answered ``206``.
"""

from __future__ import annotations

from collections.abc import Mapping

from ._conditional import (
    choose_encoding,
    etag_matches,
    if_range_matches,
    is_not_modified,
    resolve_range,
)
from ._keys import coded_etag
from ._policy import format_http_date
from ._stored import StoredResponse
from ._types import MISS, NOT_MODIFIED_FIELDS, OWN_CODINGS, PLAIN, Reply, RequestView
from ._writes import WriteBehind

__all__ = ["Serving"]

_RAW_NAMES = {"x-cache": b"x-cache"}
_RAW_LABELS = {label: label.encode() for label in ("HIT", "MISS", "STALE", "BYPASS")}


class Serving(WriteBehind):
    """The reply layer of :class:`~asyncperf.http.ResponseCache`."""

    def revalidation_headers(self, entry: StoredResponse) -> list[tuple[str, str]]:
        """Return the validators to send the app (RFC 9111 §4.3.1), when it has its own."""
        extra: list[tuple[str, str]] = []
        if entry.app_etag:
            extra.append(("if-none-match", entry.etag))
        if entry.app_last_modified:
            extra.append(("if-modified-since", format_http_date(entry.last_modified)))
        return extra

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
        byte_range: tuple[int | None, int | None] | None = None,
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
            byte_range: A GET's single byte range (``Lookup.range``): answered ``206``
                from the identity body (or ``416``), unless ``If-Range`` names another
                representation, which gets the whole body.
        """
        if byte_range is None:
            reply = self.serve_now(
                request,
                entry,
                label,
                key=key,
                age=age,
                cache_status=cache_status,
                from_cache=from_cache,
            )
            if reply is not None:
                return reply
        coding, owned, (text, raw, etag) = self._coding_fields(request, entry, byte_range)
        request_headers = request.headers
        if byte_range is None and not self._conditional(entry, request_headers):
            # Only the body is not at hand (a re-encoding to make): the common reply else.
            body = await self._coded_body(entry, coding, key, owned)
            return self._plain_reply(
                request, entry, label, coding, raw, body, age, cache_status, from_cache
            )
        headers = text.copy()
        raw = raw.copy()
        # The fields that change per reply go in both lists (the ASGI glue sends ``raw``).
        if age is not None:
            value = str(int(age if age < 2**31 else 2**31))
            headers.append(("age", value))
            raw.append((b"age", value.encode()))
        if not cache_status:
            cache_status = f"asyncperf; hit; ttl={int(entry.plan.lifetime - (age or 0.0))}"
            if byte_range is not None:
                cache_status += "; detail=range"
        status_header = self.status_header
        if status_header is not None:
            headers.append((status_header, label))
            raw.append((status_header.encode("latin-1"), label.encode()))
        if self.cache_status:
            headers.append(("cache-status", cache_status))
            raw.append((b"cache-status", cache_status.encode("latin-1")))
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
                    if name in NOT_MODIFIED_FIELDS
                    or name in ("age", "cache-status", self.status_header)
                    or (name == "last-modified" and not held)
                ]
                return Reply(304, kept, b"", label)
        if byte_range is not None:
            if_range = request_headers.get("if-range")
            if if_range is None or if_range_matches(
                if_range, etag, entry.last_modified if entry.app_last_modified else None
            ):
                return await self._partial(entry, headers, byte_range, key, label)
        body = await self._coded_body(entry, coding, key, owned)
        length = str(len(body))
        headers.append(("content-length", length))
        raw.append((b"content-length", length.encode()))
        if from_cache and request.method == "GET":
            self._bytes_served += len(body)
        return Reply(entry.status, headers, body, label, raw=raw)

    def serve_now(
        self,
        request: RequestView,
        entry: StoredResponse,
        label: str,
        *,
        key: str = "",
        age: float | None = None,
        cache_status: str = "",
        from_cache: bool = True,
    ) -> Reply | None:
        """The common reply without awaiting anything: no conditional, no range, and the
        body at hand (stored in the chosen coding, or its re-encoding kept). ``None``:
        :meth:`serve` must answer."""
        headers = request.headers
        if entry.status == 200 and ("if-none-match" in headers or "if-modified-since" in headers):
            return None  # a 304 may answer it (see _conditional)
        coding, owned, fields = self._coding_fields(request, entry, None)
        if (coding == "identity" and entry.coding != "zstd") or (
            coding == "zstd" and entry.coding == "zstd"
        ):
            body = entry.body  # identity, the app's own coding, or the stored zstd bytes
        elif key and entry.coding == "zstd":
            kept = self.transcoded.get((key, entry.etag, coding))
            if kept is None:
                return None
            body = kept
        else:
            return None
        if owned and coding != "identity" and entry.size > len(body):  # no max(): hot
            self._bytes_saved += entry.size - len(body)
        return self._plain_reply(
            request, entry, label, coding, fields[1], body, age, cache_status, from_cache
        )

    def _coding_fields(
        self,
        request: RequestView,
        entry: StoredResponse,
        byte_range: tuple[int | None, int | None] | None,
    ) -> tuple[str, bool, tuple[list[tuple[str, str]], list[tuple[bytes, bytes]], str]]:
        """Return the coding to send ``entry`` in, whether this cache owns its coding, and
        the fields every full reply in that coding starts with (built once per entry)."""
        coding = "identity"  # and a range is cut from the identity body
        stored = entry.coding
        if stored == "zstd" or stored == PLAIN:
            if byte_range is None:
                coding = choose_encoding(
                    request.headers.get("accept-encoding"), self.codings.available
                )
        elif stored != "identity":
            coding = stored  # the app's own coding, sent as it came
        owned = stored == "zstd" or stored == PLAIN or stored == "identity"
        fields = entry.fields.get(coding)
        if fields is None:
            fields = entry.fields[coding] = self._fields(entry, coding, owned)
        return coding, owned, fields

    @staticmethod
    def _conditional(entry: StoredResponse, request_headers: Mapping[str, str]) -> bool:
        """Whether the request's validators must be weighed (a 304 may answer it)."""
        return entry.status == 200 and (
            "if-none-match" in request_headers or "if-modified-since" in request_headers
        )

    def _plain_reply(
        self,
        request: RequestView,
        entry: StoredResponse,
        label: str,
        coding: str,
        fields: list[tuple[bytes, bytes]],
        body: bytes,
        age: float | None,
        cache_status: str,
        from_cache: bool,
    ) -> Reply:
        """A full reply built as bytes only (the ASGI glue sends them as they are; the
        text list is decoded from them if a glue asks)."""
        whole_age = -1 if age is None else int(age if age < 2**31 else 2**31)
        ttl = int(entry.plan.lifetime - (age or 0.0)) if not cache_status else 0
        head = entry.head
        wanted = (coding, label, whole_age, cache_status, ttl, len(body)) if from_cache else None
        if head is not None and head[0] == wanted:
            raw = head[1].copy()  # a copy: an outer middleware may change the list it is sent
        else:
            raw = fields.copy()
            if age is not None:
                raw.append((b"age", b"%d" % whole_age))
            status_header = self.status_header
            if status_header is not None:
                name = _RAW_NAMES.get(status_header)
                if name is None:
                    name = status_header.encode("latin-1")
                raw.append((name, _RAW_LABELS.get(label) or label.encode("latin-1")))
            if self.cache_status:
                if cache_status:
                    raw.append((b"cache-status", cache_status.encode("latin-1")))
                else:
                    raw.append((b"cache-status", b"asyncperf; hit; ttl=%d" % ttl))
            raw.append((b"content-length", b"%d" % len(body)))
            if wanted is not None:  # a reply fresh from the app is built once: no memo
                entry.head = (wanted, raw.copy())
        if from_cache and request.method == "GET":
            self._bytes_served += len(body)
        return Reply(entry.status, None, body, label, raw=raw)

    async def _coded_body(self, entry: StoredResponse, coding: str, key: str, owned: bool) -> bytes:
        """Return the body of ``entry`` in ``coding`` (counting the bytes saved)."""
        if coding == "identity" and entry.coding != "zstd":
            body = entry.body  # identity, the app's own coding, or plain identity at hand
        elif coding == "zstd" and entry.coding == "zstd":
            body = entry.body  # the stored bytes
        else:
            body = await self._body(entry, coding, key)
        if owned and coding != "identity" and entry.size > len(body):
            self._bytes_saved += entry.size - len(body)
        return body

    @staticmethod
    def _fields(
        entry: StoredResponse, coding: str, owned: bool
    ) -> tuple[list[tuple[str, str]], list[tuple[bytes, bytes]], str]:
        """Build the fields every full reply of ``entry`` in ``coding`` starts with, as
        text and as bytes, and the validator of that coding."""
        etag = coded_etag(entry.etag, coding) if owned else entry.etag
        headers = list(entry.headers)
        if not entry.as_sent:
            for name, value in headers:
                if name == "vary" and "accept-encoding" in value.lower():
                    break
            else:
                headers.append(("vary", "Accept-Encoding"))
        if etag:
            headers.append(("etag", etag))
        if owned and coding != "identity":
            headers.append(("content-encoding", coding))
        raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        return headers, raw, etag

    async def _partial(
        self,
        entry: StoredResponse,
        headers: list[tuple[str, str]],
        byte_range: tuple[int | None, int | None],
        key: str,
        label: str,
    ) -> Reply:
        """Answer a byte range of ``entry``: ``206`` with the bytes, or ``416``."""
        body = entry.body
        if entry.coding in ("zstd", PLAIN):
            body = await self._body(entry, "identity", key)
        size = len(body)
        self._ranges += 1
        span = resolve_range(byte_range, size)
        if span is None:
            kept = [
                (name, value)
                for name, value in headers
                if name in ("date", "etag", "cache-status", self.status_header)
            ]
            kept.append(("content-range", f"bytes */{size}"))
            kept.append(("content-length", "0"))
            return Reply(416, kept, b"", label)
        first, last = span
        part = body[first : last + 1]
        headers.append(("content-range", f"bytes {first}-{last}/{size}"))
        headers.append(("content-length", str(len(part))))
        self._bytes_served += len(part)
        return Reply(206, headers, part, label)

    @staticmethod
    def _held_etag(if_none_match: str, etag: str, chosen: str) -> str:
        """Return the validator of the coding the client holds, when it is current.

        One body has one validator per coding (a miss may go out in identity, its hits in
        zstd); a client holding any of them holds the current content, so its tag is the
        one a 304 confirms. Otherwise the tag of the coding chosen now.
        """
        if etag_matches(if_none_match, chosen):
            return chosen
        for coding in OWN_CODINGS:
            held = coded_etag(etag, coding)
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
        if entry.coding == PLAIN and coding != "identity":
            if coding == "zstd" and entry.packed is not None:
                return entry.packed
            return await codings.run(entry.size, codings.encode, entry.body, coding)
        return entry.body
