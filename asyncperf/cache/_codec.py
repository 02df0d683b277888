"""Turn entries into bytes and back: orjson or signed pickle, zstd above a threshold.

Wire format (version 1), all integers big-endian::

    magic  0xA7                      1 byte, says "asyncperf payload"
    version 1                        1 byte
    flags                            1 byte: bits 0-1 format (0 JSON, 1 raw bytes, 2 pickle),
                                     bit 2 zstd-compressed body, bit 3 metadata present,
                                     bit 4 tags present
    [metadata]                       3 doubles: expires_at, fresh_until, load_time
                                     (NaN encodes None), wall-clock seconds
    [tags]                           u32 length + orjson list of strings
    [signature]                      32 bytes HMAC-SHA256 (pickle only) over everything
                                     after it; a payload that fails it is rejected unread
    body length                      u32, so a truncated payload is refused
    body                             the value's bytes, compressed when flagged (zstd frames
                                     carry a checksum, so a corrupt one is refused)

A payload that is not in this format (another library's, a truncated one, a forged pickle)
raises :class:`~asyncperf.SerializationError`; caches count it and answer a miss.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import pickle as _pickle
import struct
from typing import Any, Final

import orjson
import zstandard

from .._exceptions import ConfigurationError, SerializationError
from ._entry import Entry
from ._zstd import ZstdPool

__all__ = ["Codec"]

MAGIC: Final = 0xA7
VERSION: Final = 1
FORMAT_JSON: Final = 0
FORMAT_RAW: Final = 1
FORMAT_PICKLE: Final = 2
FLAG_ZSTD: Final = 0x04
FLAG_META: Final = 0x08
FLAG_TAGS: Final = 0x10

_META = struct.Struct(">ddd")
# The common layouts in one struct each (no tags, not pickled): header, [times], body length.
_HEAD_META = struct.Struct(">BBBdddI")
_HEAD_BARE = struct.Struct(">BBBI")
_pack_bare = _HEAD_BARE.pack
_pack_meta = _HEAD_META.pack
# The bare JSON header of every body length below the default compression threshold.
_BARE_HEADERS_SIZE: Final = 1024
_BARE_HEADERS: Final = [_pack_bare(MAGIC, VERSION, FORMAT_JSON, n) for n in range(1024)]
_dumps = orjson.dumps
# bytes.partition, not find or the in operator: it takes one positional argument (METH_O),
# where find parses an argument tuple and `in` first tries the argument as an int; on a
# 100-byte body that is 70 ns against 90-350 ns here (CPython 3.11). [1] is b"" if absent.
_partition = bytes.partition
_JSON_TYPES: Final = frozenset({dict, list, str, int, float, bool, type(None)})
_BARE_JSON: Final = bytes((MAGIC, VERSION, FORMAT_JSON))
_META_JSON: Final = FORMAT_JSON | FLAG_META
_META_JSON_PREFIX: Final = bytes((MAGIC, VERSION, _META_JSON))
_META_SIZE: Final = _HEAD_META.size
_unpack_meta = _HEAD_META.unpack_from
_loads = orjson.loads
_TAGS_LEN = struct.Struct(">I")
_BODY_LEN = struct.Struct(">I")
_SIG_LEN: Final = 32
# Bodies that are already compressed (zstd, gzip, brotli-in-zstd-frames...) are not
# compressed again: it costs CPU and usually grows them.
_COMPRESSED_MAGICS: Final = (b"\x28\xb5\x2f\xfd", b"\x1f\x8b")
_NAN = math.nan


def _has_non_finite(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is float:
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, float) and not math.isfinite(item):
            return True
    return False


def _time_or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


class Codec:
    """Encode cache entries for stores that keep bytes (Redis, tiered, encoded memory).

    Args:
        pickle: Use pickle for values (exact round-trips of any picklable object).
            Requires ``secret``: every pickle is HMAC-signed and an unsigned or forged
            payload is refused, so a shared Redis cannot feed this process a pickle.
        secret: Key for the pickle signatures (``str`` or ``bytes``, at least 16 bytes).
        compress_threshold: Bodies of at least this many bytes are zstd-compressed (and
            kept compressed only if that saves at least 1/8 of the size).
        compression_level: zstd level, 1 to 19.
        max_decompressed_size: Refuse payloads that would inflate beyond this many bytes.

    Round-trips through JSON: ``dict`` with ``str`` keys, ``list``, ``str``, ``int``,
    ``float``, ``bool`` and ``None`` come back equal. Tuples come back as lists; ``datetime``,
    ``date``, ``UUID`` and enums as their string or value forms; dataclasses as dicts.
    ``bytes`` (alone, at top level) are stored raw and come back as ``bytes``. Dicts with
    non-``str`` keys and other objects raise :class:`~asyncperf.SerializationError` (use
    ``pickle=True`` for them).
    """

    __slots__ = (
        "_bare_limit",
        "_secret",
        "_zstd",
        "compress_threshold",
        "compression_level",
        "max_decompressed_size",
        "pickle",
    )

    def __init__(
        self,
        *,
        pickle: bool = False,
        secret: str | bytes | None = None,
        compress_threshold: int = 1024,
        compression_level: int = 3,
        max_decompressed_size: int = 256 * 2**20,
    ) -> None:
        if pickle:
            if secret is None:
                raise ConfigurationError(
                    "Codec(pickle=True) needs secret=...: pickles are HMAC-signed so that "
                    "nobody who can write to the store can run code in this process"
                )
            key = secret.encode() if isinstance(secret, str) else bytes(secret)
            if len(key) < 16:
                raise ConfigurationError("Codec secret must be at least 16 bytes long")
            self._secret: bytes | None = key
        else:
            self._secret = None
        if isinstance(compress_threshold, bool) or not isinstance(compress_threshold, int):
            raise ConfigurationError("compress_threshold must be an int number of bytes")
        if compress_threshold < 0:
            raise ConfigurationError("compress_threshold must be >= 0")
        if (
            isinstance(compression_level, bool)
            or not isinstance(compression_level, int)
            or not 1 <= compression_level <= 19
        ):
            raise ConfigurationError("compression_level must be an int from 1 to 19")
        if max_decompressed_size <= 0:
            raise ConfigurationError("max_decompressed_size must be > 0")
        self.pickle = pickle
        self.compress_threshold = compress_threshold
        # Bodies shorter than this take encode()'s one-concatenation path.
        self._bare_limit = min(compress_threshold, _BARE_HEADERS_SIZE)
        self.compression_level = compression_level
        self.max_decompressed_size = max_decompressed_size
        self._zstd = ZstdPool(compression_level, checksum=True)

    def __repr__(self) -> str:
        return (
            f"Codec(pickle={self.pickle}, compress_threshold={self.compress_threshold}, "
            f"compression_level={self.compression_level})"
        )

    # -- compression -------------------------------------------------------------------

    def _maybe_compress(self, body: bytes) -> tuple[bytes, int]:
        if len(body) < self.compress_threshold or body.startswith(_COMPRESSED_MAGICS):
            return body, 0
        packed = self._zstd.compressor().compress(body)
        if len(packed) > len(body) - (len(body) >> 3):
            return body, 0
        return packed, FLAG_ZSTD

    # -- values ------------------------------------------------------------------------

    @staticmethod
    def _json(value: Any, key: str) -> bytes:
        try:
            body = orjson.dumps(value)
        except TypeError as exc:
            raise SerializationError(
                f"cannot encode value of type {type(value).__qualname__} for key {key!r} as "
                f"JSON ({exc}); convert it, or use Codec(pickle=True, secret=...)"
            ) from exc
        # orjson writes NaN and infinities as null: refuse rather than change the value.
        if _partition(body, b"null")[1] and _has_non_finite(value):
            raise SerializationError(
                f"cannot encode the value for key {key!r} as JSON: it holds a NaN or infinite "
                "float, which JSON cannot represent (use Codec(pickle=True, secret=...))"
            )
        return body

    def _body(self, value: Any, key: str) -> tuple[bytes, int]:
        if type(value) is bytes:
            return value, FORMAT_RAW
        if isinstance(value, bytearray | memoryview):
            return bytes(value), FORMAT_RAW
        if self._secret is not None:
            try:
                return _pickle.dumps(value, protocol=_pickle.HIGHEST_PROTOCOL), FORMAT_PICKLE
            except Exception as exc:
                raise SerializationError(
                    f"cannot pickle value of type {type(value).__qualname__} for key {key!r}: {exc}"
                ) from exc
        return self._json(value, key), FORMAT_JSON

    def encode(self, value: Any, *, key: str = "") -> bytes:
        """Encode a bare value (no entry metadata).

        Raises:
            SerializationError: The value cannot be encoded; the message names its type and
                the key.
        """
        if self._secret is None:
            # The common case inlined: a small JSON value with no null in it (a null may
            # stand for a NaN: the general path checks). bytes make orjson raise and go
            # the general way too, to be stored raw.
            try:
                body = _dumps(value)
            except TypeError:
                body = b"null"
            size = len(body)
            if size < self._bare_limit and not _partition(body, b"null")[1]:
                return _BARE_HEADERS[size] + body
        return self.encode_entry(Entry(value), key=key, with_meta=False)

    def decode(self, data: bytes) -> Any:
        """Decode what :meth:`encode` produced.

        Raises:
            SerializationError: Not an asyncperf payload, corrupt, or a bad signature.
        """
        if type(data) is bytes and data.startswith(_BARE_JSON) and len(data) >= _HEAD_BARE.size:
            (length,) = _BODY_LEN.unpack_from(data, 3)
            if len(data) - _HEAD_BARE.size == length:
                try:
                    return orjson.loads(data[_HEAD_BARE.size :])
                except orjson.JSONDecodeError as exc:
                    raise SerializationError(f"corrupt asyncperf payload: {exc}") from exc
        return self.decode_entry(data).value

    # -- entries -----------------------------------------------------------------------

    def encode_entry(self, entry: Entry, *, key: str = "", with_meta: bool = True) -> bytes:
        """Encode ``entry`` with its times (wall clock), load time and tags."""
        value = entry.value
        if self._secret is None and not entry.tags:
            # The common case inlined, as in encode().
            try:
                body = _dumps(value)
            except TypeError:
                body = b"null"
            if len(body) < self.compress_threshold and not _partition(body, b"null")[1]:
                if not with_meta:
                    return _pack_bare(MAGIC, VERSION, FORMAT_JSON, len(body)) + body
                expires_at, fresh_until = entry.expires_at, entry.fresh_until
                return (
                    _pack_meta(
                        MAGIC,
                        VERSION,
                        _META_JSON,
                        _NAN if expires_at is None else expires_at,
                        _NAN if fresh_until is None else fresh_until,
                        entry.load_time,
                        len(body),
                    )
                    + body
                )
        if self._secret is None and type(value) in _JSON_TYPES:
            body, fmt = self._json(value, key), FORMAT_JSON
        else:
            body, fmt = self._body(value, key)
        zflag = 0
        if len(body) >= self.compress_threshold:
            body, zflag = self._maybe_compress(body)
        flags = fmt | zflag
        if not entry.tags and fmt != FORMAT_PICKLE:  # the common layouts, one pack each
            if not with_meta:
                return _HEAD_BARE.pack(MAGIC, VERSION, flags, len(body)) + body
            expires_at, fresh_until = entry.expires_at, entry.fresh_until
            return (
                _HEAD_META.pack(
                    MAGIC,
                    VERSION,
                    flags | FLAG_META,
                    _NAN if expires_at is None else expires_at,
                    _NAN if fresh_until is None else fresh_until,
                    entry.load_time,
                    len(body),
                )
                + body
            )
        parts: list[bytes] = []
        if with_meta:
            flags |= FLAG_META
            parts.append(
                _META.pack(
                    _NAN if entry.expires_at is None else entry.expires_at,
                    _NAN if entry.fresh_until is None else entry.fresh_until,
                    entry.load_time,
                )
            )
            if entry.tags:
                flags |= FLAG_TAGS
                tags = orjson.dumps(list(entry.tags))
                parts.append(_TAGS_LEN.pack(len(tags)))
                parts.append(tags)
        parts.append(_BODY_LEN.pack(len(body)))
        parts.append(body)
        rest = b"".join(parts)
        header = bytes((MAGIC, VERSION, flags))
        if fmt == FORMAT_PICKLE:
            assert self._secret is not None
            signature = hmac.new(self._secret, header + rest, hashlib.sha256).digest()
            return header + signature + rest
        return header + rest

    def decode_entry(self, data: bytes | bytearray | memoryview) -> Entry:
        """Decode what :meth:`encode_entry` produced.

        Raises:
            SerializationError: Not an asyncperf payload, an unknown version, corrupt,
                a pickle when pickle is off, or a signature that does not match.
        """
        if type(data) is bytes and data.startswith(_META_JSON_PREFIX):
            # The common layout (JSON, times, no tags, not compressed): one unpack.
            size = len(data)
            if size >= _META_SIZE:
                _, _, _, expires_at, fresh_until, load_time, length = _unpack_meta(data)
                if size - _META_SIZE == length:
                    try:
                        entry = Entry(_loads(data[_META_SIZE:]))
                    except orjson.JSONDecodeError as exc:
                        raise SerializationError(f"corrupt asyncperf payload: {exc}") from exc
                    # NaN encodes None (NaN is the one float unequal to itself)
                    entry.expires_at = None if expires_at != expires_at else expires_at
                    entry.fresh_until = None if fresh_until != fresh_until else fresh_until
                    entry.load_time = load_time
                    return entry
        view = memoryview(data)
        if len(view) < 3 or view[0] != MAGIC:
            raise SerializationError("not an asyncperf payload (bad magic byte)")
        if view[1] != VERSION:
            raise SerializationError(f"unsupported asyncperf payload version {view[1]}")
        flags = view[2]
        fmt = flags & 0x03
        pos = 3
        if fmt == FORMAT_PICKLE:
            if self._secret is None:
                raise SerializationError("payload is a pickle but this codec has pickle off")
            signature = bytes(view[pos : pos + _SIG_LEN])
            pos += _SIG_LEN
            expected = hmac.new(
                self._secret, bytes(view[:3]) + bytes(view[pos:]), hashlib.sha256
            ).digest()
            if not hmac.compare_digest(signature, expected):
                raise SerializationError("pickle payload signature does not match; refused")
        elif fmt not in (FORMAT_JSON, FORMAT_RAW):
            raise SerializationError(f"unknown payload format {fmt}")
        entry = Entry(None)
        try:
            if flags & FLAG_META:
                expires_at, fresh_until, load_time = _META.unpack_from(view, pos)
                pos += _META.size
                entry.expires_at = _time_or_none(expires_at)
                entry.fresh_until = _time_or_none(fresh_until)
                entry.load_time = load_time
            if flags & FLAG_TAGS:
                (length,) = _TAGS_LEN.unpack_from(view, pos)
                pos += _TAGS_LEN.size
                entry.tags = tuple(orjson.loads(view[pos : pos + length]))
                pos += length
            (length,) = _BODY_LEN.unpack_from(view, pos)
            pos += _BODY_LEN.size
            body: bytes | memoryview = view[pos:]
            if len(body) != length:
                raise SerializationError(
                    f"truncated or padded payload: body is {len(body)} bytes, header says {length}"
                )
            if flags & FLAG_ZSTD:
                if zstandard.frame_content_size(body) > self.max_decompressed_size:
                    raise SerializationError(
                        "payload would inflate beyond max_decompressed_size; refused"
                    )
                body = self._zstd.decompressor().decompress(
                    body, max_output_size=self.max_decompressed_size
                )
            if fmt == FORMAT_RAW:
                entry.value = bytes(body)
            elif fmt == FORMAT_JSON:
                entry.value = orjson.loads(body)
            else:
                entry.value = _pickle.loads(body)
        except SerializationError:
            raise
        except Exception as exc:
            raise SerializationError(f"corrupt asyncperf payload: {exc}") from exc
        return entry
