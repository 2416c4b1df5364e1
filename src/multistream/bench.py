"""``multistream bench``: speed measured side by side in one run, reported as ratios.

- ``step``: one row of C streams (C = 1, 2, 4, 8) through the engine against one decode
  step of the bare model with one new token, and the engine's step against the raw
  forward of the same row (the engine's own overhead); and the KV-cache tokens per row
  of a listening session (a question, then a 1,000-token document) under each silence rule.
- ``latency``: time to first answer token and end-to-end time of the multi-stream
  engine and of the single-stream baseline, on the same prompts, with the input
  arriving all at once and at ``--rate`` tokens/s.
- ``ingest``: a long document read step by step, in bulk and speculatively, against the
  bare model's prefill of the same tokens.

Measurements alternate between the contenders, round by round, and report medians,
because the machines are shared and noisy.
"""

from __future__ import annotations

import json
import statistics
import time

import torch

SYSTEM = "You are a helpful assistant. Answer briefly."
PROMPTS = [
    "What is the capital of France?",
    "What is 12 plus 7?",
    "Name a colour of the sky on a clear day.",
    "Start with 4, add 3, then double it. What is the result?",
    "Which animal says moo?",
    "What is the opposite of hot?",
]
DOC = ("The committee met on Tuesday to review the budget for the coming year. Most members agreed that "
       "spending on public transport should rise, while a few argued for lower taxes instead. ")


def _ms(seconds: list[float]) -> float:
    return round(1000 * statistics.median(seconds), 2)


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _load(args):
    from .zoo import load_model

    return load_model(args.model, dtype=getattr(torch, args.dtype))


# -- step ------------------------------------------------------------------------------------
@torch.no_grad()
def bench_step(model, streams=(1, 2, 4, 8), rounds: int = 20) -> dict:
    """Row cost with C streams after a shared context (the same prefix tokens for every contender)."""
    from transformers import DynamicCache

    from .engine.core import EngineConfig, EngineCore
    from .model import MultiStreamModel, _unwrap
    from .streams import Layout

    base = _unwrap(model.base)
    tok = model.tok
    prefix_text = DOC * 5
    ctx = torch.tensor([tok.encode_prefix(prefix_text)])
    p = ctx.shape[1]
    bare_cache = DynamicCache(config=base.config)
    base(input_ids=ctx, past_key_values=bare_cache, use_cache=True)
    one, one_pos = ctx[:, -1:], torch.tensor([[p]])

    def bare_step():
        base(input_ids=one, position_ids=one_pos, past_key_values=bare_cache, use_cache=True)
        bare_cache.crop(-1)

    filler = tok.encode_text(DOC * 10)
    results = {}
    for c in streams:
        # one input stream (fed a document) and C-1 outputs; with C = 1 a lone output stream
        spec = ",".join(["user:input"] + [f"out{i}:output" for i in range(c - 1)]) if c > 1 else "answer:output"
        wrapped = MultiStreamModel.wrap(base, tok.hf, Layout.parse(spec), base_ref="bench").eval()
        core = EngineCore(wrapped, EngineConfig(idle_rows=None, max_rows=4 * rounds + 32))
        sid = core.open("bench", prefix=prefix_text, start=True)
        if c > 1:
            core.send_tokens(sid, "user", filler[: 4 * rounds + 16])
        core.step()  # the prefix and row 0

        raw_cache = DynamicCache(config=base.config)
        prefix_streams = torch.zeros_like(ctx)
        wrapped(ctx, prefix_streams, torch.arange(p)[None], past_key_values=raw_cache, use_cache=True)
        row_ids, row_streams, row_pos = torch.tensor([filler[:c]]), torch.arange(c)[None], torch.full((1, c), p)
        keep = torch.zeros((1, c), dtype=torch.bool)
        keep[0, 1 if c > 1 else 0 :] = True  # logits for the output streams, as the engine computes them

        def raw_row():
            wrapped(row_ids, row_streams, row_pos, past_key_values=raw_cache, past_positions=torch.arange(p)[None],
                    past_streams=prefix_streams, use_cache=True, logits_to_keep=keep)
            raw_cache.crop(-c)

        bare, raw, eng = [], [], []
        for _ in range(3):  # warm-up
            bare_step(), raw_row(), core.step()
        for _ in range(rounds):
            bare.append(_timed(bare_step))
            raw.append(_timed(raw_row))
            eng.append(_timed(core.step))
        results[str(c)] = {
            "bare_decode_ms": _ms(bare), "raw_row_ms": _ms(raw), "engine_step_ms": _ms(eng),
            "row_vs_decode": round(statistics.median(eng) / statistics.median(bare), 3),
            "engine_vs_raw": round(statistics.median(eng) / statistics.median(raw), 3),
        }
    return {
        "context_tokens": p,
        "rounds": rounds,
        "threads": torch.get_num_threads(),
        "streams": results,
        "listening_kv_tokens_per_row": listening_cache(model),
    }


