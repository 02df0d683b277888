"""The default similarity settings on the synthetic labelled set (make_synthetic_set.py).

Every item goes through ``LLMCache.complete`` end to end (canonical key, scope, guards,
threshold), each pair under its own tenant so that it is judged on its own. Figures from
the issue: traps served at most 1 % (95 % Wilson upper bound reported), near-repeats served
at least 40 %. The default threshold was calibrated on seed 1; this checks other seeds.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from asyncperf import Cache, MemoryStore
from asyncperf.llm import LLMCache, required_traps, wilson_upper_bound
from tests.llm.conftest import completion
from tests.llm.make_synthetic_set import generate


def request(messages: list[dict[str, str]]) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "temperature": 0, "messages": messages}


@pytest.mark.parametrize("seed", [7, 11])
async def test_default_similarity_on_the_synthetic_set(seed: int) -> None:
    items = generate(seed)
    traps = [i for i in items if not i.should_match]
    near = [i for i in items if i.should_match]
    assert len(traps) >= 400
    assert {i.category for i in traps} == {
        "number/date", "number order", "negation", "entity swap", "scope change", "deictic",
        "role reversal", "unit change", "multi-turn",
    }  # fmt: skip
    llm = LLMCache(Cache(MemoryStore(max_entries=100_000)), similarity=True)
    calls = 0

    async def call(body: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return completion(body)

    served: Counter[tuple[bool, str]] = Counter()
    for index, item in enumerate(items):
        tenant = f"pair-{index}"
        await llm.complete(request(item.stored), call=call, tenant=tenant)
        before = calls
        await llm.complete(request(item.query), call=call, tenant=tenant)
        served[(item.should_match, item.category)] += calls == before
    false_hits = sum(n for (match, _), n in served.items() if not match)
    hits = sum(n for (match, _), n in served.items() if match)
    bound = wilson_upper_bound(false_hits, len(traps))
    print(f"seed {seed}: traps served {false_hits}/{len(traps)} (95% upper bound {bound:.2%}); "
          f"near-repeats served {hits}/{len(near)} ({hits / len(near):.1%})")  # fmt: skip
    assert false_hits / len(traps) <= 0.01
    assert bound <= 0.01
    assert hits / len(near) >= 0.40


def test_calibration_on_the_synthetic_set_reports_what_and_why() -> None:
    items = [i for i in generate(1) if i.category != "multi-turn"]
    pairs = [(i.stored_prompt, i.query_prompt, i.should_match) for i in items]
    llm = LLMCache(Cache(MemoryStore()), similarity=True)
    report = llm.calibrate(pairs, target_false_hit_rate=0.01)
    assert report.applied
    assert llm.threshold == report.threshold
    assert report.traps >= required_traps(0.01)
    assert report.upper_bound <= 0.01
    assert report.upper_bound == wilson_upper_bound(report.false_hits, report.traps)
    assert report.hit_rate >= 0.40
    assert "Wilson" in report.reason
    assert sum(report.refusals.values()) > 0
    assert report.sweep[0].threshold <= report.threshold


def test_calibration_with_apply_false_reports_not_applied() -> None:
    items = [i for i in generate(1) if i.category != "multi-turn"]
    pairs = [(i.stored_prompt, i.query_prompt, i.should_match) for i in items]
    llm = LLMCache(Cache(MemoryStore()), similarity=True)
    llm.threshold = 0.99
    report = llm.calibrate(pairs, target_false_hit_rate=0.01, apply=False)
    assert report.threshold is not None
    assert report.threshold != 0.99
    assert not report.applied  # a dry run: the cache keeps its threshold
    assert llm.threshold == 0.99
    assert report.previous_threshold == 0.99


def test_calibration_refuses_with_too_few_traps() -> None:
    llm = LLMCache(Cache(MemoryStore()), similarity=True)
    before = llm.threshold
    pairs = [("What is the capital of France?", "What is the capital of Spain?", False)] * 100
    pairs += [("What is the capital of France?", "what is the capital of france", True)] * 10
    report = llm.calibrate(pairs)
    assert not report.applied
    assert report.threshold is None
    assert llm.threshold == before
    assert "381" in report.reason
