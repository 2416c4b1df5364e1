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
twin's rendering of tool results) and replies again, within what is left of its budget
(:func:`.twin.tool_loop`, the one single-stream tool loop). Its time to first token is the
first answer token's (inline thinking is not answer); its end-to-end time the sum of the
replies'.

With a ``base`` model (:func:`eval_base_prompts`, ``eval prompts --base``) the untrained base model answers each
case too, as a plain chat model without tools, within the same budget: what the base already knows in these words,
the ceiling that fine-tuning on other items can at best keep for the questions that need no calculator.
"""

from __future__ import annotations

from ..engine.runner import Input, RunResult
from .cases import PromptCase
from .common import Contenders, MultiRun, progress, run_multi, single_system
from .scoring import correct_any, final_reply_answer, median, rate_ci, ratio, reply_answer
from .twin import tool_loop


def run_multi_case(c: Contenders, core, case: PromptCase, tools=None) -> MultiRun:
    return run_multi(c, core, [Input(core.layout.role("user"), case.prompt, bulk=True)], prefix=case.system, tools=tools)


def run_single(baseline, case: PromptCase, tools=None, budget: int | None = None,
               arrive_at: float | None = None) -> RunResult:
    """The baseline's reply; with ``tools``, its calls are answered in new turns and the replies joined
    (:func:`.twin.tool_loop`).

    ``budget``: the tokens of all replies together (default: the baseline's ``max_new_tokens``);
    ``arrive_at``: seconds after the start at which the question is complete (it cannot start before).
    """
    messages = single_system(case.system) + [{"role": "user", "content": case.prompt}]
    return tool_loop(baseline, messages, tools, budget, arrive_at)[0]


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


def case_group(case_id: str) -> str:
    """The kind of a case, from its id: ``free-word-12`` -> ``free-word``."""
    return case_id.rsplit("-", 1)[0] if "-" in case_id else case_id


def eval_base_prompts(base, cases: list[PromptCase], budget: int, show_progress: bool = True) -> dict:
    """The untrained base model (a ``Twin`` over it) on ``cases``, no tools.

    ``accuracy`` scores its final line as the twin's is scored; an untrained model is wordy and its last line is
    often a sentence cut by the budget, so ``first_sentence`` also scores the reply's first sentence (as
    :mod:`multistream.data.retention` decides what the base knows): the kinder of the two is the ceiling. Both
    also per case group (:func:`case_group`)."""
    from ..data.retention import first_sentence

    records = []
    for case in progress(cases, "prompts: base", show_progress):
        reply = run_single(base, case, None, budget=budget).streams["answer"]
        final, first = final_reply_answer(reply), first_sentence(reply_answer(reply))
        records.append({"id": case.id, "final": final, "first_sentence": first, "reply": reply,
                        "correct": correct_any(case.answers, final, case.prompt),
                        "first_correct": correct_any(case.answers, first, case.prompt)})
    groups = {}
    for g in dict.fromkeys(case_group(r["id"]) for r in records):
        rs = [r for r in records if case_group(r["id"]) == g]
        groups[g] = {"n": len(rs), "correct": sum(r["correct"] for r in rs),
                     "first_correct": sum(r["first_correct"] for r in rs)}
    return {**rate_ci("accuracy", [r["correct"] for r in records]),
            **rate_ci("first_sentence", [r["first_correct"] for r in records]),
            "n": len(records), "groups": groups, "cases": records}


def summarise(records: list[dict]) -> dict:
    side = {}
    for name in ("multi", "single"):
        rs = [r[name] for r in records]
        side[name] = {**rate_ci("accuracy", [r["correct"] for r in rs]), "n": len(rs),
                      "ttft_median": median([r["ttft"] for r in rs]), "e2e_median": median([r["e2e"] for r in rs])}
    return {**side, "accuracy_ratio": ratio(side["multi"]["accuracy"], side["single"]["accuracy"]), "cases": records}
