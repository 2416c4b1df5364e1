"""Latency on the accuracy cases, like for like, with accuracy beside every figure.

Both contenders answer every case, in two modes: the question all at once, and arriving
at ``rate`` tokens/s on the same clock (its last token is available at the same instant
for both, :func:`.twin.last_token_at`: the engine reads token ``i`` at ``i / rate``, the
twin starts when the last one is there). Before the timed runs each contender answers
one case untimed (warm-up), and the order alternates case by case (multi first on even
cases, the twin first on odd ones), because the machines are shared and noisy.

- ``ttft``: seconds to the first token of the *answer* (the multi-stream ``answer``
  stream; the twin's first token outside ``<think>``/``<call>``);
- ``e2e``: seconds until the final answer is complete (the end of the answer stream's
  last message, not of a first "One moment..."; the twin's reply complete).

Medians are taken over *all* cases for both (a case never answered counts as slower than
any answered one, so the median is None when most are missing) and over the cases both
answered correctly (latency at matched accuracy), each with the accuracy and the number
of cases it stands on.
"""

from __future__ import annotations

import math
import statistics

from ..defaults import ARRIVAL_RATE
from ..engine.runner import Input
from .cases import PromptCase
from .common import Contenders, progress, run_multi
from .prompts import run_single
from .scoring import correct_any, final_reply_answer, rate_ci, ratio
from .twin import last_token_at

MEASURES = ("ttft", "e2e")


def run_case(c: Contenders, core, baseline, case: PromptCase, rate: float | None, single_first: bool,
             tools=None) -> dict:
    """Both contenders on one case, in the given order, with the same tools; their answers scored."""
    arrive_at = last_token_at(len(core.tok.encode_message(case.prompt)), rate)
    out: dict = {}

    def multi() -> None:
        # all at once, the question is read in bulk, like the twin's prompt; at a rate, row by row as it arrives
        m = run_multi(c, core, [Input(core.layout.role("user"), case.prompt, rate=rate, bulk=rate is None)],
                      prefix=case.system, tools=tools)
        out["multi"] = {"ttft": m.ttft, "e2e": m.e2e, "answer": m.final,
                        "correct": correct_any(case.answers, m.final, case.prompt), "tokens": m.clock.spent}

    def single() -> None:
        s = run_single(baseline, case, tools, budget=c.max_tokens, arrive_at=arrive_at)
        final = final_reply_answer(s.streams["answer"])
        out["single"] = {"ttft": s.ttft, "e2e": s.e2e, "answer": final, "reply": s.streams["answer"],
                         "correct": correct_any(case.answers, final, case.prompt), "tokens": s.steps}

    for run in ((single, multi) if single_first else (multi, single)):
        run()
    return {"id": case.id, "expected": case.answer, "input_done_at": arrive_at, "order": "single first" if single_first
            else "multi first", **out}


def eval_latency(c: Contenders, cases: list[PromptCase], rate_tok_s: float = ARRIVAL_RATE, show_progress: bool = True,
                 warmup: bool = True, tools=None) -> dict:
    """Both contenders on every case in both modes; ``tools`` (a ``ToolRegistry``, None: none) serves both alike,
    as in the accuracy run: an arithmetic question is answered through the calculator, its round trip timed."""
    core, baseline = c.core(), c.baseline()
    if warmup and cases:
        run_case(c, core, baseline, cases[0], None, False, tools)
    modes: dict[str, list[dict]] = {"all_at_once": [], f"rate_{rate_tok_s:g}": []}
    for i, case in enumerate(progress(cases, "latency", show_progress)):
        for mode, r in zip(modes, (None, rate_tok_s), strict=True):
            modes[mode].append(run_case(c, core, baseline, case, r, single_first=i % 2 == 1, tools=tools))
    out = {mode: summarise(recs) for mode, recs in modes.items()}
    first = out["all_at_once"]
    return {"ttft_ratio": first["ttft_ratio"], "e2e_ratio": first["e2e_ratio"], "rate": rate_tok_s, "n": len(cases),
            "warmup": warmup, "tools": sorted(tools.tools) if tools is not None else [], "modes": out}


def median_all(values: list[float | None]) -> float | None:
    """The median over all cases, a missing value counting as slower than any other (None if the median is missing)."""
    if not values:
        return None
    m = statistics.median([math.inf if v is None else v for v in values])
    return None if math.isinf(m) else round(m, 4)


def summarise(records: list[dict]) -> dict:
    """Medians over all cases and over the cases both answered correctly, accuracy beside them."""
    both = [r for r in records if r["multi"]["correct"] and r["single"]["correct"]]
    out: dict = {"n": len(records), "n_both_correct": len(both)}
    for side in ("multi", "single"):
        out[side] = {**rate_ci("accuracy", [r[side]["correct"] for r in records]),
                     "answered": sum(r[side]["ttft"] is not None for r in records)}
        for m in MEASURES:
            out[side][f"{m}_median"] = median_all([r[side][m] for r in records])
            out[side][f"{m}_median_both_correct"] = median_all([r[side][m] for r in both])
    for m in MEASURES:
        out[f"{m}_ratio"] = ratio(out["multi"][f"{m}_median"], out["single"][f"{m}_median"])
        out[f"{m}_ratio_both_correct"] = ratio(out["multi"][f"{m}_median_both_correct"],
                                               out["single"][f"{m}_median_both_correct"])
    out["accuracy_ratio"] = ratio(out["multi"]["accuracy"], out["single"]["accuracy"])
    out["cases"] = records
    return out
