"""``multistream eval``, ``multistream plot`` and ``multistream report``: thin layers over the evaluation functions.

``multistream eval skills`` is the held-out report per synthetic skill (:mod:`.skills`); ``multistream
evaluate-default`` is its older name.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..data.skills import SKILLS
from ..defaults import ARRIVAL_RATE, EVAL_MAX_TOKENS, SPECULATIVE_ROWS, SYSTEM_PROMPT
from ..engine.cli import add_dtype_arg, add_engine_args


def _contenders(args):
    from .common import load_contenders

    return load_contenders(args.model, args.single, args.dtype, args.max_tokens, compiled=args.compile,
                           speak_rule=args.speak_rule, input_wait=args.input_wait, quant=getattr(args, "quant", "none"))


def _cases(args, kind: str):
    from .cases import load_cases

    cases, errors = load_cases(args.cases, kind, args.limit, suite=getattr(args, "suite", None) or "default")
    for e in errors:
        print(f"skipped: {e}", file=sys.stderr)
    return cases, errors


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def _ci(d: dict | None, key: str) -> str:
    """A rate with its 95% Wilson interval, as ``0.250 [0.089, 0.532]``."""
    from .report import fmt_rate

    return fmt_rate(d, key)


def _table(rows: list[tuple[str, object, object, object]]) -> str:
    out = [f"{'':40} {'multi':>22} {'single':>22} {'ratio':>8}"]
    out += [f"{name:40} {_fmt(m):>22} {_fmt(s):>22} {_fmt(r):>8}" for name, m, s, r in rows]
    return "\n".join(out)


def _emit(args, result: dict, rows, errors: list[str], extra: str = "") -> int:
    if args.json:
        if errors:
            result = {**result, "skipped": errors}
        print(json.dumps(result if args.details else {k: v for k, v in result.items() if k != "cases"},
                         indent=2, ensure_ascii=False, default=str))
    else:
        print(_table(rows))
        if extra:
            print(extra)
    return 0


def cmd_eval(args) -> int:
    kind = args.what
    if kind == "skills":
        return _skills(args)
    if kind == "chats":
        return _chats(args)
    if kind == "injection-v3":
        return _injection_v3(args)
    cases, errors = _cases(args, "prompts" if kind == "latency" else kind)
    if kind == "listening":
        return _listening(args, cases, errors)
    c = _contenders(args)
    progress = not args.no_progress
    if kind == "prompts":
        from ..engine.tools import demo_tools
        from .prompts import eval_prompts

        r = eval_prompts(c, cases, progress, tools=None if args.no_tools else demo_tools())
        rows = [("accuracy [95% CI]", _ci(r["multi"], "accuracy"), _ci(r["single"], "accuracy"), r["accuracy_ratio"]),
                ("n", r["multi"]["n"], r["single"]["n"], None),
                ("median time to first token (s)", r["multi"]["ttft_median"], r["single"]["ttft_median"], None),
                ("median end-to-end (s)", r["multi"]["e2e_median"], r["single"]["e2e_median"], None)]
        if args.base:
            from ..hardware import resolve_dtype
            from ..zoo import load_single
            from .prompts import eval_base_prompts
            from .twin import Twin

            base = Twin(*load_single("base" if args.base == "default" else f"base:{args.base}",
                                     resolve_dtype(args.dtype)), max_new_tokens=c.max_tokens)
            b = eval_base_prompts(base, cases, c.max_tokens, progress)
            r["base"] = {k: v for k, v in b.items() if k != "cases"}
            for rec, brec in zip(r["cases"], b["cases"]):
                rec["base"] = {k: v for k, v in brec.items() if k != "id"}
            lines = [f"untrained base model, no tools, {b['n']} cases: final line right {_ci(b, 'accuracy')}, "
                     f"first sentence right {_ci(b, 'first_sentence')}"]
            lines += [f"  {g:24} {d['correct']:>3} / {d['first_correct']:>3} of {d['n']}" for g, d in b["groups"].items()]
            return _emit(args, r, rows, errors, "\n".join(lines))
        return _emit(args, r, rows, errors)
    if kind == "injection":
        from .injection import eval_injection

        r = eval_injection(c, cases, progress)
        rows = [("attack success rate [95% CI]", _ci(r["multi"], "asr"), _ci(r["single"], "asr"), r["asr_ratio"]),
                ("utility under attack (correct, not attacked)", _ci(r["multi"], "utility"), _ci(r["single"], "utility"),
                 None),
                ("think flags the injection", _ci(r["monitor"], "flag_rate"), _ci(r["monitor"], "single_flag_rate"), None),
                ("accuracy on benign documents", _ci(r["multi"], "benign_accuracy"), _ci(r["single"], "benign_accuracy"),
                 None),
                ("flags on benign documents (false positives)", _ci(r["monitor"], "false_positive_rate"),
                 _ci(r["monitor"], "single_false_positive_rate"), None),
                ("benign documents", r["multi"]["n_benign"], r["single"]["n_benign"], None),
                ("n", r["multi"]["n"], r["single"]["n"], None)]
        return _emit(args, r, rows, errors)
    if kind == "interrupts":
        from ..engine.tools import demo_tools
        from .interrupts import eval_interrupts

        r = eval_interrupts(c, cases, progress, tools=None if args.no_tools else demo_tools())
        rows = [("interrupt success [95% CI]", _ci(r["multi"], "success"), _ci(r["single"], "success"), r["success_ratio"]),
                ("median interrupt to answer (s)", r["multi"]["latency_median"], r["single"]["latency_median"],
                 r["latency_ratio"]),
                ("n", r["multi"]["n"], r["single"]["n"], None)]
        return _emit(args, r, rows, errors)
    from ..engine.tools import demo_tools
    from .latency import eval_latency

    r = eval_latency(c, cases, args.rate, progress, tools=None if args.no_tools else demo_tools())
    rows = []
    for mode, d in r["modes"].items():
        mm, ss = d["multi"], d["single"]
        rows += [(f"accuracy [95% CI] ({mode})", _ci(mm, "accuracy"), _ci(ss, "accuracy"), d["accuracy_ratio"]),
                 (f"ttft median s, all {d['n']} ({mode})", mm["ttft_median"], ss["ttft_median"], d["ttft_ratio"]),
                 (f"e2e median s, all {d['n']} ({mode})", mm["e2e_median"], ss["e2e_median"], d["e2e_ratio"]),
                 (f"ttft median s, {d['n_both_correct']} both correct", mm["ttft_median_both_correct"],
                  ss["ttft_median_both_correct"], d["ttft_ratio_both_correct"]),
                 (f"e2e median s, {d['n_both_correct']} both correct", mm["e2e_median_both_correct"],
                  ss["e2e_median_both_correct"], d["e2e_ratio_both_correct"])]
    if args.json and not args.details:
        r = {**r, "modes": {m: {k: v for k, v in d.items() if k != "cases"} for m, d in r["modes"].items()}}
    return _emit(args, r, rows, errors)


def _listening(args, cases, errors) -> int:
    from .listening import eval_listening

    r = eval_listening(_contenders(args), cases, args.rate, not args.no_progress)
    m, s = r["multi"], r["single"]
    rows = [("accuracy [95% CI]", _ci(m, "accuracy"), _ci(s, "accuracy"), r["accuracy_ratio"]),
            (f"answer s after the fact, all {r['n']}", m["from_fact_median"], s["from_fact_median"], r["from_fact_ratio"]),
            (f"  ... {r['n_both_correct']} both correct", m["from_fact_median_both_correct"],
             s["from_fact_median_both_correct"], r["from_fact_ratio_both_correct"]),
            ("first answer token s after the fact", m["first_token_from_fact_median"], s["first_token_from_fact_median"],
             r["first_token_from_fact_ratio"]),
            ("right before the document ended", _ci(m, "before_end"), None, None),
            ("n", r["n"], r["n"], None)]
    extra = (f"document at {r['rate']:g} tokens/s; median {r['document_after_fact_median_s']} s of it arrive after the "
             "fact; a wrong answer counts as slower than any right one")
    return _emit(args, r, rows, errors, extra)


def _skills(args) -> int:
    from .skills import evaluate_all, format_report

    single = None if args.single == "none" else args.single
    r = evaluate_all(args.model, single, args.data, args.n, include_base=not args.no_base, parallel=not args.serial,
                     max_tokens=args.max_tokens, dtype=args.dtype, show_progress=not args.no_progress,
                     compiled=args.compile, skills=args.skills, speak_rule=args.speak_rule, quant=args.quant)
    if args.json:
        out = r if args.details else {k: v for k, v in r.items() if not k.endswith("_records")}
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        print(format_report(r))
    return 0


def _chats(args) -> int:
    from .chats import ConversationsMissing, eval_chats, format_table, load_conversations

    try:
        timelines = load_conversations(args.data, args.n, seed=args.seed)
    except (ConversationsMissing, ValueError) as e:
        print(f"multistream eval chats: {e}", file=sys.stderr)
        return 2
    r = eval_chats(_contenders(args), timelines, show_progress=not args.no_progress)
    if args.json:
        print(json.dumps(r if args.details else {k: v for k, v in r.items() if k != "cases"}, indent=2,
                         ensure_ascii=False, default=str))
    else:
        print(format_table(r))
    return 0


def _injection_v3(args) -> int:
    from .cases import CaseFileError
    from .injection_v3 import eval_injection_v3, format_table, load_attack_cases

    try:
        cases, errors = load_attack_cases(args.cases, args.limit, args.families)
    except (CaseFileError, OSError) as e:
        print(f"multistream eval injection-v3: {e}", file=sys.stderr)
        return 2
    for e in errors:
        print(f"skipped: {e}", file=sys.stderr)
    r = eval_injection_v3(_contenders(args), cases, show_progress=not args.no_progress)
    if args.json:
        if errors:
            r = {**r, "skipped": errors}
        print(json.dumps(r if args.details else {k: v for k, v in r.items() if k != "cases"}, indent=2,
                         ensure_ascii=False, default=str))
    else:
        print(format_table(r))
    return 0


def _families(text: str) -> tuple[str, ...]:
    from .injection_v3 import FAMILIES

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in FAMILIES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown famil(ies) {', '.join(unknown) or repr(text)}; "
                                         f"the families are {', '.join(FAMILIES)}")
    return names


def cmd_plot(args) -> int:
    from .plots import plot_latency, plot_timeline

    if args.what == "timeline":
        from ..streams import DEFAULT_LAYOUT

        if args.from_file:
            data = json.loads(open(args.from_file, encoding="utf-8").read())
            events = data["events"]
            streams = [(s.name, s.kind) for s in DEFAULT_LAYOUT]
        else:
            if not args.input:
                print("multistream plot timeline: give --from FILE or at least one --input", file=sys.stderr)
                return 2
            from ..engine.build import build_engine
            from ..engine.core import EngineConfig
            from ..engine.runner import run_session
            from ..engine.session import StreamParams
            from ..engine.tools import demo_tools

            core = build_engine(args.model, EngineConfig(speculative=SPECULATIVE_ROWS, max_rows=args.max_rows + 1),
                                dtype="float32")
            params = {s.name: StreamParams(max_tokens=args.max_tokens) for s in core.layout.outputs}
            result = run_session(core, args.input, prefix=args.prefix, params=params, max_rows=args.max_rows,
                                 tools=demo_tools())
            events, streams = result.events, [(s.name, s.kind) for s in core.layout]
        path = plot_timeline(events, streams, args.out, args.title or "")
    else:
        if args.from_file:
            result = json.loads(open(args.from_file, encoding="utf-8").read())
            result = result.get("latency", result)  # a report.json or an `eval latency --json --details` output
        else:
            cases, _ = _cases(args, "prompts")
            from ..engine.tools import demo_tools
            from .latency import eval_latency

            result = eval_latency(_contenders(args), cases, args.rate, not args.no_progress, tools=demo_tools())
        if "cases" not in next(iter(result["modes"].values())):
            print("multistream plot latency: the file has no per-case numbers (use `eval latency --json --details`)",
                  file=sys.stderr)
            return 2
        path = plot_latency(result, args.out, args.mode)
    print(f"wrote {path}")
    return 0


def cmd_report(args) -> int:
    from .report import STAGES, build_report

    stages = [s.strip() for s in args.stages.split(",") if s.strip()] if args.stages else None
    bad = sorted(set(stages or ()) - set(STAGES[:-1]))
    if bad:
        print(f"multistream report: unknown stage(s) {', '.join(bad)}; stages are {', '.join(STAGES[:-1])}",
              file=sys.stderr)
        return 2
    report = build_report(_contenders(args), args.out, args.limit, args.rate,
                          {"prompts": args.prompts, "injection": args.injection,
                           "injection-v3": args.injection_v3, "interrupts": args.interrupts,
                           "listening": args.listening, "chats": args.chats},
                          show_progress=not args.no_progress,
                          stages=stages, fresh=args.fresh)
    if report is None:
        print(f"ran {args.stages}; the results are kept in {args.out}/stages/: run the report again with the same "
              "options (without --stages) to finish it")
        return 0
    for w in report["warnings"]:
        print(f"skipped: {w}", file=sys.stderr)
    print(f"wrote {args.out}/report.md, report.json and {len(report['figures'])} figure(s)")
    print(json.dumps(report["summary"], indent=2))
    return 0


def _skill_list(text: str) -> tuple[str, ...]:
    from .skills import EVAL_SKILLS

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in EVAL_SKILLS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown skill(s) {', '.join(unknown) or repr(text)}; "
                                         f"the skills are {', '.join(EVAL_SKILLS)}")
    return names


def add_skills_args(p: argparse.ArgumentParser) -> None:
    """The options of the held-out skills report (``eval skills`` and ``evaluate-default``)."""
    p.add_argument("--data", help="held-out timelines, JSONL with meta (default: the synthetic test split, generated)")
    p.add_argument("--n", type=int, default=100,
                   help="held-out examples per skill, each a distinct case (default: the 100-case suite)")
    p.add_argument("--skills", type=_skill_list, default=SKILLS,
                   help=f"only these skills, comma-separated (default: the v6 suite, {','.join(SKILLS)}; also "
                        "wordproblem, everyday, correction, prose, arithmetic, units)")
    p.add_argument("--no-base", action="store_true", help="skip the untrained base model")
    p.add_argument("--serial", action="store_true",
                   help="run in this process, one model after the other (default: two one-thread worker processes)")


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", help="multi-stream model: 'default', 'base[:REF]' or a saved folder")
    p.add_argument("--single", default="default-single", help="single-stream twin: default-single, base[:REF] or a folder")
    add_dtype_arg(p)
    p.add_argument("--max-tokens", type=int, default=EVAL_MAX_TOKENS,
                   help="total token budget of a reply, the same for both: all output streams together (multi), "
                        "the reply with its thinking and tags (single)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_engine_args(p, autotune=False)


def register(sub) -> None:
    e = sub.add_parser("eval", help="evaluate the multi-stream model against its single-stream twin")
    esub = e.add_subparsers(dest="what", required=True)
    helps = {"prompts": "accuracy on questions with known answers", "injection": "prompt injection in untrusted data",
             "interrupts": "corrections arriving while the answer is written", "latency": "latency on the accuracy cases",
             "listening": "a question, then a document streaming in: time from the answer-bearing text to the answer"}
    from .cases import SUITES

    for what, text in helps.items():
        p = esub.add_parser(what, help=text)
        source = p.add_mutually_exclusive_group()
        source.add_argument("--cases", help="JSONL case file (default: the built-in suite)")
        suites = SUITES["prompts" if what == "latency" else what]
        if len(suites) > 1:
            source.add_argument("--suite", choices=sorted(suites), default="default",
                                help="which built-in suite (default: default; free, free-corrections and decimals are "
                                     "written in everyday words, unlike any training template)")
        p.add_argument("--limit", type=int, help="use the first N cases")
        p.add_argument("--json", action="store_true")
        p.add_argument("--details", action="store_true", help="with --json: per-case records too")
        if what in ("latency", "listening"):
            p.add_argument("--rate", type=float, default=ARRIVAL_RATE, help="input arrival rate in tokens/s")
        if what in ("prompts", "latency"):
            p.add_argument("--no-tools", action="store_true", help="no calculator/clock for either contender")
        if what == "prompts":
            p.add_argument("--base", nargs="?", const="default", metavar="REF",
                           help="also the untrained base model (REF: a base model reference or folder; default: the "
                                "default base) as a plain chat model without tools, with the same budget: what it "
                                "knows already, per case group")
        if what == "interrupts":
            p.add_argument("--no-tools", action="store_true",
                           help="no calculator for either contender, not even for the cases marked tools")
        _model_args(p)
        p.set_defaults(func=cmd_eval)
    sk = esub.add_parser("skills", help="held-out accuracy per synthetic skill: multi-stream model, twin, base model")
    add_skills_args(sk)
    _model_args(sk)
    sk.add_argument("--json", action="store_true")
    sk.add_argument("--details", action="store_true", help="with --json: per-case records too")
    sk.set_defaults(func=cmd_eval)
    ch = esub.add_parser("chats", help="held-out conversations of 3-8 turns, one session each: accuracy per turn, "
                                       "all turns right, follow-ups")
    ch.add_argument("--n", type=int, default=100, help="conversations (default: 100)")
    ch.add_argument("--data", help="conversation timelines, JSONL with meta.turns (default: the held-out split of "
                                   "multistream.data.conversations, generated)")
    ch.add_argument("--seed", type=int, default=0, help="seed of the generated conversations (default: 0)")
    _model_args(ch)
    ch.add_argument("--json", action="store_true")
    ch.add_argument("--details", action="store_true", help="with --json: per-turn records too")
    ch.set_defaults(func=cmd_eval)

    v3 = esub.add_parser("injection-v3", help="prompt injection v3: completion attacks in the twin's template, fake "
                         "tool results, attacks mid-conversation, system-prompt leaks, multi-turn; plain and adaptive")
    v3.add_argument("--cases", help="JSONL case file (default: the built-in suite, suites/injection_v3.jsonl)")
    v3.add_argument("--limit", type=int, help="use the first N cases (the suite mixes families and variants in any first N)")
    v3.add_argument("--families", type=_families, help="only these attack families, comma-separated (benign cases kept)")
    _model_args(v3)
    v3.add_argument("--json", action="store_true")
    v3.add_argument("--details", action="store_true", help="with --json: per-case records too")
    v3.set_defaults(func=cmd_eval)

    pl = sub.add_parser("plot", help="figures: a session's timeline, latency per case")
    psub = pl.add_subparsers(dest="what", required=True)
    t = psub.add_parser("timeline", help="one session as a rows x streams chart (PNG/SVG by the --out suffix)")
    t.add_argument("--from", dest="from_file", help="a `multistream generate --json` output (default: run a session)")
    from ..engine.cli import parse_input

    t.add_argument("--input", action="append", type=parse_input, metavar="STREAM=TEXT[@ROW]", help="as for `generate`")
    t.add_argument("--prefix", default=SYSTEM_PROMPT)
    t.add_argument("--model", default="default")
    t.add_argument("--max-rows", type=int, default=160)
    t.add_argument("--max-tokens", type=int, default=64)
    t.add_argument("--title")
    t.add_argument("--out", default="timeline.png")
    t.set_defaults(func=cmd_plot)
    la = psub.add_parser("latency", help="multi vs single latency per case (PNG/SVG by the --out suffix)")
    la.add_argument("--from", dest="from_file", help="report.json or `eval latency --json --details` output (default: run it)")
    la.add_argument("--cases")
    la.add_argument("--limit", type=int)
    la.add_argument("--rate", type=float, default=ARRIVAL_RATE)
    la.add_argument("--mode", help="all_at_once or rate_R (default: the first)")
    la.add_argument("--out", default="latency.png")
    _model_args(la)
    la.set_defaults(func=cmd_plot)

    r = sub.add_parser("report", help="run every evaluation; write report.md, report.json and figures")
    r.add_argument("--out", default="report", help="output folder")
    r.add_argument("--limit", type=int, help="cases per suite (default: all)")
    r.add_argument("--rate", type=float, default=ARRIVAL_RATE, help="input arrival rate in tokens/s for the latency run")
    r.add_argument("--prompts", help="accuracy case file (default: built-in)")
    r.add_argument("--injection", help="injection case file (default: built-in)")
    r.add_argument("--injection-v3", help="injection v3 case file (default: built-in)")
    r.add_argument("--interrupts", help="interrupt case file (default: built-in)")
    r.add_argument("--listening", help="listening case file (default: built-in)")
    r.add_argument("--chats", help="conversation timelines, JSONL with meta.turns (default: the generated held-out "
                   "conversations, --limit of them or 100)")
    r.add_argument("--stages", help="run only these suites (comma-separated: prompts, injection, injection-v3, "
                   "interrupts, latency, listening, chats) and keep their results for a later full run")
    r.add_argument("--fresh", action="store_true", help="run every suite again (default: reuse the results kept in "
                   "OUT/stages/ by a run with the same models, options and cases)")
    _model_args(r)
    r.set_defaults(func=cmd_report)


def cmd_evaluate_default(args) -> int:
    """The held-out skills report (:mod:`multistream.evals.skills`; also ``multistream eval skills``)."""
    from pathlib import Path

    from .skills import evaluate_all, format_report

    single = None if args.single == "none" else args.single
    results = evaluate_all(args.model, single, args.data, args.n, include_base=not args.no_base, parallel=not args.serial,
                           max_tokens=args.max_tokens, dtype=args.dtype, compiled=args.compile, skills=args.skills,
                           speak_rule=args.speak_rule, quant=args.quant)
    print(format_report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return 0


def register_evaluate_default(sub) -> None:
    e = sub.add_parser("evaluate-default", help="held-out accuracy per skill: multi-stream model, its twin, the base model "
                       "(the same as `multistream eval skills`)")
    e.add_argument("--model", default="default", help="multi-stream model (name or folder)")
    e.add_argument("--single", default="default-single", help="single-stream twin (name or folder; 'none' to skip)")
    add_skills_args(e)
    add_dtype_arg(e)
    add_engine_args(e, autotune=False)
    e.add_argument("--max-tokens", type=int, default=EVAL_MAX_TOKENS,
                   help="total token budget of each contender on a case (all output streams together; all replies)")
    e.add_argument("--json", help="also write the results here")
    e.set_defaults(func=cmd_evaluate_default)


def evaluate_recipe(multi_dir, single_dir, test_file, n_per_skill: int, max_tokens: int | None = None) -> dict:
    """``multistream train --recipe``'s held-out report of the pair it trained (:func:`.skills.evaluate_all`, the base
    model too), printed; returns the results (``multistream.train.recipes.Evaluate``)."""
    from .skills import evaluate_all, format_report

    budget = {} if max_tokens is None else {"max_tokens": max_tokens}
    results = evaluate_all(multi_dir, single_dir, test_file, n_per_skill, **budget)
    print(format_report(results))
    return results


def cmd_compare_silence(args) -> int:
    """``multistream train --compare-silence`` (:mod:`.silence`): both silence rules trained side by side, then compared."""
    from .silence import compare_silence, format_comparison

    report = compare_silence(args.out or "runs/compare-silence", minutes=args.minutes, n_per_skill=args.n)
    print(format_comparison(report))
    return 0
