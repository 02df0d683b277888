"""asyncperf: an async performance and caching toolkit.

``import asyncperf`` loads only the core (anyio, orjson, zstandard); integrations import
their frameworks when first used.
"""

from ._exceptions import (
    AsyncPerfError,
    BackendError,
    BackendUnavailable,
    ConfigurationError,
    SerializationError,
)
from .cache import (
    BaseStore,
    Cache,
    CachedFunction,
    CacheStatistics,
    Codec,
    Entry,
    HealthReport,
    LoadPolicy,
    MemoryStore,
    RedisStore,
    Store,
    TieredStore,
    WarmReport,
    cached,
    get_default_cache,
    set_default_cache,
)

__version__ = "0.1.0"

__all__ = [
    "AsyncPerfError",
    "BackendError",
    "BackendUnavailable",
    "BaseStore",
    "Cache",
    "CacheStatistics",
    "CachedFunction",
    "Codec",
    "ConfigurationError",
    "Entry",
    "HealthReport",
    "LoadPolicy",
    "MemoryStore",
    "RedisStore",
    "SerializationError",
    "Store",
    "TieredStore",
    "WarmReport",
    "__version__",
    "cached",
    "get_default_cache",
    "set_default_cache",
]
