"""``multistream bench step``: one row of C streams (C = 1, 2, 4, 6, 8) through the engine against one decode step of
the bare model with one new token, eager and compiled, and the engine's step against the raw forward of the same row
(the engine's own overhead); the KV-cache tokens per token read in a listening session (a question, then a 1,000-token
document) under each silence rule; and the cost of turning a message's tokens into text."""

from __future__ import annotations

import statistics
import time

import torch

from .common import DOC, QUESTION, SYSTEM, ms, timed


@torch.no_grad()
def bench_step(model, streams=(1, 2, 4, 6, 8), rounds: int = 20, compiled: bool = True, int4_model=None,
               autotune: bool = False) -> dict:
    """Row cost with C streams after a shared context (the same prefix tokens for every contender), eager and compiled,
    against the bare model's one-token decode step (eager and compiled with a static cache), all in one run.

    ``int4_model``: the same model loaded with ``quant="int4"`` (its LoRA adapter unmerged beside the 4-bit base):
    its rows are timed too (``int4_streams``), against the same bare step of ``model``. ``autotune``: the compiled rows
    with inductor's GEMM autotuning (``EngineConfig.autotune``); the bare compiled step stays as it is."""
    from transformers import DynamicCache

    from ..engine.build import build_engine
    from ..engine.core import EngineConfig
    from ..model import MultiStreamModel, unwrap_base
    from ..streams import Layout

    base = unwrap_base(model.base)
    tok = model.tok
    prefix_text = DOC * 5
    ctx = torch.tensor([tok.encode_prefix(prefix_text)], device=model.device)
    p = ctx.shape[1]
    bare_cache = DynamicCache(config=base.config)
    base(input_ids=ctx, past_key_values=bare_cache, use_cache=True)
    one, one_pos = ctx[:, -1:], torch.tensor([[p]], device=ctx.device)

    def bare_step():
        base(input_ids=one, position_ids=one_pos, past_key_values=bare_cache, use_cache=True)
        bare_cache.crop(-1)

    contenders = {"bare_decode": bare_step}
    compile_s = {}
    if compiled:
        contenders["bare_compiled_decode"], compile_s["bare"] = _compiled_bare_step(base, ctx)
    filler = tok.encode_text(DOC * 10)
    rows = {}
    kinds = ("eager", "compiled") if compiled else ("eager",)
    variants = {"": base} if int4_model is None else {"": base, "int4/": unwrap_base(int4_model.base)}
    for variant, body in variants.items():
        for c in streams:
            # one input stream (fed a document) and C-1 outputs; with C = 1 a lone output stream
            spec = ",".join(["user:input"] + [f"out{i}:output" for i in range(c - 1)]) if c > 1 else "answer:output"
            wrapped = MultiStreamModel.wrap(body, tok.hf, Layout.parse(spec), base_ref="bench").to(model.device).eval()
            # room for every row of the run from the start: a compiled forward's shape includes the cache's capacity
            capacity = 1 << (p + c * (rounds + 8)).bit_length()
            for kind in kinds:
                config = EngineConfig(idle_rows=None, max_rows=8 * rounds + 64, capacity=capacity,
                                      compiled=kind == "compiled", autotune=autotune)
                core = build_engine(wrapped, config, warm=False)  # bench: the first rows are timed apart
                sid = core.open("bench", prefix=prefix_text, start=True)
                if c > 1:
                    core.send_tokens(sid, "user", filler[: 8 * rounds + 48])
                core.step()  # the prefix and row 0
                t = time.perf_counter()
                core.step()  # (compiled: the first row compiles)
                if kind == "compiled":
                    compile_s[f"{variant}{c}"] = round(time.perf_counter() - t, 1)
                rows[f"{variant}{kind}:{c}"] = core.step
    timings = {k: [] for k in [*contenders, *rows]}
    fns = {**contenders, **rows}
    for _ in range(3):  # warm-up
        for fn in fns.values():
            fn()
    for _ in range(rounds):  # interleaved, so that a noisy neighbour costs every contender alike
        for k, fn in fns.items():
            timings[k].append(timed(fn))
    bare = statistics.median(timings["bare_decode"])
    result = {k: ms(v) for k, v in timings.items() if k in contenders}
    per_streams = {}
    for variant in variants:
        per_streams[variant] = {}
        for c in streams:
            d = {}
            for kind in kinds:
                t = statistics.median(timings[f"{variant}{kind}:{c}"])
                d[f"{kind}_row_ms"] = ms(timings[f"{variant}{kind}:{c}"])
                d[f"{kind}_row_vs_decode"] = round(t / bare, 3)
            if compiled:
                d["compiled_row_vs_compiled_decode"] = round(statistics.median(timings[f"{variant}compiled:{c}"])
                                                             / statistics.median(timings["bare_compiled_decode"]), 3)
            per_streams[variant][str(c)] = d
    return {
        "context_tokens": p,
        "rounds": rounds,
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(model.device) if model.device.type == "cuda" else str(model.device),
        "dtype": str(model.dtype).removeprefix("torch."),
        "autotune": autotune,
        **{f"{k}_ms": v for k, v in result.items()},
        "streams": per_streams[""],
        **({"int4_streams": per_streams["int4/"]} if int4_model is not None else {}),
        "compile_seconds": compile_s,
        "listening_kv_tokens_per_token_read": listening_cache(model),
        "detokenize_us_per_token": detokenize_cost(tok),
    }


