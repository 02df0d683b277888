"""From URLs: Cache.from_url (``memory://``, ``redis://``, ``rediss://``, ``tiered+redis://``) and
the redis.asyncio client a RedisStore builds for a URL.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from .._exceptions import ConfigurationError

if TYPE_CHECKING:
    from ._cache import Cache

__all__ = ["cache_from_url", "parse_bool", "parse_float", "parse_int"]

CACHE_OPTIONS = {"default_ttl", "namespace", "ttl_jitter", "strict"}


def parse_int(name: str, value: Any) -> int:
    """Return ``value`` (an int or its text) as an int, or raise a ConfigurationError."""
    if isinstance(value, bool):
        raise ConfigurationError(f"option {name} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    try:
        return int(str(value).replace("_", ""))
    except ValueError:
        raise ConfigurationError(f"option {name} must be an integer, got {value!r}") from None


def parse_float(name: str, value: Any) -> float:
    """Return ``value`` as a finite float, or raise a ConfigurationError."""
    if isinstance(value, bool):
        raise ConfigurationError(f"option {name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"option {name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigurationError(f"option {name} must be finite, got {value!r}")
    return number


def parse_bool(name: str, value: Any) -> bool:
    """Return ``value`` (a bool or one of 1/0/true/false/yes/no/on/off) as a bool."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"option {name} must be true or false, got {value!r}")


def _none_or(parse: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    def parser(name: str, value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.lower() in ("", "none")):
            return None
        return parse(name, value)

    return parser


_CACHE_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "default_ttl": _none_or(parse_float),
    "namespace": lambda _name, value: str(value),
    "ttl_jitter": parse_float,
    "strict": parse_bool,
}

_MEMORY_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "max_entries": parse_int,
    "max_bytes": _none_or(parse_int),
}


_REDIS_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "prefix": lambda _name, value: str(value),
    "op_timeout": parse_float,
    "bulk_timeout": parse_float,
    "failure_threshold": parse_int,
    "recovery_time": parse_float,
    "max_connections": parse_int,
    "batching": parse_bool,
    "fallback_max_entries": parse_int,
    "lock_timeout": parse_float,
}

_TIERED_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    **{name: parser for name, parser in _REDIS_PARSERS.items() if name != "fallback_max_entries"},
    "l1_max_entries": parse_int,
    "l1_max_bytes": _none_or(parse_int),
    "l1_ttl": parse_float,
}

# Query options redis-py itself understands; they stay in the URL handed to it.
REDIS_URL_OPTIONS = frozenset(
    {
        "db",
        "password",
        "username",
        "client_name",
        "protocol",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_ca_path",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_check_hostname",
        "ssl_min_version",
    }
)


def split_options(
    url: str, overrides: dict[str, Any]
) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    """Return ``(scheme, url_without_query, store_options, cache_options)``."""
    if not isinstance(url, str):
        raise ConfigurationError(f"cache URL must be a str, got {type(url).__name__}")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if not scheme:
        raise ConfigurationError(f"cache URL {url!r} has no scheme (try memory:// or redis://)")
    options: dict[str, Any] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in options:
            raise ConfigurationError(f"option {name} is given twice in {url!r}")
        options[name] = value
    options.update(overrides)
    cache_options = {}
    for name in list(options):
        if name in CACHE_OPTIONS:
            cache_options[name] = _CACHE_PARSERS[name](name, options.pop(name))
    base = parts._replace(query="").geturl()
    return scheme, base, options, cache_options


def parse_options(
    options: dict[str, Any], parsers: dict[str, Callable[[str, Any], Any]], scheme: str
) -> dict[str, Any]:
    """Parse ``options`` with ``parsers``; an unknown name is a ConfigurationError."""
    unknown = sorted(set(options) - set(parsers))
    if unknown:
        raise ConfigurationError(
            f"unknown option(s) for {scheme}://: {', '.join(unknown)} "
            f"(known: {', '.join(sorted(set(parsers) | CACHE_OPTIONS))})"
        )
    return {name: parsers[name](name, value) for name, value in options.items()}


