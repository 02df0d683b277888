"""HTTP response caching: an RFC 9111 shared cache with ETags, 304s and zstd storage.

``ResponseCacheMiddleware`` is a pure ASGI middleware (Starlette, FastAPI, any ASGI
app) and imports no framework; the aiohttp middleware lives in
:mod:`asyncperf.http.aiohttp`, which needs ``pip install 'asyncperf[aiohttp]'``.
"""

from ._asgi import ResponseCacheMiddleware
from ._cache import ResponseCache
from ._conditional import choose_encoding, is_not_modified
from ._policy import Plan, plan_storage
from ._route import RoutePolicy, cache_policy
from ._types import RequestView, ResponseCacheStatistics

__all__ = [
    "Plan",
    "RequestView",
    "ResponseCache",
    "ResponseCacheMiddleware",
    "ResponseCacheStatistics",
    "RoutePolicy",
    "cache_policy",
    "choose_encoding",
    "is_not_modified",
    "plan_storage",
]
