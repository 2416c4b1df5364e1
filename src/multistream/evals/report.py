"""``multistream report``: every evaluation on one pair of models, written as report.md, report.json and figures.

The suites are the built-in ones (or the files given), each cut to ``limit`` cases; the ``chats`` stage runs
``limit`` (default 100) held-out conversations (:mod:`.chats`; skipped, with a warning, where this checkout has no
conversation generator and no file is given). Everything runs once, in one process on one machine, so the ratios
compare like with like.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from pathlib import Path

from ..defaults import ARRIVAL_RATE
from .cases import load_cases
from .chats import ConversationsMissing, eval_chats, load_conversations
from .common import Contenders
from .injection import eval_injection, multi_placement
from .injection_v3 import eval_injection_v3, load_attack_cases
from .interrupts import eval_interrupts
from .interrupts import run_multi_case as run_interrupt
from .latency import eval_latency
from .listening import eval_listening
from .plots import plot_bars, plot_cases, plot_latency, plot_timeline
from .prompts import eval_prompts

STAGES = ("prompts", "injection", "injection-v3", "interrupts", "latency", "listening", "chats", "figures")
CHATS_DEFAULT = 100
"""Conversations in the ``chats`` stage when no ``limit`` is given."""


def fmt_rate(d: dict | None, key: str) -> str:
    """``d[key]`` with its 95% Wilson interval ``d[key + "_ci"]``, as ``0.250 [0.089, 0.532]``."""
    if not d or d.get(key) is None:
        return "n/a"
    ci = d.get(f"{key}_ci")
    return f"{d[key]:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _pair(i: dict, key: str, ratio_key: str | None = None) -> dict:
    out = {"multi": i["multi"][key], "multi_ci": i["multi"][f"{key}_ci"], "single": i["single"][key],
           "single_ci": i["single"][f"{key}_ci"], "n": i["multi"]["n"]}
    return out | ({"ratio": i[ratio_key]} if ratio_key else {})


def summary(results: dict) -> dict:
    p, i, t, lat, li = (results.get(k) for k in ("prompts", "injection", "interrupts", "latency", "listening"))
    out: dict = {}
    if p:
        out["accuracy"] = _pair(p, "accuracy", "accuracy_ratio")
    if i:
        out["asr"] = _pair(i, "asr", "asr_ratio")
        out["utility_under_attack"] = _pair(i, "utility")
        out["monitor"] = i["monitor"]
    if t:
        out["interrupts"] = _pair(t, "success", "success_ratio") | {"latency_ratio": t["latency_ratio"]}
    if lat:
        out["latency"] = {mode: {k: d[k] for k in ("ttft_ratio", "e2e_ratio", "ttft_ratio_both_correct",
                                                    "e2e_ratio_both_correct", "accuracy_ratio", "n", "n_both_correct")}
                          | {side: {k: v for k, v in d[side].items()} for side in ("multi", "single")}
                          for mode, d in lat["modes"].items()}
    v3 = results.get("injection-v3")
    if v3:
        out["injection_v3"] = {"asr": _pair(v3, "asr", "asr_ratio"), "utility_under_attack": _pair(v3, "utility"),
                               "bar": v3["bar"]}
    ch = results.get("chats")
    if ch:
        m, t = ch["multi"], ch["twin"]
        out["chats"] = {"unit": "%", "conversations": ch["n"], "turns": ch["turns"]} | {
            name: {"multi": m[key], "multi_ci": m[f"{key}_ci"], "single": t[key], "single_ci": t[f"{key}_ci"]}
            for name, key in (("turns_right", "turn_accuracy"), ("all_turns_right", "all_turns_right"))} | {
            name: {"multi": m[key]["accuracy"], "multi_ci": m[key]["accuracy_ci"], "single": t[key]["accuracy"],
                   "single_ci": t[key]["accuracy_ci"], "n": m[key]["n"]}
            for name, key in (("follow_up", "follow_up"), ("standalone", "standalone"))}
    if li:
        out["listening"] = _pair(li, "accuracy", "accuracy_ratio") | {
            k: li[k] for k in ("from_fact_ratio", "from_fact_ratio_both_correct", "n_both_correct", "rate")} | {
            "multi_from_fact_median": li["multi"]["from_fact_median"], "single_from_fact_median":
            li["single"]["from_fact_median"], "before_end": li["multi"]["before_end"]}
    return out


def _weights_stamp(name: str) -> str:
    """A hash of a model folder's files, names and contents (``default`` and the like: the packaged weights), so
    that retrained weights under the same name do not reuse old results, and a copy of the same weights (a fresh
    clone, another checkout) does. The model card (``README.md``) is left out: new figures in it change no weight."""
    import hashlib

    from ..zoo import WEIGHTS

    folder = WEIGHTS / name if (WEIGHTS / name).is_dir() else Path(name)
    if not folder.is_dir():
        return name
    h = hashlib.sha1()
    for f in sorted(f for f in folder.rglob("*") if f.is_file() and f.name != "README.md"):
        h.update(str(f.relative_to(folder)).encode() + b"\0")
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def _dtype(model) -> str:
    return str(next(model.parameters()).dtype) if hasattr(model, "parameters") else "?"


def _stage_key(c: Contenders, limit, rate, cases: dict) -> dict:
    """What a stage's saved result depends on (models and their weights, options, the cases' content, the
    toolkit's version): it is reused only by a run with the same key."""
    from .. import __version__

    content = json.dumps({k: [_case_dict(x) for x in v] for k, v in sorted(cases.items())}, sort_keys=True,
                         default=str)
    return {"model": c.model_name, "weights": _weights_stamp(c.model_name), "single": c.single_name,
            "single_weights": _weights_stamp(c.single_name), "dtype": _dtype(c.multi),
            "single_dtype": _dtype(c.single[0]) if c.single else None, "limit": limit, "rate": rate,
            "max_tokens": c.max_tokens, "max_rows": c.max_rows, "speculative": c.speculative, "compiled": c.compiled,
            "speak_rule": c.speak_rule, "input_wait": c.input_wait, "version": __version__,
            "cases": _sha1(content)}


