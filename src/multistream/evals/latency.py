"""Latency on the task suite: the engine's latency benchmark on the accuracy cases.

:func:`multistream.bench.bench_latency` runs both contenders on the cases' prompts, with
the input all at once and arriving at ``rate`` tokens/s; the answers of that same run are
scored against the cases, so latency and accuracy come side by side from one run.
"""

from __future__ import annotations

from ..bench import bench_latency
from .cases import PromptCase
from .common import Contenders
from .scoring import occurs, rate, ratio, reply_answer


def eval_latency(c: Contenders, cases: list[PromptCase], rate_tok_s: float = 10.0, show_progress: bool = True) -> dict:
    prompts = [case.prompt for case in cases]
    if show_progress:
        import sys

        print(f"latency: {len(prompts)} prompt(s) x 2 modes x 2 models ...", file=sys.stderr, flush=True)
    result = bench_latency(c.multi, c.single, prompts=prompts, rate=rate_tok_s, max_tokens=c.max_tokens)
    for mode in result["modes"].values():
        for case, rec in zip(cases, mode["cases"]):
            rec["id"], rec["expected"] = case.id, case.answer
            rec["multi"]["correct"] = occurs(case.answer, rec["multi"]["answer"])
            rec["single"]["correct"] = occurs(case.answer, reply_answer(rec["single"]["answer"]))
        mode["accuracy"] = {side: rate([r[side]["correct"] for r in mode["cases"]]) for side in ("multi", "single")}
        mode["accuracy"]["ratio"] = ratio(mode["accuracy"]["multi"], mode["accuracy"]["single"])
    result["n"] = len(prompts)
    return result
