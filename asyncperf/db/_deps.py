"""Lazy imports of the database extra, so ``import asyncperf`` stays light."""

from __future__ import annotations

from types import ModuleType

__all__ = ["require_asyncpg", "require_pglast"]

_HINT = "pip install 'asyncperf[db]'"


def require_asyncpg() -> ModuleType:
    """Import and return ``asyncpg``.

    Raises:
        ImportError: asyncpg is not installed; the message says which extra to install.
    """
    try:
        import asyncpg
    except ImportError as exc:  # pragma: no cover - the dev environment has it
        raise ImportError(f"asyncperf.db needs asyncpg: {_HINT}") from exc
    module: ModuleType = asyncpg
    return module


def require_pglast() -> ModuleType:
    """Import and return ``pglast`` (PostgreSQL's own parser).

    Raises:
        ImportError: pglast is not installed; the message says which extra to install.
    """
    try:
        import pglast
    except ImportError as exc:  # pragma: no cover - the dev environment has it
        raise ImportError(f"asyncperf.db needs pglast: {_HINT}") from exc
    return pglast
