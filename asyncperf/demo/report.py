"""The demo's printing: progress bars, part 1's results and part 2's before/after report.

Everything the tour shows goes through here, from numbers :mod:`.load` measured; nothing
here runs a load.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, TextIO

from .app import CONTEXT_TOKENS, MODEL, MODEL_SECONDS, ORDERS, Stores, Tour
from .load import AppResults, AppRun, CacheResults, CacheStep, percentile

if TYPE_CHECKING:
    from ..cache import CacheStatistics

__all__ = [
    "Progress",
    "bar",
    "byte_size",
    "cache_announcer",
    "money",
    "ms",
    "print_app_intro",
    "print_app_report",
    "print_cache_intro",
    "print_cache_results",
    "warm_progress",
]


def bar(done: int, total: int, width: int = 30) -> str:
    filled = int(width * done / total) if total else width
    return "[" + "#" * filled + "." * (width - filled) + f"] {done}/{total}"


def ms(seconds: float) -> str:
    if seconds < 0.001:
        return f"{seconds * 1e6:.1f} µs"
    return f"{seconds * 1000:.2f} ms"


def byte_size(count: float) -> str:
    for unit in ("B", "KB", "MB"):
        if abs(count) < 1000 or unit == "MB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError


def money(amount: Decimal) -> str:
    return f"${amount.quantize(Decimal('0.0001'))}"


class Progress:
    """A progress bar: redrawn in place on a terminal, printed once when done otherwise."""

    def __init__(self, out: TextIO, label: str, total: int) -> None:
        self.out = out
        self.label = label
        self.total = total
        self.interactive = out.isatty()
        self.step = max(1, total // 60)
        self.started = time.perf_counter()

    def update(self, done: int) -> None:
        if self.interactive and done < self.total and done % self.step == 0:
            line = f"\r   {self.label:<17}{bar(done, self.total)}"
            print(line, end="", file=self.out, flush=True)

    def finish(self, failures: int) -> float:
        seconds = time.perf_counter() - self.started
        failed = f", {failures} FAILED" if failures else ""
        line = f"   {self.label:<17}{bar(self.total, self.total)} in {seconds:.2f} s{failed}"
        print(("\r" if self.interactive else "") + line, file=self.out, flush=True)
        return seconds


# -- part 1 -----------------------------------------------------------------------------


def print_cache_intro(args: argparse.Namespace, out: TextIO) -> None:
    print("\npart 1: asyncperf.Cache on its own", file=out)
    print(
        f"workload: {args.requests} requests over {args.keys} keys (Zipf popularity), "
        f"{args.concurrency} concurrent clients, backend latency {args.latency_ms:g} ms",
        file=out,
    )


def cache_announcer(stores: Stores, out: TextIO) -> Callable[[CacheStep], None]:
    """Print the line that names each step of part 1 as it starts."""
    store = "MemoryStore()" if stores.redis_url is None else "RedisStore(...)"
    lines: dict[CacheStep, str] = {
        "plain": "\n1) without a cache ...",
        "cached": f"2) with asyncperf.Cache({store}) and get_or_set ...",
        "stampede": "3) stampede: 1000 callers ask for one cold key at once ...",
        "warm": "4) warming 200 keys with bounded concurrency ...",
    }

    def announce(step: CacheStep) -> None:
        print(lines[step], file=out, flush=True)

    return announce


def warm_progress(out: TextIO) -> Callable[[int, int], None]:
    """The warm-up's progress bar: redrawn on a terminal, printed once when done otherwise."""
    interactive = out.isatty()

    def progress(done: int, total: int) -> None:
        if done == total or (interactive and done % 10 == 0):
            print("   " + bar(done, total), end="\r" if done < total else "\n", file=out)

    return progress


