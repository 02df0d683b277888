"""Index and table health: unused, redundant, invalid and bloated indexes, foreign keys
without an index, stale statistics, and maintenance advice with the reason for each."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

from ._connection import Connection
from ._results import Result
from ._sql import MARKER, index_name, qualified, quote_ident

__all__ = [
    "IndexBloat",
    "IndexHealth",
    "InvalidIndex",
    "MaintenanceAdvice",
    "RedundantIndex",
    "StaleTable",
    "UnindexedForeignKey",
    "UnusedIndex",
    "index_health",
]


@dataclass(frozen=True)
class UnusedIndex(Result):
    """A non-unique index no scan has used since the statistics were reset."""

    schema: str
    table: str
    index: str
    scans: int
    bytes: int


@dataclass(frozen=True)
class RedundantIndex(Result):
    """A non-unique index whose key columns lead another valid index (same method,
    operator classes, collations and options): the other serves its scans."""

    schema: str
    table: str
    index: str
    covered_by: str
    bytes: int


@dataclass(frozen=True)
class InvalidIndex(Result):
    """An index left invalid by a failed ``CREATE INDEX CONCURRENTLY``: it costs every
    write and serves no read."""

    schema: str
    table: str
    index: str
    definition: str


@dataclass(frozen=True)
class UnindexedForeignKey(Result):
    """A foreign key whose columns lead no valid index: deletes and key updates on the
    referenced table scan this one, and joins on it cannot use an index."""

    schema: str
    table: str
    constraint: str
    columns: tuple[str, ...]
    referenced_table: str
    table_rows: float


@dataclass(frozen=True)
class IndexBloat(Result):
    """A btree larger than its rows need, estimated from pg_class and pg_stats widths."""

    schema: str
    table: str
    index: str
    bytes: int
    estimated_bloat_bytes: int
    bloat_ratio: float


@dataclass(frozen=True)
class StaleTable(Result):
    """A table whose statistics or dead rows are past autovacuum's own thresholds."""

    schema: str
    table: str
    live_rows: int
    dead_rows: int
    modified_since_analyze: int
    last_analyze: datetime.datetime | None
    needs_analyze: bool
    needs_vacuum: bool


@dataclass(frozen=True)
class MaintenanceAdvice(Result):
    """One maintenance statement and the reason for it."""

    action: str
    target: str
    statement: str
    reason: str


@dataclass(frozen=True)
class IndexHealth(Result):
    """Everything :meth:`QueryAnalyzer.index_health` found.

    Attributes:
        statistics_since: When this database's usage counters were last reset (``None``:
            never, i.e. since the cluster was created). Scan counts are per server:
            replicas keep their own.
    """

    unused: tuple[UnusedIndex, ...]
    redundant: tuple[RedundantIndex, ...]
    invalid: tuple[InvalidIndex, ...]
    unindexed_foreign_keys: tuple[UnindexedForeignKey, ...]
    bloated: tuple[IndexBloat, ...]
    stale: tuple[StaleTable, ...]
    advice: tuple[MaintenanceAdvice, ...]
    statistics_since: datetime.datetime | None


_SCHEMA_FILTER = "AND ($1::text[] IS NULL OR n.nspname = ANY($1::text[]))"
_USER_SCHEMAS = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'"

_UNUSED = f"""{MARKER}
SELECT n.nspname AS schema, t.relname AS "table", ic.relname AS index,
       s.idx_scan AS scans, pg_relation_size(i.indexrelid) AS bytes
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_stat_all_indexes s ON s.indexrelid = i.indexrelid
WHERE {_USER_SCHEMAS} {_SCHEMA_FILTER}
  AND s.idx_scan = 0 AND i.indisvalid AND NOT i.indisunique AND NOT i.indisprimary
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
ORDER BY bytes DESC, schema, index"""

