"""One per-thread pool of zstd compressors and decompressors (zstandard objects are not
thread-safe), used by the codec and offered to the sibling packages through ``internal``.
"""

from __future__ import annotations

import threading

import zstandard

__all__ = ["ZstdPool"]


class ZstdPool:
    """A zstd compressor and decompressor per thread, made on first use.

    Args:
        level: The compression level (1 to 22).
        checksum: Write a content checksum into each frame, so corruption is detected.
    """

    __slots__ = ("_local", "checksum", "level")

    def __init__(self, level: int = 3, *, checksum: bool = False) -> None:
        self.level = level
        self.checksum = checksum
        self._local = threading.local()

    def compressor(self) -> zstandard.ZstdCompressor:
        """This thread's compressor."""
        compressor: zstandard.ZstdCompressor | None = getattr(self._local, "c", None)
        if compressor is None:
            compressor = zstandard.ZstdCompressor(level=self.level, write_checksum=self.checksum)
            self._local.c = compressor
        return compressor

    def decompressor(self) -> zstandard.ZstdDecompressor:
        """This thread's decompressor."""
        decompressor: zstandard.ZstdDecompressor | None = getattr(self._local, "d", None)
        if decompressor is None:
            decompressor = zstandard.ZstdDecompressor()
            self._local.d = decompressor
        return decompressor