def print_cache_results(args: argparse.Namespace, results: CacheResults, out: TextIO) -> None:
    plain, with_cache, stats = results.plain, results.cached, results.stats
    print("\nresults", file=out)
    print(f"  {'':28}{'no cache':>14}{'asyncperf':>14}", file=out)
    print(f"  {'backend loads':28}{plain.loads:>14}{with_cache.loads:>14}", file=out)
    for label, fraction in (("latency p50", 0.5), ("latency p99", 0.99)):
        print(
            f"  {label:28}{ms(plain.percentile(fraction)):>14}"
            f"{ms(with_cache.percentile(fraction)):>14}",
            file=out,
        )
    print(
        f"  {'mean latency':28}{ms(statistics.fmean(plain.latencies)):>14}"
        f"{ms(statistics.fmean(with_cache.latencies)):>14}",
        file=out,
    )
    print(f"  {'wall time':28}{plain.seconds:>12.2f} s{with_cache.seconds:>12.2f} s", file=out)
    avoided = plain.loads - with_cache.loads
    print(
        f"\n  loads avoided: {avoided} of {plain.loads} "
        f"({avoided / plain.loads:.1%}); hit rate {stats.hit_rate:.1%}; "
        f"{stats.coalesced} concurrent misses coalesced into in-flight loads",
        file=out,
    )
    print(
        f"  stampede: 1000 callers -> {results.stampede_loads} backend load "
        f"in {results.stampede_seconds * 1000:.0f} ms (loader takes {args.latency_ms:g} ms)",
        file=out,
    )
    print(
        f"  warm-up: {results.warm.loaded} keys loaded in {results.warm.seconds:.2f} s "
        f"({results.warm_loads} loads, 20 at a time)",
        file=out,
    )


# -- part 2 -----------------------------------------------------------------------------


def print_app_intro(tour: Tour, plan: list[tuple[str, str]], out: TextIO) -> None:
    args = tour.args
    db = tour.db
    model_ms = MODEL_SECONDS * 1000 / args.speed
    print(
        "\npart 2: a Starlette app with ResponseCache, LLMCache"
        + (", cached_fetch" if db is not None else "")
        + " and PerformanceMonitor",
        file=out,
    )
    print(
        f"load: {len(plan)} GET requests, {args.app_concurrency} concurrent, through "
        "httpx.ASGITransport (no sockets)",
        file=out,
    )
    print(
        f"  /products/{{id}}  {args.latency_ms:g} ms handler, ~2 KB JSON, "
        "Cache-Control: max-age=60",
        file=out,
    )
    print(
        f"  /ask?q=...       fake {MODEL}: {MODEL_SECONDS * 1000:.0f} ms a call "
        f"(/ {args.speed:g} with --speed: {model_ms:.0f} ms), ~{CONTEXT_TOKENS + 40:,} "
        "prompt + 180-420 completion tokens",
        file=out,
    )
    if db is not None:
        print(f"  /report/{{region}} SQL aggregate over {ORDERS:,} rows of {db.table}", file=out)
    else:
        print("  (pass --dsn postgresql://... to add /report/{region}: cached SQL)", file=out)


Row = tuple[str, str, str, int, int]  # kind, label, hit rate, loads before, loads after


def _rows(tour: Tour, results: AppResults, db_stats: CacheStatistics | None) -> list[Row]:
    cached = results.cached
    llm = tour.llm.statistics().total
    products = len(cached.latencies.get("products", []))
    rows: list[Row] = [
        (
            "products",
            "GET /products/{id}",
            f"{cached.served.get('products', 0) / max(products, 1):.1%}",
            results.plain_counts.product_loads,
            tour.counts.product_loads,
        ),
        (
            "ask",
            "GET /ask (LLM)",
            f"{llm.hit_rate:.1%}",
            results.plain_model_calls,
            tour.model.calls,
        ),
    ]
    if db_stats is not None:
        rows.append(
            (
                "report",
                "GET /report/{region}",
                f"{db_stats.hit_rate:.1%}",
                results.plain_counts.queries,
                db_stats.loads,
            )
        )
    return rows


def _cell(run: AppRun, kind: str | None, fraction: float) -> str:
    if kind is None:
        values = [value for series in run.latencies.values() for value in series]
    else:
        values = run.latencies.get(kind, [])
    return ms(percentile(values, fraction))


