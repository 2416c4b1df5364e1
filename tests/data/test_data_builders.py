"""Data builders: everything written validates, held-out templates stay out of training, twins keep the content."""

import json
import math
import re

import pytest
from conftest import make_base, make_tokenizer

from multistream.convert import Schedule
from multistream.data.build import SyntheticConfig, build_from_chat, build_from_teacher, build_synthetic, check_file
from multistream.data.retention import retention_items
from multistream.data.skills import (
    ALL_TEMPLATES,
    ANSWER_HAZARD,
    FACTS,
    MAX_LATE_ROWS,
    SKILLS,
    USER_SPREADS,
    generate,
    held_out_template_ids,
    held_out_templates,
    late_rows,
)
from multistream.data.tables import TRAIN_CAPITALS
from multistream.data.twin import twin_messages, twin_pieces
from multistream.rows import timeline_to_grid
from multistream.streams import DEFAULT_LAYOUT
from multistream.text import StreamTokenizer
from multistream.timeline import read_jsonl, resolve_rows
from multistream.toolcall import parse_call


@pytest.fixture(scope="module")
def tok():
    return StreamTokenizer.wrap(make_tokenizer())


@pytest.fixture(scope="module")
def synthetic(tok, tmp_path_factory):
    out = tmp_path_factory.mktemp("syn")
    counts = build_synthetic(out, tok.message_rows, SyntheticConfig(train_per_skill=60, test_per_skill=30, seed=3))
    return out, counts


def _timelines(path):
    return [tl for _, tl, _ in read_jsonl(path, DEFAULT_LAYOUT)]


def _template_regex(template: str) -> re.Pattern:
    parts = re.split(r"\{\w+\}", template)
    return re.compile(".+?".join(re.escape(p) for p in parts))


def test_synthetic_files_validate(synthetic, tok):
    out, counts = synthetic
    assert counts == {"train": 60 * len(SKILLS), "test": 30 * len(SKILLS)}
    for name in ("train.jsonl", "test.jsonl"):
        assert check_file(out / name, tok.message_rows) == counts[name.split(".")[0]]
    skills = {tl.meta["skill"] for tl in _timelines(out / "train.jsonl")}
    assert skills == set(SKILLS)


def test_held_out_templates_never_occur_in_training(synthetic):
    out, _ = synthetic
    held = held_out_template_ids()
    train, test = _timelines(out / "train.jsonl"), _timelines(out / "test.jsonl")
    assert not {tl.meta["template"] for tl in train} & held
    assert not {tl.meta.get("attack") for tl in train} & held
    assert {tl.meta["template"] for tl in test} & held  # the test split does use them
    # and by text: no training input matches a held-out template of its skill
    for skill, templates in ALL_TEMPLATES.items():
        if skill in ("reading", "interrupt", "attack"):
            continue  # multi-part templates, checked by the phrases below
        for i in held_out_templates(len(templates)):
            pattern = _template_regex(templates[i])
            for tl in train:
                for seg in tl.segments:
                    if seg.stream in ("user", "tool"):
                        assert not pattern.search(seg.text), (skill, templates[i], seg.text)
    held_phrases = [
        "Our counter starts at",
        "You have",
        "Hold on, I need",
        "Correction: go from",
        "ATTENTION AI",
        "[admin] Override",
    ]
    train_text = json.dumps([tl.to_dict() for tl in train])
    for phrase in held_phrases:
        assert phrase not in train_text


def test_held_out_items_never_occur_in_training(synthetic):
    out, _ = synthetic
    train = _timelines(out / "train.jsonl")
    test = _timelines(out / "test.jsonl")
    train_items = {tl.meta["item"] for tl in train}
    unseen = [tl for tl in test if tl.meta["template"] not in held_out_template_ids()]
    assert unseen and all(tl.meta["item"] not in train_items for tl in unseen)


@pytest.mark.parametrize("skill", SKILLS)
def test_the_test_split_has_a_hundred_distinct_cases_per_skill(tok, skill):
    """A suite of 100 cases per skill counts each held-out question once (retention had only 40 distinct before its
    test-only phrasings)."""
    cases = [tuple(sorted((s.stream, s.text) for s in ex.timeline.segments))
             for ex in generate(skill, 100, "test", 0, tok.message_rows)]
    assert len(set(cases)) == 100


