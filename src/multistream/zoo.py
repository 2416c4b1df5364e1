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


def load_model(ref: str = "default", dtype: torch.dtype = torch.float32) -> MultiStreamModel:
    if ref == "base" or ref.startswith("base:"):
        return MultiStreamModel.from_base(ref.partition(":")[2] or DEFAULT, dtype=dtype).eval()
    folder = model_folder(ref)
    if folder is not None:
        return MultiStreamModel.load(folder, dtype=dtype).eval()
    if ref == "default":
        log.warning("no trained default adapter in %s yet: using the freshly wrapped base model", WEIGHTS / "default")
        return MultiStreamModel.from_base(DEFAULT, dtype=dtype).eval()
    raise FileNotFoundError(f"model {ref!r}: not 'default', 'base[:REF]' or a folder with {CONFIG_FILE}")
