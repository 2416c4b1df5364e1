"""A window over a long session's rows: the prefix plus the most recent rows stay in the KV cache.

A session that runs for hours would grow its cache, and its positions, without bound. With
``EngineConfig.window_rows`` the oldest rows are evicted once a session holds more than the
window (down to three quarters of it, so the copy is paid rarely), and the rows that stay are
moved back to follow the prefix: their cached keys are re-rotated (RoPE is a rotation by
position, so rotating a key by ``-shift`` gives the key the token would have had ``shift``
positions earlier). Every distance among the rows that stay, and between them and each new
row, is unchanged; what changes is that evicted rows are no longer visible (what the rows that
stay learned from them remains in their values), and that the prefix now looks ``shift``
positions nearer: the attention-sink recipe of StreamingLLM (Xiao et al., 2023), kept to the
stream-causal rule since whole rows are evicted.
"""

from __future__ import annotations

import torch
from torch import nn


def rotary_module(base: nn.Module) -> nn.Module | None:
    """The model's rotary position embedding (transformers names them ``...RotaryEmbedding``)."""
    return next((m for m in base.modules() if type(m).__name__.endswith("RotaryEmbedding")), None)


class KeyRotation:
    """Re-rotates cached keys by a position shift with the model's own rotary embedding."""

    def __init__(self, base: nn.Module):
        self.rotary = rotary_module(base)
        if self.rotary is None:
            raise ValueError(f"window_rows needs rotary position embeddings; {type(base).__name__} has none")
        self.scale = float(getattr(self.rotary, "attention_scaling", 1.0) or 1.0)

    @torch.no_grad()
    def __call__(self, keys: torch.Tensor, shift: int) -> torch.Tensor:
        """``keys [..., positions, head_dim]`` as if every position were ``shift`` larger (``shift`` may be negative)."""
        x = keys.float()
        pos = torch.tensor([[abs(shift)]], device=keys.device)
        cos, sin = self.rotary(x.reshape(1, -1, x.shape[-1])[:, :1], pos)
        cos, sin = cos[0, 0] / self.scale, sin[0, 0] / self.scale * (1 if shift >= 0 else -1)
        d = cos.shape[-1]  # a partial rotary embedding rotates the first d dimensions only
        rot, rest = x[..., :d], x[..., d:]
        half = torch.cat([-rot[..., d // 2 :], rot[..., : d // 2]], dim=-1)
        return torch.cat([rot * cos + half * sin, rest], dim=-1).to(keys.dtype)

    @torch.no_grad()
    def check(self, base: nn.Module) -> None:
        """Refuse a model whose keys this rotation does not reproduce in every layer (another rotary convention,
        layers without positions, per-layer rotary settings): a token's key at position 7, moved back 4
        positions, must be its key at position 3."""
        from transformers import DynamicCache

        try:
            keys = []
            for p in (7, 3):
                cache = DynamicCache(config=base.config)
                ids, pos = torch.tensor([[1]], device=base.device), torch.tensor([[p]], device=base.device)
                base(input_ids=ids, position_ids=pos, past_key_values=cache, use_cache=True)
                keys.append([layer.keys.float() for layer in cache.layers])
            bad = [i for i, (k7, k3) in enumerate(zip(*keys)) if (self(k7, -4) - k3).abs().max() > 1e-2 * k3.abs().max()]
        except Exception as e:  # a rotary module with another interface
            raise ValueError(f"window_rows: cannot re-rotate {type(base).__name__}'s keys ({e})") from e
        if bad:
            raise ValueError(f"window_rows: {type(base).__name__}'s keys in layer(s) {bad} are not the rotation this "
                             "engine applies (another rotary convention, or layers without positions)")
