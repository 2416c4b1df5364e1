"""4-bit weight-only linear layers for CPU decoding (``--quant int4``).

A decode row of a small model multiplies a handful of vectors by every weight matrix: the work
is reading the weights. Stored as 4-bit integers in groups of 32 along the input dimension (each
group with its own scale and zero point), a matrix is read in a quarter of its bf16 bytes, by
PyTorch's CPU kernel for that layout (``aten._weight_int4pack_mm_for_cpu``).

The default base model comes from a GGUF file whose linear weights are Q4_1: groups of 32 along
the input dimension, ``w = d * q + m`` with ``q`` in 0..15. A group's min and max then sit on the
grid's ends, so min/max quantisation here finds each group's own grid again and the base weights
are kept as they were shipped (up to rounding the scales to the compute dtype). That is why a
LoRA adapter stays *unmerged* under ``int4``: merged into the weights it would move them off the
grid, and most of it would round away; beside them it adds two thin products per layer.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

GROUP = 32
"""Weights per quantisation group (along the input dimension)."""
QUANT_MODES = ("none", "int4")
_N_MULTIPLE = 16  # the packed layout's output rows come in tiles of 16
_INNER_K_TILES = 2


def quantize_weight(weight: torch.Tensor, group: int = GROUP) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight [N, K]`` -> (``q [N, K]`` int32 in 0..15, ``scales_and_zeros [K / group, N, 2]`` float32) with
    ``weight ~ (q - 8) * scale + zero`` per group: asymmetric min/max rounding."""
    n, k = weight.shape
    if k % group:
        raise ValueError(f"in_features {k} is not a multiple of the group size {group}")
    w = weight.detach().float().reshape(n, k // group, group)
    lo, hi = w.amin(-1, keepdim=True), w.amax(-1, keepdim=True)
    scale = ((hi - lo) / 15).clamp(min=1e-12)
    q = ((w - lo) / scale).round().clamp(0, 15).to(torch.int32).reshape(n, k)
    zero = lo + 8 * scale  # the kernel's convention: w = (q - 8) * scale + zero
    scales_and_zeros = torch.cat([scale, zero], dim=-1).transpose(0, 1).contiguous()
    return q, scales_and_zeros


def dequantize(q: torch.Tensor, scales_and_zeros: torch.Tensor, group: int = GROUP) -> torch.Tensor:
    """The float weights that ``q`` and its scales stand for (the slow reference of the kernel)."""
    n, k = q.shape
    sz = scales_and_zeros.float().transpose(0, 1)  # [N, K / group, 2]
    w = (q.reshape(n, k // group, group).float() - 8) * sz[..., :1] + sz[..., 1:]
    return w.reshape(n, k)


class Int4Linear(nn.Module):
    """``nn.Linear`` with its weight in 4 bits (see the module doc); computes in ``dtype`` (the input is cast)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False, group: int = GROUP,
                 dtype: torch.dtype = torch.bfloat16):
        super().__init__()
        self.in_features, self.out_features, self.group, self.dtype = in_features, out_features, group, dtype
        rows = -(-out_features // _N_MULTIPLE) * _N_MULTIPLE
        self.register_buffer("packed", torch.zeros(rows, in_features // 2, dtype=torch.uint8))
        self.register_buffer("scales_and_zeros", torch.zeros(in_features // group, rows, 2, dtype=dtype))
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear, group: int = GROUP, dtype: torch.dtype | None = None) -> Int4Linear:
        dtype = dtype or linear.weight.dtype
        m = cls(linear.in_features, linear.out_features, linear.bias is not None, group, dtype)
        m.set_weight(linear.weight)
        if linear.bias is not None:
            m.bias.copy_(linear.bias.detach().to(dtype))
        return m

    @torch.no_grad()
    def set_weight(self, weight: torch.Tensor) -> None:
        rows = self.packed.shape[0]
        if rows != weight.shape[0]:  # zero rows to a whole tile; their outputs are dropped
            weight = torch.cat([weight, weight.new_zeros(rows - weight.shape[0], weight.shape[1])])
        q, sz = quantize_weight(weight, self.group)
        self.packed.copy_(torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, _INNER_K_TILES))
        self.scales_and_zeros.copy_(sz.to(self.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(
            x.reshape(-1, self.in_features).to(self.dtype).contiguous(), self.packed, self.group, self.scales_and_zeros)
        if y.shape[-1] != self.out_features:
            y = y[:, : self.out_features]
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, group={self.group}, dtype={self.dtype}"


def _targets(root: nn.Module, lm_head: bool) -> list[tuple[nn.Module, str, nn.Linear]]:
    """(parent, attribute, linear) of every linear layer to quantise: not LoRA's own thin layers, and the output
    head only when asked (tied to the input embeddings, it is read once per row but holds the silence row)."""
    out = []
    for name, module in root.named_modules():
        for attr, child in module.named_children():
            full = f"{name}.{attr}" if name else attr
            if type(child) is not nn.Linear or "lora_" in full:
                continue
            if child.in_features % GROUP or (not lm_head and attr == "lm_head"):
                continue
            out.append((module, attr, child))
    return out


@torch.no_grad()
def quantize_model(model: nn.Module, lm_head: bool = False, dtype: torch.dtype | None = None,
                   cache: Path | None = None) -> int:
    """Replace the linear layers of ``model`` (a :class:`~multistream.model.MultiStreamModel` or any module) by
    :class:`Int4Linear`, in place; returns how many. A LoRA adapter's base layers are quantised, its own left as
    they are. CPU only: the kernel has no other device.

    ``cache``: a file of the quantised layers; read when it is there (quantising the default model takes seconds),
    else written after quantising."""
    from safetensors.torch import load_file, save_file

    targets = _targets(model, lm_head)
    saved = load_file(cache) if cache is not None and cache.exists() else None
    layers = {}
    for parent, attr, linear in targets:
        if linear.weight.device.type != "cpu":
            raise ValueError(f"--quant int4 runs on the CPU; {attr} is on {linear.weight.device}")
        if _shared_weight(model, linear):
            raise ValueError(f"{attr}: its weight is shared (tied) with the input embeddings; quantise without it")
        name = next(n for n, m in model.named_modules() if m is parent) + "." + attr
        if saved is None:
            q = Int4Linear.from_linear(linear, dtype=dtype)
        else:
            q = Int4Linear(linear.in_features, linear.out_features, linear.bias is not None,
                           dtype=dtype or linear.weight.dtype)
            q.load_state_dict({k.removeprefix(name + "."): v for k, v in saved.items() if k.startswith(name + ".")})
        layers[name] = q
        setattr(parent, attr, q)
    if saved is None and cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        save_file({f"{n}.{k}": v.contiguous() for n, q in layers.items() for k, v in q.state_dict().items()}, tmp)
        tmp.replace(cache)  # a cache file is whole or absent
        log.info("int4 weights cached in %s", cache)
    return len(targets)


def _shared_weight(model: nn.Module, linear: nn.Linear) -> bool:
    emb = getattr(model, "get_input_embeddings", lambda: None)()
    return emb is not None and emb.weight is linear.weight


def folder_cache(folder: Path, dtype: torch.dtype) -> Path:
    """Where the int4 layers of the model saved in ``folder`` are cached: keyed by its weight files, the base model
    it names, the dtype and the torch version (the packed layout is the kernel's)."""
    from .bases import cache_root

    h = hashlib.sha256(f"{torch.__version__}:{dtype}:{GROUP}".encode())
    for f in sorted(folder.iterdir()):
        if f.suffix in (".safetensors", ".json"):
            h.update(f.name.encode())
            h.update(hashlib.sha256(f.read_bytes()).digest())
    return cache_root() / "int4" / f"{h.hexdigest()[:20]}.safetensors"
