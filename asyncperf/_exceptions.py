"""The asyncperf exception tree.

Every error asyncperf raises on purpose derives from :class:`AsyncPerfError`::

    AsyncPerfError
    ├── ConfigurationError (also ValueError)  bad argument, option or URL
    ├── SerializationError (also TypeError)   a value the codec cannot encode
    └── BackendError                          a store failed (only raised with strict=True)
        └── BackendUnavailable                the store cannot be reached, or its breaker is open

A cache never turns a backend failure into an application failure unless it was built
with ``strict=True``: failures are counted, logged (rate-limited) and answered as misses.
"""

from __future__ import annotations

__all__ = [
    "AsyncPerfError",
    "BackendError",
    "BackendUnavailable",
    "ConfigurationError",
    "SerializationError",
]


class AsyncPerfError(Exception):
    """Base class of every exception asyncperf raises on purpose."""


class ConfigurationError(AsyncPerfError, ValueError):
    """An argument, option or URL is invalid; the message names it and says why."""


class SerializationError(AsyncPerfError, TypeError):
    """A value cannot be encoded (or a payload decoded) by the codec."""


class BackendError(AsyncPerfError):
    """A store operation failed."""


class BackendUnavailable(BackendError):
    """The store cannot be reached, timed out, or its circuit breaker is open."""
