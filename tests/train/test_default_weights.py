"""Slow tests on the shipped default adapters (multi-stream and single-stream twin) and the tiny recipe."""

import json

import pytest

from multistream.data.skills import SKILLS, held_out_template_ids
from multistream.timeline import Segment, Timeline
from multistream.train.evaluate import _generate, is_correct
from multistream.zoo import WEIGHTS, load_model, load_single

pytestmark = pytest.mark.slow

# a held-out item of the retention skill (never asked in training; the base model answers it right as a plain
# chat model, and fine-tuning must keep it: the held-out report, not this test, measures accuracy)
QUESTION = "What is the capital of Sweden?"
EXPECTED = {"skill": "retention", "expected": "Stockholm"}


def test_question_is_held_out():
    from multistream.data.skills import held_out_item

    assert held_out_item("capital:Sweden")
    assert "retention:capital:Sweden:0" not in held_out_template_ids()  # a training phrasing, an unseen item


def test_committed_weights_are_compact():
    files = [f for d in ("default", "default-single") for f in (WEIGHTS / d).iterdir()]
    assert sum(f.stat().st_size for f in files) <= 60 * 2**20
    cfg = json.loads((WEIGHTS / "default" / "multistream_config.json").read_text())
    assert cfg["base_model"] == "default" and cfg["adapter"]


def test_default_multistream_model_answers_a_held_out_question():
    from multistream.train.decode import decode_multi

    model = load_model("default")
    tl = Timeline(model.layout.names, [Segment("user", QUESTION, start_row=0)])
    out = decode_multi(model, tl, max_rows=40)
    answer = out.last("answer")
    assert answer is not None and answer.ended
    assert answer.start_row <= model.tok.message_rows(QUESTION) + 2  # answers once the question has been read
    assert is_correct(EXPECTED, answer.text), answer.text


def test_default_single_twin_answers_a_held_out_question():
    model, tok = load_single("default-single")
    answer = _generate(model, tok, [{"role": "user", "content": QUESTION}], 24)
    assert is_correct(EXPECTED, answer), answer


def test_tiny_recipe_runs_end_to_end(tmp_path):
    from multistream.cli import main

    assert main(["train", "--recipe", "tiny", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["multi"]["steps"] == report["single"]["steps"] == 3
    assert set(report["eval"]["multi"]) == set(SKILLS)
    assert (tmp_path / "multi" / "final" / "multistream_config.json").exists()
