"""Training configuration: one dataclass, loadable from YAML."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

MODES = ("multi", "single")


class ConfigError(ValueError):
    pass


@dataclass
class TrainConfig:
    train_file: str
    """Timeline JSONL (``mode: multi``) or chat JSONL (``mode: single``, e.g. the twin data)."""
    output_dir: str
    """Checkpoints, logs and the final model folder (``output_dir/final``)."""
    eval_file: str | None = None
    """Held-out file of the same kind, for the periodic eval loss."""
    mode: str = "multi"
    """``multi``: multi-stream SFT on timelines; ``single``: ordinary chat SFT (the single-stream twin)."""
    base: str = "default"
    """Base model: ``default`` (SmolLM2-135M-Instruct from the wheel) or a local folder."""
    silence: str = "invisible"
    """The silence rule of a new multi-stream model (docs/design.md, "Silence"): ``invisible`` (silence is never
    attended to; input silence is not materialised) or ``visible`` (the paper's original form)."""
    base_dtype: str = "float32"
    """dtype of the frozen base weights (LoRA only): ``bfloat16`` halves their memory; everything trained
    (adapters, stream embeddings, the silence row) stays float32. ``auto`` is bf16 where the training device
    multiplies it natively (a GPU, a CPU with AMX or AVX-512 BF16) and float32 elsewhere: on an AVX2-only CPU a
    bf16 base is emulated and a LoRA step ran about 20 times slower than in float32 (2026-12-07)."""
    init_from: str | None = None
    """A saved LoRA model folder of this mode (e.g. ``src/multistream/weights/default``) whose trained weights
    (adapter, and for ``multi`` the stream embeddings and added token rows) start this run: continued fine-tuning.
    Its LoRA rank and targets must match this config's; its base must be ``base``."""
    lora: bool = True
    """LoRA adapter (peft); ``False`` trains all base weights (full fine-tuning)."""
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_targets: str | list[str] = "all-linear"
    train_new_tokens: bool = True
    """Train the embedding rows of the added tokens (silence) beside LoRA (multi mode)."""
    spoken_weight: float = 1.0
    """Loss weight of output targets that are not silence (multi-stream training; 1: every target alike).
    Silence is most of the targets, and the decision that matters most, the row where a message starts, is
    one target among hundreds: at weight 1 the v4 model put at most 0.2 on starting the answer it had read.
    The reported training loss is the weighted mean; the held-out loss stays unweighted, comparable across runs."""
    max_steps: int = 100
    """Optimizer steps. The data is cycled in a new seeded order every epoch."""
    batch_size: int = 4
    """Packed sequences per optimizer step, over all processes (must divide evenly among them)."""
    micro_batch_size: int = 1
    """Sequences per forward and backward on one process; the rest is gradient accumulation."""
    seq_len: int = 1024
    """Token budget of one packed sequence (several timelines, document-masked)."""
    lr: float = 2e-4
    new_token_lr: float = 1e-2
    """Learning rate of the added token rows (silence): they start far from where they must go."""
    stream_embed_lr: float = 1e-2
    """Learning rate of the stream embeddings: zero at the start, they alone tell apart the silent output
    streams of a row (same position, same context, same silence token), so they must grow fast."""
    weight_decay: float = 0.0
    warmup_steps: int = 10
    min_lr_ratio: float = 0.1
    """Cosine decay from ``lr`` to ``lr * min_lr_ratio``."""
    grad_clip: float | None = 1.0
    mixed_precision: str = "auto"
    """``auto`` (bf16 where the hardware has it), ``bf16``, ``fp16`` or ``no``."""
    gradient_checkpointing: bool = False
    eval_every: int = 50
    eval_max_sequences: int = 16
    """Held-out examples for the periodic eval loss, spread evenly over the eval file."""
    save_every: int = 50
    """Checkpoint interval in steps (a run resumes from its last checkpoint)."""
    log_every: int = 10
    seed: int = 0
    threads: int | None = None
    """``torch.set_num_threads`` for the process of ``multistream train`` (two one-thread jobs use a 2-core CPU best);
    :func:`.loop.train` called from a program leaves the program's threads alone."""
    max_minutes: float | None = None
    """Stop early (checkpoint and save) once this much wall time has passed."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        for name in ("max_steps", "batch_size", "micro_batch_size", "seq_len", "eval_every", "save_every", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.silence not in ("invisible", "visible"):
            raise ConfigError(f"silence must be invisible or visible, got {self.silence!r}")
        if self.base_dtype not in ("auto", "float32", "bfloat16"):
            raise ConfigError(f"base_dtype must be auto, float32 or bfloat16, got {self.base_dtype!r}")
        if self.base_dtype == "bfloat16" and not self.lora:
            raise ConfigError("base_dtype bfloat16 needs lora: true (full fine-tuning trains the base weights)")
        if self.mixed_precision not in ("auto", "bf16", "fp16", "no"):
            raise ConfigError(f"mixed_precision must be auto, bf16, fp16 or no, got {self.mixed_precision!r}")
        if self.init_from is not None and not self.lora:
            raise ConfigError("init_from continues a LoRA run: it needs lora: true")
        if self.lr <= 0:
            raise ConfigError("lr must be positive")
        if self.spoken_weight <= 0:
            raise ConfigError(f"spoken_weight must be positive, got {self.spoken_weight}")

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, d: dict, base_dir: Path | None = None) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
        missing = [k for k in ("train_file", "output_dir") if k not in d]
        if missing:
            raise ConfigError(f"missing config key(s): {', '.join(missing)}")
        d = dict(d)
        if base_dir is not None:  # resolve relative paths against base_dir (default: the working directory)
            for k in ("train_file", "eval_file", "output_dir"):
                if d.get(k) and not Path(d[k]).is_absolute():
                    d[k] = str(base_dir / d[k])
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        d = yaml.safe_load(path.read_text()) or {}
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: expected a mapping of config keys")
        return cls.from_dict(d)
