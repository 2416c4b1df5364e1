"""Stream roles: which stream is the user's, the tool results', the answer, the thinking, the calls.

The engine's tool loop, the evaluations and the servers find streams by role, so a layout with other
names works end to end (here: ``person``, ``docs``, ``scratch``, ``reply``, ``act``).
"""

from __future__ import annotations

import asyncio

import pytest
from engine.test_scheduler import ScriptedModel

from multistream.engine.aio import AsyncEngine
from multistream.engine.core import EngineConfig, EngineCore
from multistream.engine.runner import Input, run_session
from multistream.engine.tools import demo_tools
from multistream.streams import DEFAULT_LAYOUT, Layout, LayoutError, Stream

RENAMED = Layout.parse("sys:input,person:input:trusted:user,docs:input:untrusted:tool,"
                       "scratch:output:trusted:think,reply:output:trusted:answer,act:output:trusted:call")


def test_roles_by_name_and_explicit():
    assert DEFAULT_LAYOUT.roles == {"user": "user", "tool": "tool", "think": "think", "answer": "answer", "call": "call"}
    assert RENAMED.roles == {"user": "person", "tool": "docs", "think": "scratch", "answer": "reply", "call": "act"}
    assert RENAMED.role("answer") == "reply" and RENAMED.prefix_stream == "sys"
    # an explicit role wins over a stream merely named like it
    lay = Layout((Stream("user", "input"), Stream("answer", "output"), Stream("final", "output", role="answer")))
    assert lay.role("answer") == "final" and lay.roles["user"] == "user"
    # a stream named like a role of the other kind does not take it
    assert "answer" not in Layout((Stream("answer", "input"),)).roles


@pytest.mark.parametrize("build, words", [
    (lambda: Stream("a", "input", role="answer"), "needs an output stream"),
    (lambda: Stream("a", "output", role="speech"), "unknown role 'speech'"),
    (lambda: Layout((Stream("a", "output", role="answer"), Stream("b", "output", role="answer"))), "taken by both 'a' and 'b'"),
    (lambda: Layout.parse("user:input").role("answer"), "plays the role 'answer'"),
    (lambda: DEFAULT_LAYOUT.role("speech"), "unknown role"),
])
def test_bad_roles_are_refused_with_what_is_wrong(build, words):
    with pytest.raises(LayoutError, match=words):
        build()


def test_roles_round_trip_and_saved_layouts_without_roles_stay_as_they_were():
    assert all("role" not in d for d in DEFAULT_LAYOUT.to_list())  # the saved models' configs do not change
    assert Layout.from_list(DEFAULT_LAYOUT.to_list()) == DEFAULT_LAYOUT
    assert Layout.from_list(RENAMED.to_list()) == RENAMED and Layout.from_list(RENAMED.to_list()).roles == RENAMED.roles
    assert RENAMED.to_list()[1] == {"name": "person", "kind": "input", "trust": "trusted", "role": "user"}


def test_the_scripted_tool_loop_follows_the_roles():
    model = ScriptedModel({"act": 'calculator({"expression": "6*7"})', "reply": "Forty-two."}, {"act": 2, "reply": 30},
                          layout=RENAMED)
    result = run_session(EngineCore(model, EngineConfig()), [Input("person", "what is 6*7?")], tools=demo_tools())
    call = next(e for e in result.events if e.type == "tool_call")
    res = next(e for e in result.events if e.type == "tool_result")
    assert (call.stream, res.stream, res.text) == ("act", "docs", "42")
    assert "".join(e.text for e in result.events if e.stream == "docs" and e.type == "token") == "42"
    call_end = next(e.row for e in result.events if e.stream == "act" and e.type == "message_end")
    assert next(e.row for e in result.events if e.stream == "docs" and e.type == "token") == call_end + 2
    assert result.streams["reply"] == "Forty-two." and result.ttft is not None  # the answer's first token timed


def test_the_async_tool_loop_follows_the_roles():
    model = ScriptedModel({"act": 'calculator({"expression": "2+3"})'}, {"act": 2}, layout=RENAMED)
    engine = AsyncEngine(EngineCore(model, EngineConfig(idle_rows=None)), demo_tools())
    assert (engine.call_stream, engine.tool_stream) == ("act", "docs")

    async def main():
        async with engine:
            sid = engine.open("s")
            engine.send(sid, "person", "go")
            events = []
            async for ev in engine.events(sid):
                events.append(ev)
                if ev.stream == "docs" and ev.type == "message_end":
                    break
            engine.close(sid)
            return events

    events = asyncio.run(asyncio.wait_for(main(), 20))
    assert next(e for e in events if e.type == "tool_result").stream == "docs"
    assert "".join(e.text for e in events if e.stream == "docs" and e.type == "token") == "5"


@pytest.mark.parametrize("spec", ["user:input,answer:output", "user:input,answer:output,call:output",
                                  "user:input,doc:input:untrusted,reply:output"])
def test_a_layout_without_tool_streams_runs_no_tools(spec):
    lay = Layout.parse(spec)
    out = lay.outputs[0].name
    model = ScriptedModel({out: 'calculator({"expression": "2+3"})'}, {out: 2}, layout=lay)
    engine = AsyncEngine(EngineCore(model, EngineConfig(idle_rows=None)), demo_tools())
    assert engine.call_stream is None and engine.tool_stream is None
    result = run_session(EngineCore(model, EngineConfig()), [Input("user", "go")], tools=demo_tools(), max_rows=40)
    assert not any(e.type in ("tool_call", "tool_result") for e in result.events)
    assert result.streams[out] == 'calculator({"expression": "2+3"})'


def test_an_evaluation_reads_the_answer_role():
    from types import SimpleNamespace

    from multistream.evals.common import run_multi

    model = ScriptedModel({"scratch": "hmm", "reply": "Paris."}, {"scratch": 2, "reply": 6}, layout=RENAMED)
    c = SimpleNamespace(max_tokens=32, max_rows=60, params=lambda budget: {})
    run = run_multi(c, EngineCore(model, EngineConfig()), [Input("person", "capital of France?")])
    assert run.final == "Paris." and run.said("answer") == "Paris." and run.said("think") == "hmm"
    assert run.said("call") == "" and run.ttft is not None and run.e2e is not None


def test_layouts_with_roles_pickle():  # (they cross process boundaries: data loaders, tool workers)
    import pickle

    for lay in (DEFAULT_LAYOUT, RENAMED):
        back = pickle.loads(pickle.dumps(lay))
        assert back == lay and back.roles == lay.roles
