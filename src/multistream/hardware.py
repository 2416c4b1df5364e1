"""What the machine runs fast: the dtype ``--dtype auto`` picks and the mixed precision training uses.

bf16 halves the bytes of weights read per row and, on CPUs with AMX or AVX-512 BF16 (or a GPU that
supports it), runs its matrix products natively: a row of several streams then costs markedly less
than in float32 (see ``multistream bench step``). Elsewhere bf16 is emulated and slower, so
``auto`` keeps float32 there.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch

DTYPES = ("auto", "float32", "bfloat16")
"""What ``--dtype`` accepts."""


@cache
def cpu_has_bf16() -> bool:
    """Whether the CPU multiplies bf16 natively (AMX or AVX-512 BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def fast_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether bf16 is native on ``device``."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_bf16()


def resolve_dtype(name: str | torch.dtype, device: str | torch.device = "cpu") -> torch.dtype:
    """The dtype ``name`` stands for: ``auto`` is bf16 where :func:`fast_bf16`, else float32."""
    if isinstance(name, torch.dtype):
        return name
    if name == "auto":
        return torch.bfloat16 if fast_bf16(device) else torch.float32
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}: use one of {', '.join(DTYPES)}")
    return getattr(torch, name)
