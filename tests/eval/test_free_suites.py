"""The hand-written free-phrasing suites (suites/free.jsonl, suites/free_corrections.jsonl): they load, their answers
are right and scoreable, they are wired into the CLI, and no case is worded like a template of the training data."""

import importlib
import re
from difflib import SequenceMatcher

import pytest

from multistream.calculator import calculator
from multistream.evals.cases import SUITES, builtin_path, load_cases
from multistream.evals.scoring import correct_any, interrupt_ok

TRAINING_MODULES = ("multistream.data.skills", "multistream.data.retention", "multistream.data.wording",
                    "multistream.data.everyday", "multistream.data.conversations", "multistream.data.problems")
"""Every module that writes training text (a module missing from this checkout is skipped)."""
WHOLE, SENTENCE = 0.7, 0.8
"""A case is too close to a template when their word sequences are this similar (difflib's ratio), whole texts or
any two sentences of at least 5 words."""


def normalise(text: str) -> list[str]:
    """Words, lower case; slots (``{a}``) and numbers as ``#``."""
    text = re.sub(r"\{[^}]*\}", " # ", text.casefold())
    text = re.sub(r"\d+(?:\.\d+)?", " # ", text)
    return re.sub(r"[^\w#]+", " ", text.replace("_", " ")).split()


def sentences(text: str) -> list[list[str]]:
    return [w for s in re.split(r"(?<=[.?!:;])\s+", text) if len(w := normalise(s)) >= 5]


def _strings(value, depth: int = 0):
    if isinstance(value, str):
        yield value
    elif depth < 4 and isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k, depth + 1)
            yield from _strings(v, depth + 1)
    elif depth < 4 and isinstance(value, list | tuple | set | frozenset):
        for v in value:
            yield from _strings(v, depth + 1)


def training_texts() -> set[str]:
    """The templates and filled questions of the training generators: every string constant of their modules (in
    lists, tuples and dicts) and the questions they ask the base model."""
    texts: set[str] = set()
    for name in TRAINING_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        for attr, value in vars(mod).items():
            if not attr.startswith("__") and not callable(value):
                texts.update(_strings(value))
        if hasattr(mod, "candidates"):  # retention and everyday: the questions, filled in
            texts.update(c[3] if isinstance(c[2], int) else c[2] for c in mod.candidates())
    return {t for t in texts if 3 <= len(normalise(t)) <= 40}


def _wildcard(template: list[str]) -> re.Pattern | None:
    """The template with each slot matching one or two words (a number, a name, "fire truck"); None for a template
    of fewer than 3 words besides its slots (``{a} to {b}`` would match anything)."""
    if sum(w != "#" for w in template) < 3:
        return None
    return re.compile(" ".join(r"(?:\S+(?: \S+)?)" if w == "#" else re.escape(w) for w in template))


def too_close(text: str, templates: list[tuple[str, list[str], re.Pattern, list[list[str]]]]) -> list[str]:
    words, mine = normalise(text), sentences(text)
    out = []
    for raw, t, pattern, t_sentences in templates:
        if (words == t or (pattern is not None and pattern.fullmatch(" ".join(words)))
                or SequenceMatcher(None, words, t, autojunk=False).ratio() >= WHOLE
                or any(SequenceMatcher(None, a, b, autojunk=False).ratio() >= SENTENCE
                       for a in mine for b in t_sentences)):
            out.append(raw)
    return out


@pytest.fixture(scope="module")
def templates():
    return [(t, normalise(t), _wildcard(normalise(t)), sentences(t)) for t in sorted(training_texts())]


@pytest.fixture(scope="module")
def free():
    cases, errors = load_cases(None, "prompts", suite="free")
    assert errors == []
    return cases


@pytest.fixture(scope="module")
def decimals():
    cases, errors = load_cases(None, "prompts", suite="decimals")
    assert errors == []
    return cases


@pytest.fixture(scope="module")
def corrections():
    cases, errors = load_cases(None, "interrupts", suite="free-corrections")
    assert errors == []
    return cases


