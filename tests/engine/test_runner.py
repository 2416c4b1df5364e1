import argparse
import json
import subprocess
import sys

import pytest
import torch
from conftest import make_base, make_tokenizer

from multistream.engine.baseline import SingleStreamBaseline
from multistream.engine.cli import parse_input
from multistream.engine.core import EngineConfig, EngineCore
from multistream.engine.runner import Input, run_session
from multistream.engine.tools import demo_tools

from .test_scheduler import ScriptedModel


def test_run_session_collects_streams_rows_and_timings():
    model = ScriptedModel({"answer": "hello world", "think": "hmm"}, {"answer": 4, "think": 2})
    result = run_session(EngineCore(model, EngineConfig()), [Input("user", "hi")])
    assert result.streams == {"think": "hmm", "answer": "hello world", "call": ""}
    assert result.first_output_row == {"think": 2, "answer": 4}
    assert 0 <= result.ttft <= result.e2e
    assert result.rows < 20  # it stopped soon after the answer ended
    d = result.to_dict()
    assert d["events"][0]["session"] and json.dumps(d)


def test_inputs_enter_at_their_rows_and_at_a_rate():
    model = ScriptedModel({}, {})
    result = run_session(EngineCore(model, EngineConfig(idle_rows=None)),
                         [Input("user", "hi"), Input("tool", "doc", row=5)], max_rows=30)
    tool_rows = [e.row for e in result.events if e.stream == "tool"]
    assert tool_rows[0] == 5
    # 20 tokens/s: a token every 50 ms, far longer than a step of the scripted model even on a loaded machine
    n = len(model.tok.encode_message("hi there"))
    for wait in (0.0, 5.0):
        slow = run_session(EngineCore(model, EngineConfig(idle_rows=None, max_rows=5000, input_wait=wait)),
                           [Input("user", "hi there", rate=20)], max_rows=5000)
        user_rows = [e.row for e in slow.events if e.stream == "user" and e.type == "token"]
        assert len(user_rows) == n - 1 and slow.input_done >= (n - 1) / 20  # all of it arrived, no faster than the rate
        if wait:  # the silent model waited for each next token: the message lies on consecutive rows, as in training
            assert user_rows == list(range(user_rows[0], user_rows[0] + n - 1))
        else:  # rows ran on without it: silence rows in between, the text trickled in
            assert user_rows[-1] - user_rows[0] > len(user_rows)


def test_a_silent_session_waits_for_the_rest_of_a_message_but_not_for_ever():
    model = ScriptedModel({}, {})
    # 4 tokens/s (a token every 250 ms) against a 20 ms wait: rows run on between the tokens
    result = run_session(EngineCore(model, EngineConfig(idle_rows=None, max_rows=5000, input_wait=0.02)),
                         [Input("user", "hi there", rate=4)], max_rows=5000)
    user_rows = [e.row for e in result.events if e.stream == "user" and e.type == "token"]
    assert user_rows[-1] - user_rows[0] > len(user_rows)
    assert result.steps < 20 * len(user_rows)  # but it waited, not one row per millisecond


def test_a_speaking_session_does_not_wait_for_input():
    model = ScriptedModel({"answer": " ".join(["word"] * 600)}, {"answer": 1})
    result = run_session(EngineCore(model, EngineConfig(idle_rows=None, max_rows=5000, input_wait=5.0)),
                         [Input("user", "hi there, how are you", rate=100)], max_rows=5000)
    answer_rows = {e.row for e in result.events if e.stream == "answer" and e.type == "token"}
    user_rows = [e.row for e in result.events if e.stream == "user" and e.type == "token" and e.row in answer_rows]
    # while the answer speaks, rows run at the engine's pace: the user's tokens arrive rows apart
    assert len(user_rows) >= 2 and user_rows[-1] - user_rows[0] > len(user_rows)


def test_a_session_scripted_by_rows_never_waits(monkeypatch):
    core = EngineCore(ScriptedModel({}, {}), EngineConfig(idle_rows=None, input_wait=5.0))
    opened = []
    open_ = core.open
    monkeypatch.setattr(core, "open", lambda *a, **k: opened.append(k.get("input_wait")) or open_(*a, **k))
    run_session(core, [Input("user", "hi"), Input("tool", "a spread document", row=2, spread=2.0)], max_rows=60)
    run_session(core, [Input("user", "hi", rate=50)], max_rows=60)
    assert opened == [0.0, None]  # (None: the engine's own input_wait)


