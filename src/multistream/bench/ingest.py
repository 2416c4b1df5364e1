"""``multistream bench ingest``: a long document read step by step, in bulk and speculatively, against the bare
model's prefill of the same tokens."""

from __future__ import annotations

import statistics
import time

import torch

from .common import DOC, SYSTEM, timed


@torch.no_grad()
def bench_ingest(model, doc_tokens: int = 1000, step_rows: int = 48, chunk: int = 128) -> dict:
    from ..engine.build import build_engine
    from ..engine.core import EngineConfig
    from ..model import unwrap_base

    tok = model.tok
    doc = tok.encode_text(DOC * (doc_tokens // 30 + 2))[: doc_tokens - 1]
    base = unwrap_base(model.base)

    ids = torch.tensor([doc + [tok.end_id]])
    prefills = [timed(lambda: base(input_ids=ids))]

    def read(config: EngineConfig, bulk: bool, limit: int | None = None) -> tuple[float, int, int]:
        core = build_engine(model, config, warm=False)  # each way of reading is measured on a fresh engine
        sid = core.open("doc", prefix=SYSTEM)
        core.send(sid, model.layout.role("user"), "Read this document.")
        core.step()
        core.send_tokens(sid, model.layout.role("tool"), doc + [tok.end_id], bulk=bulk)
        doc_input = core.sessions[sid].inputs[model.layout.index(model.layout.role("tool"))]
        t = time.perf_counter()
        start_row = core.sessions[sid].row
        steps = 0
        while True:  # the document is queued by the first step
            core.step()
            steps += 1
            if not doc_input.queue:
                break
            if limit and core.sessions[sid].row - start_row >= limit:
                break
        return time.perf_counter() - t, core.sessions[sid].row - start_row, steps

    step_t, step_rows_done, _ = read(EngineConfig(idle_rows=None), bulk=False, limit=step_rows)
    prefills.append(timed(lambda: base(input_ids=ids)))
    bulk_t, bulk_rows, bulk_steps = read(EngineConfig(idle_rows=None, bulk_chunk=chunk), bulk=True)
    prefills.append(timed(lambda: base(input_ids=ids)))
    spec_t, spec_rows, spec_steps = read(EngineConfig(idle_rows=None, speculative=chunk), bulk=False)
    n = len(doc) + 1
    c = len(model.layout)
    # tokens one document row costs: under the invisible rule input silences are not fed, and bulk reading
    # needs no output queries but the last row's; speculative reading needs every row's output queries
    bulk_cost = 1 if model.silence == "invisible" else c
    spec_cost = 1 + len(model.layout.outputs) if model.silence == "invisible" else c
    rate = lambda rows, t: rows / t  # noqa: E731  document tokens (one per row) per second
    prefill_rate = n / statistics.median(prefills)
    return {
        "doc_tokens": n,
        "streams": c,
        "note": f"silence {model.silence}: a document row costs {bulk_cost} token(s) in bulk reading, {spec_cost} "
        f"speculatively; reading can reach at most 1/{bulk_cost} and 1/{spec_cost} of prefill speed",
        "prefill_tok_s": round(prefill_rate, 1),
        "step_tok_s": round(rate(step_rows_done, step_t), 1),
        "step_measured_rows": step_rows_done,
        "bulk_tok_s": round(rate(bulk_rows, bulk_t), 1),
        "bulk_forwards": bulk_steps,
        "speculative_tok_s": round(rate(spec_rows, spec_t), 1),
        "speculative_forwards": spec_steps,
        "step_vs_prefill": round(rate(step_rows_done, step_t) / prefill_rate, 3),
        "bulk_vs_prefill": round(rate(bulk_rows, bulk_t) / prefill_rate, 3),
        "speculative_vs_prefill": round(rate(spec_rows, spec_t) / prefill_rate, 3),
        "bulk_vs_bound": round(bulk_cost * rate(bulk_rows, bulk_t) / prefill_rate, 3),
        "speculative_vs_bound": round(spec_cost * rate(spec_rows, spec_t) / prefill_rate, 3),
    }
