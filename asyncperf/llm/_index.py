"""An in-process vector index partitioned by scope: a search only ever sees one scope."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from ._embed import cosine
from ._guards import PromptFeatures

__all__ = ["IndexRecord", "ScopedIndex"]


@dataclass(slots=True)
class IndexRecord:
    """One indexed prompt: where its entry lives and what the guards compare."""

    key: str
    scope: str
    prompt: str
    features: PromptFeatures
    vector: Sequence[float]


class ScopedIndex:
    """Vectors grouped by scope (model, parameters, system prompt, history, tenant).

    The scope is chosen before the search: requests that differ in anything but the last
    user message are never compared, so no filter after a top-k can let one through. The
    search within a scope is exact (brute force); the oldest entries go first past
    ``max_entries``.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._scopes: dict[str, dict[str, IndexRecord]] = {}
        self._order: OrderedDict[str, str] = OrderedDict()  # key -> scope, oldest first

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, key: object) -> bool:
        return key in self._order

    def add(self, record: IndexRecord) -> None:
        """Add or replace the record for ``record.key``."""
        self.remove(record.key)
        self._scopes.setdefault(record.scope, {})[record.key] = record
        self._order[record.key] = record.scope
        while len(self._order) > self.max_entries:
            oldest = next(iter(self._order))
            self.remove(oldest)

    def remove(self, key: str) -> None:
        """Drop ``key`` if indexed."""
        scope = self._order.pop(key, None)
        if scope is None:
            return
        records = self._scopes[scope]
        del records[key]
        if not records:
            del self._scopes[scope]

    def search(
        self, scope: str, vector: Sequence[float], limit: int = 5
    ) -> list[tuple[float, IndexRecord]]:
        """Return up to ``limit`` ``(cosine, record)`` of ``scope``, most similar first."""
        records = self._scopes.get(scope)
        if not records:
            return []
        scored = [(cosine(vector, record.vector), record) for record in records.values()]
        scored.sort(key=lambda item: item[0], reverse=True)
        return scored[:limit]

    def clear(self) -> None:
        """Drop everything."""
        self._scopes.clear()
        self._order.clear()
