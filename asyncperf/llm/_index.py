"""An in-process vector index partitioned by scope: a search only ever sees one scope."""

from __future__ import annotations

from array import array
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from ._embed import cosine
from ._guards import PromptFeatures

__all__ = ["IndexRecord", "ScopedIndex", "rank"]


@dataclass(slots=True)
class IndexRecord:
    """One indexed prompt: where its entry lives and what the guards compare."""

    key: str
    scope: str
    prompt: str
    features: PromptFeatures
    vector: Sequence[float]


def rank(
    records: Sequence[IndexRecord], vector: Sequence[float], limit: int = 5
) -> list[tuple[float, IndexRecord]]:
    """Return up to ``limit`` ``(cosine, record)`` of ``records``, most similar first.

    Pure and read-only, so it may run in a worker thread on a snapshot of a scope.
    """
    scored = [(cosine(vector, record.vector), record) for record in records]
    scored.sort(key=lambda item: item[0], reverse=True)
    return scored[:limit]


class ScopedIndex:
    """Vectors grouped by scope (model, parameters, system prompt, history, tenant).

    The scope is chosen before the search: requests that differ in anything but the last
    user message are never compared, so no filter after a top-k can let one through. The
    search within a scope is exact (brute force). Entries are kept in least-recently-used
    order (added, or touched by a hit): past ``max_entries`` in all, or
    ``max_scope_entries`` in one scope, the least recently used go first.

    Vectors are kept as ``array("d")``: a list of Python floats per entry would make every
    full garbage collection walk all of them (0.1 s, all threads stopped, at 20 000
    entries of 512 dimensions) and take four times the memory.
    """

    def __init__(self, max_entries: int = 100_000, max_scope_entries: int | None = None) -> None:
        self.max_entries = max_entries
        self.max_scope_entries = max_scope_entries if max_scope_entries is not None else max_entries
        # Both in least-recently-used order, oldest first.
        self._scopes: dict[str, OrderedDict[str, IndexRecord]] = {}
        self._order: OrderedDict[str, str] = OrderedDict()  # key -> scope

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, key: object) -> bool:
        return key in self._order

    def scope_size(self, scope: str) -> int:
        """How many entries ``scope`` holds."""
        records = self._scopes.get(scope)
        return len(records) if records else 0

    def add(self, record: IndexRecord) -> None:
        """Add or replace the record for ``record.key`` (as the most recently used)."""
        if not isinstance(record.vector, array):
            record.vector = array("d", record.vector)
        self.remove(record.key)
        records = self._scopes.setdefault(record.scope, OrderedDict())
        records[record.key] = record
        self._order[record.key] = record.scope
        while len(records) > self.max_scope_entries:
            self.remove(next(iter(records)))
        while len(self._order) > self.max_entries:
            self.remove(next(iter(self._order)))

    def touch(self, key: str) -> None:
        """Mark ``key`` as just used (a hit), if indexed."""
        scope = self._order.get(key)
        if scope is None:
            return
        self._order.move_to_end(key)
        self._scopes[scope].move_to_end(key)

    def remove(self, key: str) -> None:
        """Drop ``key`` if indexed."""
        scope = self._order.pop(key, None)
        if scope is None:
            return
        records = self._scopes[scope]
        del records[key]
        if not records:
            del self._scopes[scope]

    def snapshot(self, scope: str) -> list[IndexRecord]:
        """Return the records of ``scope`` as a list (safe to rank in another thread)."""
        records = self._scopes.get(scope)
        return list(records.values()) if records else []

    def search(
        self, scope: str, vector: Sequence[float], limit: int = 5
    ) -> list[tuple[float, IndexRecord]]:
        """Return up to ``limit`` ``(cosine, record)`` of ``scope``, most similar first."""
        return rank(self.snapshot(scope), vector, limit)

    def clear(self) -> None:
        """Drop everything."""
        self._scopes.clear()
        self._order.clear()
