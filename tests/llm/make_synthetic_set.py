"""Generate the synthetic labelled set for the LLM cache's similarity layer.

Each item is a stored request and a later request, labelled ``should_match`` (a near-repeat
that keeps the meaning: typo, whitespace, casing, punctuation, filler words, word order) or
not (a trap: number or date change, the same numbers in other places, negation, entity
swap, scope change, deictic prompt, role reversal, unit change, or a multi-turn chat whose
last message is the same but whose history differs). Items are built from templates with
random slots, so the same seed gives the same set.

Two harder kinds ride in existing categories, marked by their ``note`` and drawn from a
random generator of their own (so the items above stay the same for a seed): ``"role
swap"`` (role reversal: the same words with the arguments of an asymmetric relation
exchanged, "does A outrank B" / "does B outrank A", including relations expressed by
words the content guard treats as filler) and ``"quantifier"`` (scope change: another
quantifier, a quantifier or negation or "only" moved to another word, a number qualified
or not, singular against plural, a comparative).

Run ``python tests/llm/make_synthetic_set.py [--seed N] [--out FILE]`` to write it as JSON
lines; the tests import :func:`generate`.

This set is written by the same people who wrote the guards, around the same trap
categories: passing it shows the guards do what they claim on these shapes, not that they
are right on real traffic (calibrate on your own labelled pairs for that).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

COUNTRIES = ["France", "Spain", "Germany", "Italy", "Japan", "Brazil", "Canada", "Kenya",
             "Norway", "Mexico", "India", "Egypt", "Chile", "Poland", "Vietnam",
             "Peru"]  # fmt: skip
CITIES = ["Paris", "London", "Berlin", "Madrid", "Tokyo", "Toronto", "Nairobi", "Oslo",
          "Lima", "Cairo", "Warsaw", "Hanoi", "Chicago", "Sydney", "Lisbon", "Dublin"]  # fmt: skip
LANGUAGES = ["Python", "Rust", "Java", "Go", "Kotlin", "Ruby", "Haskell", "Swift"]
PEOPLE = ["Alice", "Bob", "Carol", "David", "Erin", "Frank", "Grace", "Heidi"]
COMPANIES = ["Microsoft", "Google", "Amazon", "Oracle", "Nvidia", "Adobe", "Intel", "Cisco"]
TASKS = ["sort a dictionary by value", "read a file line by line", "parse a JSON string",
         "reverse a linked list", "remove duplicates from a list", "measure elapsed time",
         "convert a string to an integer", "merge two sorted arrays"]  # fmt: skip
DRUGS = ["ibuprofen", "paracetamol", "amoxicillin", "metformin", "omeprazole", "aspirin"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]  # fmt: skip
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
UNITS = [("kilometers", "miles"), ("kilograms", "pounds"), ("liters", "gallons"),
         ("celsius", "fahrenheit"), ("meters", "feet"), ("hours", "minutes")]  # fmt: skip
ALGORITHMS = ["quicksort", "mergesort", "heapsort", "binary search", "breadth first search",
              "insertion sort"]  # fmt: skip
SCOPES = [("for beginners", "for experts"), ("per day", "per year"), ("in total", "on average"),
          ("in winter", "in summer"), ("for adults", "for children"),
          ("at home", "in hospital")]  # fmt: skip
FILLER_PREFIXES = ["Hey, ", "Please ", "Quick question: ", "Could you tell me ",
                   "Hi! Can you tell me ", "Um, ", "I want to know "]  # fmt: skip
FILLER_SUFFIXES = [" please", ", thanks", " quickly", ", thank you"]
DEICTIC = ["Summarize this article.", "Can you fix this code?", "What does the above error mean?",
           "Translate the following paragraph into German.", "Is this correct?",
           "Explain these results.", "Rewrite that in a formal tone.",
           "What is wrong with it?", "Make the previous answer shorter.",
           "Check the attached document for typos."]  # fmt: skip


@dataclass
class Item:
    """One labelled pair: the stored request's messages and the new one's."""

    category: str
    should_match: bool
    stored: list[dict[str, str]]
    query: list[dict[str, str]]
    note: str = field(default="")

    @property
    def stored_prompt(self) -> str:
        return self.stored[-1]["content"]

    @property
    def query_prompt(self) -> str:
        return self.query[-1]["content"]


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _other(rng: random.Random, pool: list[str], current: str) -> str:
    return rng.choice([p for p in pool if p != current])


# A template returns (text, slots); variants re-render it with other slots.
def _base_questions(rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
    c, c2 = rng.sample(COUNTRIES, 2)
    city, city2 = rng.sample(CITIES, 2)
    lang = rng.choice(LANGUAGES)
    task = rng.choice(TASKS)
    year = rng.randint(1950, 2024)
    drug = rng.choice(DRUGS)
    algo = rng.choice(ALGORITHMS)
    n = rng.randint(2, 500)
    return [
        ("What is the capital of {c}?", {"c": c}),
        ("How many people lived in {city} in {year}?", {"city": city, "year": year}),
        ("How do I {task} in {lang}?", {"task": task, "lang": lang}),
        ("What are the common side effects of {drug}?", {"drug": drug}),
        ("What is the time complexity of {algo}?", {"algo": algo}),
        ("Which currency does {c} use today?", {"c": c}),
        ("What was the average rainfall in {city} during {year}?", {"city": city, "year": year}),
        ("How long does a flight from {city} to {city2} usually take?",
         {"city": city, "city2": city2}),
        ("List {n} interesting facts about {c}.", {"n": n, "c": c}),
        ("What is the best way to learn {lang} programming?", {"lang": lang}),
        ("Compare the economies of {c} and {c2}.", {"c": c, "c2": c2}),
        ("Describe the climate of {c} in detail.", {"c": c}),
    ]  # fmt: skip


def _typo(rng: random.Random, text: str) -> str | None:
    words = [
        (m.start(), m.group())
        for m in re.finditer(r"[a-z]{6,}", text)
        if m.group() not in {"people"}  # keep a word list free of accidental real words
    ]
    if not words:
        return None
    start, word = rng.choice(words)
    i = rng.randint(1, len(word) - 2)
    swapped = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if swapped == word:
        return None
    return text[:start] + swapped + text[start + len(word) :]


def _whitespace(rng: random.Random, text: str) -> str:
    words = text.split(" ")
    i = rng.randrange(1, len(words))
    spaced = " ".join(words[:i]) + rng.choice(["  ", "\t", " \n "]) + " ".join(words[i:])
    return rng.choice(["", "  ", "\n"]) + spaced + rng.choice(["", " ", "\n", "  "])


def _casing(rng: random.Random, text: str) -> str:
    return rng.choice([text.lower(), text.upper(), text[0].lower() + text[1:]])


def _punctuation(rng: random.Random, text: str) -> str:
    bare = text.rstrip("?.!")
    return rng.choice([bare, bare + "??", bare + "!", bare + " ?", bare.replace(" ", ", ", 1)])


def _filler(rng: random.Random, text: str) -> str:
    if rng.random() < 0.6:
        prefix = rng.choice(FILLER_PREFIXES)
        return prefix + text[0].lower() + text[1:]
    return text.rstrip("?.!") + rng.choice(FILLER_SUFFIXES) + text[-1]


def _word_order(text: str) -> str | None:
    # Move a trailing "in/during/for X" phrase to the front: same question.
    match = re.match(r"^(.*?) ((?:in|during|for) [^?.!]+)([?.!])$", text)
    if match is None:
        return None
    head, phrase, mark = match.groups()
    return f"{phrase[0].upper()}{phrase[1:]}, {head[0].lower()}{head[1:]}{mark}"


def near_repeats(rng: random.Random, count: int) -> list[Item]:
    """Variants that keep the meaning (the cache may serve them)."""
    items: list[Item] = []
    kinds = ["typo", "whitespace", "casing", "punctuation", "filler", "word order"]
    while len(items) < count:
        template, slots = rng.choice(_base_questions(rng))
        text = template.format(**slots)
        kind = kinds[len(items) % len(kinds)]
        variant: str | None
        if kind == "typo":
            variant = _typo(rng, text)
        elif kind == "whitespace":
            variant = _whitespace(rng, text)
        elif kind == "casing":
            variant = _casing(rng, text)
        elif kind == "punctuation":
            variant = _punctuation(rng, text)
        elif kind == "filler":
            variant = _filler(rng, text)
        else:
            variant = _word_order(text)
        if variant is None or variant == text:
            continue
        items.append(Item(kind, True, _user(text), _user(variant)))
    return items


def _swap(rng: random.Random, slots: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = slots.get(name)
    if value is None:
        return None
    pools: dict[str, list[Any]] = {"c": COUNTRIES, "c2": COUNTRIES, "city": CITIES,
                                   "city2": CITIES, "lang": LANGUAGES}  # fmt: skip
    if name in pools:
        return {**slots, name: _other(rng, pools[name], value)}
    if name in ("year", "n"):
        return {**slots, name: value + rng.choice([-3, -1, 1, 2, 10])}
    return None


def _negate(text: str) -> str | None:
    rules = [
        (r"^What is ", "What is not "),
        (r"^What are ", "What are not "),
        (r"^How do I ", "Why can't I "),
        (r"^Which currency does ", "Which currency doesn't "),
        (r"^How long does ", "Why doesn't "),
        (r"^Describe ", "Do not describe "),
        (r"^What was ", "What was not "),
        (r"^How many people lived ", "How many people never lived "),
        (r"^List ", "List no "),
        (r"^Compare ", "Don't compare "),
    ]
    for pattern, replacement in rules:
        if re.match(pattern, text):
            return re.sub(pattern, replacement, text, count=1)
    return None


def _permuted_numbers(rng: random.Random) -> tuple[str, str]:
    """A question and the same question with its numbers in other slots (another answer)."""
    a, b = rng.sample(range(2, 2000), 2)
    year = rng.randint(1990, 2030)
    month, day = rng.sample(range(1, 13), 2)
    weekday = rng.choice(WEEKDAYS)
    principal = rng.choice([500, 1000, 2500, 5000, 10000, 25000])
    rate, years = rng.sample(range(2, 31), 2)
    feet, inches = rng.sample(range(1, 12), 2)
    kind = rng.randrange(8)
    if kind == 0:
        return f"What is {a} divided by {b}?", f"What is {b} divided by {a}?"
    if kind == 1:
        return (f"How much is {a} minus {b}?", f"How much is {b} minus {a}?")
    if kind == 2:
        ymd = "{}-{:02d}-{:02d}"
        return (f"Is {ymd.format(year, month, day)} a {weekday}?",
                f"Is {ymd.format(year, day, month)} a {weekday}?")  # fmt: skip
    if kind == 3:
        return (f"What day of the week was {month}/{day}/{year}?",
                f"What day of the week was {day}/{month}/{year}?")  # fmt: skip
    if kind == 4:
        terms = [principal, rate, years]
        other = terms[:]
        while other == terms:
            rng.shuffle(other)
        text = "What is the compound interest on ${} at {}% per year for {} years?"
        return text.format(*terms), text.format(*other)
    if kind == 5:
        return (f"Convert {feet} feet {inches} inches to centimeters.",
                f"Convert {inches} feet {feet} inches to centimeters.")  # fmt: skip
    if kind == 6:
        return (f"What is {a % 20 + 2} to the power of {b % 20 + 3}?",
                f"What is {b % 20 + 3} to the power of {a % 20 + 2}?")  # fmt: skip
    return (f"How many days are there from {MONTHS[month - 1]} {day} to {MONTHS[day - 1]} "
            f"{month}, {year}?",
            f"How many days are there from {MONTHS[month - 1]} {month} to {MONTHS[day - 1]} "
            f"{day}, {year}?")  # fmt: skip


def traps(rng: random.Random, per_category: int) -> list[Item]:
    """Pairs that must never be served for each other."""
    items: list[Item] = []

    def add(category: str, stored: str, query: str) -> None:
        if stored != query:
            items.append(Item(category, False, _user(stored), _user(query)))

    # Number or date change.
    while sum(i.category == "number/date" for i in items) < per_category:
        template, slots = rng.choice(_base_questions(rng))
        names = [n for n in ("year", "n") if n in slots]
        if names:
            other = _swap(rng, slots, rng.choice(names))
            if other is not None:
                add("number/date", template.format(**slots), template.format(**other))
        else:
            day, month = rng.randint(1, 28), rng.choice(MONTHS)
            weekday = rng.choice(WEEKDAYS)
            base = f"What events are scheduled in {rng.choice(CITIES)} on {weekday}, {month} {day}?"
            change = rng.choice(["day", "month", "weekday"])
            query = (
                base.replace(f" {day}?", f" {day % 28 + 1}?")
                if change == "day"
                else base.replace(month, _other(rng, MONTHS, month))
                if change == "month"
                else base.replace(weekday, _other(rng, WEEKDAYS, weekday))
            )
            add("number/date", base, query)
    # Number order: the same numbers in other places (operands, day and month, terms).
    while sum(i.category == "number order" for i in items) < per_category:
        stored, query = _permuted_numbers(rng)
        add("number order", stored, query)
    # Negation.
    while sum(i.category == "negation" for i in items) < per_category:
        template, slots = rng.choice(_base_questions(rng))
        text = template.format(**slots)
        negated = _negate(text)
        if negated is not None:
            if rng.random() < 0.5:
                negated = negated.lower()  # negation plus a casing change
            add("negation", text, negated)
    # Entity swap.
    while sum(i.category == "entity swap" for i in items) < per_category:
        template, slots = rng.choice(_base_questions(rng))
        names = [n for n in ("c", "city", "lang", "c2", "city2") if n in slots]
        if names:
            other = _swap(rng, slots, rng.choice(names))
            if other is not None:
                query = template.format(**other)
                add("entity swap", template.format(**slots), rng.choice([query, query.lower()]))
    # Scope change.
    while sum(i.category == "scope change" for i in items) < per_category:
        a, b = rng.choice(SCOPES)
        topic = rng.choice(["How much water should I drink", "What exercise routine is best",
                            "How many calories should I eat", "Which vitamins are recommended",
                            "How much sleep is needed"])  # fmt: skip
        add("scope change", f"{topic} {a}?", f"{topic} {b}?")
    # Deictic prompts: the same words, a different referent each time.
    while sum(i.category == "deictic" for i in items) < per_category:
        text = rng.choice(DEICTIC)
        variant = rng.choice([_casing, _punctuation, _filler, _whitespace])(rng, text)
        add("deictic", text, variant)
    # Role reversal.
    while sum(i.category == "role reversal" for i in items) < per_category:
        a, b = rng.sample(PEOPLE + COMPANIES, 2)
        c1, c2 = rng.sample(CITIES, 2)
        l1, l2 = rng.sample(["English", "French", "German", "Spanish", "Italian"], 2)
        stored, query = rng.choice(
            [
                (f"Does {a} owe money to {b}?", f"Does {b} owe money to {a}?"),
                (f"Is {a} older than {b}?", f"Is {b} older than {a}?"),
                (f"How do I get from {c1} to {c2} by train?",
                 f"How do I get from {c2} to {c1} by train?"),
                (f"Translate good morning from {l1} to {l2}.",
                 f"Translate good morning from {l2} to {l1}."),
                (f"Did {a} acquire {b}?", f"Did {b} acquire {a}?"),
                ("Should the buyer pay the seller first?",
                 "Should the seller pay the buyer first?"),
                ("Can a landlord evict a tenant without notice?",
                 "Can a tenant evict a landlord without notice?"),
            ]
        )  # fmt: skip
        add("role reversal", stored, query)
    # Unit change.
    while sum(i.category == "unit change" for i in items) < per_category:
        a, b = rng.choice(UNITS)
        n = rng.randint(2, 900)
        stored, query = rng.choice(
            [
                (f"Convert {n} {a} to {b}.", f"Convert {n} {b} to {a}."),
                (f"How many {a} are in a marathon?", f"How many {b} are in a marathon?"),
                (f"What is {n} {a} in {b}?", f"What is {n} {a} in {rng.choice(UNITS)[0]}?"),
            ]
        )
        add("unit change", stored, query)
    # Multi-turn: the same last message, a different conversation before it.
    while sum(i.category == "multi-turn" for i in items) < per_category:
        p1, p2 = rng.sample(PEOPLE, 2)
        last = rng.choice(["How old is he?", "What about the second one?", "And in 2010?",
                           "Why?", "Can you give an example?", "Where was she born?"])  # fmt: skip
        history_a = [{"role": "user", "content": f"Tell me about {p1}."},
                     {"role": "assistant", "content": f"{p1} is a researcher."}]  # fmt: skip
        history_b = [{"role": "user", "content": f"Tell me about {p2}."},
                     {"role": "assistant", "content": f"{p2} is a pilot."}]  # fmt: skip
        items.append(
            Item(
                "multi-turn",
                False,
                [*history_a, {"role": "user", "content": last}],
                [*history_b, {"role": "user", "content": last}],
            )
        )
    return items


ARGUMENTS = [("A", "B"), ("X", "Y"), ("P", "Q"), ("Alice", "Bob"), ("Carol", "David"),
             ("Google", "Amazon"), ("Oracle", "Intel"), ("the manager", "the director"),
             ("the buyer", "the seller"), ("the client", "the server"),
             ("the teacher", "the student"), ("the parent", "the child"),
             ("the landlord", "the tenant")]  # fmt: skip
RELATIONS = ["outrank", "precede", "outweigh", "like", "help", "follow", "beat", "trust",
             "know", "pay", "hire", "sue", "outsell", "want", "call", "email", "invite",
             "replace", "overtake", "supervise"]  # fmt: skip
ROLE_FRAMES = ["Does {a} {r} {b}?", "Would {a} {r} {b}?", "Can {a} {r} {b}?",
               "Why does {a} {r} {b}?", "How often does {a} {r} {b}?",
               "Should {a} {r} {b}?", "When did {a} {r} {b}?"]  # fmt: skip
GROUPS = [("region", "regions"), ("employee", "employees"), ("student", "students"),
          ("server", "servers"), ("country", "countries"), ("test", "tests"),
          ("user", "users"), ("branch", "branches"), ("team", "teams")]  # fmt: skip
PREDICATES = [("has a hospital", "have a hospital"), ("passes the audit", "pass the audit"),
              ("needs a badge", "need a badge"), ("reports a loss", "report a loss"),
              ("meets the target", "meet the target"), ("uses the policy", "use the policy"),
              ("requires approval", "require approval")]  # fmt: skip
PLURAL_QUANTIFIERS = ["all", "some", "most", "few", "many", "several", "no", "both",
                      "at least three", "at most three", "exactly three", "more than three",
                      "fewer than three", "only three", "three"]  # fmt: skip
SINGULAR_QUANTIFIERS = ["every", "each", "any", "one", "no", "only one", "a single"]
SUPERLATIVES = ["longest", "largest", "oldest", "deepest", "busiest", "highest"]
FEATURES = [("river", "rivers"), ("lake", "lakes"), ("mountain", "mountains"),
            ("airport", "airports"), ("bridge", "bridges"), ("museum", "museums")]  # fmt: skip
ADJECTIVES = [("large", "larger"), ("close", "closer"), ("wide", "wider"), ("safe", "safer"),
              ("late", "later"), ("cheap", "cheaper")]  # fmt: skip


def role_swaps(rng: random.Random, count: int) -> list[Item]:
    """The arguments of an asymmetric relation exchanged: the same words, another question."""
    items: list[Item] = []
    while len(items) < count:
        a, b = rng.choice(ARGUMENTS)
        frame, relation = rng.choice(ROLE_FRAMES), rng.choice(RELATIONS)
        stored = frame.format(a=a, b=b, r=relation)
        query = frame.format(a=b, b=a, r=relation)
        items.append(Item("role reversal", False, _user(stored),
                          _user(rng.choice([query, query.lower()]) if a[0].islower() else query),
                          note="role swap"))  # fmt: skip
    return items


def quantifier_changes(rng: random.Random, count: int) -> list[Item]:
    """Another quantifier, or one moved to another word: the same topic, another scope."""
    items: list[Item] = []
    while len(items) < count:
        (one, many), (_, pred_many) = rng.choice(GROUPS), rng.choice(PREDICATES)
        (other_one, other_many) = rng.choice([g for g in GROUPS if g[0] != one])
        kind = len(items) % 7
        if kind == 0:  # another quantifier over the plural
            q1, q2 = rng.sample(PLURAL_QUANTIFIERS, 2)
            pair = (f"Do {q1} {many} {pred_many}?", f"Do {q2} {many} {pred_many}?")
        elif kind == 1:  # another quantifier over the singular
            q1, q2 = rng.sample(SINGULAR_QUANTIFIERS, 2)
            verb = pred_many.split()[0]
            pair = (
                f"Does {q1} {one} {verb} {other_many}?",
                f"Does {q2} {one} {verb} {other_many}?",
            )
        elif kind == 2:  # the universal moved from one argument to the other
            verb = rng.choice(["supervise", "review", "contact", "audit", "visit"])
            q = rng.choice(["every", "each"])
            article = "an" if other_one[0] in "aeiou" else "a"
            pair = (f"Does {q} {one} {verb} {article} {other_one}?",
                    f"Does a {one} {verb} {q} {other_one}?")  # fmt: skip
        elif kind == 3:  # negation moved across the quantifier
            q = rng.choice(["all", "most", "many"])
            pair = (f"Do {q} {many} not {pred_many}?", f"Do not {q} {many} {pred_many}?")
        elif kind == 4:  # "only" moved to the other argument
            a, b = rng.choice([p for p in ARGUMENTS if p[0][0].isupper()])
            relation = rng.choice(RELATIONS)
            pair = (f"Does only {a} {relation} {b}?", f"Does {a} {relation} only {b}?")
        elif kind == 5:  # singular against plural, or a number qualified or not
            superlative, (feature, features) = rng.choice(SUPERLATIVES), rng.choice(FEATURES)
            place = rng.choice(COUNTRIES)
            pair = rng.choice([
                (f"Name the {superlative} {feature} in {place}.",
                 f"Name the {superlative} {features} in {place}."),
                (f"Which {many} have exactly two {other_many}?",
                 f"Which {many} have two {other_many}?"),
            ])  # fmt: skip
        else:  # the plain adjective against its comparative
            (adjective, comparative), city = rng.choice(ADJECTIVES), rng.choice(CITIES)
            pair = (f"Is {city} {adjective} for {many}?", f"Is {city} {comparative} for {many}?")
        stored, query = pair if rng.random() < 0.5 else pair[::-1]
        items.append(Item("scope change", False, _user(stored), _user(query), note="quantifier"))
    return items


def generate(
    seed: int = 1, traps_per_category: int = 60, near: int = 420, hard: int = 140
) -> list[Item]:
    """Return the labelled set: ``9 * traps_per_category + 2 * hard`` traps (``hard`` role
    swaps and ``hard`` quantifier changes) and ``near`` near-repeats."""
    rng = random.Random(seed)
    items = traps(rng, traps_per_category)
    hard_rng = random.Random(f"{seed}:hard")  # its own stream: the items above stay the same
    items += role_swaps(hard_rng, hard) + quantifier_changes(hard_rng, hard)
    return items + near_repeats(rng, near)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--traps-per-category", type=int, default=60)
    parser.add_argument("--near", type=int, default=420)
    parser.add_argument("--hard", type=int, default=140, help="role swaps and quantifier changes")
    parser.add_argument("--out", default="-")
    args = parser.parse_args(argv)
    items = generate(args.seed, args.traps_per_category, args.near, args.hard)
    out = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")
    try:
        for item in items:
            out.write(json.dumps(asdict(item)) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    counts = Counter((i.should_match, i.category, i.note) for i in items)
    for (match, category, note), count in sorted(counts.items()):
        kind = "near-repeat" if match else "trap"
        print(f"{kind:12} {category:14} {note:10} {count}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
