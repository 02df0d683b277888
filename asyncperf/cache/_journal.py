"""The outage journal on disk: invalidations Redis missed, kept until a process replays them.

A small append-only file of JSON lines. The first line names the store it belongs to
(its URL and key prefix); each later line lists keys, tags or namespaces invalidated, or
written, while Redis was unreachable, or says ``{"all": true}`` once the journal grew past
its bound (recovery then clears the store's whole prefix). Every append is fsync'd before
the call that made it returns, so a process killed during an outage loses nothing it
acknowledged; the next process that starts with the same configuration loads the file and
replays it before it reads Redis. Appends and rewrites hold an exclusive ``flock``, so
processes sharing one path do not interleave or drop each other's lines.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .._exceptions import ConfigurationError

__all__ = ["JournalFile", "Pending"]

_VERSION = 1


@dataclass
class Pending:
    """What a journal holds: keys, tags and namespace prefixes, or everything."""

    keys: dict[str, None] = field(default_factory=dict)
    tags: dict[str, None] = field(default_factory=dict)
    prefixes: dict[str, None] = field(default_factory=dict)
    overflow: bool = False

    def size(self) -> int:
        return len(self.keys) + len(self.tags) + len(self.prefixes)

    def note(self, keys: Sequence[str], tags: Sequence[str], prefix: str | None) -> None:
        """Add what one failed invalidation would have removed."""
        self.keys.update(dict.fromkeys(keys))
        self.tags.update(dict.fromkeys(tags))
        if prefix is not None:
            self.prefixes[prefix] = None

    def collapse(self) -> None:
        """Stand for everything (too much to list, or the whole namespace)."""
        self.overflow = True
        self.keys.clear()
        self.tags.clear()
        self.prefixes.clear()

    def copy(self) -> Pending:
        return Pending(dict(self.keys), dict(self.tags), dict(self.prefixes), self.overflow)

    def add(self, record: dict[str, Any]) -> None:
        if record.get("all") is True:
            self.overflow = True
        for name, into in (("k", self.keys), ("t", self.tags), ("p", self.prefixes)):
            values = record.get(name)
            if isinstance(values, list):
                into.update(dict.fromkeys(v for v in values if isinstance(v, str)))

    def discard(self, done: Pending) -> None:
        for mine, theirs in (
            (self.keys, done.keys),
            (self.tags, done.tags),
            (self.prefixes, done.prefixes),
        ):
            for item in theirs:
                mine.pop(item, None)
        if done.overflow:
            self.overflow = False

    def records(self) -> list[dict[str, Any]]:
        if self.overflow:
            return [{"all": True}]
        record: dict[str, Any] = {}
        for name, values in (("k", self.keys), ("t", self.tags), ("p", self.prefixes)):
            if values:
                record[name] = list(values)
        return [record] if record else []


class JournalFile:
    """The on-disk outage journal of one store (see the module docstring).

    Args:
        path: The file (created on first append; its directory must exist).
        identity: What names the store's configuration (URL and prefix).
        limit: Most items kept before the journal collapses to ``{"all": true}``.
    """

    def __init__(self, path: str | os.PathLike[str], identity: str, limit: int) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise ConfigurationError(f"journal_path {str(self.path)!r} is a directory")
        if not self.path.parent.is_dir():
            raise ConfigurationError(
                f"journal_path {str(self.path)!r}: directory {str(self.path.parent)!r} "
                "does not exist"
            )
        self.identity = identity
        self.limit = limit
        self._items = 0
        self._overflow = False

    @contextlib.contextmanager
    def _locked(self, flags: int) -> Iterator[int]:
        fd = os.open(self.path, flags | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)  # releases the lock

    def _header(self) -> bytes:
        return orjson.dumps({"journal": _VERSION, "store": self.identity}) + b"\n"

    def _read(self, fd: int) -> Pending:
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        pending = Pending()
        lines = b"".join(chunks).splitlines()
        if not lines:
            return pending
        try:
            header = orjson.loads(lines[0])
        except orjson.JSONDecodeError:
            header = None
        if not isinstance(header, dict) or header.get("journal") != _VERSION:
            raise ConfigurationError(
                f"journal_path {str(self.path)!r} is not an asyncperf outage journal"
            )
        if header.get("store") != self.identity:
            raise ConfigurationError(
                f"journal_path {str(self.path)!r} belongs to store {header.get('store')!r}, "
                f"not {self.identity!r}: give each store configuration its own journal"
            )
        for line in lines[1:]:
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:  # a torn last line: everything before it counts
                continue
            if isinstance(record, dict):
                pending.add(record)
        if pending.size() > self.limit:
            pending = Pending(overflow=True)
        return pending

    def load(self) -> Pending:
        """Read what earlier processes left (an absent file: nothing).

        Raises:
            ConfigurationError: The file is not a journal, or another store's.
        """
        if not self.path.exists():
            return Pending()
        with self._locked(os.O_RDWR) as fd:
            pending = self._read(fd)
        self._items = pending.size()
        self._overflow = pending.overflow
        return pending

    def append(self, pending: Pending) -> None:
        """Add ``pending`` durably (written and fsync'd before returning)."""
        if self._overflow:
            return
        self._items += pending.size()
        if pending.overflow or self._items > self.limit:
            self._overflow = True
            pending = Pending(overflow=True)
        lines = b"".join(orjson.dumps(record) + b"\n" for record in pending.records())
        if not lines:
            return
        with self._locked(os.O_RDWR | os.O_APPEND) as fd:
            if os.fstat(fd).st_size == 0:
                lines = self._header() + lines
            os.write(fd, lines)
            os.fsync(fd)

    def forget(self, done: Pending) -> None:
        """Remove what was replayed; lines other processes added meanwhile stay."""
        if not self.path.exists():
            return
        with self._locked(os.O_RDWR) as fd:
            left = self._read(fd)
            left.discard(done)
            body = b"".join(orjson.dumps(record) + b"\n" for record in left.records())
            os.ftruncate(fd, 0)
            if body:
                os.lseek(fd, 0, os.SEEK_SET)
                os.write(fd, self._header() + body)
            os.fsync(fd)
        self._items = left.size()
        self._overflow = left.overflow
