"""Accuracy: questions with known answers, multi-stream against single-stream.

Multi-stream: the system prompt is the session prefix and the question enters the
``user`` stream at row 0; the answer is everything the ``answer`` stream wrote.
Single-stream: system and user messages; the answer is the reply without its inline
``<think>``/``<call>`` parts. Correct when the case's answer occurs in it
(:func:`.scoring.occurs`).

Both may use the tools they were trained with (by default the calculator and clock of
:func:`multistream.engine.tools.demo_tools`): the engine runs the multi-stream model's
calls and streams the results into its ``tool`` stream; a single-stream reply that ends
with ``<call>...</call>`` gets the result as a new user turn ``<tool>...</tool>`` (the
twin's rendering of tool results) and replies again, up to ``max_tool_rounds`` times.
Its time to first token is the first reply's; its end-to-end time the sum of the replies'.
"""

from __future__ import annotations

from ..data.twin import reply_calls, tool_turn
from ..engine.runner import Input, RunResult, run_session
from .cases import PromptCase
from .common import Contenders, progress, run_tool, single_system
from .scoring import median, occurs, rate, ratio, reply_answer


def run_multi(c: Contenders, core, case: PromptCase, tools=None) -> RunResult:
    return run_session(core, [Input("user", case.prompt)], prefix=case.system, params=c.params(), max_rows=c.max_rows,
                       tools=tools)


def run_single(baseline, case: PromptCase, tools=None, max_tool_rounds: int = 2) -> RunResult:
    """The baseline's reply; with ``tools``, its calls are answered in new turns and the replies joined."""
    messages = single_system(case.system) + [{"role": "user", "content": case.prompt}]
    first = last = baseline.run(messages)
    replies, e2e = [first.streams["answer"]], first.e2e
    for _ in range(max_tool_rounds if tools is not None else 0):
        calls = reply_calls(last.streams["answer"])
        if not calls:
            break
        result = run_tool(tools, calls[-1].strip())
        messages = messages + [{"role": "assistant", "content": last.streams["answer"]}, tool_turn(result)]
        last = baseline.run(messages)
        replies.append(last.streams["answer"])
        e2e += last.e2e
    return RunResult({"answer": "\n".join(replies)}, 0, {}, [], first.ttft, e2e, first.input_done, first.steps)


def eval_prompts(c: Contenders, cases: list[PromptCase], show_progress: bool = True, tools=None) -> dict:
    """Accuracy of both contenders; ``tools`` (a ``ToolRegistry``, None: no tools) serves both alike."""
    core, baseline = c.core(), c.baseline()
    records = []
    for case in progress(cases, "prompts", show_progress):
        m = run_multi(c, core, case, tools)
        s = run_single(baseline, case, tools)
        m_answer, s_answer = m.streams["answer"], reply_answer(s.streams["answer"])
        records.append({
            "id": case.id, "prompt": case.prompt, "expected": case.answer,
            "multi": {"answer": m_answer, "correct": occurs(case.answer, m_answer), "ttft": m.ttft, "e2e": m.e2e,
                      "rows": m.rows, "think": m.streams.get("think", ""), "call": m.streams.get("call", "")},
            "single": {"answer": s_answer, "reply": s.streams["answer"], "correct": occurs(case.answer, s_answer),
                       "ttft": s.ttft, "e2e": s.e2e},
        })
    return summarise(records)


def summarise(records: list[dict]) -> dict:
    side = {}
    for name in ("multi", "single"):
        rs = [r[name] for r in records]
        side[name] = {"accuracy": rate([r["correct"] for r in rs]), "n": len(rs),
                      "ttft_median": median([r["ttft"] for r in rs]), "e2e_median": median([r["e2e"] for r in rs])}
    return {**side, "accuracy_ratio": ratio(side["multi"]["accuracy"], side["single"]["accuracy"]), "cases": records}
