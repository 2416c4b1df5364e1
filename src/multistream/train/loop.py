"""Supervised fine-tuning through ``accelerate``: multi-stream timelines or single-stream chats.

Loss normalisation: every optimizer step covers a global batch of packed sequences,
split among processes and, within a process, into micro-batches. The loss of a
micro-batch is the *sum* of its token cross-entropies divided by the number of target
tokens in the whole global batch (counted up front and summed over processes), times
the number of processes (DDP averages gradients). The gradient is therefore the
gradient of the mean token loss over the global batch, whatever the split: gradient
accumulation of 4 equals a batch of 4, and 2 processes equal 1.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ..hardware import cpu_has_bf16, fast_bf16
from ..rows import IGNORE, Packed, collate, stream_causal_mask
from .config import TrainConfig
from .examples import load_chats, load_timelines
from .packing import StepPlan, build_sequences
from .token_rows import TrainableRows

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint"


class SingleStreamLM(nn.Module):
    """A plain causal LM with the multi-stream forward signature (packed, document-masked)."""

    def __init__(self, base: nn.Module, hf_tokenizer, base_ref: str = "custom"):
        super().__init__()
        self.base = base
        self.hf_tokenizer = hf_tokenizer
        self.base_ref = base_ref

    def forward(self, input_ids, stream_ids, position_ids, *, doc_ids=None, visible=None, logits_to_keep=0):
        mask = stream_causal_mask(position_ids, position_ids, stream_ids, stream_ids, doc_ids, doc_ids, k_visible=visible)
        return self.base(input_ids=input_ids, position_ids=position_ids, attention_mask=mask, logits_to_keep=logits_to_keep)


@dataclass
class TrainResult:
    steps: int
    train_loss: float
    eval_loss: float | None
    tokens: int
    seconds: float
    history: list[dict] = field(default_factory=list)
    final_dir: Path | None = None

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)


def _lora_config(cfg: TrainConfig):
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.lora_targets,
        bias="none",
        task_type="CAUSAL_LM",
    )


def build_model(cfg: TrainConfig) -> nn.Module:
    """A trainable model for ``cfg.mode``: a MultiStreamModel or a SingleStreamLM, LoRA or full."""
    from peft import get_peft_model

    from ..bases import load_base
    from ..model import MultiStreamModel, unwrap_base

    dtype = base_dtype(cfg)
    if cfg.mode == "multi":
        model = MultiStreamModel.from_base(cfg.base, silence=cfg.silence, dtype=dtype)
        model.stream_embed.float()  # trained at a high learning rate: float32 whatever the base
    else:
        base, tokenizer = load_base(cfg.base, dtype)
        model = SingleStreamLM(base, tokenizer, cfg.base)
    if cfg.lora:
        model.base = get_peft_model(model.base, _lora_config(cfg))
        if cfg.mode == "multi" and cfg.train_new_tokens and model.new_token_ids:
            model.token_rows = TrainableRows(unwrap_base(model.base), model.new_token_ids)
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    if cfg.init_from:
        init_from(model, Path(cfg.init_from), cfg)
    return model


def init_from(model: nn.Module, path: Path, cfg: TrainConfig) -> None:
    """Start ``model`` (just built by :func:`build_model`) from the trained weights saved in ``path``."""
    from peft import set_peft_model_state_dict

    from ..model import CONFIG_FILE, WEIGHTS_FILE

    adapter = path / "adapter_model.safetensors"
    if not adapter.exists():
        raise ValueError(f"init_from: {path} has no adapter_model.safetensors (a saved LoRA model folder is needed)")
    saved = json.loads((path / "adapter_config.json").read_text())
    ours = model.base.peft_config["default"]
    for key, want in (("r", ours.r), ("lora_alpha", ours.lora_alpha)):
        if saved.get(key) != want:
            raise ValueError(f"init_from: {path} has {key}={saved.get(key)}, this config {want}")
    meta_file = path / (CONFIG_FILE if cfg.mode == "multi" else "single_config.json")
    if not meta_file.exists():
        raise ValueError(f"init_from: {path} is not a {cfg.mode} model folder (no {meta_file.name})")
    meta = json.loads(meta_file.read_text())
    if meta.get("base_model") != cfg.base:
        raise ValueError(f"init_from: {path} was trained on base {meta.get('base_model')!r}, this config's is {cfg.base!r}")
    if cfg.mode == "multi" and (meta.get("silence") != model.silence or meta.get("layout") != model.layout.to_list()):
        raise ValueError(f"init_from: {path} has another layout or silence rule than this config's model")
    weights = load_file(adapter)
    result = set_peft_model_state_dict(model.base, weights)
    lora_keys = [k for k, p in model.base.named_parameters() if p.requires_grad and "lora_" in k]
    missing = [k for k in result.missing_keys if k in lora_keys]
    if result.unexpected_keys or missing:
        raise ValueError(f"init_from: {path} does not fit this model (unexpected {list(result.unexpected_keys)[:3]}, "
                         f"missing {missing[:3]})")
    if cfg.mode == "multi":
        extra = load_file(path / WEIGHTS_FILE)
        with torch.no_grad():
            model.stream_embed.weight.copy_(extra["stream_embed"])
            rows = getattr(model, "token_rows", None)
            if rows is not None and "new_token_rows.input" in extra:
                rows.input.copy_(extra["new_token_rows.input"])
                if rows.output is not None:
                    rows.output.copy_(extra["new_token_rows.output"])


def target_weights(labels: torch.Tensor, silence_id: int | None, spoken_weight: float = 1.0) -> torch.Tensor:
    """Loss weight of each label: 0 where there is no target, ``spoken_weight`` on targets other than silence."""
    weights = (labels != IGNORE).float()
    if silence_id is not None and spoken_weight != 1.0:
        weights = torch.where((labels != IGNORE) & (labels != silence_id), weights * spoken_weight, weights)
    return weights


def token_loss_sum(model: nn.Module, batch: dict[str, torch.Tensor], silence_id: int | None = None,
                   spoken_weight: float = 1.0) -> tuple[torch.Tensor, float]:
    """Weighted sum of cross-entropies over the batch's targets and the sum of their weights (each target weighs
    1, or ``spoken_weight`` when it is not ``silence_id``); logits only where there are targets."""
    labels = batch["labels"]
    keep = (labels != IGNORE).any(0).nonzero().squeeze(1)
    if keep.numel() == 0:
        return labels.new_zeros((), dtype=torch.float32), 0.0
    out = model(
        batch["input_ids"], batch["stream_ids"], batch["position_ids"],
        doc_ids=batch["doc_ids"], visible=batch["visible"], logits_to_keep=keep,
    )
    logits = out.logits.float()
    target = labels[:, keep]
    losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE, reduction="none")
    weights = target_weights(target, silence_id, spoken_weight).reshape(-1)
    return (losses * weights).sum(), float(weights.sum())


def backward_step(model: nn.Module, micro: list[dict[str, torch.Tensor]], accelerator, silence_id: int | None = None,
                  spoken_weight: float = 1.0) -> float:
    """Backward over one process's micro-batches of a global batch; returns the global weighted mean token loss.

    Each micro-batch contributes (weighted sum of its token losses) / (target weight of the global batch) x
    processes, so after DDP's averaging the gradient is that of the weighted mean over the global batch.
    """
    world = accelerator.num_processes
    local = sum(float(target_weights(b["labels"], silence_id, spoken_weight).sum()) for b in micro)
    total_weight = accelerator.reduce(torch.tensor(local, device=accelerator.device), "sum").item()
    loss_total = torch.zeros((), device=accelerator.device)
    for j, batch in enumerate(micro):
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        ctx = accelerator.no_sync(model) if j < len(micro) - 1 else contextlib.nullcontext()
        with ctx, accelerator.autocast():
            loss_sum, _ = token_loss_sum(model, batch, silence_id, spoken_weight)
            accelerator.backward(loss_sum * world / max(total_weight, 1e-9))
        loss_total += loss_sum.detach()
    return accelerator.reduce(loss_total, "sum").item() / max(total_weight, 1e-9)


def optimizer_step(cfg: TrainConfig, model: nn.Module, seqs: list[Packed], pid: int, silence_id: int | None,
                   accelerator, params: dict[str, nn.Parameter], optimizer) -> float:
    """One optimizer step over this process's packed sequences of the global batch (micro-batches, backward,
    clipping, update); returns the global weighted mean token loss. The learning-rate schedule is the caller's."""
    micro = [collate(seqs[i : i + cfg.micro_batch_size], pid) for i in range(0, len(seqs), cfg.micro_batch_size)]
    loss = backward_step(model, micro, accelerator, silence_id, cfg.spoken_weight)
    if cfg.grad_clip:
        accelerator.clip_grad_norm_(list(params.values()), cfg.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


def _trainable(model: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _param_groups(cfg: TrainConfig, params: dict[str, nn.Parameter]) -> list[dict]:
    """Added token rows and stream embeddings get their own learning rates and no weight decay."""
    rows = [p for n, p in params.items() if n.startswith("token_rows.")]
    streams = [p for n, p in params.items() if n.startswith("stream_embed.")]
    rest = {n: p for n, p in params.items() if not n.startswith(("token_rows.", "stream_embed."))}
    groups = [
        {"params": [p for p in rest.values() if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in rest.values() if p.ndim < 2], "weight_decay": 0.0},
        {"params": rows, "weight_decay": 0.0, "lr": cfg.new_token_lr},
        {"params": streams, "weight_decay": 0.0, "lr": cfg.stream_embed_lr},
    ]
    return [g for g in groups if g["params"]]


def _lr_lambda(cfg: TrainConfig):
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return f


def _trains_on_cpu() -> bool:
    return not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")


def base_dtype(cfg: TrainConfig) -> torch.dtype:
    """The frozen base weights' dtype: ``auto`` is bf16 only where it is native (LoRA runs; full fine-tuning
    trains the base weights, which stay float32)."""
    device = "cpu" if _trains_on_cpu() else "cuda"
    if cfg.base_dtype == "auto":
        return torch.bfloat16 if cfg.lora and fast_bf16(device) else torch.float32
    if cfg.base_dtype == "bfloat16" and not fast_bf16(device):
        log.warning("base_dtype bfloat16: this %s has no native bf16 (no AMX or AVX-512 BF16 on a CPU), so every "
                    "matrix product is emulated and training runs many times slower; base_dtype auto or float32 "
                    "avoids it", device.upper())
    return getattr(torch, cfg.base_dtype)


def _mixed_precision(cfg: TrainConfig, cpu: bool) -> str:
    if cfg.mixed_precision != "auto":
        return cfg.mixed_precision
    if not cpu and torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_bf16() else "no"


def load_examples(cfg: TrainConfig, model: nn.Module, path: str) -> list[Packed]:
    if cfg.mode == "multi":
        return load_timelines(path, model.tok, model.layout, model.silence)
    return load_chats(path, model.hf_tokenizer)


def pad_id(model: nn.Module) -> int:
    if hasattr(model, "tok"):
        return model.tok.silence_id
    hf = model.hf_tokenizer
    return hf.pad_token_id if hf.pad_token_id is not None else hf.eos_token_id


def train(
    cfg: TrainConfig,
    model: nn.Module | None = None,
    *,
    accelerator=None,
    progress: bool = True,
    _stop_after: int | None = None,
) -> TrainResult:
    """Train as ``cfg`` says; resumes from ``output_dir/checkpoint`` when one is there.

    ``model`` may be given ready-made (tests); ``_stop_after`` ends the run after that many
    steps without saving a final model, as a crash would (tests of resumption).
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    out_dir = Path(cfg.output_dir)
    if accelerator is None:
        cpu = _trains_on_cpu()
        accelerator = Accelerator(mixed_precision=_mixed_precision(cfg, cpu), cpu=cpu)
    world, rank = accelerator.num_processes, accelerator.process_index
    if cfg.batch_size % (world * cfg.micro_batch_size):
        raise ValueError(
            f"batch_size {cfg.batch_size} must be a multiple of processes x micro_batch_size = {world} x {cfg.micro_batch_size}"
        )
    set_seed(cfg.seed)
    if model is None:
        model = build_model(cfg)
    if cfg.mode == "multi" and getattr(model, "silence", cfg.silence) != cfg.silence:
        raise ValueError(f"the model was made with silence={model.silence!r}, the config says {cfg.silence!r}")
    if cfg.gradient_checkpointing:
        from ..model import unwrap_base

        unwrap_base(model.base).gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    examples = load_examples(cfg, model, cfg.train_file)
    evals = load_examples(cfg, model, cfg.eval_file) if cfg.eval_file else []
    evals = evals[:: max(1, len(evals) // cfg.eval_max_sequences)][: cfg.eval_max_sequences]  # spread over the file
    plan = StepPlan([len(e) for e in examples], cfg.seq_len, cfg.batch_size, cfg.seed)
    params = _trainable(model)
    optimizer = torch.optim.AdamW(_param_groups(cfg, params), lr=cfg.lr, betas=(0.9, 0.99))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg))
    model, optimizer = accelerator.prepare(model, optimizer)
    raw = accelerator.unwrap_model(model)
    pid = pad_id(raw)
    silence_id = raw.tok.silence_id if cfg.mode == "multi" else None
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(out_dir / "config.yaml")
    start, history = _resume(out_dir / CHECKPOINT, raw, optimizer, scheduler)
    if start and accelerator.is_main_process:
        log.warning("resuming from %s at step %d", out_dir / CHECKPOINT, start)

    bar = None
    if progress and accelerator.is_main_process:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.max_steps, initial=start, desc=f"train {cfg.mode}", dynamic_ncols=True)
    # tokens and seconds count the whole run: a resumed run goes on from the checkpoint's last record
    done = history[-1] if history else {}
    t0 = time.perf_counter() - done.get("seconds", 0.0)
    tokens_seen, last_loss, eval_loss = done.get("tokens", 0), float("nan"), None
    step = start
    per_proc = cfg.batch_size // world
    while step < cfg.max_steps:
        seqs = build_sequences(examples, plan.step(step))
        mine = seqs[rank * per_proc : (rank + 1) * per_proc]
        last_loss = optimizer_step(cfg, model, mine, pid, silence_id, accelerator, params, optimizer)
        scheduler.step()
        tokens_seen += int(accelerator.reduce(torch.tensor(sum(len(s) for s in mine), device=accelerator.device), "sum").item())
        step += 1
        record = {
            "step": step,
            "loss": last_loss,
            "lr": scheduler.get_last_lr()[0],
            "tokens": tokens_seen,
            "seconds": round(time.perf_counter() - t0, 2),
            "epoch": round(plan.epoch_of(step), 3),
        }
        if evals and (step % cfg.eval_every == 0 or step == cfg.max_steps):
            eval_loss = evaluate_loss(model, evals, pid, accelerator, cfg.micro_batch_size)
            record["eval_loss"] = eval_loss
            model.train()
        history.append(record)
        elapsed = time.perf_counter() - t0
        out_of_time = cfg.max_minutes is not None and elapsed > cfg.max_minutes * 60
        if bar is not None:
            bar.update(1)
            bar.set_postfix(
                loss=f"{last_loss:.4f}",
                tok_s=f"{tokens_seen / elapsed:.0f}",
                **({"eval": f"{eval_loss:.4f}"} if eval_loss is not None else {}),
            )
        if accelerator.is_main_process and (step % cfg.log_every == 0 or "eval_loss" in record):
            with open(out_dir / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
        if step % cfg.save_every == 0 or step == cfg.max_steps or out_of_time:
            _checkpoint(out_dir / CHECKPOINT, raw, optimizer, scheduler, step, history, accelerator)
        if _stop_after is not None and step - start >= _stop_after:
            accelerator.wait_for_everyone()
            return TrainResult(step, last_loss, eval_loss, tokens_seen, time.perf_counter() - t0, history)
        if out_of_time:
            if accelerator.is_main_process:
                log.warning("max_minutes=%s reached at step %d: stopping", cfg.max_minutes, step)
            break
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    accelerator.wait_for_everyone()
    final = None
    if accelerator.is_main_process:
        final = save_final(raw, out_dir / "final")
        summary = {
            "steps": step,
            "train_loss": last_loss,
            "eval_loss": eval_loss,
            "tokens": tokens_seen,
            "seconds": round(seconds, 1),
            "tokens_per_s": round(tokens_seen / max(seconds, 1e-9), 1),
            "processes": world,
            "mixed_precision": str(accelerator.mixed_precision),
            "base_dtype": str(next(raw.base.parameters()).dtype).removeprefix("torch."),
        }
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    accelerator.wait_for_everyone()
    return TrainResult(step, last_loss, eval_loss, tokens_seen, seconds, history, final)


@torch.no_grad()
def evaluate_loss(model: nn.Module, evals: list[Packed], pid: int, accelerator, micro_batch_size: int = 1) -> float:
    """Token-weighted loss over ``evals`` (split among processes, summed over them)."""
    model.eval()
    mine = evals[accelerator.process_index :: accelerator.num_processes]
    total, count = torch.zeros((), device=accelerator.device), torch.zeros((), device=accelerator.device)
    for i in range(0, len(mine), micro_batch_size):
        batch = {k: v.to(accelerator.device) for k, v in collate(mine[i : i + micro_batch_size], pid).items()}
        with accelerator.autocast():
            loss_sum, n = token_loss_sum(model, batch)
        total += loss_sum
        count += n
    total, count = accelerator.reduce(total, "sum"), accelerator.reduce(count, "sum")
    return (total / count.clamp(min=1)).item()


def _checkpoint(path: Path, raw: nn.Module, optimizer, scheduler, step: int, history: list[dict], accelerator) -> None:
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file({n: p.detach().contiguous().cpu() for n, p in _trainable(raw).items()}, tmp / "trainable.safetensors")
        torch.save(
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state()},
            tmp / "state.pt",
        )
        (tmp / "progress.json").write_text(json.dumps({"step": step, "history": history}) + "\n")
        old = path.with_name(path.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)  # the checkpoint folder is always complete
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _load_trainable(path: Path, raw: nn.Module) -> None:
    """Copy a checkpoint's trainable weights into ``raw`` (refused when the config now trains another set)."""
    weights = load_file(path / "trainable.safetensors")
    params = _trainable(raw)
    missing = sorted(set(params) - set(weights))
    if missing:
        raise ValueError(f"{path}: checkpoint lacks trainable parameter(s) {missing[:3]}; was the config changed?")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(weights[n].to(p.device, p.dtype))


def _resume(path: Path, raw: nn.Module, optimizer, scheduler) -> tuple[int, list[dict]]:
    if not (path / "progress.json").exists():
        return 0, []
    _load_trainable(path, raw)
    state = torch.load(path / "state.pt", weights_only=True)  # tensors and plain containers only: no code runs
    configured = [g["initial_lr"] for g in optimizer.param_groups]
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    progress = json.loads((path / "progress.json").read_text())
    # the learning rates and schedule are the config's (the same unless it was deliberately changed)
    scheduler.base_lrs = configured
    for group, lr, fn in zip(optimizer.param_groups, configured, scheduler.lr_lambdas):
        group["initial_lr"] = lr
        group["lr"] = lr * fn(progress["step"])
    return progress["step"], progress["history"]


def snapshot(cfg: TrainConfig, path: Path) -> tuple[Path, int]:
    """The run's last checkpoint as a loadable model folder, while the run goes on (to look at it mid-run).

    Returns the folder and the step the checkpoint was taken at.
    """
    ckpt = Path(cfg.output_dir) / CHECKPOINT
    if not (ckpt / "progress.json").exists():
        raise FileNotFoundError(f"{ckpt}: no checkpoint yet (the run saves one every {cfg.save_every} steps)")
    model = build_model(cfg)
    _load_trainable(ckpt, model)
    step = json.loads((ckpt / "progress.json").read_text())["step"]
    return save_final(model, path), step


def save_final(raw: nn.Module, path: Path, dtype: torch.dtype | None = None) -> Path:
    """The trained model as a loadable folder (MultiStreamModel.save, or a PEFT adapter + tokenizer)."""
    rows = getattr(raw, "token_rows", None)
    if rows is not None:
        rows.merge()
    if isinstance(raw, SingleStreamLM):
        path.mkdir(parents=True, exist_ok=True)
        raw.base.save_pretrained(path)
        raw.hf_tokenizer.save_pretrained(path)
        kind = "peft-adapter" if hasattr(raw.base, "peft_config") else "full"
        (path / "single_config.json").write_text(json.dumps({"base_model": raw.base_ref, "format": kind}, indent=2) + "\n")
        return path
    raw.save(path, save_base=not hasattr(raw.base, "peft_config"))  # full fine-tuning: the base is the model
    return path