@pytest.mark.parametrize("spread", [1.0, 1.5, 2.5, 3.0])
def test_a_spread_input_enters_token_by_token_at_its_rows(spread):
    from multistream.timeline import token_rows

    model = ScriptedModel({}, {})
    result = run_session(EngineCore(model, EngineConfig(idle_rows=None)),
                         [Input("user", "hi"), Input("tool", "hello world, the doc", row=4, spread=spread)], max_rows=80)
    tool = [e for e in result.events if e.stream == "tool" and e.type in ("token", "message_end")]
    n = len(model.tok.encode_message("hello world, the doc"))
    assert [e.row for e in tool] == [4 + r for r in token_rows(n, spread)]  # as a spread timeline segment places them
    assert "".join(e.text for e in tool if e.type == "token") == "hello world, the doc"
    with pytest.raises(ValueError, match="spread"):
        Input("tool", "x", spread=0.5)
    with pytest.raises(ValueError, match="not both"):
        Input("tool", "x", rate=5.0, spread=2.0)


def test_tool_calls_run_and_their_result_enters_the_tool_stream():
    model = ScriptedModel({"call": 'calculator({"expression": "6*7"})'}, {"call": 2})
    result = run_session(EngineCore(model, EngineConfig()), [Input("user", "what is 6*7?")], tools=demo_tools())
    assert [e.text for e in result.events if e.type == "tool_result"] == ["42"]
    assert "".join(e.text for e in result.events if e.stream == "tool" and e.type == "token") == "42"
    call_end = next(e.row for e in result.events if e.stream == "call" and e.type == "message_end")
    first_tool = next(e.row for e in result.events if e.stream == "tool" and e.type == "token")
    assert first_tool == call_end + 2  # as the training data places tool results


def test_parse_input():
    i = parse_input("user=What is 2+3?@4")
    assert (i.stream, i.text, i.row) == ("user", "What is 2+3?", 4)
    assert parse_input("tool=a=b").text == "a=b" and parse_input("tool=a=b").row is None
    with pytest.raises(argparse.ArgumentTypeError):
        parse_input("no equals sign")


def test_single_stream_baseline_times_a_reply():
    tok = make_tokenizer()
    base = make_base("llama", len(tok))
    result = SingleStreamBaseline(base, tok, max_new_tokens=5).run([{"role": "user", "content": "hello"}])
    assert result.steps == 5 and 0 < result.ttft <= result.e2e
    with torch.no_grad():
        ids = tok.apply_chat_template([{"role": "user", "content": "hello"}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)["input_ids"]
        greedy = base.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=tok.eos_token_id)
    assert result.streams["answer"] == tok.decode(greedy[0, ids.shape[1]:], skip_special_tokens=True).strip()


@pytest.mark.slow
def test_generate_command_on_the_default_model():
    cmd = [sys.executable, "-m", "multistream.cli", "generate", "--model", "default", "--input", "user=What is 2+3?",
           "--max-rows", "40", "--json"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "multistream: compiled in" in res.stderr, "the compiled row forward is the default"
    out = json.loads(res.stdout)
    assert set(out) == {"streams", "rows", "first_output_row", "events"}
    assert set(out["streams"]) == {"think", "answer", "call"} and 0 < out["rows"] <= 40
    assert any(e["stream"] == "user" for e in out["events"])


def test_generate_prints_each_stream_with_where_it_started_or_that_it_stayed_silent(capsys):
    import re

    from multistream.cli import main

    assert main(["generate", "--model", "tiny", "--input", "user=hi", "--max-rows", "8", "--no-compile"]) == 0
    headers = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert [h.split("]")[0][1:] for h in headers] == ["think", "answer", "call"]
    assert all(re.fullmatch(r"\[\w+\] \((from row \d+|silent)\)", h) for h in headers), headers


def test_input_wait_is_checked():
    with pytest.raises(ValueError, match="input_wait"):
        EngineConfig(input_wait=-1.0)
    core = EngineCore(ScriptedModel({}, {}), EngineConfig())
    with pytest.raises(ValueError, match="input_wait"):
        core.open("s", input_wait="soon")


def test_next_wake_is_zero_once_a_wait_has_ended():
    """A driver that found no work and then asks how long to sleep must not sleep past a wait that just ended."""
    core = EngineCore(ScriptedModel({}, {}), EngineConfig(idle_rows=None, input_wait=5.0))
    sid = core.open()
    core.send(sid, "user", "hi there", end=False)  # part of a message: the rest has not come
    for _ in range(50):
        core.step()
    sess = core.sessions[sid]
    assert not core.has_work() and 4.0 < core.next_wake() <= 5.0  # silent, waiting for the rest
    sess.fed_at -= 10.0  # the wait ran out
    assert core.has_work() and core.next_wake() == 0.0
