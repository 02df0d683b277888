"""What a store keeps for one key: the value plus the metadata the facade needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Entry"]


@dataclass(slots=True, eq=False, repr=False)
class Entry:
    """One cached value with its metadata.

    Times are absolute, in the clock of the store that holds the entry (``store.clock``).

    Attributes:
        value: The cached object (a remote store holds it encoded; its entries come back
            decoded).
        expires_at: When the store drops the entry; ``None`` means never.
        fresh_until: When the value turns stale (``None``: never). A writer sets it only
            when the value should outlive its freshness (stale-while-revalidate,
            stale-if-error); stores fill in ``expires_at`` when it is left ``None``, so a
            stored entry always carries its freshness deadline here.
        load_time: Seconds the loader took to produce the value (probabilistic early
            refresh weighs by it); 0.0 when the value was set directly.
        tags: Tags the entry was stored under.
        size: Bytes the store accounts for this entry (set by the store).
    """

    # A dataclass for the generated ``__init__`` (plain slot assignments, as fast as a
    # hand-written one); identity equality, as entries are never compared by value.
    # Positional arguments allowed: the write paths pass them so (keywords cost CPython
    # 3.11's call several times the assignments).
    value: Any
    expires_at: float | None = None
    fresh_until: float | None = None
    load_time: float = 0.0
    tags: tuple[str, ...] = ()
    size: int = 0

    def is_fresh(self, now: float) -> bool:
        """Return whether the value is still fresh at ``now``."""
        return self.fresh_until is None or now < self.fresh_until

    def copy_with(self, value: Any) -> Entry:
        """Return a copy of this entry holding ``value`` instead."""
        return Entry(
            value,
            expires_at=self.expires_at,
            fresh_until=self.fresh_until,
            load_time=self.load_time,
            tags=self.tags,
            size=self.size,
        )

    def __repr__(self) -> str:
        return (
            f"Entry(value={self.value!r}, expires_at={self.expires_at!r}, "
            f"fresh_until={self.fresh_until!r}, load_time={self.load_time!r}, tags={self.tags!r})"
        )