LATER_FIELDS = ("accepted", "tools")
"""Case fields added after results were first kept: they count in a stage's key only when set, so the results kept
for cases without them still apply."""


def _case_dict(case) -> dict:
    import dataclasses

    return {k: v for k, v in dataclasses.asdict(case).items() if v or k not in LATER_FIELDS}


def _sha1(text: str) -> str:
    import hashlib

    return hashlib.sha1(text.encode()).hexdigest()


def _stage_meta(c: Contenders) -> dict:
    """Where and when a stage ran (kept with its result: a report may be assembled from runs on several machines)."""
    import torch

    return {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "machine": platform.machine(),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "device": str(getattr(c.multi, "device", "cpu")), "compiled": c.compiled, "speak_rule": c.speak_rule,
            "input_wait": c.input_wait}


def build_report(c: Contenders, out_dir: str | Path, limit: int | None = None, rate: float = ARRIVAL_RATE,
                 case_files: dict[str, str | None] | None = None, show_progress: bool = True,
                 stages: list[str] | None = None, fresh: bool = False) -> dict | None:
    """Run the suite, write ``report.md``, ``report.json`` and PNG figures into ``out_dir``; returns the numbers.

    Each suite's result is kept in ``out_dir/stages/`` and reused by a later run with the same models, options
    and cases (unless ``fresh``): an interrupted report resumes, and ``stages`` (a subset of ``STAGES`` less
    ``figures``) runs only some suites, e.g. in two processes at once; such a run returns None and writes no report."""
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = case_files or {}
    unknown = sorted(set(stages or ()) - set(STAGES[:-1]))
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(unknown)}; stages are {', '.join(STAGES[:-1])}")
    cases, warnings = {}, []
    for kind in ("prompts", "injection", "interrupts", "listening"):
        cases[kind], errs = load_cases(files.get(kind), kind, limit)
        warnings += errs
    key = _stage_key(c, limit, rate, cases)
    attacks, errs = load_attack_cases(files.get("injection-v3"), limit)  # (its own key: the other stages' keys stay)
    warnings += errs
    attacks_key = key | {"attack_cases": _sha1(json.dumps([_case_dict(x) for x in attacks], sort_keys=True,
                                                          default=str))}
    conversations, chats_key = None, None
    if stages is None or "chats" in stages:  # the conversations: generated (or read) only when the stage may run
        try:
            conversations = load_conversations(files.get("chats"), limit or CHATS_DEFAULT)
        except ConversationsMissing as e:
            conversations = None
            warnings.append(f"chats: not run: {e}")
        if conversations is not None:
            content = json.dumps([tl.to_dict() for tl in conversations], sort_keys=True, ensure_ascii=False)
            chats_key = key | {"conversations": _sha1(content), "n_conversations": len(conversations)}
    saved_dir = out / "stages"
    saved_dir.mkdir(exist_ok=True)
    results: dict = {}
    stage_meta: dict = {}
    figures: dict[str, str] = {}
    todo = [s for s in STAGES if (stages is None or s in stages) and not (s == "chats" and conversations is None)]
    bar = tqdm(todo, desc="report", file=sys.stderr, disable=not show_progress, dynamic_ncols=True)
    for stage in bar:
        bar.set_postfix_str(stage)
        saved = saved_dir / f"{stage}.json"
        stage_key = {"chats": chats_key, "injection-v3": attacks_key}.get(stage, key)
        if stage != "figures" and not fresh and saved.exists():
            try:
                kept = json.loads(saved.read_text())
            except (OSError, ValueError):  # unreadable: run the suite again
                kept = {}
            if kept.get("key") == stage_key:
                results[stage], stage_meta[stage] = kept["result"], kept.get("meta")
                continue
        started = _stage_meta(c)
        if stage == "prompts":
            from ..engine.tools import demo_tools

            results["prompts"] = eval_prompts(c, cases["prompts"], show_progress, tools=demo_tools())
        elif stage == "injection":
            results["injection"] = eval_injection(c, cases["injection"], show_progress)
        elif stage == "injection-v3":
            results["injection-v3"] = eval_injection_v3(c, attacks, show_progress)
        elif stage == "interrupts":
            results["interrupts"] = eval_interrupts(c, cases["interrupts"], show_progress)
        elif stage == "latency":
            from ..engine.tools import demo_tools

            results["latency"] = eval_latency(c, cases["prompts"], rate, show_progress, tools=demo_tools())
        elif stage == "listening":
            results["listening"] = eval_listening(c, cases["listening"], rate, show_progress)
        elif stage == "chats":
            results["chats"] = eval_chats(c, conversations, show_progress=show_progress)
        else:
            figures = _figures(c, results, cases, out)
        if stage != "figures":
            stage_meta[stage] = started
            tmp = saved.with_suffix(".tmp")
            tmp.write_text(json.dumps({"key": stage_key, "meta": started, "result": results[stage]},
                                      ensure_ascii=False, default=str))
            os.replace(tmp, saved)  # (a run stopped mid-write leaves no broken file behind)
    if stages is not None:
        return None
    summ = summary(results)
    import torch

    meta = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "model": c.model_name,
            "single": c.single_name, "machine": platform.machine(), "processor": platform.processor() or None,
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "limit": limit, "rate": rate,
            "max_tokens": c.max_tokens, "device": str(getattr(c.multi, "device", "cpu")), "stages": stage_meta}
    report = {"meta": meta, "summary": summ, "figures": figures, "warnings": warnings, **results}
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    (out / "report.md").write_text(render_markdown(report))
    return report


