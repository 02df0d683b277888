"""Machinery shared by the benchmarks: one event loop per test, per-op timing, ratio report.

pytest-benchmark times plain callables, so each round here is one
``loop.run_until_complete(body(keys))`` where ``body`` awaits the operation once per key
(``OPS`` keys per round). A round therefore pays for one ``run_until_complete`` and N awaits;
dividing by N gives the time per operation, stored in ``extra_info["ns_per_op"]``. The
event-loop entry cost (a few µs) is spread over N and is the same for every variant.

At the end of the session a table of ratios within each benchmark group, against the
group's floor, is printed from the medians of this run (see ``pytest_terminal_summary``).

``ASYNCPERF_BENCH_QUICK=1`` shrinks rounds and ops so the whole suite runs in seconds (CI:
it checks that everything still runs; its numbers are too noisy to quote).

The Redis benchmarks share the session fixture ``redis_server``: a throwaway
``redis-server`` on a free loopback port (see ``_redis_support.py``). Targets from the
issue (``AsyncBench.target``) are checked against the medians in the same summary.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import pytest

from bench._data import KEYS, OPS, QUICK, ROUNDS, WARMUP_ROUNDS
from bench._redis_support import RedisServer, start_redis_server

T = TypeVar("T")

Body = Callable[[Sequence[str]], Awaitable[None]]


@dataclass
class Result:
    """One measured variant, for the ratio report."""

    group: str
    label: str
    value: float
    unit: str
    floor: bool
    note: str = ""


TargetKind = Literal["max_ratio", "min_ratio", "max_over", "max_value"]


@dataclass
class Target:
    """A figure from the issue, checked against this run's medians in the summary.

    ``max_ratio`` / ``min_ratio``: the variant's value over its group's floor;
    ``max_over``: value minus floor, in the group's unit; ``max_value``: the value itself.
    Targets are reported (met / missed), never asserted: timings do not fail the suite.
    """

    group: str
    label: str
    kind: TargetKind
    limit: float
    text: str


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)


REPORT = Report()


def key_sequence(keys: Sequence[str], ops: int) -> list[str]:
    """Return ``ops`` keys cycling through ``keys``."""
    repeats = -(-ops // len(keys))
    return (list(keys) * repeats)[:ops]


class AsyncBench:
    """A benchmark fixture bound to one asyncio loop that lives as long as the test."""

    def __init__(self, benchmark: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.benchmark = benchmark
        self.loop = loop

    @property
    def enabled(self) -> bool:
        """False under ``--benchmark-disable`` (the body then runs once, untimed)."""
        return not self.benchmark.disabled

    def run(self, awaitable: Coroutine[Any, Any, T] | Awaitable[T]) -> T:
        """Run setup or teardown work in the test's loop (timers, tasks stay bound to it)."""
        return self.loop.run_until_complete(awaitable)

    def measure(
        self,
        body: Body,
        *,
        label: str,
        floor: bool = False,
        keys: Sequence[str] = KEYS,
        ops: int = OPS,
        rounds: int = ROUNDS,
    ) -> float | None:
        """Time ``body(keys)`` rounds; return (and record) the median ns per operation.

        Args:
            body: ``async def body(keys)`` that performs the operation once per key.
            label: The name of this variant in the ratio report.
            floor: This variant is the floor its group is compared against.
            keys: The key set, cycled up to ``ops`` keys per round.
            ops: Operations per round.
            rounds: Timed rounds (after one warm-up round).
        """
        sequence = key_sequence(keys, ops)
        loop = self.loop

        def one_round() -> None:
            loop.run_until_complete(body(sequence))

        self.benchmark.pedantic(one_round, rounds=rounds, iterations=1, warmup_rounds=WARMUP_ROUNDS)
        if not self.enabled:
            return None
        data = self.benchmark.stats.stats.data
        per_op = [seconds / ops * 1e9 for seconds in data]
        median = statistics.median(per_op)
        self.benchmark.extra_info.update(
            label=label,
            ops_per_round=ops,
            ns_per_op=round(median, 1),
            ns_per_op_min=round(min(per_op), 1),
            floor=floor,
        )
        self.record(label, median, "ns/op", floor=floor)
        return median

    def record(
        self, label: str, value: float, unit: str, *, floor: bool = False, note: str = ""
    ) -> None:
        """Add a measurement to the ratio report of this test's group."""
        group = self.benchmark.group or "(no group)"
        REPORT.results.append(Result(group, label, value, unit, floor, note))

    def note(self, line: str) -> None:
        """Add a free-form line to the summary printed at the end of the session."""
        REPORT.notes.append(line)

    def target(self, label: str, kind: TargetKind, limit: float, text: str) -> None:
        """Check ``label`` of this test's group against an issue target in the summary."""
        group = self.benchmark.group or "(no group)"
        REPORT.targets.append(Target(group, label, kind, limit, text))


