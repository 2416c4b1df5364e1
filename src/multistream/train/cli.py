"""CLI: ``multistream train`` and ``multistream evaluate-default``."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def cmd_train(args) -> int:
    if args.compare_silence:
        from .compare import compare_silence, format_comparison

        report = compare_silence(args.out or "runs/compare-silence", minutes=args.minutes, n_per_skill=args.n)
        print(format_comparison(report))
        return 0
    if args.recipe:
        from .recipes import run_recipe

        out = args.out or f"runs/{args.recipe}"
        report = run_recipe(args.recipe, out, do_export=args.export, do_eval=not args.no_eval,
                            injected_share=args.injected_share)
        print(json.dumps({k: v for k, v in report.items() if k != "eval"}, indent=2))
        return 0
    if not args.config:
        print("multistream train: give a CONFIG.yaml or --recipe", file=sys.stderr)
        return 2
    from .config import TrainConfig
    from .loop import train

    cfg = TrainConfig.from_yaml(args.config)
    if args.output_dir:
        cfg.output_dir = args.output_dir
    result = train(cfg, progress=not args.no_progress)
    print(
        f"trained {result.steps} steps in {result.seconds:.0f} s ({result.tokens_per_s:.0f} tokens/s): "
        f"loss {result.train_loss:.4f}"
        + (f", eval loss {result.eval_loss:.4f}" if result.eval_loss is not None else "")
        + (f"; model in {result.final_dir}" if result.final_dir else "")
    )
    return 0


def cmd_evaluate_default(args) -> int:
    """The held-out skills report (:mod:`multistream.evals.skills`; also ``multistream eval skills``)."""
    from ..evals.skills import evaluate_all, format_report

    single = None if args.single == "none" else args.single
    results = evaluate_all(args.model, single, args.data, args.n, include_base=not args.no_base, parallel=not args.serial,
                           max_tokens=args.max_tokens, dtype=args.dtype, compiled=args.compile, skills=args.skills,
                           speak_rule=args.speak_rule)
    print(format_report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return 0


def register(sub) -> None:
    t = sub.add_parser("train", help="supervised fine-tuning (multi-stream or single-stream) from a YAML config or a recipe")
    t.add_argument("config", nargs="?", help="YAML file with TrainConfig fields")
    t.add_argument("--recipe", choices=["default", "quick", "refresh", "tiny"],
                   help="build data, train the multi-stream model and its twin (refresh: continue the shipped pair)")
    t.add_argument("--out", help="recipe output folder (default runs/RECIPE)")
    t.add_argument("--export", action="store_true", help="recipe: write the compact weights into the package (weights/default*)")
    t.add_argument("--no-eval", action="store_true", help="recipe: skip the held-out report")
    t.add_argument("--injected-share", type=float,
                   help="recipe: share of document examples with an injected instruction (default: the recipe's, 0.6; "
                   "0 trains the ablation pair, which never sees an attack; the test split is the same)")
    t.add_argument("--compare-silence", action="store_true",
                   help="train on the default recipe's data under both silence rules for --minutes each, side by side, "
                   "and compare held-out loss and accuracy")
    t.add_argument("--minutes", type=float, default=25.0, help="--compare-silence: training minutes per rule")
    t.add_argument("--n", type=int, default=24, help="--compare-silence: held-out examples per skill")
    t.add_argument("--output-dir", help="override output_dir of the config")
    t.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to output_dir/log.jsonl)")
    t.set_defaults(func=cmd_train)

    from ..engine.cli import add_dtype_arg, add_engine_args
    from ..evals.cli import add_skills_args

    e = sub.add_parser("evaluate-default", help="held-out accuracy per skill: multi-stream model, its twin, the base model "
                       "(the same as `multistream eval skills`)")
    e.add_argument("--model", default="default", help="multi-stream model (name or folder)")
    e.add_argument("--single", default="default-single", help="single-stream twin (name or folder; 'none' to skip)")
    add_skills_args(e)
    add_dtype_arg(e)
    add_engine_args(e)
    e.add_argument("--max-tokens", type=int, default=144,
                   help="total token budget of each contender on a case (all output streams together; all replies)")
    e.add_argument("--json", help="also write the results here")
    e.set_defaults(func=cmd_evaluate_default)
