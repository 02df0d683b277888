"""Content codings: zstd for storage, gzip and brotli transcoded on the way out."""

from __future__ import annotations

import gzip
import threading
from collections import OrderedDict
from types import ModuleType
from typing import Final

import anyio.to_thread

from ..cache.internal import ZstdPool

__all__ = ["MAX_ZSTD_LEVEL", "Codings", "TranscodeCache", "brotli_module"]

# RFC 9659: a zstd content coding must not need a window above 8 MB; levels 20+ do.
MAX_ZSTD_LEVEL: Final = 19
# Bodies above this are (de)compressed in a worker thread, as Starlette's GZip does.
THREAD_THRESHOLD: Final = 128 * 1024
# A compressed body must save at least 1/8 to be worth decompressing on every miss.
_MIN_SAVING_SHIFT: Final = 3


def brotli_module() -> ModuleType | None:
    """Return the ``brotli`` module when the extra is installed, else ``None``."""
    try:
        import brotli
    except ImportError:
        return None
    module: ModuleType = brotli
    return module


class Codings:
    """Compressors and decompressors at fixed levels; safe to use from any thread.

    zstandard objects are not thread-safe, so each thread gets its own.
    """

    def __init__(self, *, zstd_level: int, gzip_level: int, brotli_quality: int) -> None:
        self.zstd_level = zstd_level
        self.gzip_level = gzip_level
        self.brotli_quality = brotli_quality
        self.brotli = brotli_module()
        self._zstd = ZstdPool(zstd_level)
        self._available = ("zstd", "br", "gzip") if self.brotli is not None else ("zstd", "gzip")

    @property
    def available(self) -> tuple[str, ...]:
        """Codings this process can produce from a zstd-stored body."""
        return self._available

    def pack(self, body: bytes, min_size: int) -> bytes | None:
        """Return ``body`` zstd-compressed, or ``None`` if small or incompressible."""
        if len(body) < min_size:
            return None
        packed = self._zstd.compressor().compress(body)
        if len(packed) > len(body) - (len(body) >> _MIN_SAVING_SHIFT):
            return None
        return packed

    def unpack(self, packed: bytes, size: int) -> bytes:
        """Return the identity body of a zstd frame holding ``size`` bytes."""
        return self._zstd.decompressor().decompress(packed, max_output_size=size)

    def encode(self, body: bytes, coding: str) -> bytes:
        """Return the identity ``body`` in ``coding`` (``zstd``, ``gzip`` or ``br``)."""
        if coding == "gzip":
            return gzip.compress(body, compresslevel=self.gzip_level, mtime=0)
        if coding == "br":
            assert self.brotli is not None
            encoded: bytes = self.brotli.compress(body, quality=self.brotli_quality, lgwin=22)
            return encoded
        if coding == "zstd":
            return self._zstd.compressor().compress(body)
        return body

    async def run(self, size: int, work: object, *args: object) -> bytes:
        """Call ``work(*args)``: in a worker thread when ``size`` is large."""
        assert callable(work)
        if size >= THREAD_THRESHOLD:
            result: bytes = await anyio.to_thread.run_sync(work, *args)
            return result
        direct: bytes = work(*args)
        return direct


class TranscodeCache:
    """A byte-bounded LRU of re-encoded bodies, so hot entries are transcoded once.

    Keys carry the entry's identity (storage key and validator), so a replaced or
    invalidated entry is never answered from here: its new version has a new key.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._data: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str]) -> bytes | None:
        """Return the kept body for ``key``, or ``None``."""
        with self._lock:
            body = self._data.get(key)
            if body is not None:
                self._data.move_to_end(key)
            return body

    def put(self, key: tuple[str, str, str], body: bytes) -> None:
        """Keep ``body`` under ``key``, evicting the least recently used beyond the cap."""
        if len(body) > self.max_bytes // 4:
            return  # one huge body would flush every hot small one
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            self._data[key] = body
            self._bytes += len(body)
            while self._bytes > self.max_bytes and self._data:
                _, evicted = self._data.popitem(last=False)
                self._bytes -= len(evicted)

    def __len__(self) -> int:
        return len(self._data)
