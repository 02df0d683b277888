"""The cache stack: stores, the Cache facade, single-flight and decorators."""

from ._aiocache import AiocacheStore, AiocacheStoreStatistics
from ._breaker import BreakerStatistics, CircuitBreaker
from ._cache import Cache, LoadPolicy
from ._codec import Codec
from ._decorators import (
    AsyncCachedFunction,
    CachedFunction,
    cached,
    get_default_cache,
    set_default_cache,
)
from ._entry import Entry
from ._keys import MAX_KEY_LENGTH, canonical, hash_long_key
from ._memory import MemoryStore, MemoryStoreStatistics, estimate_size
from ._redis import RedisInfo, RedisStore, RedisStoreStatistics
from ._stats import CacheStatistics, HealthReport, WarmReport
from ._store import BaseStore, Store, StoreHealth
from ._tiered import FallbackStore, TieredStatistics, TieredStore

__all__ = [
    "MAX_KEY_LENGTH",
    "AiocacheStore",
    "AiocacheStoreStatistics",
    "AsyncCachedFunction",
    "BaseStore",
    "BreakerStatistics",
    "Cache",
    "CacheStatistics",
    "CachedFunction",
    "CircuitBreaker",
    "Codec",
    "Entry",
    "FallbackStore",
    "HealthReport",
    "LoadPolicy",
    "MemoryStore",
    "MemoryStoreStatistics",
    "RedisInfo",
    "RedisStore",
    "RedisStoreStatistics",
    "Store",
    "StoreHealth",
    "TieredStatistics",
    "TieredStore",
    "WarmReport",
    "cached",
    "canonical",
    "estimate_size",
    "get_default_cache",
    "hash_long_key",
    "set_default_cache",
]
