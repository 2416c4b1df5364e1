"""A KV cache with one slot per session, so sessions of different lengths share one forward.

Each slot keeps its own length; a forward writes each session's new keys at that
slot's end and attends over ``[0, max length)`` of the batch's slots, with a mask that
hides what a slot has not filled. Because RoPE is applied before caching (with our
explicit positions), gaps and unequal lengths need no re-indexing. Buffers grow by
doubling; rolling back speculative rows is just shortening a slot.

It implements the part of the transformers ``Cache`` interface the attention layers
call (``update``), and keeps per-token positions and stream ids for the mask.
"""

from __future__ import annotations

import torch


class SlotKVCache:
    is_compileable = False

    def __init__(
        self, num_layers: int, kv_heads: int, head_dim: int, dtype: torch.dtype, device, slots: int = 1, capacity: int = 256
    ):
        self.num_layers, self.kv_heads, self.head_dim = num_layers, kv_heads, head_dim
        self.dtype, self.device = dtype, torch.device(device)
        self.slots, self.capacity = slots, capacity
        shape = (slots, kv_heads, capacity, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=self.device) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=self.device) for _ in range(num_layers)]
        self.positions = torch.zeros(slots, capacity, dtype=torch.long, device=self.device)
        self.streams = torch.zeros(slots, capacity, dtype=torch.long, device=self.device)
        self.lengths = torch.zeros(slots, dtype=torch.long)
        self._batch: tuple[torch.Tensor, torch.Tensor, int] | None = None  # (slot index [B,1], write index [B,N], span)

    @classmethod
    def for_model(cls, base, slots: int = 1, capacity: int = 256) -> SlotKVCache:
        cfg = base.config.get_text_config() if hasattr(base.config, "get_text_config") else base.config
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        kv = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        w = base.get_input_embeddings().weight
        return cls(cfg.num_hidden_layers, kv, head_dim, w.dtype, w.device, slots, capacity)

    # -- capacity --------------------------------------------------------------------
    def _grow(self, slots: int, capacity: int) -> None:
        def grown(t: torch.Tensor, fill=0) -> torch.Tensor:
            new = torch.full((slots, *t.shape[1:-2], capacity, *t.shape[-1:]) if t.dim() == 4 else (slots, capacity),
                             fill, dtype=t.dtype, device=t.device)
            if t.dim() == 4:
                new[: t.shape[0], :, : t.shape[2]] = t
            else:
                new[: t.shape[0], : t.shape[1]] = t
            return new

        self.keys = [grown(k) for k in self.keys]
        self.values = [grown(v) for v in self.values]
        self.positions, self.streams = grown(self.positions), grown(self.streams)
        self.lengths = torch.cat([self.lengths, torch.zeros(slots - self.slots, dtype=torch.long)])
        self.slots, self.capacity = slots, capacity

    def ensure(self, slots: int, length: int) -> None:
        cap = self.capacity
        while cap < length:
            cap *= 2
        if slots > self.slots or cap > self.capacity:
            self._grow(max(slots, self.slots), cap)

    # -- one forward -----------------------------------------------------------------
    def begin(self, slots: torch.Tensor, positions: torch.Tensor, streams: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Prepare a forward of ``[B, N]`` new tokens for ``slots``; returns key (positions, streams, filled) ``[B, span]``.

        Padding tokens of a short plan are written too (past the slot's length, so they
        count as unfilled) and are masked by the caller through ``q_valid``.
        """
        n = positions.shape[1]
        start = self.lengths[slots]
        span = int((start + n).max())
        self.ensure(int(slots.max()) + 1, span)
        write = start[:, None] + torch.arange(n)
        rows = slots[:, None].to(self.device)
        write_d = write.to(self.device)
        self.positions[rows, write_d] = positions.to(self.device)
        self.streams[rows, write_d] = streams.to(self.device)
        self._batch = (rows, write_d, span)
        filled = torch.arange(span)[None, :] < start[:, None]
        return self.positions[slots, :span], self.streams[slots, :span], filled.to(self.device), write

    def update(self, key_states, value_states, layer_idx: int, cache_kwargs=None):
        rows, write, span = self._batch
        k, v = self.keys[layer_idx], self.values[layer_idx]
        # [B, H, N, D] -> the advanced-indexing layout [B, N, H, D]
        k[rows, :, write] = key_states.transpose(1, 2).to(k.dtype)
        v[rows, :, write] = value_states.transpose(1, 2).to(v.dtype)
        slot_ids = rows[:, 0]
        if bool((slot_ids == torch.arange(len(slot_ids), device=slot_ids.device)).all()):
            return k[: len(slot_ids), :, :span], v[: len(slot_ids), :, :span]  # views: no copy
        return k[slot_ids, :, :span], v[slot_ids, :, :span]

    def commit(self, slots: torch.Tensor, kept: torch.Tensor) -> None:
        """After the forward: each slot keeps ``kept[b]`` of its new tokens (fewer on speculative rollback)."""
        self.lengths[slots] += kept.cpu()
        self._batch = None

    # -- slot management -------------------------------------------------------------
    def clear(self, slot: int) -> None:
        self.lengths[slot] = 0

    def move(self, src: int, dst: int) -> None:
        """Copy slot ``src`` into ``dst`` (to keep the live slots at the front)."""
        n = int(self.lengths[src])
        for t in (*self.keys, *self.values):
            t[dst, :, :n] = t[src, :, :n]
        self.positions[dst, :n] = self.positions[src, :n]
        self.streams[dst, :n] = self.streams[src, :n]
        self.lengths[dst] = n
        self.lengths[src] = 0

    # transformers calls these on some code paths; they describe the batch as a whole
    def get_seq_length(self, layer_idx: int = 0) -> int:
        return int(self.lengths.max()) if len(self.lengths) else 0

    def __len__(self) -> int:
        return self.num_layers
