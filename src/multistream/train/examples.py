"""Training files to packed examples: timelines (multi-stream) and chats (single-stream).

Multi-stream examples go through ``rows.timeline_to_grid`` and ``rows.pack_grid``, the
module inference uses too. Single-stream examples are chats in the base model's own
template, with labels on the assistant turns (their text and end-of-turn token) only.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..rows import IGNORE, Packed, RowFormat, pack_grid, timeline_to_grid
from ..streams import Layout
from ..text import StreamTokenizer, chat_ids
from ..timeline import TimelineError, read_jsonl


def load_timelines(path: str | Path, tok: StreamTokenizer, layout: Layout, silence: str = "invisible") -> list[Packed]:
    """Every timeline of a JSONL file, packed under the silence rule ``silence``."""
    fmt = RowFormat(tuple(layout.output_mask), tok.silence_id, silence)
    out, errors = [], []
    for lineno, tl, problems in read_jsonl(path, layout):
        if tl is None:
            errors.extend(problems)
            continue
        try:
            out.append(pack_grid(timeline_to_grid(tl, tok, layout), fmt))
        except TimelineError as e:
            errors.append(f"line {lineno}: {e}")
    if errors:
        raise ValueError(f"{path}: {len(errors)} invalid timeline(s): " + "; ".join(errors[:5]))
    return out


def pack_chat(hf_tokenizer, messages: list[dict]) -> Packed:
    ids, is_out = chat_ids(hf_tokenizer, messages)
    ids_t = torch.tensor(ids, dtype=torch.long)
    labels = torch.full_like(ids_t, IGNORE)
    target = torch.tensor(is_out[1:], dtype=torch.bool)
    labels[:-1][target] = ids_t[1:][target]
    n = len(ids)
    zeros = torch.zeros(n, dtype=torch.long)
    return Packed(ids_t, zeros, torch.arange(n), labels, zeros, torch.ones(n, dtype=torch.bool))


def load_chats(path: str | Path, hf_tokenizer) -> list[Packed]:
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            rec = json.loads(line)
            if not isinstance(rec, dict) or not isinstance(rec.get("messages"), list):
                raise ValueError(f"{path}: line {lineno}: needs a 'messages' list")
            out.append(pack_chat(hf_tokenizer, rec["messages"]))
    return out
