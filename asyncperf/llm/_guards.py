"""Guards that refuse a similarity match between two prompts that ask different things.

Embeddings place "flights from Paris to London" next to "flights from London to Paris",
and "is it safe" next to "is it not safe". These checks compare what such a score cannot
see, and refuse the match when any differs:

- ``numbers``: the numbers in order of appearance (digits, number words, ordinals, years,
  dates), so "1200 divided by 48" never matches "48 divided by 1200", nor 2024-01-02
  2024-02-01;
- ``negation``: how many negations each prompt has;
- ``entities``: names (capitalised or all-caps words anywhere in either prompt) must occur
  in both, spelled the same;
- ``content``: the content words must be the same multiset, allowing only typos (same first
  letter, one edit in words of 5+ letters, two in words of 9+; a word extended at its end,
  "river"/"rivers" or "large"/"larger", is another form, not a typo) and filler words
  ("please", "could you tell me");
- ``word_order``: the words both prompts share keep their order, except that one
  prepositional phrase may move as a whole ("how do I sort a list in Python" matches "in
  Python, how do I sort a list"); anything else exchanges roles ("does A outrank B" /
  "does B outrank A", "does Alice like Bob" / "does Bob like Alice"), and prepositions stay
  attached to their noun ("from Paris to Rome" / "from Rome to Paris");
- ``quantifiers``: the quantifiers ("all", "some", "every", "most", "only", "at least",
  "exactly"...) must be the same, and each quantifier and negation must bear on the same
  word ("do all regions not pass" / "do not all regions pass", "does every user visit a
  site" / "does a user visit every site");
- a single capital letter inside a sentence ("does A outrank B") is a name (a variable),
  not the article "a";
- deictic prompts (words such as "this", "above", "it") refer to something outside the
  prompt and are never matched by similarity.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Final

__all__ = ["Guards", "PromptFeatures", "prompt_features", "refusal"]

_TOKEN: Final = re.compile(
    r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|[^\W\d_]+(?:['\u2019][^\W\d_]+)*", re.UNICODE
)
_ORDINAL_SUFFIX: Final = frozenset({"st", "nd", "rd", "th"})

_MORE_NUMBER_WORDS: Final[dict[str, int | Decimal]] = {
    "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
    "ninety": 90, "hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9,
    "dozen": 12, "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6,
    "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10, "half": Decimal("0.5"),
    "twice": 2, "once": 1, "double": 2, "triple": 3, "single": 1,
}  # fmt: skip
_NUMBER_WORDS: Final[dict[str, int | Decimal]] = dict(
    _MORE_NUMBER_WORDS,
    **{
        word: index
        for index, word in enumerate(
            "zero one two three four five six seven eight nine ten eleven twelve thirteen "
            "fourteen fifteen sixteen seventeen eighteen nineteen twenty".split()
        )
    },
)

_NEGATIONS: Final = frozenset(
    "not no never none nobody nothing neither nor nowhere without cannot".split()
)
_CONTRACTIONS: Final = {
    "can't": ("can", "not"), "cant": ("can", "not"), "won't": ("will", "not"),
    "wont": ("will", "not"), "shan't": ("shall", "not"), "ain't": ("is", "not"),
    "cannot": ("can", "not"),
}  # fmt: skip
_NT_SHORT: Final = frozenset(
    "isnt arent wasnt werent dont doesnt didnt hasnt havent hadnt shouldnt couldnt "
    "wouldnt mustnt neednt".split()
)
_IS_CONTRACTED: Final = frozenset(
    "what that it he she there here who where how when why which let".split()
)
_SUFFIXES: Final = {"'re": "are", "'m": "am", "'ve": "have", "'ll": "will", "'d": "would"}

#: Words that change nothing a model is asked: articles, politeness, hedges, the frames
#: "could you tell me", "I want to know". Removing or adding them keeps the question.
FILLER_WORDS: Final = frozenset(
    """a an the please pls plz kindly hey hi hello ok okay so well just actually basically
    really quick quickly um uh hmm you your can could would tell me i i'd id want wanna like
    know wonder wondering curious question help do does did thanks thank quite simply
    briefly""".split()
)

#: Words that point outside the prompt. A prompt with one is never similarity-matched.
DEICTIC_WORDS: Final = frozenset(
    """this these those that above below aforementioned attached following foregoing
    previous preceding here herein it its they them their theirs he she him her his hers
    latter former same""".split()
)

#: Multi-word frames removed before the words are compared ("I want to know" would
#: otherwise leave "to", a preposition, behind).
_FILLER_PHRASES: Final = re.compile(
    r"\b(?:i (?:want|wanted|would like|'d like|d like) to know|(?:can|could|would) you "
    r"(?:please )?(?:tell|show) me|do you know|tell me|i was wondering|i wonder)\b",
    re.IGNORECASE,
)
_NUMBER: Final = "#"

#: Closed-class words that say how much of something a question is about. A change of one,
#: or one that bears on another word, changes the answer ("all" / "some", "every region" /
#: "one region", "only Alice" / "only Bob").
QUANTIFIER_WORDS: Final = frozenset(
    """all every each any some most many much few fewer fewest little less least more
    several both either neither only exactly almost nearly whole entire majority minority
    always usually often sometimes rarely seldom ever""".split()
)
#: In the ``words`` sequence, every negation is this word.
_NOT: Final = "not"

_PREPOSITIONS: Final = frozenset(
    """from to into onto in on at by for with without of about against between over under
    before after during than per via toward towards""".split()
)


@dataclass(frozen=True, slots=True)
class PromptFeatures:
    """What the guards compare, extracted once per prompt.

    Attributes:
        content: Content words in order (lowercased, contractions expanded, no fillers,
            no negations; each number is ``"#"``, compared by ``numbers``).
        numbers: The numbers found, in order of appearance (as normalised strings): a
            permutation ("48 / 1200" for "1200 / 48", day and month swapped) differs.
        negations: How many negations.
        entities: Lowercased capitalised or all-caps words (never the first word of a
            sentence unless it is all caps).
        deictic: The prompt points outside itself.
        words: ``content`` with each negation in its place (as ``"not"``): what the
            scope of a negation or a quantifier is read from.
    """

    content: tuple[str, ...]
    numbers: tuple[str, ...]
    negations: int
    entities: frozenset[str]
    deictic: bool
    words: tuple[str, ...] = ()


def _number(text: str) -> str | None:
    try:
        value = Decimal(text.replace(",", ""))
    except InvalidOperation:
        return None
    return format(value.normalize(), "f")


def prompt_features(text: str) -> PromptFeatures:
    """Extract the guard features of one prompt."""
    text = _FILLER_PHRASES.sub(" ", unicodedata.normalize("NFKC", text))
    # In a prompt written in both cases, a lone capital letter other than "I" inside a
    # sentence names something ("does A outrank B"); in an all-caps prompt it may be "a".
    mixed_case = any(c.islower() for c in text)
    content: list[str] = []
    sequence: list[str] = []
    numbers: list[str] = []
    entities: set[str] = set()
    negations = 0
    deictic = False
    sentence_start = True
    previous_end = 0
    for match in _TOKEN.finditer(text):
        raw = match.group().replace("\u2019", "'")
        between = text[previous_end : match.start()]
        previous_end = match.end()
        if any(mark in between for mark in ".?!:;\n"):
            sentence_start = True
        first_of_sentence = sentence_start
        sentence_start = False
        if raw[0].isdigit():
            number = _number(raw)
            if number is not None:
                numbers.append(number)
                content.append(_NUMBER)  # keeps its place for the word-order checks
                sequence.append(_NUMBER)
            continue
        word = raw.lower()
        if word in _ORDINAL_SUFFIX and between == "":
            continue  # the "rd" of "3rd"
        words: tuple[str, ...]
        if word in _CONTRACTIONS:
            words = _CONTRACTIONS[word]
        elif word.endswith("n't"):
            words = (word[:-3], "not")
        elif word in _NT_SHORT:
            words = (word[:-2], "not")
        else:
            stem, apostrophe, suffix = word.partition("'")
            if apostrophe and ("'" + suffix) in _SUFFIXES:
                words = (stem, _SUFFIXES["'" + suffix])
            elif apostrophe and suffix == "s":
                words = (stem, "is") if stem in _IS_CONTRACTED else (stem,)  # else possessive
            else:
                words = (word,)
        letters = raw.replace("'", "")
        symbol = mixed_case and not first_of_sentence and len(raw) == 1 and raw not in "aiI"
        symbol = symbol or (mixed_case and not first_of_sentence and raw == "A")
        if (len(letters) > 1 and letters.isupper()) or (
            not first_of_sentence and any(c.isupper() for c in raw)
        ):
            entities.add(words[0])
        for part in words:
            if part in DEICTIC_WORDS and not symbol:
                deictic = True
            if part in _NEGATIONS:
                negations += 1
                sequence.append(_NOT)
            elif part in _NUMBER_WORDS and not symbol:
                numbers.append(format(Decimal(_NUMBER_WORDS[part]).normalize(), "f"))
                content.append(_NUMBER)
                sequence.append(_NUMBER)
            elif part and (symbol or part not in FILLER_WORDS):
                content.append(part)
                sequence.append(part)
    return PromptFeatures(
        tuple(content), tuple(numbers), negations, frozenset(entities), deictic, tuple(sequence)
    )


def _within_edits(a: str, b: str, limit: int) -> bool:
    """Damerau-Levenshtein distance (adjacent transpositions) of ``a`` and ``b`` <= limit."""
    if abs(len(a) - len(b)) > limit:
        return False
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return False
        previous2, previous = previous, current
    return previous[-1] <= limit


def _typo(a: str, b: str) -> bool:
    shorter = min(len(a), len(b))
    if shorter < 5 or a[0] != b[0]:
        return False
    if a.startswith(b) or b.startswith(a):
        return False  # an ending added (river/rivers, large/larger): another form of the word
    return _within_edits(a, b, 2 if shorter >= 9 else 1)


def _align(
    a: tuple[str, ...], b: tuple[str, ...], entities: frozenset[str]
) -> tuple[str, ...] | None:
    """Return ``b`` with each typo replaced by the word of ``a`` it misspells, or ``None``
    when some content word has no counterpart."""
    missing_in_b = Counter(a) - Counter(b)
    extra_in_b = Counter(b) - Counter(a)
    if not missing_in_b and not extra_in_b:
        return b
    if sum(missing_in_b.values()) != sum(extra_in_b.values()):
        return None
    replace: dict[str, str] = {}
    wanted = list(missing_in_b.elements())
    for word in extra_in_b.elements():
        if word in entities:
            return None
        for index, candidate in enumerate(wanted):
            if candidate not in entities and _typo(word, candidate):
                replace[word] = candidate
                del wanted[index]
                break
        else:
            return None
    return tuple(replace.get(word, word) for word in b)


def _phrase_move(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Return whether ``b`` is ``a`` with at most one prepositional phrase moved elsewhere.

    A phrase that starts with a preposition says where, when or how ("in Python", "during
    2010") and may move as a whole. Any other move exchanges what the words do: the
    subject and the object of "does Alice like Bob" trade places in "does Bob like Alice".
    """
    if a == b:
        return True
    if len(a) != len(b):
        return False
    n = len(a)
    # Strip the common prefix and suffix: the move happened inside what is left.
    start = 0
    while start < n and a[start] == b[start]:
        start += 1
    end = n
    while end > start and a[end - 1] == b[end - 1]:
        end -= 1
    middle_a, middle_b = a[start:end], b[start:end]
    size = len(middle_a)
    # A block move inside the middle is a rotation of it: b = a[k:] + a[:k]; one of the
    # two blocks that trade places must be a prepositional phrase.
    return any(
        middle_a[k:] + middle_a[:k] == middle_b
        and (middle_a[0] in _PREPOSITIONS or middle_a[k] in _PREPOSITIONS)
        for k in range(1, size)
    )