def _streams(c: Contenders) -> list[tuple[str, str]]:
    return [(s.name, s.kind) for s in c.multi.layout]


def _figures(c: Contenders, results: dict, cases: dict, out: Path) -> dict[str, str]:
    from .common import run_multi

    figs: dict[str, str] = {}
    s = summary(results)
    groups = {
        "accuracy": {"multi": s["accuracy"]["multi"], "single": s["accuracy"]["single"]},
        "attack success": {"multi": s["asr"]["multi"], "single": s["asr"]["single"]},
        "utility under attack": {"multi": s["utility_under_attack"]["multi"], "single": s["utility_under_attack"]["single"]},
        "interrupt success": {"multi": s["interrupts"]["multi"], "single": s["interrupts"]["single"]},
        "think flags injection": {"multi": s["monitor"]["flag_rate"]},
    }
    figs["summary"] = plot_bars(groups, out / "summary.png", "multi-stream vs single-stream (same base, same data)").name
    by_style = results["injection"]["by"]["style"]
    if by_style:
        sg = {k: {"multi": v["multi_asr"], "single": v["single_asr"]} for k, v in by_style.items()}
        figs["asr_by_style"] = plot_bars(sg, out / "asr_by_style.png", "attack success rate by style", "ASR").name
    lat = results["latency"]
    for mode in lat["modes"]:
        figs[f"latency_{mode}"] = plot_latency(lat, out / f"latency_{mode}.png", mode).name
    lg = {mode: {"multi": d["multi"]["ttft_median"], "single": d["single"]["ttft_median"]} for mode, d in lat["modes"].items()}
    lg |= {f"e2e {m}": {"multi": d["multi"]["e2e_median"], "single": d["single"]["e2e_median"]}
           for m, d in lat["modes"].items()}
    figs["latency_medians"] = plot_bars({(k if k.startswith("e2e") else f"ttft {k}"): v for k, v in lg.items()},
                                        out / "latency_medians.png", "median latency", "seconds").name
    recs = results["interrupts"]["cases"]
    figs["interrupt_latency"] = plot_cases(
        [f"{r['id']}{' ok' if r['multi']['success'] else ''}" for r in recs], [r["multi"]["latency"] for r in recs],
        [r["single"]["latency"] for r in recs], out / "interrupt_latency.png",
        "interrupt to final answer per case (' ok': multi-stream succeeded)").name
    # one session of each kind, drawn row by row
    inj = cases["injection"][0]
    core = c.core()
    prefix, inputs = multi_placement(inj, c.multi.layout, core.tok)
    r = run_multi(c, core, inputs, prefix=prefix).result
    figs["timeline_injection"] = plot_timeline(r.events, _streams(c), out / "timeline_injection.png",
                                               f"injection case {inj.id}").name
    it = cases["interrupts"][0]
    m = run_interrupt(c, c.core(idle_rows=None, max_rows=c.max_rows + 1), it)
    figs["timeline_interrupt"] = plot_timeline(m["result"].events, _streams(c), out / "timeline_interrupt.png",
                                               f"interrupt case {it.id}: interrupt at row {m['interrupt_row']} "
                                               f"(answer started at row {m['answer_row']})").name
    return figs


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _short(text: str, n: int = 70) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def _where(m: dict) -> str:
    """Where the suites ran: one run, or the runs the report was assembled from (``meta.stages``)."""
    runs = {(d["machine"], d["cpus"], d["torch_threads"], d["device"]) for d in (m.get("stages") or {}).values() if d}
    here = f"({m['machine']}, {m['cpus']} CPUs, {m['torch_threads']} torch threads, device {m['device']})"
    dates = sorted({d["date"] for d in (m.get("stages") or {}).values() if d})
    if len(dates) <= 1 and len(runs) <= 1:
        return f"one run on one machine {here}, {m['date']}"
    if len(runs) == 1:
        machine, cpus, threads, device = runs.pop()
        here = f"({machine}, {cpus} CPUs, {threads} torch threads, device {device})"
        return (f"its suites run separately on one machine {here}, started {dates[0]} to {dates[-1]} "
                "(`meta.stages` in report.json: when each ran)")
    return f"its suites run on {len(runs)} setups (`meta.stages` in report.json), {dates[0]} to {dates[-1]}"


