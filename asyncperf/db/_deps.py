"""Lazy imports of the database extra, so ``import asyncperf`` stays light."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require_asyncpg", "require_pglast"]

_HINT = "pip install 'asyncperf[db]'"


def _require(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:  # pragma: no cover - the dev environment has it
        raise ImportError(f"asyncperf.db needs {name}: {_HINT}") from exc


def require_asyncpg() -> ModuleType:
    """Import and return ``asyncpg``.

    Raises:
        ImportError: asyncpg is not installed; the message says which extra to install.
    """
    return _require("asyncpg")


def require_pglast() -> ModuleType:
    """Import and return ``pglast`` (PostgreSQL's own parser).

    Raises:
        ImportError: pglast is not installed; the message says which extra to install.
    """
    return _require("pglast")
