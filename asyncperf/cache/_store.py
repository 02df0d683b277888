"""The Store protocol every backend implements, and a base class with defaults."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from ._entry import Entry

__all__ = ["BaseStore", "LeaseStore", "Store", "StoreHealth"]


@dataclass(frozen=True, slots=True)
class StoreHealth:
    """What a store says about itself when asked.

    Attributes:
        ok: The store answered.
        backend: A short name of the backend (``"memory"``, ``"redis"``...).
        latency: Seconds the probe took, when the store made one.
        breaker_state: ``"closed"``, ``"open"`` or ``"half-open"`` for remote stores.
        detail: A human-readable reason when not ok.
    """

    ok: bool
    backend: str
    latency: float | None = None
    breaker_state: str = "closed"
    detail: str = ""


@runtime_checkable
class LeaseStore(Protocol):
    """A store that can hold a single-flight lease across processes (Redis-backed stores).

    ``Cache(lock="distributed")`` and ``ResponseCache(coalesce="distributed")`` use it: the
    caller that takes the lease loads, the others wait for its release message.
    """

    def available(self) -> bool:
        """Whether the store is reachable now (its breaker is not open)."""
        ...

    async def try_lease(self, key: str, token: str, ttl: float) -> float:
        """Take the lease on ``key`` for ``ttl`` seconds: 0.0 when taken, else seconds left."""
        ...

    async def release_lease(self, key: str, token: str) -> bool:
        """Release the lease if ``token`` still holds it, waking every waiter."""
        ...

    async def wait_for_lease(
        self, key: str, wait: float, recheck: Callable[[], Awaitable[bool]]
    ) -> bool:
        """Wait up to ``wait`` seconds for the lease's release (True when woken)."""
        ...


@runtime_checkable
class Store(Protocol):
    """A key -> :class:`Entry` store.

    Keys arrive complete (namespace prefix included, long keys already hashed). ``ttl`` is
    the physical lifetime in seconds (``None``: no expiry). A store that encodes values
    raises :class:`~asyncperf.SerializationError` from ``set`` for a value it cannot encode
    and from ``get`` for a payload it cannot decode; any other failure may raise whatever
    the driver raised. The :class:`~asyncperf.Cache` facade turns both into counted misses.
    """

    clock: Callable[[], float]

    async def get(self, key: str) -> Entry | None:
        """Return the live entry for ``key``, or ``None``."""
        ...

    async def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        """Return one live entry or ``None`` per key, in order."""
        ...

    async def set(self, key: str, entry: Entry, ttl: float | None) -> None:
        """Store ``entry`` under ``key`` for ``ttl`` seconds."""
        ...

    async def set_many(self, items: Sequence[tuple[str, Entry, float | None]]) -> None:
        """Store several ``(key, entry, ttl)`` items."""
        ...

    async def delete(self, key: str) -> bool:
        """Remove ``key``; return whether it was there."""
        ...

    async def delete_many(self, keys: Sequence[str]) -> int:
        """Remove several keys; return how many were there."""
        ...

    async def invalidate_tags(self, tags: Sequence[str]) -> int:
        """Remove every entry stored under any of ``tags``; return how many."""
        ...

    async def clear(self, prefix: str = "") -> int:
        """Remove every key starting with ``prefix`` (all keys when empty)."""
        ...

    async def health(self) -> StoreHealth:
        """Probe the store."""
        ...

    async def aclose(self) -> None:
        """Release connections and background work."""
        ...


class BaseStore(ABC):
    """Defaults for the batch methods and the async context manager.

    Subclasses implement ``get``, ``set``, ``delete``, ``invalidate_tags`` and ``clear``.
    """

    clock: Callable[[], float]
    backend_name = "store"

    @abstractmethod
    async def get(self, key: str) -> Entry | None:
        """Return the live entry for ``key``, or ``None``."""

    @abstractmethod
    async def set(self, key: str, entry: Entry, ttl: float | None) -> None:
        """Store ``entry`` under ``key`` for ``ttl`` seconds."""

    @abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove ``key``; return whether it was there."""

    @abstractmethod
    async def invalidate_tags(self, tags: Sequence[str]) -> int:
        """Remove every entry stored under any of ``tags``; return how many."""

    @abstractmethod
    async def clear(self, prefix: str = "") -> int:
        """Remove every key starting with ``prefix`` (all keys when empty)."""

    async def get_many(self, keys: Sequence[str]) -> list[Entry | None]:
        """Return ``get`` of each key, in order."""
        return [await self.get(key) for key in keys]

    async def set_many(self, items: Sequence[tuple[str, Entry, float | None]]) -> None:
        """Call ``set`` for each item."""
        for key, entry, ttl in items:
            await self.set(key, entry, ttl)

    async def delete_many(self, keys: Sequence[str]) -> int:
        """Call ``delete`` for each key and count the hits."""
        removed = 0
        for key in keys:
            removed += await self.delete(key)
        return removed

    async def health(self) -> StoreHealth:
        """Report healthy: a store that needs a probe overrides this."""
        return StoreHealth(ok=True, backend=self.backend_name)

    async def aclose(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Nothing to release by default."""

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
