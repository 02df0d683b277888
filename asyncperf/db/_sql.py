"""SQL text helpers: identifier quoting, index names, and the marker on our own queries.

Identifiers are always quoted (``"name"``, embedded quotes doubled) and never formatted
into SQL any other way; values travel as bind parameters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = [
    "MARKER",
    "NAMEDATALEN",
    "SUGGESTED_PREFIX",
    "index_name",
    "qualified",
    "quote_ident",
    "quote_literal",
    "suggested_index_name",
]

#: Prefix of the indexes asyncperf suggests (and creates with ``--apply-indexes``), so they
#: never take PostgreSQL's default name of an index someone else created.
SUGGESTED_PREFIX = "asyncperf_"

#: Leading comment on every statement asyncperf sends, so the slow-query report and the
#: index advisor can leave the analyzer's own statements out.
MARKER = "/* asyncperf */"

#: PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes.
NAMEDATALEN = 64


def quote_ident(name: str) -> str:
    """Return ``name`` as a quoted SQL identifier (``"a""b"`` for ``a"b``).

    Raises:
        ValueError: The name is empty or contains a NUL character.
    """
    if not name or "\x00" in name:
        raise ValueError(f"invalid SQL identifier: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """Return ``text`` as a standard-conforming SQL string literal.

    Only used where PostgreSQL accepts no bind parameter (``SET``, DDL options).

    Raises:
        ValueError: The text contains a NUL character.
    """
    if "\x00" in text:
        raise ValueError("SQL literal contains a NUL character")
    return "'" + text.replace("'", "''") + "'"


def qualified(schema: str, name: str) -> str:
    """Return ``"schema"."name"``."""
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def index_name(table: str, columns: Sequence[str], *, prefix: str = "") -> str:
    """Return a readable index name that fits PostgreSQL's identifier length.

    Long names are cut and given a short hash, so two different column lists never
    collide after truncation.
    """
    name = prefix + "_".join([table, *columns, "idx"])
    if len(name.encode()) < NAMEDATALEN:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    cut = name.encode()[: NAMEDATALEN - 1 - 9].decode(errors="ignore")
    return f"{cut}_{digest}"


def suggested_index_name(table: str, columns: Sequence[str]) -> str:
    """Return the name of an index asyncperf suggests: ``asyncperf_<table>_<cols>_idx``.

    The prefix keeps it apart from PostgreSQL's default names (``<table>_<cols>_idx``), so
    an index someone created by hand is never mistaken for (or dropped as) ours.
    """
    return index_name(table, columns, prefix=SUGGESTED_PREFIX)