_REDUNDANT = f"""{MARKER}
WITH ix AS (
  SELECT i.indexrelid, i.indrelid, i.indisunique OR i.indisprimary AS uniq,
         i.indnkeyatts AS nk, c.relam,
         string_to_array(i.indkey::text, ' ') AS cols,
         string_to_array(i.indclass::text, ' ') AS ops,
         string_to_array(i.indcollation::text, ' ') AS colls,
         string_to_array(i.indoption::text, ' ') AS opts
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
  WHERE i.indisvalid AND i.indexprs IS NULL AND i.indpred IS NULL)
SELECT n.nspname AS schema, t.relname AS "table", ac.relname AS index,
       bc.relname AS covered_by, pg_relation_size(a.indexrelid) AS bytes
FROM ix a
JOIN ix b ON b.indrelid = a.indrelid AND b.indexrelid <> a.indexrelid AND b.relam = a.relam
JOIN pg_class ac ON ac.oid = a.indexrelid
JOIN pg_class bc ON bc.oid = b.indexrelid
JOIN pg_class t ON t.oid = a.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE {_USER_SCHEMAS} {_SCHEMA_FILTER}
  AND NOT a.uniq AND a.nk <= b.nk
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = a.indexrelid)
  AND a.cols[1:a.nk] = b.cols[1:a.nk] AND a.ops[1:a.nk] = b.ops[1:a.nk]
  AND a.colls[1:a.nk] = b.colls[1:a.nk] AND a.opts[1:a.nk] = b.opts[1:a.nk]
  AND (a.nk < b.nk OR b.uniq OR a.indexrelid > b.indexrelid)
ORDER BY schema, index"""

_INVALID = f"""{MARKER}
SELECT n.nspname AS schema, t.relname AS "table", ic.relname AS index,
       pg_get_indexdef(i.indexrelid) AS definition
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class t ON t.oid = i.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE {_USER_SCHEMAS} {_SCHEMA_FILTER} AND NOT i.indisvalid
  AND NOT EXISTS (SELECT 1 FROM pg_stat_progress_create_index p
                  WHERE p.index_relid = i.indexrelid)
ORDER BY schema, index"""

_FOREIGN_KEYS = f"""{MARKER}
SELECT n.nspname AS schema, t.relname AS "table", con.conname AS "constraint",
       array(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
             ORDER BY k.ord) AS columns,
       con.confrelid::regclass::text AS referenced_table,
       greatest(t.reltuples, 0)::float8 AS table_rows
FROM pg_constraint con
JOIN pg_class t ON t.oid = con.conrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE con.contype = 'f' AND {_USER_SCHEMAS} {_SCHEMA_FILTER}
  AND NOT EXISTS (
    SELECT 1 FROM pg_index ix
    WHERE ix.indrelid = con.conrelid AND ix.indisvalid AND ix.indpred IS NULL
      AND ix.indnkeyatts >= cardinality(con.conkey)
      AND (SELECT array_agg(x ORDER BY x) FROM unnest(
             (string_to_array(ix.indkey::text, ' ')::int2[])[1:cardinality(con.conkey)]) x)
        = (SELECT array_agg(y ORDER BY y) FROM unnest(con.conkey) y))
ORDER BY 1, 2, 3"""

# Leaf tuple: 8-byte IndexTupleData + MAXALIGN'd key + 4-byte line pointer; 90 % leaf fill
# (the btree default) of a page less its 24-byte header and 16-byte special space.
_BLOAT = f"""{MARKER}
WITH ix AS (
  SELECT n.nspname AS schema, t.relname AS "table", ic.relname AS index,
         ic.relpages::float8 AS pages, greatest(ic.reltuples, 0)::float8 AS tuples,
         current_setting('block_size')::float8 AS block,
         (SELECT coalesce(sum(coalesce(s.avg_width, 8)), 8)
          FROM unnest(i.indkey[0:i.indnkeyatts - 1]) k(attnum)
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
          LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = t.relname
                              AND s.attname = a.attname)::float8 AS width
  FROM pg_index i
  JOIN pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_class t ON t.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
  JOIN pg_am am ON am.oid = ic.relam
  WHERE am.amname = 'btree' AND i.indisvalid AND i.indexprs IS NULL
    AND ic.relpages > 10 AND {_USER_SCHEMAS} {_SCHEMA_FILTER})
SELECT schema, "table", index, (pages * block)::int8 AS bytes,
       greatest(pages - 1 - ceil(tuples * (12 + 8 * ceil(width / 8))
                                 / ((block - 40) * 0.9)), 0) * block AS bloat_bytes
FROM ix
ORDER BY bloat_bytes DESC"""

