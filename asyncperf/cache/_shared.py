"""State every namespace view of one cache shares, failure logging, the default fallback."""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from typing import Final

from .._exceptions import ConfigurationError
from ._background import BackgroundTasks
from ._memory import MemoryStore
from ._singleflight import Flight, SyncFlight
from ._store import Store

logger = logging.getLogger("asyncperf.cache")

_ERROR_LOG_INTERVAL: Final = 10.0


class ErrorLog:
    """Log store failures at most once per interval per (operation, exception type)."""

    __slots__ = ("_last", "_suppressed")

    def __init__(self) -> None:
        self._last: dict[tuple[str, type[BaseException]], float] = {}
        self._suppressed: dict[tuple[str, type[BaseException]], int] = {}

    def report(self, operation: str, exc: BaseException) -> None:
        slot = (operation, type(exc))
        now = time.monotonic()
        last = self._last.get(slot)
        if last is not None and now - last < _ERROR_LOG_INTERVAL:
            self._suppressed[slot] = self._suppressed.get(slot, 0) + 1
            return
        self._last[slot] = now
        suppressed = self._suppressed.pop(slot, 0)
        logger.warning(
            "asyncperf cache %s failed (%s: %s); answered as a miss%s",
            operation,
            type(exc).__name__,
            exc,
            f" ({suppressed} similar failures not logged)" if suppressed else "",
        )


class Shared:
    """State every namespace view of one cache shares."""

    __slots__ = (
        "closed",
        "default_ttl",
        "error_log",
        "executor",
        "flights",
        "jitter",
        "lock",
        "lock_timeout",
        "store",
        "strict",
        "sync_flights",
        "tasks",
    )

    def __init__(self, store: Store, default_ttl: float | None, jitter: float, strict: bool):
        self.store = store
        self.default_ttl = default_ttl
        self.jitter = jitter
        self.strict = strict
        self.flights: dict[str, Flight] = {}
        self.sync_flights: dict[str, SyncFlight] = {}
        self.lock = threading.Lock()
        self.tasks = BackgroundTasks()
        self.executor: concurrent.futures.ThreadPoolExecutor | None = None
        self.error_log = ErrorLog()
        self.closed = False
        self.lock_timeout = 10.0


class Default:
    """The marker for "pick the default" where ``None`` means "none"."""

    def __repr__(self) -> str:
        return "<default>"


DEFAULT: Final = Default()
_FALLBACK_ENTRIES: Final = 1000


def with_fallback(store: Store, fallback: MemoryStore | Default | None) -> Store:
    """Put a memory fallback behind a bare remote store (Redis), as the default asks."""
    from ._redis import RedisStore

    if not isinstance(store, RedisStore):
        if fallback is not DEFAULT and fallback is not None:
            raise ConfigurationError(
                "fallback= applies to remote stores such as RedisStore; "
                f"{type(store).__name__} has its own handling of failures"
            )
        return store
    if fallback is None:
        return store
    from ._tiered import FallbackStore

    if isinstance(fallback, Default):
        fallback = MemoryStore(max_entries=_FALLBACK_ENTRIES)
    return FallbackStore(store, fallback)
