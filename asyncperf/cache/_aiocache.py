"""AiocacheStore: an existing aiocache cache (memory, Redis, Memcached) as an asyncperf store."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from .._exceptions import BackendError, BackendUnavailable, ConfigurationError, SerializationError
from ._codec import Codec
from ._entry import Entry
from ._store import BaseStore, StoreHealth

__all__ = ["AiocacheStore", "AiocacheStoreStatistics"]

logger = logging.getLogger("asyncperf.cache")

BackendKind = Literal["memory", "redis", "memcached", "other"]

# asyncperf's own keys (one tag index per tag) live under the store prefix with this marker;
# no key the Cache facade builds for a namespace starts with it.
TAG_MARK: Final = "__asyncperf_tag__:"
_HEALTH_KEY: Final = "__asyncperf_health__"
# Memcached reads an expiry above 30 days as an absolute Unix time.
_MEMCACHED_RELATIVE_LIMIT: Final = 30 * 24 * 3600
# Redis refuses a zero expiry and aiocache sends float TTLs as whole milliseconds.
_MIN_TTL: Final = 0.001
_SCAN_COUNT: Final = 1000


def _identity(value: Any) -> Any:
    return value


def _import_aiocache() -> Any:
    try:
        import aiocache
        import aiocache.base
    except ImportError as exc:
        raise ImportError(
            "AiocacheStore needs aiocache: pip install 'asyncperf[aiocache]'"
        ) from exc
    return aiocache


def _backend_kind(cache: Any) -> BackendKind:
    # Class names, not isinstance: importing aiocache's Memcached module needs aiomcache.
    names = {cls.__name__ for cls in type(cache).__mro__}
    if "SimpleMemoryBackend" in names:
        return "memory"
    if "RedisBackend" in names:
        return "redis"
    if "MemcachedBackend" in names:
        return "memcached"
    return "other"


def _glob_escape(text: str) -> str:
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


@dataclass(frozen=True, slots=True)
class AiocacheStoreStatistics:
    """Counters of one AiocacheStore.

    Attributes:
        failures: Operations the aiocache cache failed (errors and timeouts).
        decode_errors: Payloads that were not asyncperf's or were corrupt.
    """

    failures: int
    decode_errors: int


class _Slot:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class _TagLocks:
    """One lock per tag, dropped when nobody holds or waits for it."""

    __slots__ = ("_slots",)

    def __init__(self) -> None:
        self._slots: dict[str, _Slot] = {}

    @contextlib.asynccontextmanager
    async def hold(self, tag: str) -> AsyncIterator[None]:
        slot = self._slots.get(tag)
        if slot is None:
            slot = self._slots[tag] = _Slot()
        slot.users += 1
        try:
            async with slot.lock:
                yield
        finally:
            slot.users -= 1
            if not slot.users:
                del self._slots[tag]


class AiocacheStore(BaseStore):
    """A store on top of an aiocache cache object you already configured.

    Entries are encoded by the asyncperf :class:`~asyncperf.Codec` (value, freshness
    deadline, load time and tags round-trip) and handed to aiocache with its serializer
    bypassed (``dumps_fn``/``loads_fn`` set to the identity on every call), so the cache's
    own serializer, namespace, plugins and key builder stay as they are for your other code.
    Payloads travel as bytes when the backend gives bytes back (the memory backend, or a
    serializer with ``encoding=None`` such as ``PickleSerializer``); with a UTF-8
    serializer (``JsonSerializer``, ``StringSerializer``, the Redis and Memcached
    default) they travel as Latin-1 text, which the backend writes and reads back as UTF-8
    unchanged (bytes >= 0x80 then take two bytes on the server).

    What each backend supports (aiocache 0.12):

    | operation | memory | Redis | Memcached |
    |---|---|---|---|
    | get, set, delete, exists | yes | yes | yes |
    | TTL | float seconds | float seconds (PSETEX, ms) | whole seconds, rounded up |
    | get_many, set_many | yes | MGET; MSET + PEXPIRE per TTL | multi get; parallel sets |
    | delete_many | yes | one UNLINK | parallel deletes |
    | tags, invalidate_tags | yes | yes | yes |
    | clear(prefix) | yes | SCAN + UNLINK | whole cache only |

    ``clear()`` of the whole store (no ``prefix``, no aiocache ``namespace``) empties the
    whole aiocache cache: the memory dict, every key of the Redis database (by SCAN, never
    FLUSHDB) or, on Memcached, the whole server (``flush_all``, count unknown: returns 0).
    Memcached cannot list keys, so clearing one namespace there raises
    :class:`~asyncperf.BackendError` (the facade counts it and returns 0). Clearing by
    prefix assumes the cache's key builder keeps prefixes (aiocache's own builders do); a
    builder that does not makes such a clear raise ``BackendError`` too.

    Tags are kept portably: each tag's keys (with their expiry times) are one encoded value
    under the reserved key ``<prefix>__asyncperf_tag__:<tag>``, updated by read-modify-write.
    Updates are serialized per tag within this process but are **not atomic across
    processes**: two processes tagging the same tag at once may lose one key from the
    index, and that key then survives an invalidation until it expires. Expired keys are
    pruned from an index whenever it is written, and the index expires with its last key.
    A key overwritten without a tag stays listed under its old tags (invalidating one
    of them removes it: an extra miss, never a stale hit).

    aiocache runs every operation under ``asyncio.wait_for(timeout=...)`` (5 s by default),
    which creates a task per call; that is not changed here, and timeouts are reported as
    failures like any other. A cache built with ``timeout=None`` skips that task: a memory
    ``get`` then costs about 4 µs instead of 25 µs.

    Failures of the cache raise :class:`~asyncperf.BackendUnavailable` (``from`` the
    original exception), which a :class:`~asyncperf.Cache` counts and answers as misses; a
    payload that is not asyncperf's raises :class:`~asyncperf.SerializationError` from
    ``get`` (``get_many`` answers ``None`` for it). aiocache is asyncio-only, so this store
    is too. Memcached keys are limited to 250 bytes and aiocache turns spaces in them into
    underscores.

    Args:
        cache: An aiocache cache (``SimpleMemoryCache``, ``RedisCache``,
            ``MemcachedCache`` or another ``aiocache.base.BaseCache`` subclass).
        codec: How entries are encoded (default: JSON via orjson, zstd above 1 KiB).
        clock: Wall-clock seconds (entry times are shared between processes).
        prefix: Prepended to every key, inside the cache's own namespace (``":"`` is
            appended when missing).

    Raises:
        ImportError: aiocache is not installed.
        ConfigurationError: ``cache`` is not an aiocache cache, or its serializer decodes
            with an encoding other than UTF-8.

    Example:
        >>> from aiocache import RedisCache
        >>> cache = Cache(AiocacheStore(RedisCache(namespace="app", timeout=None)))
    """

    backend_name = "aiocache"

    def __init__(
        self,
        cache: Any,
        *,
        codec: Codec | None = None,
        clock: Callable[[], float] = time.time,
        prefix: str = "",
    ) -> None:
        aiocache = _import_aiocache()
        if not isinstance(cache, aiocache.base.BaseCache):
            raise ConfigurationError(
                "AiocacheStore needs an aiocache cache object (SimpleMemoryCache, RedisCache, "
                f"MemcachedCache...), got {type(cache).__name__}"
            )
        if not isinstance(prefix, str):
            raise ConfigurationError(f"prefix must be a str, got {prefix!r}")
        if prefix and not prefix.endswith(":"):
            prefix += ":"
        if not callable(clock):
            raise ConfigurationError(f"clock must be callable, got {clock!r}")
        self.cache = cache
        self.codec = codec if codec is not None else Codec()
        self.clock = clock
        self.prefix = prefix
        self.kind: BackendKind = _backend_kind(cache)
        self._text = self.kind != "memory" and self._decodes_text(cache)
        self._tag_locks = _TagLocks()
        self._failures = 0
        self._decode_errors = 0

    @staticmethod
    def _decodes_text(cache: Any) -> bool:
        encoding = getattr(getattr(cache, "serializer", None), "encoding", None)
        if encoding is None:
            return False
        try:
            name = codecs.lookup(encoding).name
        except (LookupError, TypeError) as exc:
            raise ConfigurationError(
                f"the aiocache serializer's encoding {encoding!r} is not a known codec"
            ) from exc
        if name != "utf-8":
            raise ConfigurationError(
                f"AiocacheStore needs a cache whose serializer decodes UTF-8 or nothing; "
                f"this one decodes {encoding!r} (use e.g. PickleSerializer() or "
                "NullSerializer(encoding=None))"
            )
        return True

    def __repr__(self) -> str:
        return f"AiocacheStore({type(self.cache).__name__}, prefix={self.prefix!r})"

    # -- the one path every call takes -------------------------------------------------------

    async def _call(self, operation: str, awaitable: Awaitable[Any]) -> Any:
        try:
            return await awaitable
        except Exception as exc:  # driver errors, OSError, TimeoutError from wait_for
            self._failures += 1
            raise BackendUnavailable(f"aiocache {self.kind} {operation} failed: {exc!r}") from exc

    async def _bounded(self, operation: str, awaitable: Awaitable[Any]) -> Any:
        """Await a direct client call under the cache's own per-operation timeout."""

        async def run() -> Any:
            async with asyncio.timeout(self.cache.timeout or None):
                return await awaitable

        return await self._call(operation, run())

    # -- payloads and TTLs -------------------------------------------------------------------

    def _pack(self, payload: bytes) -> bytes | str:
        # Latin-1 maps each byte to one code point, so any payload survives as text.
        return payload.decode("latin-1") if self._text else payload

    def _unpack(self, raw: object) -> bytes:
        if isinstance(raw, bytes):
            return raw
        if isinstance(raw, bytearray | memoryview):
            return bytes(raw)
        if isinstance(raw, str):
            try:
                return raw.encode("latin-1")
            except UnicodeEncodeError:
                pass
        raise SerializationError(
            f"not an asyncperf payload (the cache holds a {type(raw).__qualname__})"
        )

    def _decode(self, raw: object) -> Entry | None:
        if raw is None:
            return None
        try:
            entry = self.codec.decode_entry(self._unpack(raw))
        except SerializationError:
            self._decode_errors += 1
            raise
        if entry.expires_at is not None and entry.expires_at <= self.clock():
            return None
        return entry

    def _encode(self, key: str, entry: Entry, ttl: float | None) -> bytes | str:
        entry.expires_at = None if ttl is None else self.clock() + ttl
        if entry.fresh_until is None:
            entry.fresh_until = entry.expires_at
        return self._pack(self.codec.encode_entry(entry, key=key))

    def _physical_ttl(self, ttl: float | None) -> float | int | None:
        """Return ``ttl`` as the wrapped backend wants it (``None``: no expiry)."""
        if ttl is None:
            return None
        if self.kind == "memcached":
            seconds = max(1, math.ceil(ttl))
            if seconds > _MEMCACHED_RELATIVE_LIMIT:
                return math.ceil(time.time()) + seconds
            return seconds
        # A float makes aiocache's Redis backend use PSETEX/PEXPIRE (milliseconds).
        return max(float(ttl), _MIN_TTL)

    def _full(self, key: str) -> Any:
        """Return the backend key aiocache builds for ``key`` (namespace included)."""
        return self.cache.build_key(self.prefix + key)

    def tag_key(self, tag: str) -> str:
        """Return the key (before the cache's namespace) of the index of ``tag``."""
        return f"{self.prefix}{TAG_MARK}{tag}"

    # -- reads -------------------------------------------------------------------------------

    async def get(self, key: str) -> Entry | None:
        """Return the live entry for ``key``, or ``None``.

        Raises:
            BackendUnavailable: The cache failed or timed out.
            SerializationError: The stored payload is not asyncperf's or is corrupt.
        """
        raw = await self._call("get", self.cache.get(self.prefix + key, loads_fn=_identity))
        return self._decode(raw)

    async def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        """Return one live entry or ``None`` per key, with one ``multi_get``.

        A payload that cannot be decoded answers ``None`` (and counts a decode error).
        """
        if not keys:
            return []
        raws = await self._call(
            "multi_get",
            self.cache.multi_get([self.prefix + key for key in keys], loads_fn=_identity),
        )
        if len(raws) != len(keys):  # AIOCACHE_DISABLE=1 makes multi_get answer []
            return [None] * len(keys)
        entries: list[Entry | None] = []
        for raw in raws:
            try:
                entries.append(self._decode(raw))
            except SerializationError:
                entries.append(None)
        return entries

    async def exists(self, key: str) -> bool:
        """Return whether the cache holds ``key`` (fresh or not)."""
        return bool(await self._call("exists", self.cache.exists(self.prefix + key)))

    # -- writes ------------------------------------------------------------------------------

    async def set(self, key: str, entry: Entry, ttl: float | None) -> None:
        """Store ``entry`` under ``key`` for ``ttl`` seconds.

        Raises:
            SerializationError: The value cannot be encoded; nothing is sent.
            BackendUnavailable: The cache failed or timed out.
        """
        payload = self._encode(key, entry, ttl)
        if entry.tags:
            await self._index({tag: {key: entry.expires_at} for tag in entry.tags})
        await self._call(
            "set",
            self.cache.set(
                self.prefix + key, payload, ttl=self._physical_ttl(ttl), dumps_fn=_identity
            ),
        )

    async def set_many(self, items: Sequence[tuple[str, Entry, float | None]]) -> None:
        """Store several items, one ``multi_set`` per distinct TTL.

        Every value is encoded before anything is sent, so an unencodable one stores
        nothing.
        """
        groups: dict[float | int | None, list[tuple[str, bytes | str]]] = {}
        tagged: dict[str, dict[str, float | None]] = {}
        for key, entry, ttl in items:
            payload = self._encode(key, entry, ttl)
            groups.setdefault(self._physical_ttl(ttl), []).append((self.prefix + key, payload))
            for tag in entry.tags:
                tagged.setdefault(tag, {})[key] = entry.expires_at
        if tagged:
            await self._index(tagged)
        for ttl, pairs in groups.items():
            await self._call("multi_set", self.cache.multi_set(pairs, ttl=ttl, dumps_fn=_identity))

    # -- tag indexes -------------------------------------------------------------------------

    async def _read_index(self, tag: str) -> dict[str, float | None]:
        raw = await self._call(
            "get tag index", self.cache.get(self.tag_key(tag), loads_fn=_identity)
        )
        if raw is None:
            return {}
        try:
            index = self.codec.decode(self._unpack(raw))
        except SerializationError:
            index = None
        if not isinstance(index, dict) or not all(
            value is None or isinstance(value, int | float) for value in index.values()
        ):
            self._decode_errors += 1
            logger.warning("asyncperf: dropped the unreadable index of tag %r", tag)
            return {}
        return index

    async def _index(self, additions: dict[str, dict[str, float | None]]) -> None:
        """Add keys (with their expiry times) to the index of each tag."""
        for tag, members in additions.items():
            async with self._tag_locks.hold(tag):
                index = await self._read_index(tag)
                now = self.clock()
                index = {
                    key: expires_at
                    for key, expires_at in index.items()
                    if expires_at is None or expires_at > now
                }
                index.update(members)
                times = list(index.values())
                ttl = None if None in times else max(t for t in times if t is not None) - now
                payload = self._pack(self.codec.encode(index, key=self.tag_key(tag)))
                await self._call(
                    "set tag index",
                    self.cache.set(
                        self.tag_key(tag),
                        payload,
                        ttl=self._physical_ttl(ttl),
                        dumps_fn=_identity,
                    ),
                )

    # -- invalidation ------------------------------------------------------------------------

    async def delete(self, key: str) -> bool:
        """Remove ``key``; return whether it was there."""
        return bool(await self._call("delete", self.cache.delete(self.prefix + key)))

    async def delete_many(self, keys: Sequence[str]) -> int:
        """Remove several keys (one UNLINK on Redis); return how many were there."""
        return await self._delete_prefixed([self.prefix + key for key in keys])

    async def _delete_prefixed(self, keys: Iterable[str]) -> int:
        unique = list(dict.fromkeys(keys))
        if not unique:
            return 0
        cache = self.cache
        if self.kind == "redis":
            built = [cache.build_key(key) for key in unique]
            return int(await self._call("delete_many", cache.raw("unlink", *built)))
        if self.kind == "memory":  # no I/O: a gather would only add tasks
            removed = 0
            for key in unique:
                removed += bool(await self._call("delete", cache.delete(key)))
            return removed
        results = await self._call(
            "delete_many", asyncio.gather(*(cache.delete(key) for key in unique))
        )
        return sum(bool(result) for result in results)

    async def invalidate_tags(self, tags: Sequence[str]) -> int:
        """Remove every entry stored under any of ``tags``, then their indexes.

        Returns:
            How many entries were removed.
        """
        removed = 0
        for tag in dict.fromkeys(tags):
            async with self._tag_locks.hold(tag):
                index = await self._read_index(tag)
                removed += await self._delete_prefixed(self.prefix + key for key in index)
                await self._call("delete tag index", self.cache.delete(self.tag_key(tag)))
        return removed

    async def clear(self, prefix: str = "") -> int:
        """Remove every key starting with ``prefix``, and the indexes of tags under it.

        Returns:
            How many entries were removed (tag indexes are removed uncounted; 0 when the
            backend cannot tell, as with Memcached's ``flush_all``).

        Raises:
            BackendError: The backend cannot remove keys by prefix (Memcached, unknown
                backends, or a key builder that does not keep prefixes).
            BackendUnavailable: The cache failed or timed out.
        """
        cache = self.cache
        everything = not (self.prefix or prefix or cache.namespace)
        if self.kind in ("memcached", "other"):
            if not everything:
                raise BackendError(
                    f"aiocache {self.kind} backend cannot remove keys by prefix "
                    f"({self.prefix + prefix!r} in namespace {cache.namespace!r}); only a "
                    "whole-cache clear() without prefix or namespace is supported"
                )
            await self._call("clear", cache.clear())
            return 0
        data = self._built_prefix(prefix)
        tags = self._built_prefix(TAG_MARK + prefix)
        tag_root = self._built_prefix(TAG_MARK)
        if self.kind == "memory":
            return await self._clear_memory(data, tags, tag_root, everything=everything)
        return await self._clear_redis(data, tags, tag_root)

    def _built_prefix(self, prefix: str) -> str:
        built = self._full(prefix)
        probe = self._full(prefix + "\x00")
        if not isinstance(built, str) or not isinstance(probe, str) or not probe.startswith(built):
            raise BackendError(
                "cannot clear by prefix: the aiocache key builder does not keep key prefixes"
            )
        return built

    async def _clear_memory(self, data: str, tags: str, tag_root: str, *, everything: bool) -> int:
        cache = self.cache
        removed = sum(
            1
            for key in list(cache._cache)
            if isinstance(key, str) and key.startswith(data) and not key.startswith(tag_root)
        )
        # The memory backend's clear(namespace=p) drops every key starting with p.
        await self._call("clear", cache.clear(namespace=None if everything else data))
        if not everything and not tags.startswith(data):
            await self._call("clear", cache.clear(namespace=tags))
        return removed

    async def _clear_redis(self, data: str, tags: str, tag_root: str) -> int:
        client = self.cache.client
        tag_root_bytes = tag_root.encode()
        removed = 0
        for pattern, counted in ((data, True), (tags, False)):
            if not counted and tags.startswith(data):
                break  # the first pass already covered the tag indexes
            cursor = 0
            while True:
                cursor, found = await self._bounded(
                    "clear",
                    client.scan(cursor, match=_glob_escape(pattern) + "*", count=_SCAN_COUNT),
                )
                if found:
                    entries = [key for key in found if not key.startswith(tag_root_bytes)]
                    indexes = [key for key in found if key.startswith(tag_root_bytes)]
                    if entries:
                        count = int(await self._bounded("clear", client.unlink(*entries)))
                        removed += count if counted else 0
                    if indexes:
                        await self._bounded("clear", client.unlink(*indexes))
                if not int(cursor):
                    break
        return removed

    # -- health, lifecycle -------------------------------------------------------------------

    async def health(self) -> StoreHealth:
        """Probe the cache with an ``exists`` call and report."""
        backend = f"aiocache-{getattr(self.cache, 'NAME', self.kind)}"
        started = time.perf_counter()
        try:
            await self._call("health", self.cache.exists(self.prefix + _HEALTH_KEY))
        except BackendUnavailable as exc:
            return StoreHealth(ok=False, backend=backend, detail=str(exc))
        return StoreHealth(ok=True, backend=backend, latency=time.perf_counter() - started)

    def statistics(self) -> AiocacheStoreStatistics:
        """Return a snapshot of the counters."""
        return AiocacheStoreStatistics(failures=self._failures, decode_errors=self._decode_errors)

    async def aclose(self) -> None:
        """Close the aiocache cache (its connections); errors are logged, not raised."""
        cache = self.cache
        client = getattr(cache, "client", None)
        try:
            if self.kind == "redis" and client is not None and hasattr(client, "aclose"):
                # aiocache 0.12's close() calls redis-py's close(), deprecated since 5.0.1.
                await client.aclose()
            else:
                close = getattr(cache, "close", None)
                if close is not None:
                    await close()
        except Exception as exc:
            logger.debug("asyncperf: closing the aiocache cache failed: %r", exc)
