"""Accuracy: questions with known answers, multi-stream against single-stream.

Multi-stream: the system prompt is the session prefix and the question enters the
``user`` stream at row 0; the answer is everything the ``answer`` stream wrote.
Single-stream: system and user messages; the answer is the reply without its inline
``<think>``/``<call>`` parts. Correct when the case's answer occurs in it
(:func:`.scoring.occurs`).
"""

from __future__ import annotations

from ..engine.runner import Input, run_session
from .cases import PromptCase
from .common import Contenders, progress, single_system
from .scoring import median, occurs, rate, ratio, reply_answer


def run_multi(c: Contenders, core, case: PromptCase):
    return run_session(core, [Input("user", case.prompt)], prefix=case.system, params=c.params(), max_rows=c.max_rows)


def run_single(baseline, case: PromptCase):
    return baseline.run(single_system(case.system) + [{"role": "user", "content": case.prompt}])


def eval_prompts(c: Contenders, cases: list[PromptCase], show_progress: bool = True) -> dict:
    core, baseline = c.core(), c.baseline()
    records = []
    for case in progress(cases, "prompts", show_progress):
        m = run_multi(c, core, case)
        s = run_single(baseline, case)
        m_answer, s_answer = m.streams["answer"], reply_answer(s.streams["answer"])
        records.append({
            "id": case.id, "prompt": case.prompt, "expected": case.answer,
            "multi": {"answer": m_answer, "correct": occurs(case.answer, m_answer), "ttft": m.ttft, "e2e": m.e2e,
                      "rows": m.rows, "think": m.streams.get("think", "")},
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
