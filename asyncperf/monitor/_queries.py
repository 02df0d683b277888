"""SQL statement fingerprints and asyncpg query timing through its query-logging hook."""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._metrics import Counter, Histogram

__all__ = ["QueryRecorder", "StatementFingerprint", "fingerprint"]

_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)
_STRINGS = re.compile(r"'(?:[^']|'')*'|\$\w*\$.*?\$\w*\$", re.DOTALL)
_NUMBERS = re.compile(r"(?<![\w$])-?\d+(?:\.\d+)?(?:e[+-]?\d+)?\b", re.IGNORECASE)
_PARAMS = re.compile(r"\$\d+")
_LISTS = re.compile(r"\(\s*\?(?:\s*,\s*\?)+\s*\)")
_SPACE = re.compile(r"\s+")
_MAX_TEXT = 300


@dataclass(frozen=True, slots=True)
class StatementFingerprint:
    """A statement with its literals and parameters replaced by ``?``.

    Attributes:
        id: 12 hex digits identifying the normalised statement (the metric label).
        operation: The first keyword, upper-cased (``SELECT``, ``INSERT``, ``WITH``...).
        text: The normalised statement, at most 300 characters (snapshot only: SQL
            text never becomes a label).
    """

    id: str
    operation: str
    text: str


def fingerprint(sql: str) -> StatementFingerprint:
    """Normalise ``sql`` so that statements differing only in values share a fingerprint.

    Example:
        >>> fingerprint("SELECT * FROM t WHERE id = 42").text
        'SELECT * FROM t WHERE id = ?'
        >>> fingerprint("select * from t where id in (1, 2, 3)").id == fingerprint(
        ...     "SELECT * FROM t WHERE id IN ($1)").id
        True
    """
    text = _COMMENTS.sub(" ", sql)
    text = _STRINGS.sub("?", text)
    text = _PARAMS.sub("?", text)
    text = _NUMBERS.sub("?", text)
    text = _LISTS.sub("(?)", text)
    text = _SPACE.sub(" ", text).strip().rstrip(";").strip()
    digest = hashlib.blake2b(text.lower().encode(), digest_size=6).hexdigest()
    operation = text.split(" ", 1)[0].upper() if text else "UNKNOWN"
    if not operation.isalpha():
        operation = "OTHER"
    return StatementFingerprint(digest, operation, text[:_MAX_TEXT])


class QueryRecorder:
    """Turns asyncpg ``LoggedQuery`` records into duration histograms by fingerprint.

    Args:
        duration: ``asyncperf_db_client_operation_duration_seconds`` (operation, statement).
        errors: ``asyncperf_db_client_operation_errors_total`` (operation, statement, error).
        cache_size: Raw SQL strings whose fingerprints are remembered (normalising costs
            a few regex passes; apps repeat the same statements).
    """

    def __init__(self, duration: Histogram, errors: Counter, *, cache_size: int = 1000) -> None:
        self.duration = duration
        self.errors = errors
        self.statements: dict[str, StatementFingerprint] = {}
        self._cache: OrderedDict[str, StatementFingerprint] = OrderedDict()
        self._cache_size = cache_size
        #: Also given every statement (the OpenTelemetry export sets it; ``None``: nothing).
        self.mirror: Callable[[StatementFingerprint, float, BaseException | None], None] | None = (
            None
        )

    def fingerprint(self, sql: str) -> StatementFingerprint:
        """Return the (remembered) fingerprint of ``sql``."""
        found = self._cache.get(sql)
        if found is not None:
            self._cache.move_to_end(sql)
            return found
        found = fingerprint(sql)
        self._cache[sql] = found
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        if len(self.statements) < self.duration.max_label_sets:
            self.statements.setdefault(found.id, found)
        return found

    def record(self, sql: str, elapsed: float, exception: BaseException | None = None) -> None:
        """Record one statement's duration (and its error, if it failed)."""
        found = self.fingerprint(sql)
        self.duration.labels(found.operation, found.id).observe(elapsed)
        if exception is not None:
            self.errors.labels(found.operation, found.id, type(exception).__name__).inc()
        if self.mirror is not None:
            self.mirror(found, elapsed, exception)

    def __call__(self, record: Any) -> None:
        """The asyncpg query logger: ``connection.add_query_logger(recorder)``."""
        self.record(record.query, float(record.elapsed), record.exception)