def cache_from_url(url: str, overrides: dict[str, Any]) -> Cache:
    """Build a Cache from ``url`` (see :meth:`Cache.from_url`)."""
    from ._cache import Cache
    from ._memory import MemoryStore

    scheme, base, options, cache_options = split_options(url, overrides)
    if scheme == "memory":
        parts = urlsplit(base)
        if parts.netloc or parts.path not in ("", "/"):
            raise ConfigurationError(
                f"memory:// takes no host or path, got {url!r} (options go after '?')"
            )
        store = MemoryStore(**parse_options(options, _MEMORY_PARSERS, scheme))
        return Cache(store, **cache_options)
    if scheme in ("redis", "rediss", "unix", "tiered+redis", "tiered+rediss", "tiered+unix"):
        return _redis_cache(scheme, base, options, cache_options)
    raise ConfigurationError(
        f"unknown cache URL scheme {scheme!r} in {url!r} (supported: memory://, redis://, "
        "rediss://, unix://, tiered+redis://, tiered+rediss://, tiered+unix://)"
    )


def _redis_cache(
    scheme: str, base: str, options: dict[str, Any], cache_options: dict[str, Any]
) -> Cache:
    from urllib.parse import urlencode

    from ._cache import Cache
    from ._memory import MemoryStore
    from ._redis import RedisStore
    from ._tiered import TieredStore

    tiered = scheme.startswith("tiered+")
    redis_query = {name: options.pop(name) for name in list(options) if name in REDIS_URL_OPTIONS}
    parsed = parse_options(options, _TIERED_PARSERS if tiered else _REDIS_PARSERS, scheme)
    redis_url = base.split("+", 1)[1] if tiered else base
    if redis_query:
        redis_url += "?" + urlencode(redis_query)
    lock_timeout = parsed.pop("lock_timeout", None)
    if lock_timeout is not None:
        cache_options["lock_timeout"] = lock_timeout
    if tiered:
        l1 = MemoryStore(
            max_entries=parsed.pop("l1_max_entries", 10_000),
            max_bytes=parsed.pop("l1_max_bytes", None),
        )
        l1_ttl = parsed.pop("l1_ttl", 30.0)
        store = TieredStore(l1, RedisStore(redis_url, **parsed), l1_ttl=l1_ttl)
        return Cache(store, **cache_options)
    fallback_entries = parsed.pop("fallback_max_entries", 1000)
    fallback = MemoryStore(max_entries=fallback_entries) if fallback_entries > 0 else None
    return Cache(RedisStore(redis_url, **parsed), fallback=fallback, **cache_options)


def redis_client_from_url(redis_asyncio: Any, url: str, max_connections: int) -> Any:
    """The redis.asyncio client a RedisStore builds for ``url`` (its pool, timeouts, retries)."""
    from urllib.parse import parse_qsl, urlsplit

    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    from ._url import REDIS_URL_OPTIONS

    scheme = url.split("://", 1)[0].lower()
    if scheme not in ("redis", "rediss", "unix"):
        raise ConfigurationError(
            f"RedisStore URL must start with redis://, rediss:// or unix://, got {url!r}"
        )
    foreign = sorted({name for name, _ in parse_qsl(urlsplit(url).query)} - REDIS_URL_OPTIONS)
    if foreign:
        raise ConfigurationError(
            f"RedisStore does not read option(s) {', '.join(foreign)} from its URL: pass "
            "them as keyword arguments, or use Cache.from_url(), which reads them all"
        )
    # The store's own semaphore admits at most max_connections commands at once, so
    # the plain pool (cheaper per command than BlockingConnectionPool) never runs
    # dry and never raises redis-py 8's MaxConnectionsError; two spare connections
    # serve the event subscription. No socket timeout: every command already runs
    # under the store's deadline, and redis-py would add an asyncio.wait_for (a Task
    # per read on 3.11) for it. Retries are off: the breaker and the fallback handle
    # failures, and a retry would double every timeout.
    pool = redis_asyncio.ConnectionPool.from_url(
        url,
        max_connections=max_connections + 2,
        socket_timeout=None,
        socket_connect_timeout=2.0,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )
    return redis_asyncio.Redis(connection_pool=pool)
