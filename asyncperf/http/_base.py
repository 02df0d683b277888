"""The state every layer of :class:`~asyncperf.http.ResponseCache` shares, and its reads.

``ResponseCache`` is built in layers, one module each, every layer using only the ones
below it: this state and the store reads, then coalescing (``_coalescing.py``),
write-behind (``_writes.py``), replies (``_reply.py``), responses from the app
(``_ingest.py``) and the facade with the lookup and invalidation (``_cache.py``).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from ..cache import Cache
from ..cache.internal import LATER, Later, get_now
from ._coding import Codings, TranscodeCache
from ._keys import digest
from ._policy import vary_values
from ._stored import StoredResponse, decode
from ._types import RequestView, request_target

if TYPE_CHECKING:
    from ._writes import PendingWrite

__all__ = ["ResponseCacheBase"]

# The decoded-entry memo (see _stored) is bounded by ``decoded_entries`` and by the
# stored bytes it may keep alive (an entry the store dropped stays while memoised).
_DECODED_BYTES: Final = 32 << 20


class ResponseCacheBase:
    """Options, counters and store reads of a response cache (set up by its ``__init__``)."""

    cache: Cache
    default_ttl: float | None
    heuristic: float | None
    retain: float
    transcode: bool
    shared: bool
    max_body_size: int
    decoded_entries: int
    compression_level: int
    store_set_cookie: bool
    status_header: str | None
    cache_status: bool
    tags_header: str | None
    targeted_header: str | None
    stale_while_revalidate: float | None
    stale_if_error: float | None
    min_compress_size: int
    miss_compress_size: int | None
    coalesce: bool
    coalesce_timeout: float | None
    codings: Codings
    transcoded: TranscodeCache
    clock: Callable[[], float]
    _distributed: bool
    _flight_life: float
    _internal: frozenset[str]
    _revalidating: set[str]
    _pending: dict[str, PendingWrite]
    _writes_suspend: bool
    _writers: set[asyncio.Task[None]]
    _decoded: OrderedDict[str, tuple[bytes, StoredResponse | tuple[str, ...]]]
    _decoded_bytes: int  # the stored bytes the memo holds
    _flights: dict[str, list[Any]]
    _passes: OrderedDict[str, float]
    _hits: int
    _misses: int
    _stale: int
    _bypasses: int
    _stores: int
    _revalidations: int
    _not_modified: int
    _invalidations: int
    _errors: int
    _bytes_served: int
    _bytes_saved: int
    _coalesced: int
    _ranges: int

    def count_bypass(self) -> None:
        """Count a request the cache let through without looking up."""
        self._bypasses += 1

    def count_error(self) -> None:
        """Count a failed background revalidation."""
        self._errors += 1

    def now(self) -> float:
        """Return the current wall-clock time of this cache."""
        return self.clock()

    # -- keys -----------------------------------------------------------------------------

    def primary_key(self, request: RequestView) -> str:
        """Return the storage key of a request's URL (per user when not shared)."""
        key = f"{request.scheme}://{request.host}{request_target(request)}"
        if not self.shared:
            credentials = (
                f"{request.headers.get('authorization', '')}\n{request.headers.get('cookie', '')}"
            )
            key += "#u=" + digest(credentials.encode("latin-1", "replace"))
        return key

    @staticmethod
    def variant_key(primary: str, names: tuple[str, ...], headers: Mapping[str, str]) -> str:
        """Return the secondary key of the variant ``headers`` select."""
        values = "\n".join(
            "\x00" if value is None else value for value in vary_values(names, headers)
        )
        return f"{primary}#v={digest(values.encode('latin-1', 'replace'))}"

    def _read_now(self, key: str) -> StoredResponse | tuple[str, ...] | Later | None:
        """:meth:`_read` without awaiting when memory answers; ``LATER`` when it does not."""
        blob = get_now(self.cache, key)
        return blob if blob is LATER else self._stored(key, blob)

    async def _read(self, key: str) -> StoredResponse | tuple[str, ...] | None:
        return self._stored(key, await self.cache.get(key))

    def _stored(self, key: str, blob: Any) -> StoredResponse | tuple[str, ...] | None:
        """The stored response or Vary marker in ``blob`` (decoded once per stored value).

        A memory store hands back the very bytes it holds (``is``); Redis new bytes on every
        read, equal while the entry is the same (``==``, a memcmp: a Redis hit decoded its
        entry every time, and re-filed it in the memo, before this compared values).
        """
        decoded = self._decoded
        if blob is None:  # every miss: inline, not _forget_decoded(key)
            gone = decoded.pop(key, None)
            if gone is not None:
                self._decoded_bytes -= len(gone[0])
            return None
        known = decoded.get(key)
        if known is not None and (known[0] is blob or known[0] == blob):
            return known[1]
        value = decode(blob)
        if (
            value is not None
            and type(blob) is bytes
            and len(blob) <= _DECODED_BYTES >> 4
            and self.decoded_entries
        ):
            if known is not None:
                self._decoded_bytes -= len(known[0])
            decoded[key] = (blob, value)
            self._decoded_bytes += len(blob)
            slots = self.decoded_entries
            while len(decoded) > slots or self._decoded_bytes > _DECODED_BYTES:
                self._decoded_bytes -= len(decoded.popitem(last=False)[1][0])
        return value

    def _forget_decoded(self, key: str | None = None) -> None:
        """Drop ``key``'s decoded entry from the memo (``None``: every one)."""
        if key is None:
            self._decoded.clear()
            self._decoded_bytes = 0
        else:
            known = self._decoded.pop(key, None)
            if known is not None:
                self._decoded_bytes -= len(known[0])
