"""Accuracy: questions with known answers, multi-stream against single-stream.

Multi-stream: the system prompt is the session prefix and the question enters the
``user`` stream at row 0; the final answer is the last message of the ``answer`` stream.
Single-stream: system and user messages; the final answer is the last line of its last
reply outside the inline ``<think>``/``<call>`` parts. Correct when the final answer
claims the case's answer or one it accepts (:func:`.scoring.correct_any`, strict: a list of
candidates claims nothing). Both get the same total token budget (:class:`.common.Contenders`).

Both may use the tools they were trained with (by default the calculator and clock of
:func:`multistream.engine.tools.demo_tools`): the engine runs the multi-stream model's
calls and streams the results into its ``tool`` stream; a single-stream reply that ends
with ``<call>...</call>`` gets the result as a new user turn ``<tool>...</tool>`` (the
twin's rendering of tool results) and replies again, up to ``max_tool_rounds`` times,
within what is left of its budget. Its time to first token is the first answer token's
(inline thinking is not answer); its end-to-end time the sum of the replies'.
"""

from __future__ import annotations

import time

from ..data.twin import reply_calls, tool_turn
from ..engine.runner import Input, RunResult
from .cases import PromptCase
from .common import Contenders, MultiRun, progress, run_multi, run_tool, single_system
from .scoring import correct_any, final_reply_answer, median, rate_ci, ratio, reply_answer


def run_multi_case(c: Contenders, core, case: PromptCase, tools=None) -> MultiRun:
    return run_multi(c, core, [Input(core.layout.role("user"), case.prompt, bulk=True)], prefix=case.system, tools=tools)


def run_single(baseline, case: PromptCase, tools=None, max_tool_rounds: int = 2, budget: int | None = None,
               arrive_at: float | None = None) -> RunResult:
    """The baseline's reply; with ``tools``, its calls are answered in new turns and the replies joined.

    ``budget``: the tokens of all replies together (default: the baseline's ``max_new_tokens``);
    ``arrive_at``: seconds after the start at which the question is complete (it cannot start before).
    """
    messages = single_system(case.system) + [{"role": "user", "content": case.prompt}]
    return tool_loop(baseline, messages, tools, max_tool_rounds, budget, arrive_at)[0]


def tool_loop(baseline, messages: list[dict], tools=None, max_tool_rounds: int = 2, budget: int | None = None,
              arrive_at: float | None = None) -> tuple[RunResult, list[dict]]:
    """The twin's reply to a chat (``messages``, ending with the input to answer), its tool calls answered in new
    turns ``<tool>...</tool>`` and replied to again, up to ``max_tool_rounds`` times, all within ``budget`` tokens.

    Returns the replies joined (``streams["answer"]``, one reply a line; ``steps``: the tokens written; ``e2e``: the
    replies and the tools' round trips) and the messages the exchange added to the chat: each reply as an
    ``assistant`` turn and each tool result as a ``user`` turn, in order (a chat of several turns goes on from
    ``messages`` plus these)."""
    budget = budget or getattr(baseline, "max_new_tokens", None)
    first = last = baseline.run(messages, max_new_tokens=budget, **({} if arrive_at is None else {"arrive_at": arrive_at}))
    replies, e2e, spent = [first.streams["answer"]], first.e2e, first.steps
    added = [{"role": "assistant", "content": first.streams["answer"]}]
    ttft = first.ttft
    for _ in range(max_tool_rounds if tools is not None else 0):
        calls = reply_calls(last.streams["answer"])
        if not calls or (budget is not None and spent >= budget):
            break
        started = time.perf_counter()
        result = run_tool(tools, calls[-1].strip())
        e2e += time.perf_counter() - started  # the tool's round trip counts, as it does for the engine
        added.append(tool_turn(result))
        last = baseline.run(messages + added, max_new_tokens=None if budget is None else budget - spent)
        if ttft is None and last.ttft is not None:
            ttft = e2e + last.ttft
        replies.append(last.streams["answer"])
        added.append({"role": "assistant", "content": last.streams["answer"]})
        e2e += last.e2e
        spent += last.steps
    return RunResult({"answer": "\n".join(replies)}, 0, {}, [], ttft, e2e, first.input_done, spent), added


def eval_prompts(c: Contenders, cases: list[PromptCase], show_progress: bool = True, tools=None) -> dict:
    """Accuracy of both contenders; ``tools`` (a ``ToolRegistry``, None: no tools) serves both alike."""
    core, baseline = c.core(), c.baseline()
    records = []
    for case in progress(cases, "prompts", show_progress):
        m = run_multi_case(c, core, case, tools)
        s = run_single(baseline, case, tools, budget=c.max_tokens)
        s_reply = s.streams["answer"]
        s_final = final_reply_answer(s_reply)
        records.append({
            "id": case.id, "prompt": case.prompt, "expected": case.answer,
            "multi": {"answer": m.said("answer"), "final": m.final,
                      "correct": correct_any(case.answers, m.final, case.prompt), "ttft": m.ttft, "e2e": m.e2e,
                      "rows": m.result.rows, "tokens": m.clock.spent, "think": m.said("think"),
                      "call": m.said("call")},
            "single": {"answer": reply_answer(s_reply), "final": s_final, "reply": s_reply,
                       "correct": correct_any(case.answers, s_final, case.prompt), "ttft": s.ttft, "e2e": s.e2e,
                       "tokens": s.steps},
        })
    return summarise(records)


def summarise(records: list[dict]) -> dict:
    side = {}
    for name in ("multi", "single"):
        rs = [r[name] for r in records]
        side[name] = {**rate_ci("accuracy", [r["correct"] for r in rs]), "n": len(rs),
                      "ttft_median": median([r["ttft"] for r in rs]), "e2e_median": median([r["e2e"] for r in rs])}
    return {**side, "accuracy_ratio": ratio(side["multi"]["accuracy"], side["single"]["accuracy"]), "cases": records}