def _print_table(
    rows: list[Row], plain: AppRun, cached: AppRun, requests: int, out: TextIO
) -> None:
    print("\nreport (before = without caching, after = with asyncperf)", file=out)
    print(
        f"  {'':22}{'hit rate':>9}{'p50 before':>12}{'p50 after':>11}"
        f"{'p99 before':>12}{'p99 after':>11}{'loads':>16}",
        file=out,
    )
    for kind, label, hit_rate, before, after in rows:
        print(
            f"  {label:22}{hit_rate:>9}{_cell(plain, kind, 0.5):>12}"
            f"{_cell(cached, kind, 0.5):>11}"
            f"{_cell(plain, kind, 0.99):>12}{_cell(cached, kind, 0.99):>11}"
            f"{f'{before} -> {after}':>16}",
            file=out,
        )
    before_total = sum(row[3] for row in rows)
    after_total = sum(row[4] for row in rows)
    print(
        f"  {'all requests':22}{'':>9}{_cell(plain, None, 0.5):>12}"
        f"{_cell(cached, None, 0.5):>11}"
        f"{_cell(plain, None, 0.99):>12}{_cell(cached, None, 0.99):>11}"
        f"{f'{before_total} -> {after_total}':>16}",
        file=out,
    )
    print(
        f"  wall time {plain.seconds:.2f} s -> {cached.seconds:.2f} s; "
        f"{requests / plain.seconds:,.0f} -> {requests / cached.seconds:,.0f} requests/s"
        + (f"; {plain.failures + cached.failures} requests FAILED" if plain.failures else ""),
        file=out,
    )
    print(
        "  (the caches start empty: the slowest 1% after are first misses, queued behind "
        "hits on the event loop the in-process client shares with the app)",
        file=out,
    )


def print_app_report(tour: Tour, results: AppResults, requests: int, out: TextIO) -> None:
    """Print the before/after table and what each cache and the monitor saw."""
    args = tour.args
    plain, cached = results.plain, results.cached
    http = tour.response_cache.statistics()
    llm = tour.llm.statistics().total
    db_stats = tour.db_cache.statistics() if tour.db_cache is not None else None
    rows = _rows(tour, results, db_stats)
    _print_table(rows, plain, cached, requests, out)
    before_total = sum(row[3] for row in rows)
    after_total = sum(row[4] for row in rows)
    avoided = before_total - after_total
    parts = ", ".join(f"{label.split()[1]} {b - a} of {b}" for _, label, _, b, a in rows)
    print(
        f"\n  loads avoided: {avoided} of {before_total} "
        f"({avoided / max(before_total, 1):.1%}): {parts}",
        file=out,
    )
    print(
        f"  http: {http.hits} hits, {http.stores} responses stored (zstd); "
        f"{byte_size(plain.wire_bytes)} on the wire without caching, "
        f"{byte_size(cached.wire_bytes)} with; compression saved {byte_size(http.bytes_saved)} "
        f"of {byte_size(http.bytes_served + http.bytes_saved)} served from the cache",
        file=out,
    )
    spent, saved = llm.money_spent, llm.money_saved
    print(
        f"  llm: {llm.hits} of {llm.requests} answers without a model call "
        f"({llm.exact_hits} exact hits, {llm.coalesced} joined in flight); tokens saved "
        f"{llm.prompt_tokens_saved:,} prompt + {llm.completion_tokens_saved:,} completion; "
        f"money {money(spent + saved)} -> {money(spent)} (saved {money(saved)}); "
        f"model time saved {llm.latency_saved:.1f} s "
        f"(~{llm.latency_saved * args.speed:.0f} s at real speed)",
        file=out,
    )
    if db_stats is not None:
        queries = results.plain_counts.queries
        print(
            f"  db: {queries - db_stats.loads} of {queries} "
            f"queries avoided ({db_stats.hits} hits, {db_stats.coalesced} joined in flight); "
            + results.invalidation,
            file=out,
        )
    else:
        print("  db: not run (pass --dsn postgresql://... for cached queries)", file=out)
    _print_monitor(tour, out)


def _print_monitor(tour: Tour, out: TextIO) -> None:
    snapshot = tour.monitor.snapshot()
    routes = snapshot["http"]["routes"]
    lag = snapshot["loop"]["lag"]
    timed = sum(route["count"] for route in routes)
    statements = len(snapshot["db"]["statements"])
    print(
        f"  monitor: {timed} requests timed on {len(routes)} routes"
        + (f", {statements} SQL statements" if tour.db is not None else "")
        + f", {len(snapshot['caches'])} caches and {len(snapshot['components'])} "
        "components watched; event-loop lag p99 "
        + (ms(lag["p99"]) if lag["p99"] is not None else "n/a")
        + ("; dashboard: below" if tour.args.serve else "; dashboard: add --serve"),
        file=out,
    )