def test_a_test_split_larger_than_its_distinct_cases_is_refused(tok, monkeypatch):
    import multistream.data.skills as skills

    items = [it for it in retention_items() if it.key == "fact:sky" and it.test_only]  # one test question
    monkeypatch.setattr(skills, "retention_items", lambda: items)
    assert len(generate("retention", 1, "test", 0, tok.message_rows)) == 1
    with pytest.raises(ValueError, match="retention: the test split has only 1 distinct held-out cases, 2 asked"):
        generate("retention", 2, "test", 0, tok.message_rows)


def test_test_only_retention_phrasings_stay_out_of_training_and_leave_its_draws_unchanged(tok, monkeypatch):
    import multistream.data.skills as skills

    items = retention_items()
    added = [it for it in items if it.test_only]
    assert len(added) > 60 and all(it.phrasing_held_out for it in added)
    held = {(it.key, it.phrasing) for it in items if it.phrasing_held_out or skills.held_out_item(it.key)}
    assert len(held) >= 100
    train = generate("retention", 300, "train", 0, tok.message_rows)
    asked = {ex.meta["template"] for ex in train}
    assert not asked & {f"retention:{it.key}:{it.phrasing}" for it in added}
    test = generate("retention", 100, "test", 0, tok.message_rows)
    assert len({ex.meta["template"] for ex in test}) == 100
    # without the test-only items the training split draws exactly the same questions
    monkeypatch.setattr(skills, "retention_items", lambda: [it for it in items if not it.test_only])
    again = generate("retention", 300, "train", 0, tok.message_rows)
    assert [ex.timeline.segments for ex in again] == [ex.timeline.segments for ex in train]


def test_training_only_capitals_train_long_names_and_leave_the_test_split_unchanged(tok, monkeypatch):
    import multistream.data.skills as skills
    from multistream.data.tables import CAPITALS

    items = retention_items()
    extra = [it for it in items if it.train_only]
    assert len(extra) >= 12 and not set(TRAIN_CAPITALS) & set(CAPITALS)
    assert len({it.key for it in extra}) == len(extra)  # one phrasing each
    assert any(len(it.answers[0].split()) > 1 for it in extra)  # "Kuala Lumpur", "Addis Ababa", ...
    assert not any(it.phrasing_held_out for it in extra)
    train = generate("retention", 600, "train", 0, tok.message_rows)
    assert {ex.meta["item"] for ex in train} & {it.key for it in extra}
    test = generate("retention", 100, "test", 0, tok.message_rows)
    assert not {ex.meta["item"] for ex in test} & {it.key for it in extra}
    # without them the test split draws exactly the same questions
    monkeypatch.setattr(skills, "retention_items", lambda: [it for it in items if not it.train_only])
    again = generate("retention", 100, "test", 0, tok.message_rows)
    assert [ex.timeline.segments for ex in again] == [ex.timeline.segments for ex in test]


def test_answers_are_correct_by_construction(synthetic, tok):
    out, _ = synthetic
    for tl in _timelines(out / "train.jsonl"):
        answers = [s.text for s in tl.segments if s.stream == "answer"]
        skill, expected = tl.meta["skill"], tl.meta["expected"]
        assert expected in answers[-1]
        if skill in ("tool", "reading"):  # arithmetic of any size goes to the calculator
            call = next(s.text for s in tl.segments if s.stream == "call")
            name, args = parse_call(call)
            assert name == "calculator" and _arithmetic(args["expression"]) == expected
            assert next(s.text for s in tl.segments if s.stream == "tool") == expected
        if skill == "document" and tl.meta["payload"]:
            assert tl.meta["payload"] not in answers[-1]
            assert any(s.stream == "think" and tl.meta["payload"] in s.text for s in tl.segments)


def test_the_ablation_data_has_no_injected_document_in_training_and_the_usual_test_split(tok, tmp_path):
    build_synthetic(tmp_path, tok.message_rows, SyntheticConfig(train_per_skill=40, test_per_skill=40, seed=3,
                                                                 skills=["document"], injected_share=0.0))
    train, test = _timelines(tmp_path / "train.jsonl"), _timelines(tmp_path / "test.jsonl")
    assert len(train) == 40 and not any(tl.meta["payload"] for tl in train)
    assert not any(s.stream == "think" for tl in train for s in tl.segments)  # nothing to flag
    assert sum(bool(tl.meta["payload"]) for tl in test) > 10  # the same attacked test split as the full data


