"""CLI: ``multistream data ...`` builders, each writing validated timeline JSONL."""

from __future__ import annotations

import json
import sys


def _tokenizer(model_ref: str):
    from ..zoo import layout_and_tokenizer

    return layout_and_tokenizer(model_ref)


def cmd_synthetic(args) -> int:
    from .build import SyntheticConfig, build_synthetic

    _, tok = _tokenizer(args.model)
    cfg = SyntheticConfig(
        args.train_per_skill,
        args.test_per_skill,
        args.seed,
        args.skills.split(",") if args.skills else None or SyntheticConfig().skills,
    )
    counts = build_synthetic(args.out, tok.message_rows, cfg)
    print(f"wrote {counts['train']} training and {counts['test']} held-out timelines (and their twins) to {args.out}")
    return 0


def cmd_chat(args) -> int:
    from ..convert import Schedule
    from .build import build_from_chat

    layout, tok = _tokenizer(args.model)
    n, errors = build_from_chat(args.src, args.dst, tok.message_rows, Schedule(args.schedule, args.k), layout)
    for e in errors:
        print(f"{args.src}: {e}", file=sys.stderr)
    print(f"wrote {n} timeline(s) to {args.dst}" + (f"; skipped {len(errors)} bad record(s)" if errors else ""))
    return 1 if errors else 0


def cmd_teacher(args) -> int:
    from ..bases import load_base
    from ..convert import Schedule
    from .build import build_from_teacher

    layout, tok = _tokenizer(args.model)
    teacher, hf = load_base(args.teacher)
    n, skipped = build_from_teacher(
        args.prompts,
        args.dst,
        teacher.eval(),
        hf,
        tok.message_rows,
        Schedule(args.schedule, args.k),
        args.batch_size,
        args.max_new_tokens,
        layout,
    )
    print(
        f"wrote {n} timeline(s) answered by {args.teacher} to {args.dst}"
        + (f"; {skipped} empty answer(s) skipped" if skipped else "")
    )
    return 0


def cmd_twin(args) -> int:
    from ..timeline import read_jsonl
    from .twin import twin_record

    layout, tok = _tokenizer(args.model)
    n, bad = 0, 0
    with open(args.dst, "w", encoding="utf-8") as f:
        for _, tl, problems in read_jsonl(args.src, layout):
            if tl is None:
                bad += 1
                print("\n".join(problems), file=sys.stderr)
                continue
            f.write(json.dumps(twin_record(tl, tok.message_rows, layout), ensure_ascii=False) + "\n")
            n += 1
    print(f"wrote {n} twin chat(s) to {args.dst}")
    return 1 if bad else 0


def register(sub) -> None:
    from .catalog import ALL_SKILLS

    d = sub.add_parser("data", help="build training data (validated timeline JSONL)")
    dsub = d.add_subparsers(dest="builder", required=True)

    s = dsub.add_parser("synthetic", help="synthetic skills with programmatic answers: train/test splits and twins")
    s.add_argument("out", help="output folder")
    s.add_argument("--train-per-skill", type=int, default=400)
    s.add_argument("--test-per-skill", type=int, default=40)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--skills", help="comma-separated subset of " + ",".join(ALL_SKILLS))
    s.set_defaults(func=cmd_synthetic)

    c = dsub.add_parser("chat", help="OpenAI-style chat JSONL to timelines")
    c.add_argument("src")
    c.add_argument("dst")
    t = dsub.add_parser("teacher", help="prompts answered by a chat model (batched greedy), then converted")
    t.add_argument("prompts", help="JSONL with 'prompt' or 'messages' per line")
    t.add_argument("dst")
    t.add_argument("--teacher", default="default", help="HF chat model folder (or 'default': the base model itself)")
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--max-new-tokens", type=int, default=128)
    for p in (c, t):
        p.add_argument("--schedule", choices=["after-input", "wait-k"], default="after-input",
                       help="when replies start: after the user message (default) or k rows into it (wait-k)")
        p.add_argument("--k", type=int, default=3, help="rows to wait after the user message starts (wait-k)")
    c.set_defaults(func=cmd_chat)
    t.set_defaults(func=cmd_teacher)

    w = dsub.add_parser("twin", help="render timelines as single-stream chats (the twin format)")
    w.add_argument("src")
    w.add_argument("dst")
    w.set_defaults(func=cmd_twin)
    for p in (s, c, t, w):
        p.add_argument("--model", default="default", help="model whose tokenizer counts rows")
