"""Data builders: each writes timeline JSONL and validates what it wrote.

- :func:`build_synthetic`: the synthetic skills, train and test splits, plus their twins;
- :func:`build_from_chat`: chat JSONL through the converter;
- :func:`build_from_teacher`: prompts answered by a Hugging Face chat model (batched greedy
  generation), then converted with a schedule (self-distillation).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..convert import Schedule, chat_to_timeline, convert_chat_file
from ..streams import DEFAULT_LAYOUT, Layout
from ..timeline import JsonLineError, Timeline, json_line, validate_file
from .catalog import ALL_SKILLS, generate
from .skills import INJECTED_SHARE, SKILLS
from .twin import twin_record


class DataError(ValueError):
    pass


@dataclass
class SyntheticConfig:
    train_per_skill: int = 400
    """Training timelines per skill."""
    test_per_skill: int = 40
    """Held-out timelines per skill (unseen templates and/or unseen items)."""
    seed: int = 0
    skills: list[str] = field(default_factory=lambda: list(SKILLS))
    """Skills to build (any of :data:`.catalog.ALL_SKILLS`)."""
    train_counts: dict[str, int] = field(default_factory=dict)
    """Training timelines for particular skills, overriding ``train_per_skill``."""
    injected_share: float = INJECTED_SHARE
    """Share of training ``document`` examples with an injected instruction (the test split keeps the default)."""

    def __post_init__(self) -> None:
        unknown = (set(self.skills) | set(self.train_counts)) - set(ALL_SKILLS)
        if unknown:
            raise DataError(f"unknown skill(s) {sorted(unknown)}; choose from {', '.join(ALL_SKILLS)}")
        if self.train_per_skill < 0 or self.test_per_skill < 0 or any(n < 0 for n in self.train_counts.values()):
            raise DataError("example counts must be >= 0")
        if not 0 <= self.injected_share <= 1:
            raise DataError(f"injected_share must be in [0, 1], got {self.injected_share}")


def check_file(path: Path, length_of: Callable[[str], int], layout: Layout = DEFAULT_LAYOUT) -> int:
    n_ok, _, errors = validate_file(path, layout, length_of)
    if errors:
        raise DataError(f"{path}: {len(errors)} invalid timeline(s): " + "; ".join(errors[:5]))
    return n_ok


def _write(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def build_synthetic(out_dir: str | Path, length_of: Callable[[str], int], config: SyntheticConfig | None = None) -> dict:
    """Write ``train.jsonl``, ``test.jsonl`` (timelines) and ``twin_train.jsonl``, ``twin_test.jsonl`` (chats)."""
    config = config or SyntheticConfig()
    out = Path(out_dir)
    counts = {}
    for split, n in (("train", config.train_per_skill), ("test", config.test_per_skill)):
        share = config.injected_share if split == "train" else INJECTED_SHARE
        examples = [ex for skill in config.skills
                    for ex in generate(skill, config.train_counts.get(skill, n) if split == "train" else n, split,
                                       config.seed, length_of, share)]
        if split == "train":  # interleave skills so that any prefix of the file is a balanced mix
            import random

            random.Random(config.seed).shuffle(examples)
        _write(out / f"{split}.jsonl", [ex.timeline.to_dict() for ex in examples])
        _write(out / f"twin_{split}.jsonl", [twin_record(ex.timeline, length_of) for ex in examples])
        counts[split] = check_file(out / f"{split}.jsonl", length_of)
    return counts


def build_from_chat(
    src: str | Path, dst: str | Path, length_of: Callable[[str], int], schedule: Schedule, layout: Layout = DEFAULT_LAYOUT
) -> tuple[int, list[str]]:
    n, errors = convert_chat_file(src, dst, schedule, layout)
    check_file(Path(dst), length_of, layout)
    return n, errors


def read_prompts(path: str | Path) -> list[dict]:
    """Prompt records: ``{"messages": [...]}`` (up to the assistant turn) or ``{"prompt": "..."}``."""
    records = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json_line(line, lineno)
            except JsonLineError as e:
                raise DataError(f"{path}: {e}") from e
            if isinstance(obj, dict) and isinstance(obj.get("prompt"), str):
                obj = {**obj, "messages": [{"role": "user", "content": obj.pop("prompt")}]}
            if not isinstance(obj, dict) or not isinstance(obj.get("messages"), list):
                raise DataError(f"{path}: line {lineno}: needs 'messages' or 'prompt'")
            empty = [i for i, m in enumerate(obj["messages"]) if isinstance(m, dict) and not m.get("content")
                     and m.get("role") in ("user", "tool")]
            if empty:  # caught here, before the teacher spends its time on the file
                raise DataError(f"{path}: line {lineno}: messages[{empty[0]}] has no content")
            records.append(obj)
    return records


def build_from_teacher(
    prompts: str | Path,
    dst: str | Path,
    teacher,
    tokenizer,
    length_of: Callable[[str], int],
    schedule: Schedule,
    batch_size: int = 8,
    max_new_tokens: int = 128,
    layout: Layout = DEFAULT_LAYOUT,
) -> tuple[int, int]:
    """Answer every prompt with ``teacher`` (greedy, batched, left-padded), convert, write and validate.

    Returns (timelines written, prompts skipped because the teacher's answer was empty)."""
    import torch

    records = read_prompts(prompts)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    timelines: list[Timeline] = []
    skipped = 0
    for i in range(0, len(records), batch_size):
        batch = records[i : i + batch_size]
        texts = [tokenizer.apply_chat_template(r["messages"], tokenize=False, add_generation_prompt=True) for r in batch]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(teacher.device)
        with torch.no_grad():
            out = teacher.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        for r, ids in zip(batch, out[:, enc["input_ids"].shape[1] :]):
            answer = tokenizer.decode(ids, skip_special_tokens=True).strip()
            if not answer:
                skipped += 1
                continue
            rec = {**r, "messages": r["messages"] + [{"role": "assistant", "content": answer}]}
            timelines.append(chat_to_timeline(rec, schedule, layout))
    _write(Path(dst), [t.to_dict() for t in timelines])
    return check_file(Path(dst), length_of, layout), skipped
