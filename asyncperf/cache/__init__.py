"""The cache stack: stores, the Cache facade, single-flight and decorators."""

from ._cache import Cache, LoadPolicy
from ._codec import Codec
from ._decorators import CachedFunction, cached, get_default_cache, set_default_cache
from ._entry import Entry
from ._keys import MAX_KEY_LENGTH, canonical, hash_long_key
from ._memory import MemoryStore, MemoryStoreStatistics, estimate_size
from ._stats import CacheStatistics, HealthReport, WarmReport
from ._store import BaseStore, Store, StoreHealth

__all__ = [
    "MAX_KEY_LENGTH",
    "BaseStore",
    "Cache",
    "CacheStatistics",
    "CachedFunction",
    "Codec",
    "Entry",
    "HealthReport",
    "LoadPolicy",
    "MemoryStore",
    "MemoryStoreStatistics",
    "Store",
    "StoreHealth",
    "WarmReport",
    "cached",
    "canonical",
    "estimate_size",
    "get_default_cache",
    "hash_long_key",
    "set_default_cache",
]
