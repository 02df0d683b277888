"""Redis with a memory fallback, and Redis with a coherent memory tier in front (L1/L2)."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import anyio

from .._exceptions import BackendUnavailable, ConfigurationError
from ._entry import Entry
from ._journal import JournalFile, Pending
from ._memory import _LOCK_READS, MemoryStore
from ._policy import check_positive_int
from ._redis import RedisStore
from ._store import BaseStore, StoreHealth

__all__ = ["FallbackStore", "TieredStatistics", "TieredStore"]

logger = logging.getLogger("asyncperf.cache")

_DEFAULT_JOURNAL: Final = 10_000


@dataclass(frozen=True, slots=True)
class TieredStatistics:
    """Counters of a :class:`FallbackStore` or :class:`TieredStore`.

    Attributes:
        breaker_state: The remote store's breaker state.
        failures: Remote operations that failed (each answered from memory).
        degraded_reads: Reads answered from memory because the remote was unavailable.
        degraded_writes: Writes kept in memory only because the remote was unavailable.
        recoveries: Times the remote came back and the outage journal was replayed.
        l1_fills: Remote hits copied into the memory tier (tiered mode).
        l1_flushes: Times the memory tier was dropped whole (recovery, reconnect).
        remote_invalidations: Invalidations from other processes applied to the tier.
        evictions: Entries the memory tier evicted for its caps.
        expirations: Entries the memory tier expired.
    """

    breaker_state: str
    failures: int
    degraded_reads: int
    degraded_writes: int
    recoveries: int
    l1_fills: int
    l1_flushes: int
    remote_invalidations: int
    evictions: int
    expirations: int


class FallbackStore(BaseStore):
    """A :class:`RedisStore` that keeps caching in memory while Redis is unavailable.

    While the remote store's breaker is open (or an operation fails), reads and writes
    use the in-process ``fallback`` store, so the application keeps its cache, small as it
    is. Writes and invalidations made meanwhile are journaled; when Redis answers again
    the journal is replayed against it (keys written or deleted during the outage are
    removed, tags invalidated, namespaces cleared; past ``journal_size`` items the whole
    store prefix is cleared), and only then is Redis read again. So no value invalidated
    during an outage is served after it.

    With ``journal_path`` the journal is also written to that file (fsync'd before the call
    that made the entry returns), so it survives the process: the next process started
    with the same store configuration and path replays it before it reads Redis.

    Args:
        primary: The remote store.
        fallback: The in-process store used during outages.
        journal_size: Outage journal capacity before falling back to a full clear.
        journal_path: A local file that keeps the journal across processes (``None``:
            in memory only). One file per store configuration (URL and prefix).

    Raises:
        ConfigurationError: A bad size, or ``journal_path`` is not usable or holds
            another store's journal.
    """

    backend_name = "redis+fallback"

    def __init__(
        self,
        primary: RedisStore,
        fallback: MemoryStore,
        *,
        journal_size: int = _DEFAULT_JOURNAL,
        journal_path: str | os.PathLike[str] | None = None,
    ) -> None:
        if not isinstance(fallback, MemoryStore):
            raise ConfigurationError(
                f"the fallback must be a MemoryStore, got {type(fallback).__name__}"
            )
        check_positive_int(journal_size, "journal_size")
        self.primary = primary
        self.fallback = fallback
        # Entry times must mean the same thing in both stores.
        fallback.clock = primary.clock
        self.clock = primary.clock
        self.journal_size = journal_size
        self._pending = Pending()  # what the remote missed while unavailable
        self._needs_recovery = False
        self._recovering = False
        self._degraded_reads = self._degraded_writes = self._recoveries = 0
        self._journal_file: JournalFile | None = None
        self._journal_lock = anyio.Lock()
        self._unsaved = Pending()
        if journal_path is not None:
            self._journal_file = JournalFile(
                journal_path, f"{primary.url} {primary.prefix}", journal_size
            )
            left = self._journal_file.load()  # what a process that died mid-outage left
            if left.overflow or left.size():
                self._needs_recovery = True
                self._pending = left
        primary.breaker.listeners.append(self._on_breaker)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.primary!r}, {self.fallback!r})"

    @property
    def codec(self) -> Any:
        """The remote store's codec."""
        return self.primary.codec

    @codec.setter
    def codec(self, codec: Any) -> None:
        self.primary.codec = codec

    @property
    def breaker(self) -> Any:
        """The remote store's circuit breaker."""
        return self.primary.breaker

    # -- outage bookkeeping ---------------------------------------------------------------

    def _on_breaker(self, previous: str, state: str) -> None:
        if state == "open":
            self._needs_recovery = True

    async def _journal(
        self, *, keys: Sequence[str] = (), tags: Sequence[str] = (), prefix: str | None = None
    ) -> None:
        self._needs_recovery = True
        if self._journal_file is not None:
            await self._save(keys, tags, prefix)
        pending = self._pending
        if pending.overflow:
            return
        pending.note(keys, tags, prefix)
        if pending.size() > self.journal_size or "" in pending.prefixes:
            pending.collapse()

    async def _save(self, keys: Sequence[str], tags: Sequence[str], prefix: str | None) -> None:
        """Append to the journal file; returns once it is on disk (group commit)."""
        journal = self._journal_file
        assert journal is not None
        self._unsaved.note(keys, tags, prefix)
        async with self._journal_lock:
            batch = self._unsaved
            if not batch.size():
                return  # the previous holder wrote ours with its own
            self._unsaved = Pending()
            try:
                await anyio.to_thread.run_sync(journal.append, batch)
            except OSError as exc:  # a full or read-only disk: the memory journal remains
                logger.warning("asyncperf: outage journal %s not written: %r", journal.path, exc)

    async def _primary_ready(self) -> bool:
        """Whether to use the remote store now; replays the outage journal first."""
        if not self._needs_recovery and self.primary.breaker.state == "closed":
            return True
        if self._recovering or not self.primary.available():
            return False
        return await self._recover()

    async def _recover(self) -> bool:
        self._recovering = True
        # Replay a snapshot: what is journaled meanwhile stays for the next recovery.
        done = self._pending.copy()
        try:
            if done.overflow:
                await self.primary.clear("")
            else:
                if done.keys:
                    await self.primary.delete_many(list(done.keys))
                if done.tags:
                    await self.primary.invalidate_tags(list(done.tags))
                for prefix in done.prefixes:
                    await self.primary.clear(prefix)
                if not done.size():
                    await self.primary._call("ping", self.primary.client.ping)
            if self._journal_file is not None:
                await anyio.to_thread.run_sync(self._journal_file.forget, done)
        except BackendUnavailable:
            return False
        except OSError as exc:  # replayed, but the file still lists it: replayed again later
            logger.warning("asyncperf: outage journal not emptied: %r", exc)
        finally:
            self._recovering = False
        pending = self._pending
        pending.discard(done)
        # Anything journaled while the replay ran is replayed next time.
        self._needs_recovery = bool(pending.overflow or pending.size())
        self._recoveries += 1
        self._after_recovery()
        logger.warning("asyncperf: Redis is back; outage journal replayed")
        return True

    def _after_recovery(self) -> None:
        self.fallback.clear_sync()

    def _normalized(self, key: str, entry: Entry) -> Entry:
        """Return ``entry`` as the remote store would give it back (JSON round-trip)."""
        codec = self.primary.codec
        return codec.decode_entry(codec.encode_entry(entry, key=key))

    # -- Store protocol ----------------------------------------------------------------------

    async def get(self, key: str) -> Entry | None:
        """Return the remote entry, or the fallback's while the remote is unavailable."""
        if await self._primary_ready():
            try:
                return await self.primary.get(key)
            except BackendUnavailable:
                pass
        self._degraded_reads += 1
        return self.fallback.get_entry(key)

    async def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        """Return entries from the remote, or from the fallback while it is unavailable."""
        if await self._primary_ready():
            try:
                return await self.primary.get_many(keys)
            except BackendUnavailable:
                pass
        self._degraded_reads += len(keys)
        return [self.fallback.get_entry(key) for key in keys]

    async def set(self, key: str, entry: Entry, ttl: float | None) -> None:
        """Store remotely; during an outage keep it in memory and journal the key."""
        if await self._primary_ready():
            try:
                await self.primary.set(key, entry, ttl)
                return
            except BackendUnavailable:
                pass
        self._degraded_writes += 1
        self.fallback.set_entry(key, self._normalized(key, entry), ttl)
        await self._journal(keys=[key])

    async def set_many(self, items: Sequence[tuple[str, Entry, float | None]]) -> None:
        """Store several items (see :meth:`set`)."""
        if await self._primary_ready():
            try:
                await self.primary.set_many(items)
                return
            except BackendUnavailable:
                pass
        normalized = [(key, self._normalized(key, entry), ttl) for key, entry, ttl in items]
        for key, entry, ttl in normalized:
            self._degraded_writes += 1
            self.fallback.set_entry(key, entry, ttl)
        await self._journal(keys=[key for key, _, _ in items])

    async def delete(self, key: str) -> bool:
        """Remove ``key`` (journaled for replay if the remote is unavailable)."""
        return await self.delete_many([key]) == 1

    async def delete_many(self, keys: Sequence[str]) -> int:
        """Remove several keys (journaled for replay if the remote is unavailable)."""
        local = sum(self.fallback.delete_entry(key) for key in keys)
        if await self._primary_ready():
            try:
                return await self.primary.delete_many(keys)
            except BackendUnavailable:
                pass
        await self._journal(keys=keys)
        return local

    async def invalidate_tags(self, tags: Sequence[str]) -> int:
        """Invalidate tags everywhere (journaled for replay if the remote is unavailable)."""
        local = self.fallback.invalidate_tags_sync(tags)
        if await self._primary_ready():
            try:
                return await self.primary.invalidate_tags(tags)
            except BackendUnavailable:
                pass
        await self._journal(tags=tags)
        return local

    async def clear(self, prefix: str = "") -> int:
        """Clear a namespace everywhere (journaled for replay if the remote is unavailable)."""
        local = self.fallback.clear_sync(prefix)
        if await self._primary_ready():
            try:
                return await self.primary.clear(prefix)
            except BackendUnavailable:
                pass
        await self._journal(prefix=prefix)
        return local

    # leases, for lock="distributed": only through a healthy remote

    def available(self) -> bool:
        """Whether the remote store would be used now."""
        return not self._needs_recovery and self.primary.breaker.state == "closed"

    async def try_lease(self, key: str, token: str, ttl: float) -> float:
        """Try to take the remote single-flight lease on ``key`` (see :class:`RedisStore`)."""
        return await self.primary.try_lease(key, token, ttl)

    async def release_lease(self, key: str, token: str) -> bool:
        """Release the remote lease on ``key``."""
        return await self.primary.release_lease(key, token)

    async def wait_for_lease(
        self, key: str, wait: float, recheck: Callable[[], Awaitable[bool]]
    ) -> bool:
        """Wait for the remote lease on ``key`` to be released."""
        return await self.primary.wait_for_lease(key, wait, recheck)

    async def ensure_listener(self) -> bool:
        """Start the remote store's event listener."""
        return await self.primary.ensure_listener()

    async def health(self) -> StoreHealth:
        """Probe the remote store; ``ok`` is False while degraded to memory."""
        report = await self.primary.health()
        if report.ok and self._needs_recovery:
            return StoreHealth(
                ok=False,
                backend=self.backend_name,
                latency=report.latency,
                breaker_state=report.breaker_state,
                detail="recovering from an outage",
            )
        return StoreHealth(
            ok=report.ok,
            backend=self.backend_name,
            latency=report.latency,
            breaker_state=report.breaker_state,
            detail=report.detail,
        )

    async def redis_info(self) -> Any:
        """The remote store's :meth:`RedisStore.redis_info`."""
        return await self.primary.redis_info()

    def statistics(self) -> TieredStatistics:
        """Return a snapshot of the counters."""
        remote = self.primary.statistics()
        local = self.fallback.statistics()
        return TieredStatistics(
            breaker_state=remote.breaker_state,
            failures=remote.failures,
            degraded_reads=self._degraded_reads,
            degraded_writes=self._degraded_writes,
            recoveries=self._recoveries,
            l1_fills=0,
            l1_flushes=0,
            remote_invalidations=remote.invalidations_received,
            evictions=local.evictions,
            expirations=local.expirations,
        )

    async def aclose(self) -> None:
        """Close the remote store."""
        await self.primary.aclose()