_TABLES = f"""{MARKER}
SELECT n.nspname AS schema, s.relname AS "table", s.n_live_tup AS live, s.n_dead_tup AS dead,
       s.n_mod_since_analyze AS modified,
       greatest(s.last_analyze, s.last_autoanalyze) AS analyzed,
       c.reltuples::float8 AS reltuples,
       current_setting('autovacuum_analyze_threshold')::float8 AS a_base,
       current_setting('autovacuum_analyze_scale_factor')::float8 AS a_scale,
       current_setting('autovacuum_vacuum_threshold')::float8 AS v_base,
       current_setting('autovacuum_vacuum_scale_factor')::float8 AS v_scale
FROM pg_stat_all_tables s
JOIN pg_class c ON c.oid = s.relid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm') AND {_USER_SCHEMAS} {_SCHEMA_FILTER}
ORDER BY 1, 2"""


def _size(num: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(num) < 1024 or unit == "GB":
            return f"{num:,.0f} {unit}" if unit == "B" else f"{num:,.1f} {unit}"
        num /= 1024
    raise AssertionError  # pragma: no cover


async def index_health(
    conn: Connection,
    *,
    schemas: Sequence[str] | None = None,
    min_bloat_bytes: int = 1 << 20,
    min_bloat_ratio: float = 0.3,
) -> IndexHealth:
    """Run every check on one connection (read-only) and derive the maintenance advice.

    Args:
        conn: The connection.
        schemas: Only look at these schemas (default: every user schema).
        min_bloat_bytes: Report index bloat from this many wasted bytes.
        min_bloat_ratio: ... and from this share of the index's size.
    """
    wanted = list(schemas) if schemas is not None else None
    since = await conn.fetchval(
        f"{MARKER} SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()"
    )
    unused = tuple(UnusedIndex(**dict(r)) for r in await conn.fetch(_UNUSED, wanted))
    redundant = tuple(RedundantIndex(**dict(r)) for r in await conn.fetch(_REDUNDANT, wanted))
    invalid = tuple(InvalidIndex(**dict(r)) for r in await conn.fetch(_INVALID, wanted))
    foreign = tuple(
        UnindexedForeignKey(**{**dict(r), "columns": tuple(r["columns"])})
        for r in await conn.fetch(_FOREIGN_KEYS, wanted)
    )
    bloated = []
    for r in await conn.fetch(_BLOAT, wanted):
        waste = int(r["bloat_bytes"])
        ratio = waste / r["bytes"] if r["bytes"] else 0.0
        if waste >= min_bloat_bytes and ratio >= min_bloat_ratio:
            bloated.append(
                IndexBloat(r["schema"], r["table"], r["index"], r["bytes"], waste, ratio)
            )
    stale = []
    for r in await conn.fetch(_TABLES, wanted):
        rows = max(float(r["reltuples"]), 0.0)
        never = r["analyzed"] is None and r["live"] > 0
        needs_analyze = never or r["modified"] > r["a_base"] + r["a_scale"] * rows
        needs_vacuum = r["dead"] > r["v_base"] + r["v_scale"] * rows
        if needs_analyze or needs_vacuum:
            stale.append(
                StaleTable(
                    schema=r["schema"],
                    table=r["table"],
                    live_rows=r["live"],
                    dead_rows=r["dead"],
                    modified_since_analyze=r["modified"],
                    last_analyze=r["analyzed"],
                    needs_analyze=needs_analyze,
                    needs_vacuum=needs_vacuum,
                )
            )
    since_text = f"since {since:%Y-%m-%d %H:%M}" if since else "since statistics began"
    advice: list[MaintenanceAdvice] = []
    for ix in invalid:
        name = qualified(ix.schema, ix.index)
        advice.append(
            MaintenanceAdvice(
                "REINDEX",
                f"{ix.schema}.{ix.index}",
                f"REINDEX INDEX CONCURRENTLY {name}",
                "invalid (a failed concurrent build): every write maintains it, no read "
                f"uses it; or DROP INDEX CONCURRENTLY {name} if it is not wanted",
            )
        )
    redundant_names = {(r.schema, r.index) for r in redundant}
    advice.extend(
        MaintenanceAdvice(
            "DROP",
            f"{red.schema}.{red.index}",
            f"DROP INDEX CONCURRENTLY {qualified(red.schema, red.index)}",
            f"redundant: {red.covered_by} has the same leading key columns "
            f"({_size(red.bytes)} to reclaim, less write work)",
        )
        for red in redundant
    )
    for un in unused:
        if (un.schema, un.index) in redundant_names:
            continue
        advice.append(
            MaintenanceAdvice(
                "DROP",
                f"{un.schema}.{un.index}",
                f"DROP INDEX CONCURRENTLY {qualified(un.schema, un.index)}",
                f"unused: 0 scans {since_text} on this server ({_size(un.bytes)}); check "
                "replicas, which count their own scans, before dropping",
            )
        )
    for fk in foreign:
        name = index_name(fk.table, fk.columns)
        cols = ", ".join(quote_ident(c) for c in fk.columns)
        advice.append(
            MaintenanceAdvice(
                "CREATE INDEX",
                f"{fk.schema}.{fk.table}",
                f"CREATE INDEX CONCURRENTLY {quote_ident(name)} "
                f"ON {qualified(fk.schema, fk.table)} ({cols})",
                f"foreign key {fk.constraint} ({', '.join(fk.columns)}) -> "
                f"{fk.referenced_table} has no index: each delete or key update there scans "
                f"{fk.table} ({fk.table_rows:,.0f} rows)",
            )
        )
    advice.extend(
        MaintenanceAdvice(
            "REINDEX",
            f"{bl.schema}.{bl.index}",
            f"REINDEX INDEX CONCURRENTLY {qualified(bl.schema, bl.index)}",
            f"estimated {bl.bloat_ratio:.0%} bloat ({_size(bl.estimated_bloat_bytes)} of "
            f"{_size(bl.bytes)})",
        )
        for bl in bloated
    )
    for st in stale:
        target = qualified(st.schema, st.table)
        if st.needs_vacuum:
            advice.append(
                MaintenanceAdvice(
                    "VACUUM",
                    f"{st.schema}.{st.table}",
                    f"VACUUM (ANALYZE) {target}",
                    f"{st.dead_rows:,} dead rows against {st.live_rows:,} live, past "
                    "autovacuum's threshold: scans read dead rows and the table grows",
                )
            )
        elif st.needs_analyze:
            why = (
                "never analyzed"
                if st.last_analyze is None
                else f"{st.modified_since_analyze:,} rows changed since the last ANALYZE"
            )
            advice.append(
                MaintenanceAdvice(
                    "ANALYZE",
                    f"{st.schema}.{st.table}",
                    f"ANALYZE {target}",
                    f"{why}: the planner's row estimates are stale",
                )
            )
    return IndexHealth(
        unused=unused,
        redundant=redundant,
        invalid=invalid,
        unindexed_foreign_keys=foreign,
        bloated=tuple(bloated),
        stale=tuple(stale),
        advice=tuple(advice),
        statistics_since=since,
    )
