"""Latency on the task suite: the engine's latency benchmark on the accuracy cases.

:func:`multistream.bench.bench_latency` runs both contenders on the cases' prompts, with
the input all at once and arriving at ``rate`` tokens/s, one case at a time; the answers
of that same run are scored against the cases, so latency and accuracy come side by side
from one run. Medians and ratios are taken as ``bench_latency`` takes them (multi-stream
medians over the cases it answered). The benchmark's own system prompt is used.
"""

from __future__ import annotations

from ..bench import bench_latency
from .cases import PromptCase
from .common import Contenders, progress
from .scoring import median, occurs, rate, ratio, reply_answer


def eval_latency(c: Contenders, cases: list[PromptCase], rate_tok_s: float = 10.0, show_progress: bool = True) -> dict:
    """``bench_latency`` case by case (for the progress bar), merged into one result with accuracy per mode."""
    modes: dict[str, list[dict]] = {}
    for case in progress(cases, "latency", show_progress):
        one = bench_latency(c.multi, c.single, prompts=[case.prompt], rate=rate_tok_s, max_tokens=c.max_tokens)
        for mode, d in one["modes"].items():
            rec = d["cases"][0]
            rec["id"], rec["expected"] = case.id, case.answer
            rec["multi"]["correct"] = occurs(case.answer, rec["multi"]["answer"])
            rec["single"]["correct"] = occurs(case.answer, reply_answer(rec["single"]["answer"]))
            modes.setdefault(mode, []).append(rec)
    out = {mode: summarise(recs) for mode, recs in modes.items()}
    first = next(iter(out.values()))
    return {"ttft_ratio": first["ttft_ratio"], "e2e_ratio": first["e2e_ratio"], "rate": rate_tok_s, "n": len(cases),
            "modes": out}


def summarise(records: list[dict]) -> dict:
    """The fields of a ``bench_latency`` mode (medians over the answered cases, their ratios) plus accuracy."""
    answered = [r for r in records if r["multi"]["ttft"] is not None]
    med = {
        "multi_ttft": median([r["multi"]["ttft"] for r in answered]),
        "multi_e2e": median([r["multi"]["e2e"] if r["multi"]["e2e"] is not None else r["multi"]["ttft"] for r in answered]),
        "single_ttft": median([r["single"]["ttft"] for r in records]),
        "single_e2e": median([r["single"]["e2e"] for r in records]),
    }
    accuracy = {side: rate([r[side]["correct"] for r in records]) for side in ("multi", "single")}
    accuracy["ratio"] = ratio(accuracy["multi"], accuracy["single"])
    return {**med, "ttft_ratio": ratio(med["multi_ttft"], med["single_ttft"]),
            "e2e_ratio": ratio(med["multi_e2e"], med["single_e2e"]), "answered": f"{len(answered)}/{len(records)}",
            "accuracy": accuracy, "cases": records}