@torch.no_grad()
def listening_cache(model, doc_tokens: int = 1000) -> dict:
    """KV-cache tokens per row of a listening session under each silence rule.

    A question on ``user``, then a ``doc_tokens`` document on ``tool``, read by the engine
    with every output stream held silent; the prefix is not counted. Under the visible
    rule every row stores all its streams; under the invisible rule only what was said.
    """
    from .engine.core import EngineConfig, EngineCore
    from .rows import SILENCE_RULES

    tok = model.tok
    doc = tok.encode_text(DOC * (doc_tokens // 30 + 2))[: doc_tokens - 1] + [tok.end_id]
    names = [s.name for s in model.layout.inputs]
    question_stream = "user" if "user" in names else names[0]
    doc_stream = "tool" if "tool" in names else names[-1]
    trained_rule, out = model.silence, {}
    try:
        for rule in SILENCE_RULES:  # the same weights, run under each rule
            model.silence = rule
            core = EngineCore(model, EngineConfig(idle_rows=None, bulk_chunk=128))
            sid = core.open("listen", prefix=SYSTEM)
            for s in model.layout.outputs:
                core.mute(sid, s.name)
            for stream, ids in ((question_stream, tok.encode_message(PROMPTS[0])), (doc_stream, doc)):
                core.send_tokens(sid, stream, ids, bulk=True)
                core.step()
                while core.sessions[sid].pending_input:
                    core.step()
            sess = core.sessions[sid]
            out[rule] = round((int(core.cache.lengths[sess.slot]) - len(sess.prefix)) / sess.row, 3)
    finally:
        model.silence = trained_rule
    out["rows"] = sess.row
    return out


# -- latency ---------------------------------------------------------------------------------
def bench_latency(model, single, prompts=PROMPTS, rate: float = 10.0, max_tokens: int = 48) -> dict:
    from .engine.baseline import SingleStreamBaseline
    from .engine.core import EngineConfig, EngineCore
    from .engine.runner import Input, run_session
    from .engine.session import StreamParams

    core = EngineCore(model, EngineConfig(speculative=16))
    params = {s.name: StreamParams(max_tokens=max_tokens) for s in model.layout.outputs}
    baseline = SingleStreamBaseline(*single, max_new_tokens=max_tokens)
    out = {}
    for mode, r in (("all_at_once", None), (f"rate_{rate:g}", rate)):
        multi_ttft, multi_e2e, single_ttft, single_e2e, cases = [], [], [], [], []
        for prompt in prompts:
            m = run_session(core, [Input("user", prompt, rate=r)], prefix=SYSTEM, params=params, max_rows=160)
            s = baseline.run([{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}], rate=r)
            cases.append({"prompt": prompt, "multi": {"ttft": m.ttft, "e2e": m.e2e, "answer": m.streams["answer"]},
                          "single": {"ttft": s.ttft, "e2e": s.e2e, "answer": s.streams["answer"]}})
            if m.ttft is not None:
                multi_ttft.append(m.ttft)
                multi_e2e.append(m.e2e if m.e2e is not None else m.ttft)
            single_ttft.append(s.ttft)
            single_e2e.append(s.e2e)
        med = {k: (statistics.median(v) if v else None) for k, v in
               {"multi_ttft": multi_ttft, "multi_e2e": multi_e2e, "single_ttft": single_ttft, "single_e2e": single_e2e}.items()}
        out[mode] = {
            **{k: (round(v, 4) if v is not None else None) for k, v in med.items()},
            "ttft_ratio": round(med["multi_ttft"] / med["single_ttft"], 3) if med["multi_ttft"] else None,
            "e2e_ratio": round(med["multi_e2e"] / med["single_e2e"], 3) if med["multi_e2e"] else None,
            "answered": f"{len(multi_ttft)}/{len(prompts)}",
            "cases": cases,
        }
    top = out["all_at_once"]
    return {"ttft_ratio": top["ttft_ratio"], "e2e_ratio": top["e2e_ratio"], "rate": rate, "modes": out}


# -- ingest ----------------------------------------------------------------------------------
@torch.no_grad()
def bench_ingest(model, doc_tokens: int = 1000, step_rows: int = 48, chunk: int = 128) -> dict:
    from .engine.core import EngineConfig, EngineCore
    from .model import _unwrap

    tok = model.tok
    doc = tok.encode_text(DOC * (doc_tokens // 30 + 2))[: doc_tokens - 1]
    base = _unwrap(model.base)

    ids = torch.tensor([doc + [tok.end_id]])
    prefills = [_timed(lambda: base(input_ids=ids))]

    def read(config: EngineConfig, bulk: bool, limit: int | None = None) -> tuple[float, int, int]:
        core = EngineCore(model, config)
        sid = core.open("doc", prefix=SYSTEM)
        core.send(sid, "user", "Read this document.")
        core.step()
        core.send_tokens(sid, "tool", doc + [tok.end_id], bulk=bulk)
        t = time.perf_counter()
        start_row = core.sessions[sid].row
        steps = 0
        while True:  # the document is queued by the first step
            core.step()
            steps += 1
            if not core.sessions[sid].inputs[model.layout.index("tool")].queue:
                break
            if limit and core.sessions[sid].row - start_row >= limit:
                break
        return time.perf_counter() - t, core.sessions[sid].row - start_row, steps

    step_t, step_rows_done, _ = read(EngineConfig(idle_rows=None), bulk=False, limit=step_rows)
    prefills.append(_timed(lambda: base(input_ids=ids)))
    bulk_t, bulk_rows, bulk_steps = read(EngineConfig(idle_rows=None, bulk_chunk=chunk), bulk=True)
    prefills.append(_timed(lambda: base(input_ids=ids)))
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


# -- CLI -------------------------------------------------------------------------------------
def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.pretty import Pretty

    Console().print(Pretty({k: v for k, v in result.items() if k != "modes"} | (
        {"modes": {m: {k: v for k, v in d.items() if k != "cases"} for m, d in result["modes"].items()}}
        if "modes" in result else {})))


def cmd_bench(args) -> int:
    model = _load(args)
    if args.what == "step":
        result = bench_step(model, rounds=args.rounds)
    elif args.what == "latency":
        from .zoo import load_single

        result = bench_latency(model, load_single(args.single, dtype=getattr(torch, args.dtype)), rate=args.rate)
    else:
        result = bench_ingest(model, doc_tokens=args.doc_tokens)
    result["model"] = args.model
    _print(result, args.json)
    return 0


def register(sub) -> None:
    b = sub.add_parser("bench", help="speed benchmarks: step, latency, ingest (ratios from one run)")
    b.add_argument("what", choices=["step", "latency", "ingest"])
    b.add_argument("--model", default="default")
    b.add_argument("--single", default="default-single", help="single-stream baseline for 'latency'")
    b.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    b.add_argument("--rounds", type=int, default=20)
    b.add_argument("--rate", type=float, default=10.0, help="input arrival rate in tokens/s for 'latency'")
    b.add_argument("--doc-tokens", type=int, default=1000)
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench)