def test_the_check_catches_template_wording(templates):
    assert len(templates) > 300  # the generators' texts were found
    assert too_close("I had 23 apples and bought 19 more. How many apples do I have now?", templates)
    assert too_close("How many minutes are in 3 hours?", templates)
    assert too_close("What is the capital of Norway?", templates)
    assert too_close("Can you count from 5 to 12?", templates)
    assert too_close("What noise does a goat make?", templates)
    assert not too_close("Grandma baked 36 cookies and the neighbours brought 27. How many are on the table?",
                         templates)


@pytest.mark.slow  # every case against every training template
def test_no_free_case_is_worded_like_a_training_template(free, decimals, corrections, templates):
    close = {}
    for c in free + decimals:
        close[c.id] = too_close(c.prompt, templates)
    for c in corrections:
        close[c.id] = too_close(c.user, templates) + too_close(c.interrupt, templates)
    assert {k: v for k, v in close.items() if v} == {}


def test_free_prompts_cover_the_families_with_right_answers(free):
    assert len(free) >= 120 and len({c.prompt for c in free}) == len(free)
    families = {c.id.split("-")[1] for c in free}
    assert {"word", "units", "capital", "colour", "sound", "legs", "days", "opposite", "planet"} <= families
    assert sum(c.id.startswith(("free-word", "free-units")) for c in free) >= 60
    raw = {r["id"]: r for r in _raw("prompts", "free")}
    for c in free:
        if c.id.startswith(("free-word", "free-units")):  # calculator cases: the answer is the expression's value
            assert calculator(raw[c.id]["expression"]) == c.answer, c.id
        assert correct_any(c.answers, f"The answer is {c.answer}.", c.prompt), c.id  # scoreable as written
        assert all(correct_any(c.answers, f"It is {a}.", c.prompt) for a in c.accepted), c.id
    assert any(c.accepted for c in free)
    first = [c.id.split("-")[1] for c in free[:9]]  # any first N cases mix the families
    assert {"word", "units"} <= set(first) and len(set(first)) >= 3


def test_decimal_prompts_need_the_point_and_the_calculator_agrees(decimals):
    assert len(decimals) >= 40 and len({c.prompt for c in decimals}) == len(decimals)
    assert {c.id.split("-")[1] for c in decimals} == {"share", "money", "measure", "halves", "plain"}
    raw = {r["id"]: r for r in _raw("prompts", "decimals")}
    for c in decimals:
        assert c.answer == calculator(raw[c.id]["expression"]), c.id
        assert "." in c.answer or "." in raw[c.id]["expression"], c.id  # a decimal to read or to say
        assert correct_any([c.answer], f"The answer is {c.answer}.", c.prompt)
        assert not correct_any([c.answer], f"The answer is {c.answer.replace('.', '')}.", c.prompt) or "." not in c.answer
    assert sum("." in c.answer for c in decimals) >= 25  # most answers need the point said


def test_free_corrections_are_scoreable_and_say_what_they_need(corrections):
    assert len(corrections) >= 30 and {c.id.split("-")[2] for c in corrections} == {"count", "sum", "fact"}
    raw = {r["id"]: r for r in _raw("interrupts", "free-corrections")}
    for c in corrections:
        assert c.stale_answer and c.stale_answer not in c.answers and c.interrupt_after_rows >= 1
        assert interrupt_ok(c.answer, c.answers, c.stale_answer, c.user), c.id  # the corrected answer succeeds
        assert not interrupt_ok(f"{c.stale_answer}. {c.answer}", c.answers, c.stale_answer, c.user), c.id
        assert c.tools == c.id.startswith("free-fix-sum"), c.id  # the arithmetic ones need the calculator
        if c.tools:
            assert calculator(raw[c.id]["expression"]) == c.answer, c.id


def _raw(kind, suite):
    import json

    return [json.loads(line) for line in builtin_path(kind, suite).read_text().splitlines() if line.strip()]


def test_suites_are_named_and_an_unknown_one_is_refused():
    assert SUITES["prompts"]["free"] == "free" and SUITES["interrupts"]["free-corrections"] == "free_corrections"
    assert builtin_path("prompts", "free").exists() and builtin_path("interrupts", "free-corrections").exists()
    with pytest.raises(ValueError, match="no built-in injection suite 'free'"):
        load_cases(None, "injection", suite="free")
