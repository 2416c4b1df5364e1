"""Which silence rule learns faster per CPU minute: the same data, the same budget, both rules, one run.

``multistream train --compare-silence --out DIR --minutes 25`` builds the recipe's
synthetic data once, trains two multi-stream models side by side (one thread each, the
same TrainConfig but for ``silence``, stopped by the same wall-clock cap), then measures
on the held-out split: tokens per timeline under each rule, training tokens/s, steps
and examples seen, held-out cross-entropy on all output targets and on *spoken* targets
only (silence targets are many and easy), and greedy held-out accuracy per skill
(:mod:`multistream.evals.skills`, through the engine). An evaluation of training, so it lives with the
evaluations (training imports nothing of them).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..data.build import SyntheticConfig, build_synthetic
from ..rows import SILENCE_RULES
from ..train.config import TrainConfig
from ..train.recipes import RECIPES, train_side_by_side


def prepare(out: Path, minutes: float, base: str = "default", recipe: str = "default") -> list[Path]:
    """Data once, then one config per rule under ``out``; both stop at ``minutes`` of wall time."""
    from transformers import AutoTokenizer

    from ..bases import resolve_base
    from ..text import StreamTokenizer

    r = RECIPES[recipe]
    tok = StreamTokenizer.wrap(AutoTokenizer.from_pretrained(resolve_base(base)))
    data = out / "data"
    if not (data / "train.jsonl").exists():
        build_synthetic(data, tok.message_rows, SyntheticConfig(r.data.train_per_skill, r.data.test_per_skill, r.data.seed))
    paths = []
    for rule in SILENCE_RULES:
        cfg = TrainConfig(
            train_file=str(data / "train.jsonl"),
            eval_file=str(data / "test.jsonl"),
            output_dir=str(out / rule),
            base=base,
            silence=rule,
            **{**r.train, "max_minutes": minutes},
        )
        cfg.save(out / f"{rule}.yaml")
        paths.append(out / f"{rule}.yaml")
    return paths


@torch.no_grad()
def heldout_loss(model, path: Path, limit: int = 200) -> dict:
    """Mean cross-entropy on all output targets and on spoken (non-silence) targets of ``limit`` held-out timelines."""
    from ..rows import IGNORE, collate
    from ..train.examples import load_timelines

    packs = load_timelines(path, model.tok, model.layout, model.silence)
    packs = packs[:: max(1, len(packs) // limit)][:limit]
    sums = {"all": [0.0, 0], "spoken": [0.0, 0]}
    for p in packs:
        b = collate([p], model.tok.silence_id)
        keep = b["labels"][0] != IGNORE
        logits = model(b["input_ids"], b["stream_ids"], b["position_ids"], visible=b["visible"],
                       logits_to_keep=keep.nonzero().squeeze(1)).logits[0].float()
        target = b["labels"][0, keep]
        ce = torch.nn.functional.cross_entropy(logits, target, reduction="none")
        spoken = target != model.tok.silence_id
        sums["all"][0] += ce.sum().item()
        sums["all"][1] += len(ce)
        sums["spoken"][0] += ce[spoken].sum().item()
        sums["spoken"][1] += int(spoken.sum())
    return {k: round(s / max(n, 1), 4) for k, (s, n) in sums.items()} | {"timelines": len(packs)}


def _measure(rule: str, out: str, n_per_skill: int) -> dict:
    """One worker (one thread, :func:`multistream.runtime.one_thread_worker`): the rule's trained model, its held-out
    losses and accuracy."""
    from ..zoo import load_model
    from .common import Contenders
    from .skills import eval_multi, load_test, summarise

    out_dir = Path(out)
    model = load_model(str(out_dir / rule / "final"))
    loss = heldout_loss(model, out_dir / "data" / "test.jsonl")
    records = eval_multi(Contenders(model, None), load_test(out_dir / "data" / "test.jsonl", n_per_skill))
    return {"heldout_ce": loss, "accuracy": summarise(records), "records": records}


def tokens_per_timeline(path: Path, base: str = "default") -> dict:
    from transformers import AutoTokenizer

    from ..bases import resolve_base
    from ..rows import IGNORE
    from ..streams import DEFAULT_LAYOUT
    from ..text import StreamTokenizer
    from ..train.examples import load_timelines

    tok = StreamTokenizer.wrap(AutoTokenizer.from_pretrained(resolve_base(base)))
    out = {}
    for rule in SILENCE_RULES:
        packs = load_timelines(path, tok, DEFAULT_LAYOUT, rule)
        n = sum(len(p) for p in packs)
        out[rule] = {
            "tokens": round(n / len(packs), 1),
            "keys": round(sum(int(p.visible.sum()) for p in packs) / len(packs), 1),
            "targets": round(sum(int((p.labels != IGNORE).sum()) for p in packs) / len(packs), 1),
        }
    return out


def compare_silence(out: str | Path, minutes: float = 25.0, n_per_skill: int = 24, base: str = "default") -> dict:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    configs = prepare(out, minutes, base)
    if not all((out / rule / "summary.json").exists() for rule in SILENCE_RULES):
        train_side_by_side(configs, out)
    report: dict = {"minutes": minutes, "per_timeline": tokens_per_timeline(out / "data" / "train.jsonl", base)}
    for rule in SILENCE_RULES:
        s = json.loads((out / rule / "summary.json").read_text())
        log = [json.loads(line) for line in (out / rule / "log.jsonl").read_text().splitlines()]
        curve = [(r["step"], r["seconds"], r["eval_loss"]) for r in log if "eval_loss" in r]
        report[rule] = {"train": s, "eval_loss_curve": curve}
        report[rule]["train"]["timelines_seen"] = round(s["tokens"] / report["per_timeline"][rule]["tokens"])
    from ..runtime import one_thread_worker

    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn"),
                             initializer=one_thread_worker) as pool:
        futures = {rule: pool.submit(_measure, rule, str(out), n_per_skill) for rule in SILENCE_RULES}
        for rule, f in futures.items():
            report[rule] |= f.result()
    report["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "compare.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def format_comparison(report: dict) -> str:
    rules = list(SILENCE_RULES)
    per = report["per_timeline"]
    lines = [f"silence rules compared: the same data, {report['minutes']} minutes of training each, side by side"]
    rows = [
        ("tokens per timeline", [per[r]["tokens"] for r in rules]),
        ("KV keys per timeline", [per[r]["keys"] for r in rules]),
        ("steps", [report[r]["train"]["steps"] for r in rules]),
        ("training tokens/s", [report[r]["train"]["tokens_per_s"] for r in rules]),
        ("timelines seen", [report[r]["train"]["timelines_seen"] for r in rules]),
        ("held-out CE, all targets", [report[r]["heldout_ce"]["all"] for r in rules]),
        ("held-out CE, spoken targets", [report[r]["heldout_ce"]["spoken"] for r in rules]),
    ]
    skills = report[rules[0]]["accuracy"].keys()
    rows += [(f"accuracy % {s}", [report[r]["accuracy"].get(s, {}).get("accuracy") for r in rules]) for s in skills]
    lines.append(f"{'':<30}" + "".join(f"{r:>12}" for r in rules))
    lines += [f"{name:<30}" + "".join(f"{v!s:>12}" for v in vals) for name, vals in rows]
    return "\n".join(lines)
