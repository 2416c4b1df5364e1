"""CLI: ``multistream train``.

``--compare-silence`` trains and then evaluates, so its command comes from the evaluations
(``multistream.evals.cli.cmd_compare_silence``), and so does ``--recipe``'s held-out report
(``multistream.evals.cli.evaluate_recipe``): the top-level command line hands both to
:func:`register`, and training imports nothing of the evaluations.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def cmd_train(args) -> int:
    if args.compare_silence:
        if args.compare_silence_command is None:
            print("multistream train: --compare-silence is not available here", file=sys.stderr)
            return 2
        return args.compare_silence_command(args)
    if args.recipe:
        from .recipes import run_recipe

        out = args.out or f"runs/{args.recipe}"
        report = run_recipe(args.recipe, out, do_export=args.export,
                            evaluate=None if args.no_eval else args.evaluate_recipe, injected_share=args.injected_share,
                            init_from=args.init_from, max_steps=args.max_steps, show_progress=not args.no_progress)
        print(json.dumps({k: v for k, v in report.items() if k != "eval"}, indent=2))
        return 0
    if not args.config:
        print("multistream train: give a CONFIG.yaml or --recipe", file=sys.stderr)
        return 2
    from ..runtime import configure
    from .config import TrainConfig
    from .loop import train

    cfg = TrainConfig.from_yaml(args.config)
    if args.output_dir:
        cfg.output_dir = args.output_dir
    if args.threads:
        cfg.threads = args.threads
    configure(threads=cfg.threads)  # this process is the run's: its torch threads are the config's
    if args.snapshot:
        from .loop import snapshot

        path, step = snapshot(cfg, Path(args.snapshot))
        print(f"step {step} of {cfg.max_steps}: model in {path}")
        return 0
    result = train(cfg, progress=not args.no_progress)
    print(
        f"trained {result.steps} steps in {result.seconds:.0f} s ({result.tokens_per_s:.0f} tokens/s): "
        f"loss {result.train_loss:.4f}"
        + (f", eval loss {result.eval_loss:.4f}" if result.eval_loss is not None else "")
        + (f"; model in {result.final_dir}" if result.final_dir else "")
    )
    return 0


def _steps(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"a step count must be at least 1, got {n}")
    return n


# the names of recipes.RECIPES, spelled out so that the CLI starts without importing torch (a test keeps them equal)
RECIPE_NAMES = ("default", "quick", "refresh", "v7", "v8", "v9", "tiny")


def register(sub, compare_silence=None, evaluate_recipe=None) -> None:
    """Add ``train``; ``compare_silence(args) -> exit code`` runs ``train --compare-silence`` (None: not offered);
    ``evaluate_recipe`` is ``--recipe``'s held-out report (``recipes.Evaluate``; None: a recipe trains without one)."""
    t = sub.add_parser("train", help="supervised fine-tuning (multi-stream or single-stream) from a YAML config or a recipe")
    t.add_argument("config", nargs="?", help="YAML file with TrainConfig fields")
    t.add_argument("--recipe", choices=RECIPE_NAMES,
                   help="build data, train the multi-stream model and its twin (refresh: continue the shipped pair)")
    t.add_argument("--out", help="recipe output folder (default runs/RECIPE)")
    t.add_argument("--export", action="store_true", help="recipe: write the compact weights into the package (weights/default*)")
    t.add_argument("--no-eval", action="store_true", help="recipe: skip the held-out report")
    t.add_argument("--init-from", metavar="DIR",
                   help="recipe: continue from an earlier recipe run's DIR/multi/final and DIR/single/final instead of "
                        "the recipe's starting point (the shipped pair for refresh, v7 and v8)")
    t.add_argument("--max-steps", type=_steps, metavar="N",
                   help="recipe: optimizer steps of both runs instead of the recipe's (the CPU recipes take what fits "
                        "one sitting on a 2-core CPU; on a GPU, e.g. --recipe v9 --max-steps 1500), with no time limit and "
                        "about as many checkpoints as the recipe's; a run resumed with another count stretches its "
                        "learning-rate schedule to it")
    t.add_argument("--injected-share", type=float,
                   help="recipe: share of document examples with an injected instruction (default: the recipe's, 0.6; "
                   "0 trains the ablation pair, which never sees an attack; the test split is the same)")
    t.add_argument("--compare-silence", action="store_true",
                   help="train on the default recipe's data under both silence rules for --minutes each, side by side, "
                   "and compare held-out loss and accuracy")
    t.add_argument("--minutes", type=float, default=25.0, help="--compare-silence: training minutes per rule")
    t.add_argument("--n", type=int, default=24, help="--compare-silence: held-out examples per skill")
    t.add_argument("--output-dir", help="override output_dir of the config")
    t.add_argument("--threads", type=int,
                   help="override the config's torch threads (e.g. a run resumed alone on a machine its twin shared)")
    t.add_argument("--snapshot", metavar="DIR",
                   help="write the run's last checkpoint as a model folder in DIR (to evaluate it mid-run) and exit")
    t.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to output_dir/log.jsonl)")
    t.set_defaults(func=cmd_train, compare_silence_command=compare_silence, evaluate_recipe=evaluate_recipe)