class TieredStore(FallbackStore):
    """A memory tier (L1) in front of Redis (L2), kept coherent across processes.

    L1 hits never touch Redis. Every write and invalidation goes to both tiers and is
    published on the store's Redis channel; every other process's TieredStore drops the
    affected keys, tags or namespace from its L1 on receipt (Redis pub/sub: it works on
    every Redis version, on Sentinel and on Cluster, and one subscription per process
    carries all of it). L1 entries also expire after ``l1_ttl`` seconds at most, which
    bounds staleness if a message is lost. When the subscription drops, L1 stops being
    filled; when it comes back, or when Redis recovers from an outage, L1 is flushed
    whole before it serves again (it may have missed invalidations meanwhile).

    While Redis is unavailable, reads are L1 hits or misses and writes go to L1 only, with
    the same journal and replay as :class:`FallbackStore`.

    Args:
        l1: The memory tier (its clock is set to L2's so entry times agree).
        l2: The Redis store.
        l1_ttl: Longest time an entry stays in L1, in seconds.
        journal_size: Outage journal capacity.
        journal_path: A file that keeps the outage journal across processes.
    """

    backend_name = "tiered"

    def __init__(
        self,
        l1: MemoryStore,
        l2: RedisStore,
        *,
        l1_ttl: float = 30.0,
        journal_size: int = _DEFAULT_JOURNAL,
        journal_path: str | os.PathLike[str] | None = None,
    ) -> None:
        from ._cache import check_ttl

        if not isinstance(l2, RedisStore):
            raise ConfigurationError(f"l2 must be a RedisStore, got {type(l2).__name__}")
        if l1.codec is not None:
            raise ConfigurationError("the L1 MemoryStore of a tiered cache takes no codec")
        if l1_ttl is None:
            raise ConfigurationError("l1_ttl must be a number of seconds")
        super().__init__(l2, l1, journal_size=journal_size, journal_path=journal_path)
        self.l1 = l1
        self.l2 = l2
        self.l1_ttl: float = check_ttl(l1_ttl, "l1_ttl") or l1_ttl
        # The Cache facade reads this tier inline, like a plain MemoryStore.
        self.front = l1 if not _LOCK_READS else None
        self._epoch = 0
        self._l1_fills = self._l1_flushes = 0
        l2.enable_invalidation_feed(self._on_remote_invalidation)
        l2.add_connection_listener(self._on_connection)

    @property
    def coherent(self) -> bool:
        """Whether invalidations from other processes are being received now."""
        listener = self.l2._listener
        return listener is not None and listener.connected

    def _on_remote_invalidation(self, body: dict[str, Any]) -> None:
        self._epoch += 1
        l1 = self.l1
        keys = body.get("k")
        if isinstance(keys, list):
            for key in keys:
                if isinstance(key, str):
                    l1.delete_entry(key)
        tags = body.get("t")
        if isinstance(tags, list):
            l1.invalidate_tags_sync(tag for tag in tags if isinstance(tag, str))
        prefix = body.get("p")
        if isinstance(prefix, str):
            l1.clear_sync(prefix)

    def _on_connection(self, connected: bool) -> None:
        # Either way L1 may be missing invalidations: drop it. Filling stops while
        # disconnected (see get), so nothing stale is added back.
        self._epoch += 1
        self._flush_l1()

    def _flush_l1(self) -> None:
        self._l1_flushes += 1
        self.l1.clear_sync()

    def _after_recovery(self) -> None:
        self._flush_l1()

    def _fill(self, key: str, entry: Entry, epoch: int) -> None:
        if epoch != self._epoch or not self.coherent:
            return  # an invalidation arrived while we read, or we might miss the next one
        ttl = self.l1_ttl
        if entry.expires_at is not None:
            ttl = min(ttl, entry.expires_at - self.clock())
            if ttl <= 0:
                return
        self._put_l1(key, entry, ttl)
        self._l1_fills += 1

    def _put_l1(self, key: str, entry: Entry, ttl: float) -> None:
        """Keep a copy of ``entry`` in L1 for ``ttl`` seconds at most.

        The Cache facade reads L1 inline and checks only ``fresh_until``, so the copy's
        freshness ends when its L1 life does. Its load time is dropped: probabilistic
        early refresh is decided on L2 reads, against the value's real expiry, not at
        every L1 expiry.
        """
        local = entry.copy_with(entry.value)
        deadline = self.clock() + ttl
        if local.fresh_until is None or local.fresh_until > deadline:
            local.fresh_until = deadline
        local.load_time = 0.0
        self.l1.set_entry(key, local, ttl)

    def _l1_ttl(self, ttl: float | None) -> float:
        return self.l1_ttl if ttl is None else min(ttl, self.l1_ttl)

    async def get(self, key: str) -> Entry | None:
        """Return the L1 entry, else the L2 one (copied into L1)."""
        entry = self.l1.get_entry(key)
        if entry is not None:  # (the Cache facade reads L1 inline: rarely reached)
            return entry
        self.l2.ensure_listener_started()
        if not await self._primary_ready():
            self._degraded_reads += 1
            return None
        epoch = self._epoch
        try:
            entry = await self.l2.get(key)
        except BackendUnavailable:
            self._degraded_reads += 1
            return None
        if entry is not None:
            self._fill(key, entry, epoch)
        return entry

    async def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        """Return entries from L1, the rest from L2 in one MGET."""
        found = [self.l1.get_entry(key) for key in keys]
        missing = [i for i, entry in enumerate(found) if entry is None]
        if not missing:
            return found
        self.l2.ensure_listener_started()
        if not await self._primary_ready():
            self._degraded_reads += len(missing)
            return found
        epoch = self._epoch
        try:
            remote = await self.l2.get_many([keys[i] for i in missing])
        except BackendUnavailable:
            self._degraded_reads += len(missing)
            return found
        for i, entry in zip(missing, remote, strict=True):
            found[i] = entry
            if entry is not None:
                self._fill(keys[i], entry, epoch)
        return found

    async def set(self, key: str, entry: Entry, ttl: float | None) -> None:
        """Store in L2 (publishing the change) and in L1, as L2 would return it."""
        local = self._normalized(key, entry)
        self.l2.ensure_listener_started()
        if await self._primary_ready():
            try:
                await self.l2.set(key, entry, ttl)
            except BackendUnavailable:
                self._degraded_writes += 1
                await self._journal(keys=[key])
        else:
            self._degraded_writes += 1
            await self._journal(keys=[key])
        self._put_l1(key, local, self._l1_ttl(ttl))

    async def set_many(self, items: Sequence[tuple[str, Entry, float | None]]) -> None:
        """Store several items in both tiers."""
        local = [(key, self._normalized(key, entry), ttl) for key, entry, ttl in items]
        self.l2.ensure_listener_started()
        if await self._primary_ready():
            try:
                await self.l2.set_many(items)
            except BackendUnavailable:
                self._degraded_writes += len(items)
                await self._journal(keys=[key for key, _, _ in items])
        else:
            self._degraded_writes += len(items)
            await self._journal(keys=[key for key, _, _ in items])
        for key, entry, ttl in local:
            self._put_l1(key, entry, self._l1_ttl(ttl))

    def statistics(self) -> TieredStatistics:
        """Return a snapshot of the counters."""
        base = super().statistics()
        return TieredStatistics(
            breaker_state=base.breaker_state,
            failures=base.failures,
            degraded_reads=base.degraded_reads,
            degraded_writes=base.degraded_writes,
            recoveries=base.recoveries,
            l1_fills=self._l1_fills,
            l1_flushes=self._l1_flushes,
            remote_invalidations=base.remote_invalidations,
            evictions=base.evictions,
            expirations=base.expirations,
        )
