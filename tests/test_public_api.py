"""The public surface: curated, sorted, complete, and light to import."""

from __future__ import annotations

import subprocess
import sys

import asyncperf
import asyncperf.cache
import asyncperf.db
import asyncperf.http
import asyncperf.llm
import asyncperf.monitor


def test_all_is_sorted_and_complete() -> None:
    modules = (asyncperf, asyncperf.cache, asyncperf.http, asyncperf.llm, asyncperf.db)
    for module in (*modules, asyncperf.monitor):
        names = [name for name in module.__all__ if name != "__version__"]
        assert names == sorted(names, key=lambda n: (not n.isupper(), n)), module.__name__
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_pinned_names_exist() -> None:
    for name in (
        "Cache",
        "MemoryStore",
        "RedisStore",
        "TieredStore",
        "cached",
        "AsyncPerfError",
        "ConfigurationError",
        "BackendError",
        "BackendUnavailable",
        "SerializationError",
    ):
        assert name in asyncperf.__all__


def test_exception_tree() -> None:
    assert issubclass(asyncperf.ConfigurationError, ValueError)
    assert issubclass(asyncperf.ConfigurationError, asyncperf.AsyncPerfError)
    assert issubclass(asyncperf.BackendUnavailable, asyncperf.BackendError)
    assert issubclass(asyncperf.SerializationError, asyncperf.AsyncPerfError)


def test_import_loads_only_the_core() -> None:
    code = (
        "import sys, asyncperf; "
        "heavy = [m for m in ('redis', 'asyncpg', 'starlette', 'aiohttp', 'openai', 'numpy') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_py_typed_ships() -> None:
    from importlib.resources import files

    assert files("asyncperf").joinpath("py.typed").is_file()
