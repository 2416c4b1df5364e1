"""Tiny on-disk base model and synthetic data for training tests (no downloads, seconds on a CPU)."""

from __future__ import annotations

from pathlib import Path

from conftest import make_base, make_tokenizer

from multistream.data.build import SyntheticConfig, build_synthetic
from multistream.text import StreamTokenizer
from multistream.train.config import TrainConfig


def tiny_setup(root: Path, per_skill: int = 6) -> tuple[Path, Path]:
    """A tiny random Llama saved as a base folder, and synthetic timelines built with its tokenizer."""
    tok = make_tokenizer()
    base = make_base("llama", len(tok) + 8)
    base.save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    st = StreamTokenizer.wrap(make_tokenizer())
    build_synthetic(root / "data", st.message_rows, SyntheticConfig(train_per_skill=per_skill, test_per_skill=2, seed=1))
    return root / "base", root / "data"


def tiny_config(root: Path, base: Path, data: Path, mode: str = "multi", **kw) -> TrainConfig:
    train, test = ("train.jsonl", "test.jsonl") if mode == "multi" else ("twin_train.jsonl", "twin_test.jsonl")
    fields = dict(
        train_file=str(data / train),
        eval_file=str(data / test),
        output_dir=str(root / f"out-{mode}"),
        mode=mode,
        base=str(base),
        max_steps=4,
        batch_size=4,
        micro_batch_size=2,
        seq_len=2048,
        mixed_precision="no",
        lr=5e-3,
        warmup_steps=1,
        eval_every=2,
        save_every=1,
        log_every=1,
        eval_max_sequences=4,
        lora_targets=["q_proj", "v_proj", "gate_proj"],
    )
    fields.update(kw)
    return TrainConfig(**fields)