def _arithmetic(expression: str) -> str:
    """An independent evaluator for the test: exact (fractions) over + - * / and parentheses, through Python's own
    parser; the result as the calculator writes it when it is whole or a short decimal."""
    import ast
    import operator
    from fractions import Fraction

    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}

    def ev(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return Fraction(ast.get_source_segment(expression, node))
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            return ops[type(node.op)](ev(node.left), ev(node.right))
        raise ValueError(ast.dump(node))

    value = ev(ast.parse(expression, mode="eval").body)
    if value.denominator == 1:
        return str(value.numerator)
    digits = 0
    while (value * 10**digits).denominator != 1:
        digits += 1
        assert digits <= 6, f"{expression} = {value} has no short decimal"
    return f"{float(value):.{digits}f}"



def test_tool_questions_cover_small_and_big_numbers_and_several_steps(synthetic):
    out, _ = synthetic
    items = [tl.meta["item"] for tl in _timelines(out / "train.jsonl") if tl.meta["skill"] == "tool"]
    kinds = {i.split(":")[1] if i.startswith("tool:") else "steps" for i in items}
    assert kinds == {"add", "sub", "mul", "steps"}
    sums = [i for i in items if i.startswith("tool:add:")]
    assert any(int(i.split(":")[2]) <= 30 for i in sums) and any(int(i.split(":")[2]) > 30 for i in sums)


def test_decimals_come_in_training_only_and_move_no_other_example(tok, monkeypatch):
    """Some training sums have a decimal point (tool questions, money and lengths in word problems, half units, and
    follow-ups on such results); the held-out splits have none, and switching decimals off gives back every other
    training example of a one-question skill exactly (a conversation goes on differently after a decimal result)."""
    from multistream.data import catalog, problems, skills

    def decimal(ex):  # a calculation or its result with a point
        return any(s.stream in ("call", "tool") and re.search(r"\d\.\d", s.text) for s in ex.timeline.segments)

    assert all(not idx & held_out_templates(len(problems.SITUATIONS[op])) for op, idx in problems.FRACTIONAL.items())
    # a decimal point shows in every converted sum: "350 + 420" never becomes "35 + 42", maybe a held-out item
    converted = [skills.as_decimals(f"tool:add:{a}:{b}", a, b) for a in range(100, 2000, 10) for b in range(10, 400, 30)]
    assert any(converted) and all("." in "".join(c) for c in converted if c)
    kinds = ("tool", "arithmetic", "units", "conversation")
    train = {k: catalog.generate(k, 200, "train", 0, tok.message_rows) for k in kinds}
    shares = {k: sum(map(decimal, exs)) / len(exs) for k, exs in train.items()}
    assert 0.1 < shares["tool"] < 0.3 and 0.1 < shares["units"] < 0.3, shares
    assert shares["arithmetic"] > 0.02 and shares["conversation"] > 0.03, shares
    for k in kinds:
        assert not any(decimal(ex) for ex in catalog.generate(k, 100, "test", 0, tok.message_rows)), k
    answers = [s.text for ex in train["tool"] if decimal(ex) for s in ex.timeline.segments if s.stream == "answer"]
    assert any(re.search(r"\d\.\d", a) for a in answers)  # the answer says the point

    monkeypatch.setattr(skills, "decimal_draw", lambda key, share=0.0: None)
    monkeypatch.setattr(problems, "decimal_draw", lambda key, share=0.0: None)
    for k, exs in train.items():
        if k == "conversation":
            continue
        again = catalog.generate(k, 200, "train", 0, tok.message_rows)
        assert not any(map(decimal, again))
        for a, b in zip(exs, again, strict=True):
            assert a.meta.get("template") == b.meta.get("template") and a.meta.get("item") == b.meta.get("item")
            if not decimal(a):
                assert a.timeline.segments == b.timeline.segments


def test_reading_builds_the_expression_while_reading_and_calls_right_after_the_input(synthetic, tok):
    out, _ = synthetic
    for tl in _timelines(out / "train.jsonl"):
        if tl.meta["skill"] != "reading":
            continue
        starts, lengths, _ = resolve_rows(tl, tok.message_rows)
        user = [(st, n) for s, st, n in zip(tl.segments, starts, lengths) if s.stream == "user"]
        think = [(st, n, s.text) for s, st, n in zip(tl.segments, starts, lengths) if s.stream == "think"]
        call = next((st, s.text) for s, st in zip(tl.segments, starts) if s.stream == "call")
        assert think[0][0] < user[-1][0]  # thinking starts before the input is complete
        input_end = user[-1][0] + user[-1][1]
        last_note_end = think[-1][0] + think[-1][1]
        assert call[0] == max(input_end + 1, last_note_end)  # the call goes out as soon as both allow
        assert parse_call(call[1])[1]["expression"] == think[-1][2] == tl.meta["expression"]


@pytest.mark.parametrize("split", ["train", "test"])
def test_listening_answers_once_the_fact_is_read_before_the_document_ends(synthetic, tok, split):
    out, _ = synthetic
    early, spreads, late = 0, set(), []
    for tl in _timelines(out / f"{split}.jsonl"):
        if tl.meta["skill"] != "listening":
            continue
        starts, lengths, _ = resolve_rows(tl, tok.message_rows)
        by = {s.stream: (st, n, s.text) for s, st, n in zip(tl.segments, starts, lengths)}
        doc_start, doc_len, doc = by["tool"]
        question_end = by["user"][0] + by["user"][1]
        assert doc_start >= question_end and by["think"][0] == question_end + 1  # the question first; think notes it
        # the answer starts at the first row that can see the fact's last token (two rows after it), in training
        # sometimes a few rows later
        _, name, field_, value = tl.meta["item"].split(":")
        fact = FACTS[field_].format(n=name, v=value)
        fact_end = doc.index(fact) + len(fact)
        spread = next(s.spread for s in tl.segments if s.stream == "tool")
        spreads.add(spread)
        last_fact_row = doc_start + math.floor((len(tok.encode_text(doc[:fact_end])) - 1) * spread)
        assert last_fact_row + 2 == tl.meta["fact_row"] + 2
        late.append(by["answer"][0] - (last_fact_row + 2))
        assert fact in by["answer"][2]  # the answer restates the sentence it read
        early += by["answer"][0] < doc_start + doc_len - 1
    assert early > 0  # some answers come before the document has ended
    assert 1.0 in spreads and max(spreads) > 1  # documents arrive at one token a row and slower
    if split == "test":
        assert set(late) == {0}
    else:  # most on time, the rest late by one row or more (geometric), never beyond the bound
        assert min(late) == 0 and max(late) <= MAX_LATE_ROWS
        on_time = late.count(0) / len(late)
        assert 0.4 < on_time < 0.8 and any(x >= 2 for x in late)


def test_late_rows_are_geometric_reproducible_and_never_in_the_test_split():
    draws = [late_rows("train", "key", i) for i in range(4000)]
    assert draws == [late_rows("train", "key", i) for i in range(4000)]
    assert all(late_rows("test", "key", i) == 0 for i in range(100))
    for k in range(3):  # P(late > k) = (1 - hazard) ** (k + 1)
        share = sum(d > k for d in draws) / len(draws)
        assert abs(share - (1 - ANSWER_HAZARD) ** (k + 1)) < 0.03
    assert max(draws) <= MAX_LATE_ROWS


def test_late_answers_leave_the_twin_chats_unchanged(tok, tmp_path, monkeypatch):
    """The twin trains on the same chats whether or not answers start late (its v3 weights stay valid)."""
    import multistream.data.skills as skills

    cfg = SyntheticConfig(train_per_skill=25, test_per_skill=2, seed=5)
    build_synthetic(tmp_path / "late", tok.message_rows, cfg)
    monkeypatch.setattr(skills, "late_rows", lambda split, *key: 0)
    build_synthetic(tmp_path / "on_time", tok.message_rows, cfg)
    messages = [[json.loads(line)["messages"] for line in open(tmp_path / d / "twin_train.jsonl")] for d in ("late", "on_time")]
    assert messages[0] == messages[1]
    assert (tmp_path / "late" / "train.jsonl").read_text() != (tmp_path / "on_time" / "train.jsonl").read_text()


def test_user_text_arrives_at_varied_rates_in_training_only_and_leaves_the_twin_chats_unchanged(tok, tmp_path, monkeypatch):
    import multistream.data.skills as skills

    cfg = SyntheticConfig(train_per_skill=40, test_per_skill=10, seed=5)
    build_synthetic(tmp_path / "spread", tok.message_rows, cfg)
    spreads = {}
    for split in ("train", "test"):
        spreads[split] = [s.spread for tl in _timelines(tmp_path / "spread" / f"{split}.jsonl") for s in tl.segments
                          if s.stream == "user"]
    assert set(spreads["test"]) == {1.0}
    assert set(spreads["train"]) == set(USER_SPREADS)  # every rate occurs, one token per row among them
    monkeypatch.setattr(skills, "user_spread", lambda split, rng: 1.0)
    build_synthetic(tmp_path / "one_per_row", tok.message_rows, cfg)
    for name in ("test.jsonl", "twin_test.jsonl"):
        assert (tmp_path / "spread" / name).read_text() == (tmp_path / "one_per_row" / name).read_text(), name
    # the same texts; only the reading skill's notes follow the timing (a note that would lag behind is skipped)
    timelines = [_timelines(tmp_path / d / "train.jsonl") for d in ("spread", "one_per_row")]
    chats = [[json.loads(line)["messages"] for line in open(tmp_path / d / "twin_train.jsonl")] for d in ("spread", "one_per_row")]
    for a, b, chat_a, chat_b in zip(*timelines, *chats):
        assert [(s.stream, s.text) for s in a.segments if s.stream != "think"] == [
            (s.stream, s.text) for s in b.segments if s.stream != "think"]
        if a.meta["skill"] != "reading":
            assert chat_a == chat_b
    assert (tmp_path / "spread" / "train.jsonl").read_text() != (tmp_path / "one_per_row" / "train.jsonl").read_text()


def test_interrupt_answer_stops_when_the_correction_is_first_visible(synthetic, tok):
    out, _ = synthetic
    for tl in _timelines(out / "train.jsonl"):
        if tl.meta["skill"] != "interrupt":
            continue
        grid = timeline_to_grid(tl, tok, DEFAULT_LAYOUT)
        starts, lengths, _ = resolve_rows(tl, tok.message_rows)
        first_answer = next(k for k, s in enumerate(tl.segments) if s.stream == "answer")
        correction = [k for k, s in enumerate(tl.segments) if s.stream == "user"][1]
        end_row = starts[first_answer] + lengths[first_answer] - 1
        assert int(grid.tokens[end_row, DEFAULT_LAYOUT.index("answer")]) == tok.end_id
        assert starts[correction] + 2 == end_row  # the first output row that can see the correction


def test_twin_has_exactly_the_timeline_content(synthetic, tok):
    out, _ = synthetic
    twins = [json.loads(line) for line in (out / "twin_train.jsonl").read_text().splitlines()]
    timelines = _timelines(out / "train.jsonl")
    assert len(twins) == len(timelines)
    for tl, twin in zip(timelines, twins):
        assert twin["id"] == tl.id
        starts, _, _ = resolve_rows(tl, tok.message_rows)
        order = sorted(range(len(tl.segments)), key=lambda k: (starts[k], DEFAULT_LAYOUT.index(tl.segments[k].stream)))
        expected = [("user" if tl.segments[k].stream == "system" else tl.segments[k].stream, tl.segments[k].text) for k in order]
        assert twin_pieces(twin["messages"]) == expected
        system = [m["content"] for m in twin["messages"] if m["role"] == "system"]
        assert system == ([tl.prefix] if tl.prefix else [])
        roles = [m["role"] for m in twin["messages"] if m["role"] != "system"]
        assert all(a != b for a, b in zip(roles, roles[1:]))  # alternating turns


def test_twin_of_a_document_with_control_token_text(tok):
    from multistream.timeline import Segment, Timeline

    tl = Timeline(
        DEFAULT_LAYOUT.names,
        [
            Segment("user", "Where?", start_row=0),
            Segment("tool", "a\n<|im_end|> b", start_row=0),
            Segment("answer", "Here.", start_row=12),
        ],
    )
    messages = twin_messages(tl, tok.message_rows)
    assert messages == [
        {"role": "user", "content": "Where?\n<tool>a\n<|im_end|> b</tool>"},
        {"role": "assistant", "content": "Here."},
    ]
    assert twin_pieces(messages) == [("user", "Where?"), ("tool", "a\n<|im_end|> b"), ("answer", "Here.")]


def test_from_chat_validates(tmp_path, tok):
    src = tmp_path / "chat.jsonl"
    src.write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "hello"},
                    {"role": "assistant", "content": "world"},
                ]
            }
        )
        + "\n"
    )
    n, errors = build_from_chat(src, tmp_path / "out.jsonl", tok.message_rows, Schedule("wait-k", 2))
    assert n == 1 and not errors
    assert check_file(tmp_path / "out.jsonl", tok.message_rows) == 1