def _shared(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    """Return the words of ``a`` that ``b`` also has (as a multiset), in ``a``'s order."""
    left = Counter(b)
    kept: list[str] = []
    for word in a:
        if left[word] > 0:
            left[word] -= 1
            kept.append(word)
    return tuple(kept)


def _scope_pairs(words: tuple[str, ...]) -> Counter[tuple[str, str]]:
    """Each quantifier and negation with the first word after it that is neither: what it
    bears on ("all regions", "not pass", "only Bob")."""
    pairs: Counter[tuple[str, str]] = Counter()
    for i, word in enumerate(words):
        if word == _NOT or word in QUANTIFIER_WORDS:
            target = next(
                (w for w in words[i + 1 :] if w != _NOT and w not in QUANTIFIER_WORDS), ""
            )
            pairs[(word, target)] += 1
    return pairs


def _preposition_pairs(words: tuple[str, ...]) -> Counter[tuple[str, str]]:
    return Counter(
        (word, words[i + 1])
        for i, word in enumerate(words[:-1])
        if word in _PREPOSITIONS and words[i + 1] not in _PREPOSITIONS
    )


@dataclass(frozen=True, slots=True)
class Guards:
    """Which guards run before a similarity hit is served (all on by default).

    Attributes:
        numbers: Refuse when the numbers (and dates, years, ordinals) differ, or appear
            in another order.
        negation: Refuse when the number of negations differs.
        entities: Refuse when a name in one prompt is missing from the other.
        content: Refuse when content words differ beyond typos and fillers. Turn off only
            with an embedder that understands paraphrases, and calibrate again.
        word_order: Refuse when the words both prompts share are in another order, beyond
            one moved prepositional phrase (exchanged roles), or a preposition moved to
            another noun.
        quantifiers: Refuse when the quantifiers differ, or a quantifier or negation bears
            on another word (another scope).
        deictic: Never match prompts that point outside themselves ("this", "above").
        predicate: Your own check, ``predicate(query, candidate) -> bool``; false refuses.
    """

    numbers: bool = True
    negation: bool = True
    entities: bool = True
    content: bool = True
    deictic: bool = True
    word_order: bool = True
    quantifiers: bool = True
    predicate: Callable[[str, str], bool] | None = None


def refusal(
    guards: Guards,
    query: str,
    query_features: PromptFeatures,
    candidate: str,
    candidate_features: PromptFeatures,
) -> str | None:
    """Return why ``candidate`` must not answer ``query`` (a guard's name), or ``None``."""
    a, b = query_features, candidate_features
    if guards.deictic and (a.deictic or b.deictic):
        return "deictic"
    if guards.numbers and a.numbers != b.numbers:
        return "numbers"
    if guards.negation and a.negations != b.negations:
        return "negation"
    entities = a.entities | b.entities
    if guards.entities and entities:
        words_a, words_b = set(a.content), set(b.content)
        if any((e in words_a) != (e in words_b) for e in entities):
            return "entities"
    sequence_b = b.words
    if guards.content:
        aligned = _align(a.content, b.content, entities if guards.entities else frozenset())
        if aligned is None:
            return "content"
        if guards.word_order and _preposition_pairs(a.content) != _preposition_pairs(aligned):
            return "word order"
        # The typos of b spelled as in a, so that the order checks compare like with like.
        spelled = dict(zip(b.content, aligned, strict=True))
        sequence_b = tuple(spelled.get(word, word) for word in b.words)
    if guards.word_order:
        shared_a = _shared(a.content, tuple(w for w in sequence_b if w != _NOT))
        shared_b = _shared(tuple(w for w in sequence_b if w != _NOT), a.content)
        if not _phrase_move(shared_a, shared_b):
            return "word order"
    if guards.quantifiers:
        quantifiers_a = Counter(w for w in a.words if w in QUANTIFIER_WORDS)
        quantifiers_b = Counter(w for w in sequence_b if w in QUANTIFIER_WORDS)
        if quantifiers_a != quantifiers_b or _scope_pairs(a.words) != _scope_pairs(sequence_b):
            return "quantifiers"
    if guards.predicate is not None and not guards.predicate(query, candidate):
        return "predicate"
    return None
