"""Slow tests on the shipped default adapters (multi-stream and single-stream twin) and the tiny recipe."""

import json

import pytest

from multistream.data.skills import SKILLS, held_out_template_ids
from multistream.evals.scoring import correct, final_reply_answer
from multistream.zoo import WEIGHTS, load_model, load_single

pytestmark = pytest.mark.slow

# a held-out item of the retention skill (never asked in training; the base model answers it right as a plain
# chat model, and fine-tuning must keep it: the held-out report, not this test, measures accuracy)
QUESTION = "What is the capital of Sweden?"
EXPECTED = "Stockholm"


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
    """Through the engine, as every evaluation runs it."""
    from multistream.engine.runner import Input
    from multistream.evals.common import Contenders, message_spans, run_multi

    model = load_model("default")
    c = Contenders(model, None, max_rows=40)
    run = run_multi(c, c.core(speculative=0, idle_rows=None), [Input("user", QUESTION, row=0)])
    spans = [sp for sp in message_spans(run.result, "answer") if sp[0].strip()]
    assert spans and any(e.type == "message_end" and e.stream == "answer" for e in run.result.events)
    assert spans[-1][1] <= model.tok.message_rows(QUESTION) + 2  # answers once the question has been read
    assert correct(EXPECTED, run.final, QUESTION), run.final


def test_default_multistream_model_says_its_answer_once():
    """After answering it stays quiet (the v6 weights said "The capital of Sweden is Stockholm." twice)."""
    from multistream.engine.core import EngineConfig, EngineCore
    from multistream.engine.runner import Input, run_session

    model = load_model("default")
    for question in (QUESTION, "What is the capital of Japan?", "How many legs does a spider have?"):
        core = EngineCore(model, EngineConfig(idle_rows=None))
        result = run_session(core, [Input("user", question, row=0)], max_rows=60, after_answer=20)
        answers = [e.text for e in result.events if e.type == "message_end" and e.stream == "answer" and e.text.strip()]
        assert len(answers) == 1, (question, answers)


def test_default_single_twin_answers_a_held_out_question():
    from multistream.evals.twin import Twin

    reply = Twin(*load_single("default-single"), max_new_tokens=24).run([{"role": "user", "content": QUESTION}])
    answer = final_reply_answer(reply.streams["answer"])
    assert correct(EXPECTED, answer, QUESTION), answer


def test_tiny_recipe_runs_end_to_end(tmp_path):
    from multistream.cli import main

    assert main(["train", "--recipe", "tiny", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["multi"]["steps"] == report["single"]["steps"] == 3
    assert set(report["eval"]["multi"]) == set(SKILLS) and report["eval"]["max_tokens"] == 32  # the recipe's budget
    assert (tmp_path / "multi" / "final" / "multistream_config.json").exists()