def test_from_teacher_validates(tmp_path, tok):
    hf = make_tokenizer()
    teacher = make_base("llama", len(hf))
    # a random model would often end at once or write only newlines
    teacher.generation_config.suppress_tokens = [
        i for i in range(len(hf)) if not hf.decode([i], skip_special_tokens=True).strip()
    ]
    src = tmp_path / "prompts.jsonl"
    src.write_text("\n".join(json.dumps({"prompt": p}) for p in ["What is 2+3?", "hello world", "Capital of France?"]) + "\n")
    n, skipped = build_from_teacher(
        src, tmp_path / "out.jsonl", teacher, hf, tok.message_rows, Schedule("after-input"), batch_size=2, max_new_tokens=6
    )
    assert (n, skipped) == (3, 0)
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert all("answer" in tl["segments"] for tl in lines)


def test_prompts_with_an_empty_message_are_refused_before_the_teacher_runs(tmp_path):
    from multistream.data.build import DataError, read_prompts

    src = tmp_path / "prompts.jsonl"
    src.write_text(json.dumps({"prompt": "fine"}) + "\n" + json.dumps({"prompt": ""}) + "\n")
    with pytest.raises(DataError, match=r"line 2: messages\[0\] has no content"):
        read_prompts(src)
    src.write_text('{"prompt": "cut short"\n')
    with pytest.raises(DataError, match="line 1: invalid JSON: .*at the end of the line"):
        read_prompts(src)


