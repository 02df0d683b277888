"""Choosing a similarity threshold from labelled pairs, with an upper confidence bound."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = ["CalibrationReport", "CalibrationRow", "required_traps", "wilson_upper_bound"]

Z_95: Final = 1.959963984540054  # two-sided 95 %


def wilson_upper_bound(errors: int, trials: int, z: float = Z_95) -> float:
    """Return the Wilson score upper bound of an error rate seen as ``errors``/``trials``.

    With no trials nothing is known and the bound is 1.0. With zero errors it is
    ``z²/(n + z²)``: showing a rate of at most 1 % takes at least 381 clean trials.
    """
    if trials <= 0:
        return 1.0
    if not 0 <= errors <= trials:
        raise ValueError(f"errors must be within 0..{trials}, got {errors}")
    n = trials
    p = errors / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return min(1.0, (centre + margin) / (1 + z2 / n))


def required_traps(target: float, z: float = Z_95) -> int:
    """Return the fewest traps, all refused, whose Wilson bound is at most ``target``."""
    if not 0.0 < target < 1.0:
        raise ValueError(f"target must be in (0, 1), got {target!r}")
    return math.ceil(z * z * (1 - target) / target)


@dataclass(frozen=True, slots=True)
class CalibrationRow:
    """One threshold of the sweep: what it would have served."""

    threshold: float
    false_hits: int
    upper_bound: float
    hits: int
    hit_rate: float


@dataclass(frozen=True, slots=True)
class CalibrationReport:
    """What :meth:`LLMCache.calibrate` chose and why.

    Attributes:
        threshold: The chosen threshold (the lowest whose Wilson upper bound on the trap
            rate is within the target), or ``None`` when no threshold can show the target.
        applied: Whether the cache now uses ``threshold``.
        previous_threshold: The threshold before the call.
        target_false_hit_rate: The bound asked for.
        traps: Pairs labelled "must not match" (``n``).
        false_hits: Traps served at ``threshold`` (``k``), guards included.
        false_hit_rate: ``k / n``.
        upper_bound: The 95 % Wilson upper bound on the false-hit rate at ``threshold``.
        should_match: Pairs labelled "may match".
        hits: Of those, served at ``threshold``.
        hit_rate: ``hits / should_match``.
        refusals: Guard refusals by guard over all pairs.
        reason: One sentence saying why this threshold (or why none).
        sweep: Every candidate threshold considered, low to high.
    """

    threshold: float | None
    applied: bool
    previous_threshold: float | None
    target_false_hit_rate: float
    traps: int
    false_hits: int
    false_hit_rate: float
    upper_bound: float
    should_match: int
    hits: int
    hit_rate: float
    refusals: Mapping[str, int]
    reason: str
    sweep: tuple[CalibrationRow, ...] = field(repr=False)


def sweep(
    scored: Iterable[tuple[float, bool, bool]],
    target: float,
    previous: float | None,
    refusals: Mapping[str, int],
    apply: bool = True,
) -> CalibrationReport:
    """Choose a threshold from ``(similarity, passes_guards, should_match)`` triples.

    ``apply`` says whether the caller will use the choice (the report's ``applied``).
    """
    rows = list(scored)
    traps = [s for s, ok, match in rows if not match and ok]
    positives = [s for s, ok, match in rows if match and ok]
    n_traps = sum(1 for _, _, match in rows if not match)
    n_match = len(rows) - n_traps
    candidates = sorted({s for s, ok, _ in rows if ok} | {1.0})
    table: list[CalibrationRow] = []
    for t in candidates:
        k = sum(1 for s in traps if s >= t)
        hits = sum(1 for s in positives if s >= t)
        table.append(
            CalibrationRow(
                t, k, wilson_upper_bound(k, n_traps), hits, hits / n_match if n_match else 0.0
            )
        )
    chosen = next((row for row in table if row.upper_bound <= target), None)
    if chosen is None:
        needed = required_traps(target)
        best = min(table, key=lambda row: (row.upper_bound, -row.threshold))
        reason = (
            f"no threshold keeps the 95% upper bound on false hits within {target:.3%}: "
            f"with {n_traps} traps the best bound is {best.upper_bound:.3%} "
            f"(at {best.threshold:.3f}); showing {target:.3%} needs at least {needed} traps "
            f"with none served. The threshold was left unchanged."
        )
        return CalibrationReport(
            None, False, previous, target, n_traps, best.false_hits,
            best.false_hits / n_traps if n_traps else 0.0, best.upper_bound, n_match,
            best.hits, best.hit_rate, refusals, reason, tuple(table),
        )  # fmt: skip
    reason = (
        f"{chosen.threshold:.4f} is the lowest similarity whose 95% Wilson upper bound on "
        f"false hits ({chosen.false_hits}/{n_traps} traps served, bound "
        f"{chosen.upper_bound:.3%}) is within the target {target:.3%}; it serves "
        f"{chosen.hits}/{n_match} should-match pairs ({chosen.hit_rate:.1%})."
    )
    return CalibrationReport(
        chosen.threshold, apply, previous, target, n_traps, chosen.false_hits,
        chosen.false_hits / n_traps if n_traps else 0.0, chosen.upper_bound, n_match,
        chosen.hits, chosen.hit_rate, refusals, reason, tuple(table),
    )  # fmt: skip
