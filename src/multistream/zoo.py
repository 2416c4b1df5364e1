"""Named models: what ``--model`` accepts.

- ``default``: the shipped multi-stream SmolLM2 (adapter folder ``weights/default`` in
  this package, on top of the default base). Until it is trained, a freshly wrapped base.
- ``base`` or ``base:REF``: a freshly wrapped base model (``REF`` = ``default`` or a folder).
- a folder written by ``MultiStreamModel.save``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from .bases import DEFAULT
from .model import CONFIG_FILE, MultiStreamModel

WEIGHTS = Path(__file__).parent / "weights"
log = logging.getLogger(__name__)


def model_folder(name: str) -> Path | None:
    """The folder a name refers to, if it is a saved multistream model."""
    folder = WEIGHTS / name if name in ("default",) else Path(name)
    return folder if (folder / CONFIG_FILE).exists() else None


def load_model(ref: str = "default", dtype: torch.dtype = torch.float32, merge: bool = True) -> MultiStreamModel:
    """A model for inference (``merge=False`` keeps a LoRA adapter separate, e.g. to train on)."""
    if ref == "base" or ref.startswith("base:"):
        return MultiStreamModel.from_base(ref.partition(":")[2] or DEFAULT, dtype=dtype).eval()
    folder = model_folder(ref)
    if folder is not None:
        model = MultiStreamModel.load(folder, dtype=dtype).eval()
        if merge and hasattr(model.base, "merge_and_unload"):  # inference: fold LoRA into the weights, no extra matmuls
            model.base = model.base.merge_and_unload()
        return model
    if ref == "default":
        log.warning("no trained default adapter in %s yet: using the freshly wrapped base model", WEIGHTS / "default")
        return MultiStreamModel.from_base(DEFAULT, dtype=dtype).eval()
    raise FileNotFoundError(f"model {ref!r}: not 'default', 'base[:REF]' or a folder with {CONFIG_FILE}")


def load_single(ref: str = "default-single", dtype: torch.dtype = torch.float32):
    """A single-stream chat model ``(model, tokenizer)`` for baselines.

    ``default-single`` is the twin of the default model (a LoRA adapter in
    ``weights/default-single`` on the default base), trained on the same data rendered as
    ordinary chats; until it exists, the base model itself. ``base[:REF]`` is a base as is.
    """
    from .bases import load_base

    if ref == "base" or ref.startswith("base:"):
        return load_base(ref.partition(":")[2] or DEFAULT, dtype)
    folder = WEIGHTS / ref if ref == "default-single" else Path(ref)
    if not (folder / "adapter_config.json").exists():
        if ref == "default-single":
            log.warning("no trained single-stream twin in %s yet: using the base model", folder)
            return load_base(DEFAULT, dtype)
        raise FileNotFoundError(f"single-stream model {ref!r}: no adapter_config.json in {folder}")
    from peft import PeftModel
    from transformers import AutoTokenizer

    base, _ = load_base(DEFAULT, dtype, tokenizer=False)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if len(tokenizer) > base.get_input_embeddings().weight.shape[0]:
        base.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    model = PeftModel.from_pretrained(base, folder).merge_and_unload()
    return model.eval(), tokenizer