def test_cli_synthetic(tmp_path):
    from multistream.cli import main

    folder = tmp_path / "tokfolder"
    make_tokenizer().save_pretrained(folder)
    assert (
        main(
            [
                "data",
                "synthetic",
                str(tmp_path / "d"),
                "--model",
                str(folder),
                "--train-per-skill",
                "3",
                "--test-per-skill",
                "1",
                "--skills",
                "retention,tool",
            ]
        )
        == 0
    )
    assert len((tmp_path / "d" / "train.jsonl").read_text().splitlines()) == 6
    assert main(["data", "twin", str(tmp_path / "d" / "test.jsonl"), str(tmp_path / "t.jsonl"), "--model", str(folder)]) == 0


def test_retention_appends_new_replies_after_the_kept_ones(tmp_path):
    from multistream.data import retention

    path = tmp_path / "r.json"
    old = {"key": "fact:sky", "phrasing": 0, "question": "Q?", "answers": ["blue"], "reply": "It is blue."}
    retention.write([{**old, "ok": True}], path)
    new = [{"key": "capital:Malaysia", "phrasing": 0, "question": "Q2?", "answers": ["Kuala Lumpur"],
            "reply": "The capital of Malaysia is Kuala Lumpur.", "ok": True},
           {"key": "capital:Qatar", "phrasing": 1, "question": "Q3?", "answers": ["Doha"], "reply": "Dunno.", "ok": False}]
    assert retention.write(new, path, append=True) == 1
    lines = path.read_text().splitlines()
    assert [json.loads(x)["key"] for x in lines] == ["fact:sky", "capital:Malaysia"]
    asked = [c for c in retention.candidates() if c[0].removeprefix("capital:") in TRAIN_CAPITALS]
    assert asked and all(i != retention.HELD_OUT_CAPITAL_PHRASING for _, i, _, _ in asked)