_warmed_up = False


def _warm_up_cpu(seconds: float) -> None:
    """Spin before the first measurement: on a noisy machine (frequency scaling, a cold
    cache) the first tests otherwise run slow, and they are the floors."""
    global _warmed_up
    if _warmed_up:
        return
    _warmed_up = True
    data = dict.fromkeys(KEYS)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for key in KEYS:
            data.get(key)


@pytest.fixture
def abench(benchmark: Any) -> Iterator[AsyncBench]:
    """A fresh asyncio loop for the test, closed (with pending tasks cancelled) after it."""
    if not benchmark.disabled:
        _warm_up_cpu(0.1 if QUICK else 1.0)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield AsyncBench(benchmark, loop)
    finally:
        try:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _format_value(value: float, unit: str) -> str:
    if unit == "ns/op" and value >= 10_000:
        return f"{value / 1000:,.1f} µs/op"
    return f"{value:,.1f} {unit}"


def ratio_lines(report: Report) -> list[str]:
    """Format the ratios of each group against its floor (groups without one: values only)."""
    groups: dict[str, list[Result]] = {}
    for result in report.results:
        groups.setdefault(result.group, []).append(result)
    lines: list[str] = []
    for group, results in groups.items():
        floors = [r for r in results if r.floor]
        floor = floors[0] if floors and floors[0].value > 0 else None
        header = f"{group}" + (f"  (floor: {floor.label})" if floor else "  (no floor)")
        lines.append(header)
        width = max(len(r.label) for r in results)
        for r in results:
            text = f"  {r.label:<{width}}  {_format_value(r.value, r.unit):>14}"
            if floor is not None and r.unit == floor.unit:
                text += f"  {r.value / floor.value:7.2f}x floor"
            if r.note:
                text += f"  {r.note}"
            lines.append(text)
    return lines


def target_lines(report: Report) -> list[str]:
    """Format each target whose variant (and floor, where needed) ran in this session."""
    lines: list[str] = []
    for target in report.targets:
        found = [r for r in report.results if r.group == target.group and r.label == target.label]
        floors = [r for r in report.results if r.group == target.group and r.floor]
        if not found or (target.kind != "max_value" and not (floors and floors[0].value > 0)):
            continue
        result = found[-1]
        if target.kind == "max_value":
            met = result.value <= target.limit
            figure = _format_value(result.value, result.unit)
        else:
            floor = floors[0]
            if target.kind == "max_over":
                over = result.value - floor.value
                met = over <= target.limit
                figure = f"+{_format_value(over, result.unit)} over floor"
            else:
                ratio = result.value / floor.value
                met = ratio <= target.limit if target.kind == "max_ratio" else ratio >= target.limit
                figure = f"{ratio:.3f}x floor"
        status = "MET   " if met else "MISSED"
        lines.append(f"  {status} {target.group}: {result.label}: {figure}  (target {target.text})")
    return lines


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A throwaway redis-server on a free loopback port, for this session only."""
    server = start_redis_server(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORT.results and not REPORT.notes:
        return
    write = terminalreporter.write_line
    mode = "QUICK mode: too few ops to quote" if QUICK else f"{OPS} ops x {ROUNDS} rounds"
    terminalreporter.section(f"asyncperf ratios (medians of this run; {mode})")
    for line in ratio_lines(REPORT):
        write(line)
    targets = target_lines(REPORT)
    if targets:
        write("")
        write("targets (notes/cache-peers.md; reported, not asserted):")
        for line in targets:
            write(line)
    if REPORT.notes:
        write("")
        for line in REPORT.notes:
            write(line)
