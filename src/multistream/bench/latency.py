"""``multistream bench latency``: the evaluation's latency benchmark (``multistream eval latency``: the same arrival
clock, warm-up, alternating order) on the first ``--limit`` built-in accuracy cases, the input all at once and at
``--rate`` tokens/s."""

from __future__ import annotations

from ..defaults import ARRIVAL_RATE, EVAL_MAX_TOKENS


def bench_latency(model, single, rate: float = ARRIVAL_RATE, limit: int = 12, max_tokens: int = EVAL_MAX_TOKENS,
                  tools=None) -> dict:
    """The evaluation's latency benchmark (:mod:`multistream.evals.latency`: the same arrival clock for both, a
    warm-up, alternating order, TTFT of the answer, e2e of the final answer) on the first ``limit`` built-in
    accuracy cases (``tools`` serving both, as in the report), so the bench and the report measure one way."""
    from ..evals.cases import load_cases
    from ..evals.common import Contenders
    from ..evals.latency import eval_latency

    cases, _ = load_cases(None, "prompts", limit)
    r = eval_latency(Contenders(model, single, max_tokens=max_tokens), cases, rate, show_progress=False, tools=tools)
    r["modes"] = {m: {k: v for k, v in d.items() if k != "cases"} for m, d in r["modes"].items()}
    return r
