"""``multistream bench WHAT``: the command over the benchmarks of this package."""

from __future__ import annotations

import argparse
import json

from ..defaults import ARRIVAL_RATE
from ..hardware import resolve_dtype
from .common import load
from .ingest import bench_ingest
from .latency import bench_latency
from .serve import bench_serve, print_serve
from .step import bench_step, print_step
from .training import print_train


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
    if args.what == "serve":
        result = bench_serve(args.model or "tiny", sessions=args.sessions, soak=args.soak, max_tokens=args.max_tokens,
                             soak_concurrency=args.soak_concurrency, dtype=args.dtype, realtime=args.realtime)
        if args.json:
            print(json.dumps(result, indent=2, ensure_ascii=False))
        else:
            print_serve(result)
        return 0 if all(m["answered"] == m["sessions"] for m in result["modes"].values()) else 1
    if args.what == "train":
        from ..train.throughput import bench_train

        result = bench_train(args.variants, steps=args.train_steps, per_skill=args.per_skill, cpu=args.device == "cpu",
                             progress=not args.json)
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            print_train(result)
        return 0
    args.model = args.model or "default"
    model = load(args, quant="none" if args.what == "step" else None)  # step: the plain model is the reference
    if args.what == "step":
        # the int4 kernel is the CPU's: its rows beside the plain ones, in the same run
        int4 = load(args, quant="int4") if args.device == "cpu" else None
        result = bench_step(model, streams=args.streams, rounds=args.rounds, compiled=not args.eager_only, int4_model=int4,
                            autotune=args.autotune)
    elif args.what == "latency":
        from ..engine.tools import demo_tools
        from ..zoo import load_single

        twin, twin_tok = load_single(args.single, dtype=resolve_dtype(args.dtype, args.device))
        result = bench_latency(model, (twin.to(args.device), twin_tok), rate=args.rate, limit=args.limit, tools=demo_tools())
    else:
        result = bench_ingest(model, doc_tokens=args.doc_tokens)
    result["model"] = args.model
    if args.what == "step" and not args.json:
        print_step(result)
    else:
        _print(result, args.json)
    return 0


def stream_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(c) for c in text.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected stream counts like 1,2,6, got {text!r}")
    return counts


def variant_list(text: str) -> list[str]:
    from ..train.throughput import VARIANTS

    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown variant(s) {', '.join(unknown) or repr(text)}; "
                                         f"the variants are {', '.join(VARIANTS)}")
    return names


def register(sub) -> None:
    from ..engine.cli import add_dtype_arg

    b = sub.add_parser("bench", help="speed benchmarks: step, latency, ingest, serve, train (ratios from one run)")
    b.add_argument("what", choices=["step", "latency", "ingest", "serve", "train"])
    b.add_argument("--model", help="the model (default: 'default'; for 'serve': 'tiny', a random model built in-process)")
    b.add_argument("--single", default="default-single", help="single-stream baseline for 'latency'")
    add_dtype_arg(b)
    b.add_argument("--device", default="cpu", help="where the model runs: cpu, cuda, cuda:1 ...")
    b.add_argument("--streams", type=stream_counts, default=(1, 2, 4, 6, 8),
                   help="'step': the row widths to time, comma-separated (default 1,2,4,6,8)")
    b.add_argument("--rounds", type=int, default=20)
    b.add_argument("--rate", type=float, default=ARRIVAL_RATE, help="input arrival rate in tokens/s for 'latency'")
    b.add_argument("--limit", type=int, default=12, help="'latency': the first N built-in accuracy cases")
    b.add_argument("--doc-tokens", type=int, default=1000)
    b.add_argument("--sessions", type=int, default=100, help="'serve': sessions at once (WebSocket, then HTTP)")
    b.add_argument("--realtime", type=int, default=0,
                   help="'serve': also R /v1/realtime sessions at once, then R of them beside the WebSocket and HTTP ones")
    b.add_argument("--soak", type=int, default=2000, help="'serve': sessions opened and dropped abruptly (0: no soak)")
    b.add_argument("--soak-concurrency", type=int, default=32, help="'serve': soak sessions in flight at once")
    b.add_argument("--max-tokens", type=int, default=16, help="'serve': tokens each output stream may write")
    b.add_argument("--variants", type=variant_list, default=None,
                   help="'train': training configurations to compare, comma-separated, the first the reference "
                        "(default: visible,invisible,invisible-bf16-base)")
    b.add_argument("--train-steps", type=int, default=4, help="'train': timed optimizer steps per variant (after one untimed)")
    b.add_argument("--per-skill", type=int, default=40, help="'train': synthetic timelines per skill to train on")
    b.add_argument("--autotune", action="store_true",
                   help="'step': compile the rows with inductor's GEMM autotuning (EngineConfig.autotune; minutes more)")
    b.add_argument("--eager-only", action="store_true", help="'step': skip the compiled columns (each compiles a minute)")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench)
