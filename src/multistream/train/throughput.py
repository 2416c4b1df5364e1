"""Training throughput of several configurations, measured side by side in one run (``multistream bench train``).

Every variant is the ``quick`` recipe's multi-stream training step (LoRA, the recipe's sequence length, loss
weight and mixed precision) with a few :class:`TrainConfig` fields changed. All variants train on the same
timelines in the same order; the rounds alternate between them (one optimizer step of each per round), so a
slow moment of a shared machine falls on all of them alike. Two rates matter: tokens/s (what the hardware does)
and timelines/s (what training learns from: under invisible silence a timeline costs fewer tokens).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from .config import TrainConfig
from .loop import _param_groups, _trainable, build_model, load_examples, optimizer_step, pad_id
from .packing import StepPlan, build_sequences

# name -> TrainConfig fields changed from the recipe; the first is the reference of the ratios
VARIANTS: dict[str, dict] = {
    "visible": dict(silence="visible"),  # the paper's rule, the first recipes': every silence cell is a token
    "invisible": {},  # the recipe today
    "invisible-bf16-base": dict(base_dtype="bfloat16"),  # frozen base weights in bf16 (no casts under autocast)
}


def _data(out: Path, base: str, per_skill: int, seed: int) -> Path:
    from transformers import AutoTokenizer

    from ..bases import resolve_base
    from ..data.build import SyntheticConfig, build_synthetic
    from ..text import StreamTokenizer

    tok = StreamTokenizer.wrap(AutoTokenizer.from_pretrained(resolve_base(base)))
    build_synthetic(out, tok.message_rows, SyntheticConfig(train_per_skill=per_skill, test_per_skill=0, seed=seed))
    return out / "train.jsonl"


class _Run:
    """One variant: its model, optimizer and data plan, stepped one optimizer step at a time."""

    def __init__(self, name: str, cfg: TrainConfig, accelerator):
        self.name, self.cfg, self.accelerator = name, cfg, accelerator
        model = build_model(cfg)
        model.train()
        examples = load_examples(cfg, model, cfg.train_file)
        self.dropped = sum(len(e) > cfg.seq_len for e in examples)
        self.examples = [e for e in examples if len(e) <= cfg.seq_len]
        self.plan = StepPlan([len(e) for e in self.examples], cfg.seq_len, cfg.batch_size, cfg.seed)
        self.params = _trainable(model)
        optimizer = torch.optim.AdamW(_param_groups(cfg, self.params), lr=cfg.lr, betas=(0.9, 0.99))
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        raw = accelerator.unwrap_model(self.model)
        self.pid, self.silence_id = pad_id(raw), raw.tok.silence_id
        self.seconds: list[float] = []
        self.tokens: list[int] = []
        self.timelines: list[int] = []

    def step(self, s: int, timed: bool) -> None:
        order = self.plan.step(s)
        t0 = time.perf_counter()
        seqs = build_sequences(self.examples, order)
        optimizer_step(self.cfg, self.model, seqs, self.pid, self.silence_id, self.accelerator, self.params,
                       self.optimizer)
        if timed:
            self.seconds.append(time.perf_counter() - t0)
            self.tokens.append(sum(len(q) for q in seqs))
            self.timelines.append(sum(len(o) for o in order))

    def result(self) -> dict:
        secs = sum(self.seconds)
        return {
            "changes": VARIANTS.get(self.name, {}),
            "steps": len(self.seconds),
            "s_per_step_median": round(statistics.median(self.seconds), 3),
            "tokens": sum(self.tokens),
            "tokens_per_s": round(sum(self.tokens) / secs, 1),
            "timelines_per_s": round(sum(self.timelines) / secs, 3),
            "tokens_per_timeline": round(sum(self.tokens) / max(1, sum(self.timelines)), 1),
            "dropped_longer_than_seq_len": self.dropped,
        }


def bench_train(
    variants: list[str] | None = None,
    steps: int = 4,
    warmup: int = 1,
    base: str = "default",
    per_skill: int = 40,
    overrides: dict | None = None,
    seed: int = 0,
    cpu: bool = True,
    progress: bool = True,
) -> dict:
    """Time ``steps`` optimizer steps of each variant (after ``warmup`` untimed ones), round by round.

    ``overrides`` changes the recipe's fields for every variant (tests: a tiny base, short sequences).
    """
    from accelerate import Accelerator

    from .loop import _mixed_precision
    from .recipes import RECIPES

    variants = variants or list(VARIANTS)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(unknown)}; the variants are {', '.join(VARIANTS)}")
    recipe = dict(RECIPES["quick"].train, **(overrides or {}))
    recipe.pop("threads", None)  # this process's threads are the caller's
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        train_file = _data(Path(tmp) / "data", base, per_skill, seed)
        cfg = TrainConfig(train_file=str(train_file), output_dir=str(Path(tmp) / "out"), base=base, seed=seed, **recipe)
        accelerator = Accelerator(mixed_precision=_mixed_precision(cfg, cpu), cpu=cpu)
        runs = [_Run(v, replace(cfg, **VARIANTS[v]), accelerator) for v in variants]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=(warmup + steps) * len(runs), desc="bench train", dynamic_ncols=True)
        for s in range(warmup + steps):
            for run in runs:
                run.step(s, timed=s >= warmup)
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
    results = {run.name: run.result() for run in runs}
    ref = results[variants[0]]
    for r in results.values():
        r["tokens_per_s_ratio"] = round(r["tokens_per_s"] / ref["tokens_per_s"], 3)
        r["timelines_per_s_ratio"] = round(r["timelines_per_s"] / ref["timelines_per_s"], 3)
    return {
        "reference": variants[0],
        "recipe": "quick",
        "seq_len": cfg.seq_len,
        "batch_size": cfg.batch_size,
        "mixed_precision": str(accelerator.mixed_precision),
        "threads": torch.get_num_threads(),
        "device": str(accelerator.device),
        "variants": results,
    }
