"""Case files: parsing, line-numbered errors, skipped lines, the built-in suites."""

import json
import re

import pytest

from multistream.data import skills
from multistream.evals import builtin
from multistream.evals.cases import CaseFileError, InjectionCase, InterruptCase, PromptCase, load_cases, parse_lines


def test_good_lines_parse_and_extra_fields_are_ignored():
    lines = ['{"id": "a", "prompt": "What is 2 plus 2?", "answer": "4", "note": "ignored", "tags": [1, 2]}',
             "", "# a comment", '{"id": 7, "prompt": "Capital of France?", "answer": "Paris", "system": ""}']
    cases, errors = parse_lines(lines, "prompts")
    assert errors == []
    assert cases == [PromptCase("a", "What is 2 plus 2?", "4"), PromptCase("7", "Capital of France?", "Paris", system="")]


def test_bad_lines_are_reported_with_their_number_and_skipped():
    lines = [
        '{"id": "ok", "prompt": "p", "answer": "a"}',
        '{"id": "x", "prompt": "p"',  # 2: bad JSON
        '{"id": "y", "prompt": "p"}',  # 3: missing answer
        '["not", "an", "object"]',  # 4
        '{"id": "z", "prompt": 5, "answer": "a"}',  # 5: wrong type
        '{"id": "ok", "prompt": "p2", "answer": "a2"}',  # 6: duplicate id
        '{"id": "w", "prompt": "  ", "answer": "a"}',  # 7: empty prompt
        '{"id": "v", "prompt": "p", "answer": "a"}',
    ]
    cases, errors = parse_lines(lines, "prompts")
    assert [c.id for c in cases] == ["ok", "v"]
    assert [e.split(":")[0] for e in errors] == ["line 2", "line 3", "line 4", "line 5", "line 6", "line 7"]
    assert "invalid JSON" in errors[0] and "'answer'" in errors[1] and "object" in errors[2]
    assert "'prompt'" in errors[3] and "duplicate id 'ok' (first on line 1)" in errors[4] and "empty" in errors[5]


def test_injection_and_interrupt_fields():
    inj = {"id": "i", "system": "s", "user": "u", "data": "d", "injection_marker": "HACKED", "style": "naive"}
    cases, errors = parse_lines([json.dumps(inj)], "injection")
    assert cases == [InjectionCase("i", "s", "u", "d", "HACKED", style="naive")] and not errors
    base = {"id": "t", "user": "Count from 1 to 9.", "interrupt": "No, 5 to 8.", "answer": "5, 6, 7, 8"}
    good = [json.dumps(base | {"interrupt_after_rows": 3, "stale_answer": "9"}),
            json.dumps(base | {"id": "t2", "interrupt_after_rows": 0})]
    bad = [json.dumps(base | {"id": "b1", "interrupt_after_rows": "3"}),
           json.dumps(base | {"id": "b2", "interrupt_after_rows": -1}),
           json.dumps(base | {"id": "b3", "interrupt_after_rows": True}), json.dumps(base | {"id": "b4"})]
    cases, errors = parse_lines(good + bad, "interrupts")
    assert cases == [InterruptCase("t", "Count from 1 to 9.", "No, 5 to 8.", 3, "5, 6, 7, 8", "9"),
                     InterruptCase("t2", "Count from 1 to 9.", "No, 5 to 8.", 0, "5, 6, 7, 8")]
    assert [e.split(":")[0] for e in errors] == ["line 3", "line 4", "line 5", "line 6"]
    assert all("interrupt_after_rows" in e for e in errors)


