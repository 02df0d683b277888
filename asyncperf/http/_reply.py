"""Replies: a stored (or just received) response as sent to one client.

Content coding negotiated per request, one validator per coding, 304s for matching
conditionals, ``Age``, ``Cache-Status`` and single byte ranges answered ``206``.
"""

from __future__ import annotations

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
        coding = "identity"  # and a range is cut from the identity body
        if entry.coding == "zstd" or entry.coding == PLAIN:
            if byte_range is None:
                coding = choose_encoding(
                    request.headers.get("accept-encoding"), self.codings.available
                )
        elif entry.coding != "identity":
            coding = entry.coding  # the app's own coding, sent as it came
        owned = entry.coding in ("zstd", PLAIN, "identity")
        fields = entry.fields.get(coding)
        if fields is None:
            fields = entry.fields[coding] = self._fields(entry, coding, owned)
        text, raw, etag = fields
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
        if coding == "identity" and entry.coding != "zstd":
            body = entry.body  # identity, the app's own coding, or plain identity at hand
        elif coding == "zstd" and entry.coding == "zstd":
            body = entry.body  # the stored bytes
        else:
            body = await self._body(entry, coding, key)
        if owned and coding != "identity":
            self._bytes_saved += max(0, entry.size - len(body))
        length = str(len(body))
        headers.append(("content-length", length))
        raw.append((b"content-length", length.encode()))
        if from_cache and request.method == "GET":
            self._bytes_served += len(body)
        return Reply(entry.status, headers, body, label, raw=raw)

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