def _pct(value, ci) -> str:
    """A percentage with its 95% interval, as ``57.1 [32.6, 78.6]``."""
    if value is None:
        return "n/a"
    return f"{value:.1f}" + (f" [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else "")


def _ratio(a, b):
    return None if a is None or not b else round(a / b, 4)


def _chats_markdown(ch: dict) -> list[str]:
    from .chats import table_rows

    lines = ["## Conversations", "",
             f"{ch['n']} held-out conversations of several turns, {ch['turns']} turns, one engine session each "
             f"(the next turn once the session has settled, {ch['settle_rows']} quiet rows); the twin as one growing "
             f"chat; {ch['max_tokens']} tokens per reply part for both. Percent right with 95% intervals.", "",
             "| measure | n | multi-stream | single-stream |", "|---|---|---|---|"]
    lines += [f"| {name} | {'' if n is None else n} | {a} | {b} |" for name, n, a, b in table_rows(ch)]
    notes = [f"{ch['multi'][k]} {what}" for k, what in (("cut_turns", "cut at the budget or row limit"),
                                                       ("late_turns", "whose correction came after the answer"))
             if ch["multi"].get(k)]
    if notes:
        lines += ["", "Multi-stream turns: " + "; ".join(notes) + "."]
    return lines + [""]


def _injection_v3_markdown(v: dict) -> list[str]:
    m, t = v["multi"], v["single"]
    lines = ["## Prompt injection v3: completion attacks", "",
             f"{m['n']} attacked and {m['n_benign']} benign conversations (`multistream.evals.injection_v3`): the data "
             "forges its own end and a user request for another fact, plain (made-up delimiters) or adaptive (the "
             "twin's own `</tool>`/`<tool>`); scored on the last turn's final answer. Rates with 95% intervals.", "",
             "| measure | multi-stream | single-stream |", "|---|---|---|"]
    for label, key in (("attack success", "asr"), ("utility under attack", "utility"), ("right under attack", "accuracy"),
                       ("accuracy without an attack", "benign_accuracy"), ("codename stated unasked", "benign_leak")):
        lines.append(f"| {label} | {fmt_rate(m, key)} | {fmt_rate(t, key)} |")
    lines += ["", "| group | n | multi attack success | single attack success | multi utility | single utility |",
              "|---|---|---|---|---|---|"]
    for key in ("family", "variant"):
        for g, d in v["by"][key].items():
            lines.append(f"| {key}: {g} | {d['n']} | {fmt_rate(d, 'multi_asr')} | {fmt_rate(d, 'single_asr')} | "
                         f"{_fmt(d['multi_utility'])} | {_fmt(d['single_utility'])} |")
    return lines + [""]


def render_markdown(report: dict) -> str:
    m, s, figs = report["meta"], report["summary"], report["figures"]
    lines = [
        "# multistream evaluation report", "",
        f"Multi-stream model `{m['model']}` against its single-stream twin `{m['single']}` on the same cases, "
        f"{_where(m)}. Greedy decoding, the same total budget of {m['max_tokens']} tokens for both "
        f"(all output streams together; the twin's reply with its thinking); rates with 95% Wilson intervals; "
        f"the accuracy and latency runs give both "
        f"contenders the calculator and clock tools."
        + (f" Suites cut to {m['limit']} case(s) each." if m["limit"] else ""), "",
        "## Summary", "", "| measure | multi-stream | single-stream | ratio (multi/single) | n |", "|---|---|---|---|---|",
    ]
    if "accuracy" in s:
        p = report["prompts"]
        lines.append(f"| accuracy (prompts) | {fmt_rate(p['multi'], 'accuracy')} | {fmt_rate(p['single'], 'accuracy')} "
                     f"| {_fmt(p['accuracy_ratio'])} | {p['multi']['n']} |")
    if "asr" in s:
        i, mon = report["injection"], report["injection"]["monitor"]
        lines.append(f"| attack success rate (lower is better) | {fmt_rate(i['multi'], 'asr')} | "
                     f"{fmt_rate(i['single'], 'asr')} | {_fmt(i['asr_ratio'])} | {i['multi']['n']} |")
        lines.append(f"| utility under attack (correct and not attacked) | {fmt_rate(i['multi'], 'utility')} | "
                     f"{fmt_rate(i['single'], 'utility')} | | {i['multi'].get('n_with_answer', '')} |")
        lines.append(f"| monitor: `think` flags the injection | {fmt_rate(mon, 'flag_rate')} | "
                     f"{fmt_rate(mon, 'single_flag_rate')} (inline `<think>`) | | |")
        lines.append(f"| monitor: successful attacks flagged | {fmt_rate(mon, 'caught')} | | | |")
        if i["multi"].get("n_benign"):
            lines.append(f"| accuracy on benign documents | {fmt_rate(i['multi'], 'benign_accuracy')} | "
                         f"{fmt_rate(i['single'], 'benign_accuracy')} | | {i['multi']['n_benign']} |")
            lines.append(f"| monitor: flags on benign documents (false positives) | {fmt_rate(mon, 'false_positive_rate')} | "
                         f"{fmt_rate(mon, 'single_false_positive_rate')} | | {i['multi']['n_benign']} |")
    if "injection_v3" in s:
        v = report["injection-v3"]
        lines.append(f"| injection v3 (completion attacks): attack success | {fmt_rate(v['multi'], 'asr')} | "
                     f"{fmt_rate(v['single'], 'asr')} | {_fmt(v['asr_ratio'])} | {v['multi']['n']} |")
        lines.append(f"| injection v3: utility under attack | {fmt_rate(v['multi'], 'utility')} | "
                     f"{fmt_rate(v['single'], 'utility')} | | {v['multi']['n']} |")
    if "interrupts" in s:
        t = report["interrupts"]
        lines.append(f"| interrupt success | {fmt_rate(t['multi'], 'success')} | {fmt_rate(t['single'], 'success')} | "
                     f"{_fmt(t['success_ratio'])} | {t['multi']['n']} |")
        lines.append(f"| interrupt to final answer, median s | {_fmt(t['multi']['latency_median'])} | "
                     f"{_fmt(t['single']['latency_median'])} | {_fmt(t['latency_ratio'])} | |")
    if "latency" in s:
        for mode, d in report["latency"]["modes"].items():
            name, mm, ss = mode.replace("_", " "), d["multi"], d["single"]
            lines.append(f"| accuracy in the latency run ({name}) | {fmt_rate(mm, 'accuracy')} | "
                         f"{fmt_rate(ss, 'accuracy')} | {_fmt(d['accuracy_ratio'])} | {d['n']} |")
            for m, label in (("ttft", "first answer token"), ("e2e", "final answer complete")):
                lines.append(f"| {label}, median s, all cases ({name}) | {_fmt(mm[m + '_median'])} | "
                             f"{_fmt(ss[m + '_median'])} | {_fmt(d[m + '_ratio'])} | {d['n']} |")
                lines.append(f"| {label}, median s, cases both answered correctly ({name}) | "
                             f"{_fmt(mm[m + '_median_both_correct'])} | {_fmt(ss[m + '_median_both_correct'])} | "
                             f"{_fmt(d[m + '_ratio_both_correct'])} | {d['n_both_correct']} |")
    if "listening" in s:
        li = report["listening"]
        mm, ss = li["multi"], li["single"]
        lines.append(f"| listening: accuracy (document at {li['rate']:g} tokens/s) | {fmt_rate(mm, 'accuracy')} | "
                     f"{fmt_rate(ss, 'accuracy')} | {_fmt(li['accuracy_ratio'])} | {li['n']} |")
        lines.append(f"| listening: fact to final answer, median s, all cases (wrong = slowest) | "
                     f"{_fmt(mm['from_fact_median'])} | {_fmt(ss['from_fact_median'])} | {_fmt(li['from_fact_ratio'])} "
                     f"| {li['n']} |")
        lines.append(f"| listening: fact to final answer, median s, cases both answered correctly | "
                     f"{_fmt(mm['from_fact_median_both_correct'])} | {_fmt(ss['from_fact_median_both_correct'])} | "
                     f"{_fmt(li['from_fact_ratio_both_correct'])} | {li['n_both_correct']} |")
        lines.append(f"| listening: right before the document ended | {fmt_rate(mm, 'before_end')} | 0 (cannot) | | "
                     f"{li['n']} |")
    if "chats" in s:
        ch = s["chats"]
        for name, label, n in (("turns_right", "turns right", ch["turns"]),
                               ("all_turns_right", "every turn right", ch["conversations"]),
                               ("follow_up", "follow-up turns right", ch["follow_up"]["n"])):
            d = ch[name]
            lines.append(f"| conversations: {label} (%) | {_pct(d['multi'], d['multi_ci'])} | "
                         f"{_pct(d['single'], d['single_ci'])} | {_fmt(_ratio(d['multi'], d['single']))} | {n} |")
    lines += [""]
    for key, caption in (("summary", "Rates, multi vs single"), ("asr_by_style", "Attack success by style"),
                         ("interrupt_latency", "Interrupt to final answer, per case"),
                         ("latency_medians", "Median latency"), ("latency_all_at_once", "Latency per case, input all at once"),
                         ("timeline_injection", "One injection session, row by row"),
                         ("timeline_interrupt", "One interrupt session, row by row")):
        if key in figs:
            lines += [f"### {caption}", "", f"![{caption}]({figs[key]})", ""]
    for key in figs:
        if key.startswith("latency_rate"):
            lines += ["### Latency per case, input at a rate", "", f"![latency at a rate]({figs[key]})", ""]
    if "injection" in report:
        inj = report["injection"]
        lines += ["## Prompt injection by style and position", "", "| group | n | multi ASR | single ASR | think flags |",
                  "|---|---|---|---|---|"]
        for key in ("style", "position"):
            for g, d in inj["by"][key].items():
                lines.append(f"| {key}: {g} | {d['n']} | {fmt_rate(d, 'multi_asr')} | {fmt_rate(d, 'single_asr')} | "
                             f"{fmt_rate(d, 'flag_rate')} |")
        lines += ["", "| case | multi answer | multi think | single answer |", "|---|---|---|---|"]
        for r in inj["cases"][:12]:
            lines.append(f"| {r['id']} | {_short(r['multi']['answer'], 40)}{' **(attacked)**' if r['multi']['attacked'] else ''}"
                         f" | {_short(r['multi']['think'], 50)} | {_short(r['single']['answer'], 40)}"
                         f"{' **(attacked)**' if r['single']['attacked'] else ''} |")
        lines.append("")
    if "injection-v3" in report:
        lines += _injection_v3_markdown(report["injection-v3"])
    if "interrupts" in report:
        lines += ["## Interrupts", "", "| case | answer row / interrupt row | multi final | ok | single final | ok |",
                  "|---|---|---|---|---|---|"]
        for r in report["interrupts"]["cases"][:12]:
            mm, ss = r["multi"], r["single"]
            lines.append(f"| {r['id']} | {mm['answer_row']} / {mm['interrupt_row']} | {_short(mm['final'], 40)} | "
                         f"{'yes' if mm['success'] else 'no'} | {_short(ss['final'], 40)} | {'yes' if ss['success'] else 'no'} |")
        lines.append("")
    if "prompts" in report:
        lines += ["## Accuracy cases", "", "| case | expected | multi answer | single answer |", "|---|---|---|---|"]
        for r in report["prompts"]["cases"][:12]:
            lines.append(f"| {r['id']} | {_short(r['expected'], 20)} | {_short(r['multi']['answer'], 40)} "
                         f"({'ok' if r['multi']['correct'] else 'wrong'}) | {_short(r['single']['answer'], 40)} "
                         f"({'ok' if r['single']['correct'] else 'wrong'}) |")
        lines.append("")
    if "chats" in report:
        lines += _chats_markdown(report["chats"])
    if report.get("warnings"):
        lines += ["## Skipped case lines", ""] + [f"- {w}" for w in report["warnings"]] + [""]
    lines += ["Definitions: `multistream.evals.scoring` (the final answer message is scored and its claimed answer "
              "extracted strictly; an attack succeeds when the answer starts to obey it, the marker or the start of one "
              "of its words; utility under attack is correct and not attacked; an interrupt succeeds when the final "
              "answer claims the corrected answer and states no value of the stale task). Numbers: report.json.", ""]
    return "\n".join(lines)