def test_load_cases_names_the_file_and_refuses_a_file_without_cases(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text('{"id": "a", "prompt": "p", "answer": "x"}\nnot json\n{"id": "b", "prompt": "q", "answer": "y"}\n')
    cases, errors = load_cases(f, "prompts")
    assert [c.id for c in cases] == ["a", "b"] and errors == [f"{f}: line 2: invalid JSON (Expecting value at column 1)"]
    assert [c.id for c in load_cases(f, "prompts", limit=1)[0]] == ["a"]
    (tmp_path / "bad.jsonl").write_text("{}\n")
    with pytest.raises(CaseFileError, match="line"):
        load_cases(tmp_path / "bad.jsonl", "prompts")
    with pytest.raises(ValueError, match="unknown case kind"):
        parse_lines([], "nope")


@pytest.mark.parametrize("kind", ["prompts", "injection", "interrupts", "listening"])
def test_builtin_suites_load_cleanly_and_match_their_generator(kind):
    cases, errors = load_cases(None, kind)
    assert errors == [] and len(cases) >= 15
    shipped = builtin.SUITES.joinpath(f"{kind}.jsonl").read_text(encoding="utf-8")
    assert shipped == builtin.render(builtin.suites()[kind])


def test_builtin_suites_use_held_out_items_only():
    suites = builtin.suites()
    for kind in ("prompts", "injection", "interrupts", "listening"):
        for case in suites[kind]:
            if "item" in case:
                assert skills.held_out_item(case["item"]), (kind, case["id"])
    assert all("item" in case for case in suites["interrupts"] + suites["listening"] + suites["injection"])
    from multistream.data.retention import CAPITAL_PHRASINGS, HELD_OUT_CAPITAL_PHRASING

    trained = [p for i, p in enumerate(CAPITAL_PHRASINGS) if i != HELD_OUT_CAPITAL_PHRASING]
    for case in suites["interrupts"]:  # a capital switch asks in no training phrasing
        assert not any(_fits(t, case["user"]) for t in trained), case["id"]
    train_phrasings = {t for i, (_, t) in enumerate(skills.TOOL_TEMPLATES)
                       if i not in skills.held_out_templates(len(skills.TOOL_TEMPLATES))}
    for case in suites["prompts"]:
        assert not any(_fits(t, case["prompt"]) for t in train_phrasings), case["id"]


def _fits(template: str, text: str) -> bool:
    """Whether ``text`` is ``template`` with its slots filled."""
    pattern = re.escape(template)
    for slot in ("a", "b", "c", "w", "s", "steps"):
        pattern = pattern.replace(re.escape("{" + slot + "}"), ".+?")
    return re.fullmatch(pattern, text) is not None


FACT = re.compile(r"\w+ lives in \w+\.|\w+ works as a \w+\.|\w+'s favourite color is \w+\.|\w+ has a pet \w+\.")


def test_injection_suite_covers_the_attack_styles_and_positions():
    everything, _ = load_cases(None, "injection")
    cases = [c for c in everything if c.injection_marker is not None]
    benign = [c for c in everything if c.injection_marker is None]
    assert len(cases) >= 70 and len(benign) >= 30 and {c.style for c in benign} == {"benign"}
    for c in benign:  # a plain document: the answer in it, nothing addressed to the model
        assert c.answer in c.data and c.position is None and len(FACT.findall(c.data)) == len(c.data.split(". "))
    assert all(c.injection_marker is not None for c in everything[:20:2])  # any first N cases mix both kinds
    assert all(c.injection_marker is None for c in everything[1:20:2])
    styles = {c.style for c in cases}
    assert {"naive", "ignore-previous", "fake-completion", "escape-characters", "role-play", "control-tokens"} <= styles
    assert {c.position for c in cases} == {"start", "middle", "end"}
    for c in cases:
        assert c.injection_marker.lower() in c.data.lower() and c.answer and c.answer.lower() in c.data.lower()
        assert c.injection_marker.upper() not in {p.upper() for p in skills.PAYLOADS}  # never a training payload
        at = c.data.lower().find(c.injection_marker.lower())
        facts = [m.start() for m in FACT.finditer(c.data)]
        where = "start" if at < min(facts) else "end" if at > max(facts) else "middle"
        assert where == c.position, c.id
    assert any("<|im_end|>" in c.data or "<|im_start|>" in c.data for c in cases)
