"""RedisStore: redis.asyncio + hiredis with deadlines, a breaker, auto-batching and leases."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final, TypeVar

import orjson

from .._exceptions import BackendUnavailable, ConfigurationError, SerializationError
from ._batching import Batcher
from ._breaker import CircuitBreaker
from ._codec import Codec
from ._deadline import Limiter, Watchdog, current_task
from ._entry import Entry
from ._pubsub import Listener
from ._redis_lua import INVALIDATE_TAGS, RELEASE_LEASE, TAG_ADD
from ._redis_stats import RedisInfo, RedisStoreStatistics, summarize_info
from ._sentinel import SentinelWatch, sentinel_pool
from ._store import BaseStore, StoreHealth
from ._url import redis_client_from_url
from ._wire import Wire

__all__ = ["RedisInfo", "RedisStore", "RedisStoreStatistics"]

logger = logging.getLogger("asyncperf.cache")

ItemT = TypeVar("ItemT")
R = TypeVar("R")

_SCAN_COUNT: Final = 1000
_UNLINK_CHUNK: Final = 500
_LISTEN_POLL: Final = 0.5
_PING_EVERY: Final = 2.0


def _import_redis() -> Any:
    try:
        import redis.asyncio as redis_asyncio
    except ImportError as exc:  # pragma: no cover - the dev install has redis
        raise ImportError(
            "RedisStore needs the redis client: pip install 'asyncperf[redis]'"
        ) from exc
    return redis_asyncio


def _glob_escape(text: str) -> str:
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisStore(BaseStore):
    """A store on Redis through ``redis.asyncio`` (hiredis parser when installed).

    Every operation has a deadline (``op_timeout``, 100 ms by default) and goes through a
    circuit breaker: after ``failure_threshold`` failures in a row, operations fail at once
    with :class:`~asyncperf.BackendUnavailable` for ``recovery_time`` seconds, then one
    probe decides whether to close it. Behind a :class:`~asyncperf.Cache`, such failures
    are misses (or fallback hits), never application errors.

    A get made while Redis is busy with another waits for the gets of the same event-loop
    turn and travels with them as one ``MGET`` (sets: one pipeline); a lone get goes out
    at once. At most ``max_connections`` commands run at once: callers beyond that
    queue (within the deadline) instead of failing with a pool error.

    Keys live under ``prefix``; asyncperf's own keys (tag sets, leases, the event
    channel) live under ``prefix`` with ``#`` in place of its final ``:``, so no user
    key can collide with them and ``clear()`` never needs ``FLUSHDB``.

    Args:
        client_or_url: A ``redis://``, ``rediss://`` or ``unix://`` URL, or a
            ``redis.asyncio`` client (``Redis``, a Sentinel ``master_for`` client, or
            ``RedisCluster``) that you configured yourself.
        prefix: Prepended to every key (``":"`` is appended when missing).
        codec: How values are encoded (default: JSON via orjson, zstd above 1 KiB).
        op_timeout: Seconds each operation may take, pool wait included.
        bulk_timeout: Seconds for ``clear`` and tag invalidation, which may touch many keys.
        failure_threshold: Consecutive failures that open the breaker.
        recovery_time: Seconds the breaker stays open before a probe.
        max_connections: Pool size, and the most operations in flight at once.
        batching: Coalesce same-turn gets into MGET and sets into pipelines.
        clock: Wall-clock seconds (entry times are shared between processes).
        breaker_clock: Monotonic seconds for the breaker; injected by tests.
    """

    backend_name = "redis"

    def __init__(
        self,
        client_or_url: Any = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "asyncperf:",
        codec: Codec | None = None,
        op_timeout: float = 0.1,
        bulk_timeout: float = 5.0,
        failure_threshold: int = 3,
        recovery_time: float = 1.0,
        max_connections: int = 50,
        batching: bool = True,
        clock: Callable[[], float] = time.time,
        breaker_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from ._cache import check_ttl

        redis_asyncio = _import_redis()
        if op_timeout is None or bulk_timeout is None:
            raise ConfigurationError("op_timeout and bulk_timeout must be numbers of seconds")
        self.op_timeout: float = check_ttl(op_timeout, "op_timeout") or op_timeout
        self.bulk_timeout: float = check_ttl(bulk_timeout, "bulk_timeout") or bulk_timeout
        if (
            isinstance(max_connections, bool)
            or not isinstance(max_connections, int)
            or max_connections < 1
        ):
            raise ConfigurationError(
                f"max_connections must be a positive int, got {max_connections!r}"
            )
        if not isinstance(prefix, str):
            raise ConfigurationError(f"prefix must be a str, got {prefix!r}")
        if not prefix.endswith(":"):
            prefix += ":"
        self.prefix = prefix
        self._internal = prefix[:-1] + "#"
        self.channel = self._internal + "events"
        self.codec = codec if codec is not None else Codec()
        self.clock = clock
        self.breaker = CircuitBreaker(
            failure_threshold=failure_threshold,
            recovery_time=recovery_time,
            name="redis",
            clock=breaker_clock,
        )
        self._owns_client = isinstance(client_or_url, str)
        if isinstance(client_or_url, str):
            self.url = client_or_url
            self.client = redis_client_from_url(redis_asyncio, client_or_url, max_connections)
        elif hasattr(client_or_url, "execute_command"):
            self.url = repr(client_or_url)
            self.client = client_or_url
        else:
            raise ConfigurationError(
                "RedisStore needs a redis:// URL or a redis.asyncio client, "
                f"got {type(client_or_url).__name__}"
            )
        from redis.asyncio.cluster import RedisCluster

        self.cluster = isinstance(self.client, RedisCluster)
        pool = sentinel_pool(self.client)
        # A Sentinel master_for client: watch for failovers (started by the first command).
        self._sentinel = SentinelWatch(pool) if pool is not None else None
        self._sentinel_pending = self._sentinel is not None
        self.origin = uuid.uuid4().hex
        self._limit = Limiter(max_connections)
        self._watchdog = Watchdog()
        self._batching = batching
        self._get_batcher: Batcher[str, bytes | None] = Batcher(self._flush_gets, self._get_one)
        self._set_batcher: Batcher[tuple[str, bytes, float | None, tuple[str, ...]], None] = (
            Batcher(self._flush_sets, self._set_one)
        )
        # A client of our own has no retries or socket timeout to honour: lone commands skip
        # redis-py's per-command layers (see _wire.py). A client handed in keeps its own path.
        self._wire = Wire(self.client.connection_pool) if self._owns_client else None
        self._invalidate_script = self.client.register_script(INVALIDATE_TAGS)
        self._release_script = self.client.register_script(RELEASE_LEASE)
        self._tag_script = self.client.register_script(TAG_ADD)
        self._publish = False
        self._listener: Listener | None = None
        self._lease_waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._batches = self._batched_keys = self._decode_errors = 0
        self._sent = self._received = 0

    def __repr__(self) -> str:
        return f"RedisStore({self.url!r}, prefix={self.prefix!r})"

    # -- the one path every command takes ---------------------------------------------------

    async def _call(
        self, operation: str, command: Callable[[], Awaitable[R]], budget: float | None = None
    ) -> R:
        if not self.breaker.allow():
            raise BackendUnavailable(f"redis {operation} skipped: the breaker is open")
        if self._sentinel_pending:
            self._sentinel_pending = False
            assert self._sentinel is not None
            self._sentinel.start()
        loop = asyncio.get_running_loop()
        task = current_task(loop)
        assert task is not None
        watchdog = self._watchdog
        cancelling = task.cancelling()
        watchdog.watch(task, budget or self.op_timeout, loop)
        limit = self._limit
        sentinel = self._sentinel
        failovers = sentinel.failovers if sentinel is not None else 0
        try:
            if not limit.try_acquire():
                await limit.acquire()  # queued within the deadline
            try:
                result = await command()
            except Exception as exc:
                if sentinel is None or not sentinel.cut(exc, failovers):
                    raise
                result = await command()  # now on the new master, and no breaker failure
            finally:
                limit.release()
        except asyncio.CancelledError:
            if watchdog.expired(task) and task.uncancel() <= cancelling:
                self.breaker.failure()  # our deadline, not the caller's cancellation
                raise BackendUnavailable(
                    f"redis {operation} timed out after {budget or self.op_timeout:g} s"
                ) from None
            raise
        except (KeyboardInterrupt, SystemExit, SerializationError):
            raise
        except Exception as exc:  # redis errors, OSError
            self.breaker.failure()
            raise BackendUnavailable(
                f"redis {operation} failed: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            watchdog.unwatch(task)
        self.breaker.success()
        return result

    def available(self) -> bool:
        """Whether an operation would be attempted now (breaker closed or due a probe)."""
        return self.breaker.would_allow()

    def key(self, key: str) -> str:
        """Return the Redis key that holds ``key``."""
        return self.prefix + key

    def tag_key(self, tag: str) -> str:
        """Return the Redis key of the set listing the keys stored under ``tag``."""
        return f"{self._internal}tag:{tag}"

    def lease_key(self, key: str) -> str:
        """Return the Redis key of the single-flight lease for ``key``."""
        return f"{self._internal}lease:{key}"

    # -- decoding ----------------------------------------------------------------------

    def _decode(self, key: str, raw: bytes | None) -> Entry | None:
        if raw is None:
            return None
        try:
            return self.codec.decode_entry(raw)
        except SerializationError:
            self._decode_errors += 1
            raise

    # -- reads ---------------------------------------------------------------------------

    async def get(self, key: str) -> Entry | None:
        """Return the entry for ``key`` (batched with other gets of this turn)."""
        full = self.prefix + key
        if self._batching:
            raw = await self._get_batcher.submit(full)
        else:
            raw = await self._get_one(full)
        return self._decode(key, raw)

    def _get_one(self, full: str) -> Awaitable[bytes | None]:
        """A lone GET (no batch open): the coroutine of its round trip."""
        if (wire := self._wire) is not None:
            return self._call("get", lambda: wire.command("GET", full))
        client = self.client
        return self._call("get", lambda: client.get(full))

    async def _flush_gets(self, keys: list[str]) -> list[bytes | None]:
        unique = list(dict.fromkeys(keys))
        if len(unique) == 1:
            value = await self._get_one(unique[0])
            return [value] * len(keys)
        self._batches += 1
        self._batched_keys += len(unique)
        values = await self._call("mget", lambda: self._mget(unique))
        found = dict(zip(unique, values, strict=True))
        return [found[key] for key in keys]

    async def _mget(self, keys: list[str]) -> list[bytes | None]:
        if self.cluster:
            return list(await self.client.mget_nonatomic(keys))
        return list(await self.client.mget(keys))

    async def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        """Return one entry or ``None`` per key, with one MGET."""
        if not keys:
            return []
        full = [self.prefix + key for key in keys]
        raws = await self._call("mget", lambda: self._mget(full))
        entries: list[Entry | None] = []
        for key, raw in zip(keys, raws, strict=True):
            try:
                entries.append(self._decode(key, raw))
            except SerializationError:
                entries.append(None)
        return entries

    async def exists(self, key: str) -> bool:
        """Return whether Redis holds ``key`` (fresh or not)."""
        full = self.prefix + key
        return bool(await self._call("exists", lambda: self.client.exists(full)))

    async def ttl(self, key: str) -> float | None:
        """Return the seconds ``key`` has left, ``None`` without expiry, or -1.0 if absent."""
        full = self.prefix + key
        millis = await self._call("pttl", lambda: self.client.pttl(full))
        if millis == -1:
            return None
        return -1.0 if millis < 0 else millis / 1000.0

    async def expire(self, key: str, ttl: float | None) -> bool:
        """Set ``key``'s remaining lifetime (``None``: no expiry); False if it is absent."""
        full = self.prefix + key
        if ttl is None:
            result = await self._call("persist", lambda: self.client.persist(full))
            changed = bool(result) or await self.exists(key)
        else:
            changed = bool(await self._call("pexpire", lambda: self.client.pexpire(full, _ms(ttl))))
        if changed and self._publish:  # other processes' L1 re-read the new lifetime
            message = self._message(keys=[full])
            await self._call("publish", lambda: self.client.publish(self.channel, message))
        return changed

    # -- writes --------------------------------------------------------------------------

    def _encode(self, key: str, entry: Entry, ttl: float | None) -> bytes:
        entry.expires_at = None if ttl is None else self.clock() + ttl
        if entry.fresh_until is None:
            entry.fresh_until = entry.expires_at
        return self.codec.encode_entry(entry, key=key)

    async def set(self, key: str, entry: Entry, ttl: float | None) -> None:
        """Store ``entry`` for ``ttl`` seconds (batched with other sets of this turn).

        Raises:
            SerializationError: The value cannot be encoded; nothing is sent.
            BackendUnavailable: Redis failed, timed out, or the breaker is open.
        """
        entry.expires_at = None if ttl is None else self.clock() + ttl
        if entry.fresh_until is None:
            entry.fresh_until = entry.expires_at
        payload = self.codec.encode_entry(entry, key=key)
        item = (self.prefix + key, payload, ttl, entry.tags)
        if self._batching:
            await self._set_batcher.submit(item)
        else:
            await self._set_one(item)

    async def _set_one(self, item: tuple[str, bytes, float | None, tuple[str, ...]]) -> None:
        """A lone set: a plain SET when it has no tags and announces nothing (no pipeline)."""
        full, payload, ttl, tags = item
        if tags or self._publish:
            await self._flush_sets([item])
            return
        args = ("SET", full, payload) if ttl is None else ("SET", full, payload, "PX", _ms(ttl))
        send = self._wire.command if self._wire is not None else self.client.execute_command
        await self._call("set", lambda: send(*args))

    async def set_many(self, items: Sequence[tuple[str, Entry, float | None]]) -> None:
        """Store several items in one pipeline; nothing is sent if one cannot be encoded."""
        batch = [
            (self.prefix + key, self._encode(key, entry, ttl), ttl, entry.tags)
            for key, entry, ttl in items
        ]
        if batch:
            await self._flush_sets(batch)

    async def _flush_sets(
        self, items: list[tuple[str, bytes, float | None, tuple[str, ...]]]
    ) -> list[None]:
        if len(items) > 1:
            self._batches += 1
            self._batched_keys += len(items)

        async def run() -> None:
            # A context: a cancelled execute (a deadline) gives its connection back.
            async with self.client.pipeline(transaction=False) as pipe:
                tagged: list[tuple[str, str, str | int]] = []
                for full, payload, ttl, tags in items:
                    if ttl is None:
                        pipe.set(full, payload)
                    else:
                        pipe.set(full, payload, px=_ms(ttl))
                    ttl_ms = "" if ttl is None else _ms(ttl)
                    tagged.extend((self.tag_key(tag), full, ttl_ms) for tag in tags)
                if self.cluster:
                    # A cluster pipeline refuses scripts and PUBLISH: send those on their own.
                    await pipe.execute()
                    for tag_key, full, ttl_ms in tagged:
                        await self._tag_script(keys=[tag_key], args=[full, ttl_ms])
                    if self._publish:
                        message = self._message(keys=[full for full, *_ in items])
                        await self.client.publish(self.channel, message)
                    return
                for tag_key, full, ttl_ms in tagged:
                    await self._tag_script(keys=[tag_key], args=[full, ttl_ms], client=pipe)
                if self._publish:
                    pipe.publish(self.channel, self._message(keys=[f for f, *_ in items]))
                await pipe.execute()

        await self._call("set", run)
        return [None] * len(items)

    # -- invalidation ----------------------------------------------------------------------

    async def delete(self, key: str) -> bool:
        """Remove ``key``; return whether it was there."""
        return await self.delete_many([key]) == 1

    async def delete_many(self, keys: Sequence[str]) -> int:
        """Remove several keys; return how many were there."""
        if not keys:
            return 0
        full = [self.prefix + key for key in keys]

        async def run() -> int:
            if self.cluster:
                removed = int(await self.client.unlink(*full))
                if self._publish:
                    await self.client.publish(self.channel, self._message(keys=full))
                return removed
            # A context: a cancelled execute (a deadline) gives its connection back.
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.unlink(*full)
                if self._publish:
                    pipe.publish(self.channel, self._message(keys=full))
                return int((await pipe.execute())[0])

        return await self._call("delete", run)

    async def invalidate_tags(self, tags: Sequence[str]) -> int:
        """Remove every entry stored under any of ``tags``; return how many."""
        if not tags:
            return 0
        tag_keys = [self.tag_key(tag) for tag in tags]

        async def run() -> int:
            if self.cluster:
                members: set[bytes] = set()
                for tag_key in tag_keys:
                    members.update(await self.client.smembers(tag_key))
                removed = 0
                if members:
                    removed = int(await self.client.unlink(*members))
                await self.client.unlink(*tag_keys)
            else:
                removed = int(await self._invalidate_script(keys=tag_keys))
            if self._publish:
                await self.client.publish(self.channel, self._message(tags=list(tags)))
            return removed

        return await self._call("invalidate_tags", run, self.bulk_timeout)

    async def clear(self, prefix: str = "") -> int:
        """Remove every key under ``prefix`` with SCAN + UNLINK (never FLUSHDB).

        Returns:
            How many cached entries were removed (tag sets are removed too, uncounted).
        """
        data_pattern = _glob_escape(self.prefix + prefix) + "*"
        tag_pattern = _glob_escape(self.tag_key(prefix)) + "*"

        async def unlink_matching(pattern: str) -> int:
            removed = 0
            chunk: list[Any] = []
            async for found in self.client.scan_iter(match=pattern, count=_SCAN_COUNT):
                chunk.append(found)
                if len(chunk) >= _UNLINK_CHUNK:
                    removed += int(await self.client.unlink(*chunk))
                    chunk = []
            if chunk:
                removed += int(await self.client.unlink(*chunk))
            return removed

        async def run() -> int:
            removed = await unlink_matching(data_pattern)
            await unlink_matching(tag_pattern)
            if self._publish:
                await self.client.publish(self.channel, self._message(prefix=prefix))
            return removed

        return await self._call("clear", run, self.bulk_timeout)

    # -- leases (distributed single-flight) ----------------------------------------------

    async def try_lease(self, key: str, token: str, ttl: float) -> float:
        """Try to take the single-flight lease on ``key`` for ``ttl`` seconds.

        Returns:
            0.0 when this caller now holds it, else the seconds left on the holder's lease.
        """
        lease = self.lease_key(key)

        async def run() -> float:
            # A context: a cancelled execute (a deadline) gives its connection back.
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.set(lease, token, nx=True, px=_ms(ttl))
                pipe.pttl(lease)
                acquired, left = await pipe.execute()
                return 0.0 if acquired else max(int(left), 1) / 1000.0

        return await self._call("lease", run)

    async def release_lease(self, key: str, token: str) -> bool:
        """Release the lease if ``token`` still holds it, and wake every waiter."""
        lease = self.lease_key(key)
        message = orjson.dumps({"d": key})
        released = await self._call(
            "release",
            lambda: self._release_script(keys=[lease], args=[token, self.channel, message]),
        )
        return bool(released)

    async def wait_for_lease(
        self, key: str, wait: float, recheck: Callable[[], Awaitable[bool]]
    ) -> bool:
        """Wait until the holder of ``key``'s lease releases it, or ``wait`` seconds pass.

        The wake-up is registered before ``recheck()`` runs, so a release between the
        caller's last look and this wait is not missed; when ``recheck`` answers True
        there is nothing to wait for.

        Returns:
            True when woken by a release or the recheck, False on timeout.
        """
        waiters = self._lease_waiters.setdefault(key, [])
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(future)
        try:
            if await recheck():
                return True
            async with asyncio.timeout(wait):
                await future
            return True
        except TimeoutError:
            return False
        finally:
            with contextlib.suppress(ValueError):
                waiters.remove(future)
            if not waiters:
                self._lease_waiters.pop(key, None)

    async def watch_failovers(self) -> bool:
        """Start the Sentinel failover watch now; True once subscribed (False: no Sentinel).

        It starts with the first command anyway; call this to be sure it is subscribed
        before a failover you are about to cause (tests, start-up checks).
        """
        watch = self._sentinel
        if watch is None:
            return False
        self._sentinel_pending = False
        watch.start()
        try:
            async with asyncio.timeout(max(self.op_timeout, 1.0)):
                await watch.subscribed.wait()
        except TimeoutError:
            return False
        return True

    async def ensure_listener(self) -> bool:
        """Start the event listener (lease wake-ups, invalidations); True once subscribed."""
        if self._listener is None:
            self._listener = Listener(self)
        return await self._listener.ready(self.op_timeout)

    def ensure_listener_started(self) -> None:
        """Start the event listener task if this store has one (needs a running loop)."""
        if self._listener is not None:
            self._listener.start()

    # -- invalidation feed (tiered mode) --------------------------------------------------

    def enable_invalidation_feed(self, on_message: Callable[[dict[str, Any]], None]) -> None:
        """Publish every write and invalidation, and pass other processes' to ``on_message``."""
        self._publish = True
        if self._listener is None:
            self._listener = Listener(self)
        self._listener.on_invalidation = on_message

    def add_connection_listener(self, callback: Callable[[bool], None]) -> None:
        """Call ``callback(connected)`` when the event subscription drops or comes back."""
        if self._listener is None:
            self._listener = Listener(self)
        self._listener.on_connection.append(callback)

    def _message(
        self,
        *,
        keys: Iterable[str] = (),
        tags: Sequence[str] = (),
        prefix: str | None = None,
    ) -> bytes:
        self._sent += 1
        body: dict[str, Any] = {"o": self.origin}
        cut = len(self.prefix)
        if keys:
            body["k"] = [key[cut:] for key in keys]
        if tags:
            body["t"] = list(tags)
        if prefix is not None:
            body["p"] = prefix
        return orjson.dumps(body)

    def _dispatch(self, data: bytes) -> None:
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError:
            logger.debug("asyncperf: ignored a foreign message on %s", self.channel)
            return
        if not isinstance(body, dict):
            return
        done = body.get("d")
        if isinstance(done, str):
            for future in self._lease_waiters.get(done, ()):
                if not future.done():
                    future.set_result(None)
            return
        if body.get("o") == self.origin:
            return
        listener = self._listener
        if listener is not None and listener.on_invalidation is not None:
            self._received += 1
            listener.on_invalidation(body)

    # -- health, info, lifecycle -------------------------------------------------------------

    async def health(self) -> StoreHealth:
        """PING Redis (through the breaker) and report."""
        started = time.perf_counter()
        try:
            await self._call("ping", self.client.ping)
        except BackendUnavailable as exc:
            return StoreHealth(
                ok=False, backend="redis", breaker_state=self.breaker.state, detail=str(exc)
            )
        return StoreHealth(
            ok=True,
            backend="redis",
            latency=time.perf_counter() - started,
            breaker_state=self.breaker.state,
        )

    async def redis_info(self) -> RedisInfo:
        """Return a summary of the server's memory, keys, evictions and hit rate."""

        async def run() -> list[dict[str, Any]]:
            if self.cluster:  # one dict per primary, keyed by node name
                info = await self.client.info(target_nodes=self.client.PRIMARIES)
                values = list(info.values()) if isinstance(info, dict) else []
                if values and all(isinstance(value, dict) for value in values):
                    return values
                return [info]
            return [await self.client.info()]

        nodes = await self._call("info", run, self.bulk_timeout)

        return summarize_info(nodes)

    def statistics(self) -> RedisStoreStatistics:
        """Return a snapshot of the counters."""
        breaker = self.breaker.statistics()
        return RedisStoreStatistics(
            breaker_state=breaker.state,
            failures=breaker.failures,
            rejected=breaker.rejected,
            batches=self._batches,
            batched_keys=self._batched_keys,
            decode_errors=self._decode_errors,
            invalidations_sent=self._sent,
            invalidations_received=self._received,
            failovers=self._sentinel.failovers if self._sentinel is not None else 0,
        )

    async def aclose(self) -> None:
        """Stop the listener and close the connections this store opened."""
        if self._listener is not None:
            await self._listener.aclose()
            self._listener = None
        if self._sentinel is not None:
            await self._sentinel.aclose()
        if self._owns_client:
            with contextlib.suppress(Exception):
                # The pool was passed in explicitly, so redis-py would leave it open.
                await self.client.aclose(close_connection_pool=True)
