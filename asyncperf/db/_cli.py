"""``asyncperf db report postgresql://...``: slow queries, findings, index advice, health.

The URL may be a libpq-style ``postgresql://`` (or ``postgres://``) DSN or a SQLAlchemy
``postgresql+asyncpg://`` URL; anything else is refused in one line (exit status 2).

Read-only unless ``--apply-indexes`` is given: then the suggested indexes (named
``asyncperf_<table>_<columns>_idx``) are created with ``CREATE INDEX CONCURRENTLY IF NOT
EXISTS`` (which does not block writes) under a lock timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, TextIO

from .._exceptions import AsyncPerfError, BackendUnavailable, ConfigurationError
from ._analyzer import DatabaseReport, QueryAnalyzer
from ._deps import require_asyncpg
from ._explain import ExplainResult
from ._sql import MARKER, qualified

__all__ = ["add_parser", "format_report", "run"]


def add_parser(subparsers: Any) -> None:
    """Add the ``db`` command (with its ``report`` subcommand) to ``asyncperf``'s parser."""
    db = subparsers.add_parser("db", help="PostgreSQL: slow queries, index advice, health")
    commands = db.add_subparsers(dest="db_command", required=True)
    report = commands.add_parser(
        "report",
        help="print slow queries, plan findings, index advice and index health",
        description=__doc__,
    )
    report.add_argument(
        "dsn", help="postgresql://user@host:port/database (or postgresql+asyncpg://...)"
    )
    report.add_argument("--json", action="store_true", help="print JSON for machines")
    report.add_argument("--top", type=_positive_int, default=10, help="slow statements to show")
    report.add_argument(
        "--explain-top", type=int, default=5, help="slow statements to EXPLAIN (generic plans)"
    )
    report.add_argument(
        "--schema",
        action="append",
        dest="schemas",
        metavar="SCHEMA",
        help="limit index advice and health to this schema (repeatable)",
    )
    report.add_argument(
        "--apply-indexes",
        action="store_true",
        help="create the suggested indexes (CREATE INDEX CONCURRENTLY); without it the "
        "command only reads",
    )
    report.add_argument(
        "--lock-timeout", type=float, default=5.0, help="seconds, for --apply-indexes"
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def run(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Run ``asyncperf db <command>``; return the exit status."""
    stream = out if out is not None else sys.stdout
    try:
        return asyncio.run(_report(args, stream))
    except (BackendUnavailable, ConfigurationError) as exc:
        print(f"asyncperf db: {exc}", file=sys.stderr)
        return 2
    except (AsyncPerfError, OSError) as exc:
        print(f"asyncperf db: {exc}", file=sys.stderr)
        return 1


_SCHEMES = {"postgresql", "postgres", "postgresql+asyncpg", "postgres+asyncpg"}


def asyncpg_dsn(url: str) -> str:
    """The asyncpg DSN of a ``postgresql://`` or ``postgresql+asyncpg://`` URL.

    Raises:
        ConfigurationError: Not such a URL (the message says what was expected).
    """
    scheme, separator, rest = url.strip().partition("://")
    if not separator:
        raise ConfigurationError(
            f"not a database URL: {url!r} (expected postgresql://user@host:port/database)"
        )
    if scheme.lower() not in _SCHEMES:
        raise ConfigurationError(
            f"unsupported URL scheme {scheme!r}: use postgresql:// or postgresql+asyncpg://"
        )
    return f"postgresql://{rest}"


async def _report(args: argparse.Namespace, out: TextIO) -> int:
    asyncpg = require_asyncpg()
    dsn = asyncpg_dsn(args.dsn)
    try:
        conn = await asyncpg.connect(dsn)
    except ValueError as exc:  # asyncpg's ClientConfigurationError: a malformed DSN
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigurationError(f"bad database URL: {first_line}") from exc
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise BackendUnavailable(f"cannot connect to {args.dsn}: {exc}") from exc
    try:
        async with QueryAnalyzer(conn) as analyzer:
            report = await analyzer.report(
                top=args.top, schemas=args.schemas, explain_top=args.explain_top
            )
        applied: list[dict[str, Any]] = []
        if args.apply_indexes:
            applied = await _apply(conn, report, args.lock_timeout)
    finally:
        await conn.close()
    if args.json:
        data = report.to_dict()
        if args.apply_indexes:
            data["applied"] = applied
        json.dump(data, out, indent=2, default=str)
        out.write("\n")
    else:
        out.write(format_report(report))
        for item in applied:
            if not item["ok"]:
                status = f"FAILED: {item['error']}"
            else:
                status = "created" if item["created"] else "already exists"
            out.write(f"  {status}: {item['statement']}\n")
    return 0 if all(item["ok"] for item in applied) else 1


async def _apply(conn: Any, report: DatabaseReport, lock_timeout: float) -> list[dict[str, Any]]:
    """Create the suggested indexes; never drop an index this run did not start building.

    The statements are ``CREATE INDEX CONCURRENTLY IF NOT EXISTS`` on asyncperf's own
    names (``asyncperf_...``), so an existing index of that name is left as it is. After a
    failure, the index is dropped only when the error is not a name clash and the index
    now exists invalid: the leftover of our own failed concurrent build.
    """
    asyncpg = require_asyncpg()
    results: list[dict[str, Any]] = []
    millis = max(1, int(lock_timeout * 1000))
    await conn.execute(f"{MARKER} SET lock_timeout = {millis}")
    try:
        for suggestion in report.index_advice.suggestions:
            target = qualified(suggestion.schema, suggestion.name)
            result: dict[str, Any] = {
                "statement": suggestion.statement,
                "ok": True,
                "created": False,
                "error": None,
            }
            results.append(result)
            before = await _index_state(conn, target)
            if before is not None:
                if not before:
                    result["ok"] = False
                    result["error"] = f"index {target} exists but is invalid; not touched"
                continue  # already there: IF NOT EXISTS would do nothing
            try:
                await conn.execute(f"{MARKER} {suggestion.statement}")
            except Exception as exc:
                result["ok"] = False
                result["error"] = str(exc)
                # A name clash (incl. a concurrent creator's unique violation in the
                # catalog) means the index there is not ours.
                duplicate = isinstance(
                    exc, asyncpg.DuplicateTableError | asyncpg.DuplicateObjectError
                ) or (
                    isinstance(exc, asyncpg.UniqueViolationError)
                    and getattr(exc, "constraint_name", None) == "pg_class_relname_nsp_index"
                )
                if not duplicate and await _index_state(conn, target) is False:
                    # Our own failed concurrent build left an invalid index behind.
                    await conn.execute(f"{MARKER} DROP INDEX CONCURRENTLY IF EXISTS {target}")
            else:
                result["created"] = True
    finally:
        await conn.execute(f"{MARKER} RESET lock_timeout")
    return results


async def _index_state(conn: Any, target: str) -> bool | None:
    """``None``: no index of that name; else whether it is valid."""
    valid = await conn.fetchval(
        f"{MARKER} SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass($1)",
        target,
    )
    return None if valid is None else bool(valid)


def _short(text: str, width: int = 90) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  " + "  ".join("-" * w for w in widths))
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return lines


def format_report(report: DatabaseReport) -> str:
    """Render a :class:`DatabaseReport` as readable text tables."""
    lines: list[str] = []
    ext = report.extensions
    major, minor = divmod(ext.server_version, 10000)
    lines.append(
        f"PostgreSQL {major}.{minor}: pg_stat_statements "
        f"{'on' if ext.pg_stat_statements else 'OFF'}, HypoPG {'on' if ext.hypopg else 'OFF'}"
    )
    lines += [f"  ! {problem}" for problem in ext.problems]

    lines.append("\nSlow queries (pg_stat_statements, by total time)")
    if report.slow_queries:
        rows = [
            [
                str(rank),
                f"{q.total_seconds:.3f}",
                f"{q.mean_seconds * 1000:.2f}",
                str(q.calls),
                f"{q.rows_per_call:.1f}",
                "-" if q.hit_ratio is None else f"{q.hit_ratio:.1%}",
                f"{q.share_of_total:.1%}",
                _short(q.query, 70),
            ]
            for rank, q in enumerate(report.slow_queries, 1)
        ]
        lines += _table(
            ["#", "total s", "mean ms", "calls", "rows/call", "hit", "share", "query"], rows
        )
    else:
        lines.append("  (none)")

    lines.append("\nPlan findings (generic plans of the slowest statements)")
    found = False
    for query, result in report.findings:
        if isinstance(result, ExplainResult):
            if not result.findings:
                continue
            found = True
            lines.append(f"  {_short(query)}  (cost {result.total_cost:,.1f})")
            lines += [
                f"    [{f.severity}] {f.node_type}: {f.message}\n      -> {f.advice}"
                for f in result.findings
            ]
        else:
            found = True
            lines.append(f"  {_short(query)}: {result}")
    if not found:
        lines.append("  (none)")

    advice = report.index_advice
    lines.append(f"\nIndex advice ({advice.method})")
    lines += [f"  ! {note}" for note in advice.notes]
    if advice.suggestions:
        for s in advice.suggestions:
            lines.append(f"  {s.statement};")
            lines.append(
                f"    cost {s.cost_before:,.1f} -> {s.cost_after:,.1f} "
                f"({s.improvement:,.1f}x), helps {len(s.statements)} statement(s):"
            )
            lines += [f"      {_short(q, 86)}" for q in s.statements]
    else:
        lines.append("  (no index clears the bar)")
    skipped = [v for v in advice.statements if v.suggested is None]
    if skipped:
        lines.append("  not suggested:")
        lines += [f"    {_short(v.query, 60)}: {v.reason}" for v in skipped]

    health = report.health
    since = health.statistics_since or "statistics began"
    lines.append(f"\nIndex health (usage since {since})")
    sections: list[tuple[str, list[str]]] = [
        (
            "unused indexes",
            [
                f"{u.schema}.{u.index} on {u.table}: {u.scans} scans, {u.bytes:,} bytes"
                for u in health.unused
            ],
        ),
        (
            "redundant indexes",
            [f"{r.schema}.{r.index}: covered by {r.covered_by}" for r in health.redundant],
        ),
        ("invalid indexes", [f"{i.schema}.{i.index}: {i.definition}" for i in health.invalid]),
        (
            "foreign keys without an index",
            [
                f"{f.schema}.{f.table}.{f.constraint} ({', '.join(f.columns)}) -> "
                f"{f.referenced_table}"
                for f in health.unindexed_foreign_keys
            ],
        ),
        (
            "bloated indexes (estimate)",
            [
                f"{b.schema}.{b.index}: {b.bloat_ratio:.0%} of {b.bytes:,} bytes"
                for b in health.bloated
            ],
        ),
        (
            "tables needing maintenance",
            [
                f"{t.schema}.{t.table}: {t.dead_rows:,} dead, "
                f"{t.modified_since_analyze:,} changed since analyze"
                for t in health.stale
            ],
        ),
    ]
    for title, items in sections:
        lines.append(f"  {title}: {len(items) if items else 'none'}")
        lines += [f"    {item}" for item in items]
    lines.append("\nMaintenance advice")
    if health.advice:
        lines += [f"  {a.statement};\n    because {a.reason}" for a in health.advice]
    else:
        lines.append("  (none)")
    return "\n".join(lines) + "\n"
