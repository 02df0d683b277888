"""asyncperf.db's public surface: curated, sorted, complete, and light to import."""

from __future__ import annotations

import subprocess
import sys

import pytest

import asyncperf.db
from asyncperf.db._sql import index_name, quote_ident, quote_literal


def test_all_is_sorted_and_complete() -> None:
    names = list(asyncperf.db.__all__)
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))
    for name in names:
        assert hasattr(asyncperf.db, name), name
    for pinned in ("QueryAnalyzer", "PoolMonitor", "cached_fetch"):
        assert pinned in names


def test_importing_does_not_load_the_driver() -> None:
    code = (
        "import sys, asyncperf, asyncperf.db; "
        "print(','.join(m for m in ('asyncpg', 'pglast') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_missing_driver_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['asyncpg'] = None; "
        "from asyncperf.db import QueryAnalyzer\n"
        "try:\n    QueryAnalyzer('postgresql://x')\n"
        "except ImportError as e:\n    print(e)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'asyncperf[db]'" in out.stdout


@pytest.mark.parametrize(
    ("name", "quoted"),
    [("orders", '"orders"'), ('we"ird', '"we""ird"'), ("Mixed Case", '"Mixed Case"')],
)
def test_quote_ident(name: str, quoted: str) -> None:
    assert quote_ident(name) == quoted


def test_quoting_rejects_nul_and_empty() -> None:
    with pytest.raises(ValueError, match="invalid SQL identifier"):
        quote_ident("")
    with pytest.raises(ValueError, match="invalid SQL identifier"):
        quote_ident("a\x00b")
    assert quote_literal("it's") == "'it''s'"


def test_index_names_fit_namedatalen() -> None:
    assert index_name("orders", ["customer_id"]) == "orders_customer_id_idx"
    long_a = index_name("t" * 40, ["c" * 30, "d" * 10])
    long_b = index_name("t" * 40, ["c" * 30, "e" * 10])
    assert len(long_a.encode()) <= 63
    assert len(long_b.encode()) <= 63
    assert long_a != long_b
