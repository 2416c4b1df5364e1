"""``multistream generate``: one scripted session, printed or as JSON."""

from __future__ import annotations

import argparse
import json
import re
import sys

from ..defaults import INPUT_WAIT_S, SPEAK_RULE, SPECULATIVE_ROWS
from .sampling import SPEAK_RULES

_INPUT = re.compile(r"^(?P<stream>[A-Za-z_]\w*)=(?P<text>.*?)(?:@(?P<row>\d+))?$", re.S)


def parse_input(spec: str):
    from .runner import Input

    m = _INPUT.match(spec)
    if not m:
        raise argparse.ArgumentTypeError(f"--input {spec!r}: use STREAM=TEXT or STREAM=TEXT@ROW")
    return Input(m["stream"], m["text"], int(m["row"]) if m["row"] else None)


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", help="'default', 'base[:REF]' or a saved model folder")
    add_dtype_arg(p)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # (also NaN)
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return value


def add_dtype_arg(p: argparse.ArgumentParser) -> None:
    from ..hardware import DTYPES
    from ..quant import QUANT_MODES

    p.add_argument("--dtype", choices=DTYPES, default="auto",
                   help="the weights' dtype (default auto: bfloat16 where the CPU or GPU multiplies it natively, "
                        "AMX or AVX-512 BF16, for faster rows; else float32)")
    p.add_argument("--quant", choices=QUANT_MODES, default="none",
                   help="int4: the multi-stream model's linear layers in 4 bits (CPU; its LoRA adapter kept beside "
                        "them, the conversion cached after the first load); default none")


def add_sampling_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--max-tokens", type=int, default=None, help="budget per output stream")
    p.add_argument("--speculative", type=int, default=SPECULATIVE_ROWS, help="rows fed at once while reading (0: off)")
    add_engine_args(p)


def add_engine_args(p: argparse.ArgumentParser, autotune: bool = True) -> None:
    """The engine's options shared by every command that runs the multi-stream model (``autotune``: offer
    ``--autotune``; the evaluations compare contenders as they run by default and leave it out)."""
    p.add_argument("--speak-rule", choices=SPEAK_RULES, default=SPEAK_RULE,
                   help="greedy streams: speak when all spoken tokens together outweigh silence (likely) "
                        f"or only when one spoken token alone does (argmax); default {SPEAK_RULE}")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                   help="run ordinary rows through a torch.compile'd forward (EngineConfig.compiled; default): the same "
                        "tokens, faster per row; each cache shape compiles once per process (20-50 s for SmolLM2 on an AMX "
                        "CPU the first time, seconds from torch's compile cache later; about 1 minute on a 2-core AVX2 "
                        "CPU each time, 1-3 with other work beside it)")
    if autotune:
        p.add_argument("--autotune", action="store_true",
                       help="with --compile: inductor times its own matrix kernels (AMX; 4-bit ones with --quant int4) "
                            "against the library's and keeps the faster (EngineConfig.autotune): a few minutes more of "
                            "compiling")
    p.add_argument("--input-wait", type=_seconds, default=INPUT_WAIT_S, metavar="SECONDS",
                   help="how long the model, silent part-way through an input message, waits for its next token before "
                        f"running a row without it (EngineConfig.input_wait; default {INPUT_WAIT_S}, 0: never): text typed or "
                        "streamed slower than rows run then lies on nearby rows, as in training")


def engine_from_args(args, **config):
    """The engine of a command's model, sampling and engine options (:func:`.build.build_engine`, warmed up) and each
    output stream's parameters; ``config``: more ``EngineConfig`` fields."""
    from .build import build_engine
    from .core import EngineConfig
    from .sampling import SamplingParams
    from .session import StreamParams

    core = build_engine(args.model, EngineConfig(speculative=args.speculative, compiled=args.compile,
                                                 autotune=args.autotune, speak_rule=args.speak_rule, input_wait=args.input_wait,
                                                 quant=args.quant, **config), dtype=args.dtype)
    sampling = SamplingParams(args.temperature, args.top_k, args.top_p, args.seed)
    params = {s.name: StreamParams(sampling, args.max_tokens) for s in core.layout.outputs}
    return core, params


def cmd_generate(args) -> int:
    from .core import EngineError
    from .runner import run_session
    from .tools import demo_tools

    core, params = engine_from_args(args, max_rows=args.max_rows + 1)
    try:
        result = run_session(
            core, args.input, prefix=args.prefix, params=params, max_rows=args.max_rows,
            tools=None if args.no_tools else demo_tools(),
        )
    except EngineError as e:
        print(f"multistream generate: {e}", file=sys.stderr)
        return 2
    if args.json:
        d = result.to_dict()
        print(json.dumps({k: d[k] for k in ("streams", "rows", "first_output_row", "events")}, ensure_ascii=False))
    else:
        for name, text in result.streams.items():
            if name in result.first_output_row:
                print(f"[{name}] (from row {result.first_output_row[name]})\n{text}\n")
            else:
                print(f"[{name}] (silent)\n")
        print(f"{result.rows} rows")
    return 0


def register(sub) -> None:
    g = sub.add_parser("generate", help="run one session with scripted inputs and print every output stream")
    add_model_args(g)
    g.add_argument("--input", action="append", type=parse_input, required=True, metavar="STREAM=TEXT[@ROW]",
                   help="text for an input stream, entering at ROW (default: at once); repeatable")
    g.add_argument("--prefix", default="", help="system prompt (the session prefix)")
    g.add_argument("--max-rows", type=int, default=256)
    g.add_argument("--no-tools", action="store_true", help="do not run tool calls")
    g.add_argument("--json", action="store_true")
    add_sampling_args(g)
    g.set_defaults(func=cmd_generate)
