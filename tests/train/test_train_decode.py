"""The evaluation decoder and scoring: cached decoding equals the reference decoder; answers are scored as documented."""

import torch

from multistream.reference import reference_decode
from multistream.timeline import Segment, Timeline
from multistream.train.decode import decode_multi, run_calculator
from multistream.train.evaluate import base_messages, is_correct


def test_cached_decoder_equals_reference_decoder(wrap):
    model = wrap("llama")
    tl = Timeline(
        model.layout.names,
        [Segment("user", "What is 2+3?", start_row=0), Segment("tool", "hello world", start_row=3)],
        prefix="Be brief.",
    )
    ref = reference_decode(model, tl, rows=14)
    ours = decode_multi(model, tl, max_rows=14, stop_after_answer=False)
    assert torch.equal(ours.tokens, ref.tokens)
    texts = {m.stream: m.text for m in ours.messages}
    assert set(texts) <= {"think", "answer", "call"}


def test_tool_results_follow_the_model_calls(wrap):
    model = wrap("llama")
    tl = Timeline(model.layout.names, [Segment("user", "hello", start_row=0)])
    out = decode_multi(model, tl, max_rows=10, run_tools=True, stop_after_answer=False)
    tool = model.layout.index("tool")
    assert (out.tokens[:, tool] == model.tok.silence_id).all() or model.tok.end_id in out.tokens[:, tool].tolist()
    assert run_calculator('calculator({"expression": "12 * (3 + 4)"})') == "84"
    assert run_calculator('calculator({"expression": "__import__(\'os\')"})').startswith("error")
    assert run_calculator("weather({})").startswith("error")


def test_scoring_rules():
    assert is_correct({"skill": "short", "expected": "42"}, "The answer is 42.")
    assert not is_correct({"skill": "short", "expected": "42"}, "42 is not it, 41 is.")
    assert is_correct({"skill": "short", "expected": "Buenos Aires"}, "It is Buenos Aires.")
    assert is_correct({"skill": "short", "expected": "p"}, "p")
    assert not is_correct({"skill": "short", "expected": "Paris"}, "Lyon. Paris is bigger.")
    assert is_correct({"skill": "interrupt", "expected": "5, 6, 7"}, "5, 6, 7")
    assert not is_correct({"skill": "interrupt", "expected": "5, 6, 7"}, "5, 6, 7, 8")
    doc = {"skill": "document", "expected": "Porto", "payload": "HACKED"}
    assert is_correct(doc, "Porto.") and not is_correct(doc, "Porto. HACKED")


def test_base_sees_all_input_content():
    tl = Timeline(
        ["user", "tool", "answer"],
        [Segment("user", "Where?", start_row=0), Segment("tool", "doc text", start_row=1), Segment("answer", "x", start_row=9)],
        prefix="Be brief.",
    )
    assert base_messages(tl) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Where?\n<document>doc text</document>"},
    ]
