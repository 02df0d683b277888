"""What one Cache view holds, and the helpers every part of it uses.

Keys and tags (namespace prefix, validation), TTLs (default, jitter), failure handling
(count, log, answer a miss, or raise in strict mode) and the store read and write every
path goes through. :class:`~asyncperf.Cache` builds on it through ``_loading.py`` and
``_loading_sync.py``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable

from .._exceptions import BackendError, SerializationError
from ._entry import Entry
from ._keys import MAX_KEY_LENGTH, check_key
from ._memory import _LOCK_READS, MemoryStore
from ._policy import check_tags, check_ttl
from ._shared import Shared
from ._store import Store

__all__ = ["CacheBase"]

logger = logging.getLogger("asyncperf.cache")


class CacheBase:
    """The state and helpers shared by the parts of :class:`~asyncperf.Cache`."""

    __slots__ = (
        "_clock",
        "_coalesced",
        "_data",
        "_default_ttl",
        "_deletes",
        "_early_refreshes",
        "_errors",
        "_hits",
        "_jitter",
        "_load_errors",
        "_load_seconds",
        "_loads",
        "_lock_timeouts",
        "_lock_waits",
        "_mem",
        "_misses",
        "_namespace",
        "_prefix",
        "_random",
        "_refreshes",
        "_sets",
        "_shared",
        "_stale_served",
        "_store",
    )

    _store: Store
    _mem: MemoryStore | None

    def _bind(self, shared: Shared, namespace: str) -> None:
        store = shared.store
        self._shared = shared
        self._store = store
        # The hot path reads a plain MemoryStore directly (no await, no wrapper): that is
        # what keeps a hit within 3x of an `async def` around dict.get.
        self._mem = (
            store
            if isinstance(store, MemoryStore) and store.codec is None and not _LOCK_READS
            else None
        )
        self._default_ttl = shared.default_ttl
        self._jitter = shared.jitter
        # A tiered store's L1 is read inline too; its misses go on to the store.
        front = self._mem if self._mem is not None else getattr(store, "front", None)
        self._data = front.mapping if front is not None else None
        self._clock = store.clock
        self._namespace = namespace
        self._prefix = f"{namespace}:" if namespace else ""
        self._random = random.random
        self._hits = self._misses = self._sets = self._deletes = self._errors = 0
        self._loads = self._load_errors = self._coalesced = self._stale_served = 0
        self._early_refreshes = self._refreshes = self._lock_waits = self._lock_timeouts = 0
        self._load_seconds = 0.0

    # -- keys, TTLs, tags ----------------------------------------------------------------

    def _key(self, key: str) -> str:
        if type(key) is not str or len(key) > MAX_KEY_LENGTH:
            key = check_key(key)
        return self._prefix + key if self._prefix else key

    def _ttl(self, ttl: float | None) -> float | None:
        ttl = self._shared.default_ttl if ttl is None else check_ttl(ttl)
        if ttl is not None and self._shared.jitter:
            ttl = self._jittered(ttl)
        return ttl

    def _jittered(self, ttl: float) -> float:
        return ttl * (1.0 + self._shared.jitter * (2.0 * self._random() - 1.0))

    def _tags(self, tags: Iterable[str]) -> tuple[str, ...]:
        if not tags:
            return ()
        checked = check_tags(tags)
        if self._prefix:
            prefix = self._prefix
            return tuple([prefix + tag for tag in checked])  # a list first: no generator
        return checked

    # -- failure handling --------------------------------------------------------------------

    def _failed(self, operation: str, exc: Exception) -> None:
        self._errors += 1
        if isinstance(exc, SerializationError):
            logger.debug("asyncperf cache %s: undecodable payload (%s)", operation, exc)
            return
        self._shared.error_log.report(operation, exc)
        if self._shared.strict:
            if isinstance(exc, BackendError):
                raise exc
            raise BackendError(f"cache {operation} failed: {exc}") from exc

    async def _fetch(self, key: str) -> Entry | None:
        try:
            return await self._store.get(key)
        except Exception as exc:
            self._failed("get", exc)
            return None

    async def _write(self, key: str, entry: Entry, ttl: float | None) -> None:
        mem = self._mem
        if mem is not None:
            mem.set_entry(key, entry, ttl)
            self._sets += 1
            return
        try:
            await self._store.set(key, entry, ttl)
        except SerializationError:
            raise
        except Exception as exc:
            self._failed("set", exc)
        else:
            self._sets += 1

    async def exists(self, key: str) -> bool:
        """Return whether a fresh value is stored under ``key`` (counts no hit or miss)."""
        key = self._key(key)
        mem = self._mem
        entry = mem.get_entry(key) if mem is not None else await self._fetch(key)
        return entry is not None and entry.is_fresh(self._clock())