def _compiled_bare_step(base, ctx: torch.Tensor):
    """The bare model's one-token decode step, compiled over transformers' static cache; returns (step, compile s)."""
    from transformers import StaticCache

    from ..engine.compiled import compile_frozen

    p = ctx.shape[1]
    cache = StaticCache(config=base.config, max_cache_len=p + 8)
    base(input_ids=ctx, cache_position=torch.arange(p, device=ctx.device), past_key_values=cache, use_cache=True)
    one, one_pos, at = ctx[:, -1:], torch.tensor([[p]], device=ctx.device), torch.tensor([p], device=ctx.device)

    def forward(ids, pos, cache_position):
        for layer in cache.layers:  # the cache counts what it holds: rewind it, so every step writes the same cell
            layer.cumulative_length.fill_(p)
        return base(input_ids=ids, position_ids=pos, cache_position=cache_position, past_key_values=cache,
                    use_cache=True).logits

    fn = compile_frozen(forward)  # as the engine compiles its rows
    t = time.perf_counter()
    fn(one, one_pos, at)  # the context stays p tokens
    return (lambda: fn(one, one_pos, at)), round(time.perf_counter() - t, 1)


def detokenize_cost(tok, lengths=(100, 4000), window: int = 100) -> dict:
    """Microseconds a message's token costs to turn into text once the message is ``lengths`` tokens long:
    incremental (:class:`MessageText`, what the engine does) against re-decoding the whole message per token."""
    from ..text import MessageText

    doc = tok.encode_text(DOC)
    ids = (doc * (max(lengths) // len(doc) + 1))[: max(lengths)]
    out = {}
    for n in lengths:
        msg = MessageText()
        for i in ids[: n - window]:
            msg.push(i, tok)
        incremental = timed(lambda: [msg.push(i, tok) for i in ids[n - window : n]])
        whole = timed(lambda: [tok.decode(ids[:k]) for k in range(n - window + 1, n + 1)])
        out[str(n)] = {"incremental": round(1e6 * incremental / window, 1), "whole_message": round(1e6 * whole / window, 1)}
    return out


@torch.no_grad()
def listening_cache(model, doc_tokens: int = 1000) -> dict:
    """KV-cache tokens per input token read in a listening session, under each silence rule.

    A question on ``user``, then a ``doc_tokens`` document on ``tool``, read by the engine
    with every output stream held silent; the prefix is not counted. Under the visible
    rule every row stores all its streams (and the row read past each message's end is
    stored too); under the invisible rule only what was said.
    """
    from ..engine.build import build_engine
    from ..engine.core import EngineConfig
    from ..rows import SILENCE_RULES

    tok = model.tok
    doc = tok.encode_text(DOC * (doc_tokens // 30 + 2))[: doc_tokens - 1] + [tok.end_id]
    question_stream, doc_stream = model.layout.role("user"), model.layout.role("tool")
    trained_rule, out = model.silence, {}
    try:
        for rule in SILENCE_RULES:  # the same weights, run under each rule
            model.silence = rule
            core = build_engine(model, EngineConfig(idle_rows=None, bulk_chunk=128), warm=False)
            sid = core.open("listen", prefix=SYSTEM)
            for s in model.layout.outputs:
                core.mute(sid, s.name)
            read = 0
            for stream, ids in ((question_stream, tok.encode_message(QUESTION)), (doc_stream, doc)):
                read += len(ids)
                core.send_tokens(sid, stream, ids, bulk=True)
                core.step()
                while core.sessions[sid].pending_input:
                    core.step()
            sess = core.sessions[sid]
            out[rule] = round((int(core.cache.lengths[sess.slot]) - len(sess.prefix)) / read, 3)
    finally:
        model.silence = trained_rule
    out["rows"], out["read"] = sess.row, read
    return out


def print_step(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"a row of C streams after {r['context_tokens']} tokens of context, {r['dtype']}, {r['device']}, "
                        f"{r['threads']} threads, median of {r['rounds']} rounds")
    for col in ("step", "eager ms", "vs eager decode", "compiled ms", "vs eager decode", "vs compiled decode",
                "compile s"):
        table.add_column(col, justify="left" if col == "step" else "right")
    compiled = r.get("bare_compiled_decode_ms")
    compile_s = r.get("compile_seconds", {})
    table.add_row("bare model, one token", f"{r['bare_decode_ms']:.1f}", "1.0x",
                  f"{compiled:.1f}" if compiled else "-", f"{compiled / r['bare_decode_ms']:.3f}x" if compiled else "-",
                  "1.0x" if compiled else "-", str(compile_s.get("bare", "-")))
    for variant, key in (("", "streams"), ("int4 ", "int4_streams")):
        for c, v in r.get(key, {}).items():
            table.add_row(f"{variant}engine row, {c} stream{'s' if c != '1' else ''}", f"{v['eager_row_ms']:.1f}",
                          f"{v['eager_row_vs_decode']}x",
                          f"{v['compiled_row_ms']:.1f}" if "compiled_row_ms" in v else "-",
                          f"{v['compiled_row_vs_decode']}x" if "compiled_row_vs_decode" in v else "-",
                          f"{v['compiled_row_vs_compiled_decode']}x" if "compiled_row_vs_compiled_decode" in v else "-",
                          str(compile_s.get(f"{variant.replace(' ', '/')}{c}", "-")))
    console.print(table)
    kv = r.get("listening_kv_tokens_per_token_read")
    if kv:
        console.print(f"KV cache entries per document token read: {kv['invisible']} with invisible silence, "
                      f"{kv['visible']} if silences were kept ({kv['read']} tokens over {kv['rows']} rows)")
    for n, d in r.get("detokenize_us_per_token", {}).items():
        console.print(f"text of a {n}-token message, per token: {d['incremental']} us incremental, "
                      f"{d['whole_message']} us re-decoding the message")
