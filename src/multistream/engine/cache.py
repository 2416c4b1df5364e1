"""A KV cache with one slot per session, so sessions of different lengths share one forward.

Each slot keeps its own length; a forward writes each session's new keys at that
slot's end and attends over ``[0, max length)`` of the batch's slots, with a mask that
hides what a slot has not filled. Because RoPE is applied before caching (with our
explicit positions), gaps and unequal lengths need no re-indexing. Buffers grow by
doubling, up to an optional ceiling (``max_tokens``), and shrink back when sessions close;
rolling back speculative rows is just shortening a slot.

It implements the part of the transformers ``Cache`` interface the attention layers
call (``update``), and keeps per-token positions and stream ids for the mask.
"""

from __future__ import annotations

import torch


class KVCacheFull(RuntimeError):
    """The cache would pass its ceiling (``max_tokens``)."""


class SlotKVCache:
    is_compileable = False

    def __init__(
        self, num_layers: int, kv_heads: int, head_dim: int, dtype: torch.dtype, device, slots: int = 1, capacity: int = 256,
        max_tokens: int | None = None,
    ):
        self.num_layers, self.kv_heads, self.head_dim = num_layers, kv_heads, head_dim
        self.dtype, self.device = dtype, torch.device(device)
        self.slots, self.capacity = slots, capacity
        self.initial = (slots, capacity)
        self.max_tokens = max_tokens
        """Ceiling on ``slots * capacity`` (None: none): the buffers never hold more token cells than this."""
        self.in_use = 0
        """Slots ``[0, in_use)`` hold live data (the owner keeps live slots at the front); resizing keeps them."""
        shape = (slots, kv_heads, capacity, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=self.device) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=self.device) for _ in range(num_layers)]
        self.positions = torch.zeros(slots, capacity, dtype=torch.long, device=self.device)
        self.streams = torch.zeros(slots, capacity, dtype=torch.long, device=self.device)
        self.lengths = torch.zeros(slots, dtype=torch.long)
        self._batch: tuple[torch.Tensor, torch.Tensor, int] | None = None  # (slot index [B,1], write index [B,N], span)

    @classmethod
    def for_model(cls, base, slots: int = 1, capacity: int = 256, max_tokens: int | None = None) -> SlotKVCache:
        cfg = base.config.get_text_config() if hasattr(base.config, "get_text_config") else base.config
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        kv = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
        w = base.get_input_embeddings().weight
        return cls(cfg.num_hidden_layers, kv, head_dim, w.dtype, w.device, slots, capacity, max_tokens)

    # -- capacity --------------------------------------------------------------------
    @property
    def bytes_per_token(self) -> int:
        """Memory of one token cell: keys and values of every layer, plus its position and stream."""
        elem = torch.empty((), dtype=self.dtype).element_size()
        return 2 * self.num_layers * self.kv_heads * self.head_dim * elem + 16

    @property
    def allocated_tokens(self) -> int:
        return self.slots * self.capacity

    @property
    def nbytes(self) -> int:
        return self.allocated_tokens * self.bytes_per_token

    def fits(self, slots: int, length: int) -> bool:
        """Whether ``slots`` sessions of up to ``length`` tokens each fit under the ceiling."""
        return self.max_tokens is None or slots * length <= self.max_tokens

    def _resize(self, slots: int, capacity: int) -> None:
        keep_s, keep_c = min(slots, self.slots), min(capacity, self.capacity)

        def resized(t: torch.Tensor) -> torch.Tensor:
            shape = (slots, *t.shape[1:-2], capacity, t.shape[-1]) if t.dim() == 4 else (slots, capacity)
            new = torch.zeros(shape, dtype=t.dtype, device=t.device)
            if t.dim() == 4:
                new[:keep_s, :, :keep_c] = t[:keep_s, :, :keep_c]
            else:
                new[:keep_s, :keep_c] = t[:keep_s, :keep_c]
            return new

        self.keys = [resized(k) for k in self.keys]
        self.values = [resized(v) for v in self.values]
        self.positions, self.streams = resized(self.positions), resized(self.streams)
        lengths = torch.zeros(slots, dtype=torch.long)
        lengths[:keep_s] = self.lengths[:keep_s]
        self.lengths = lengths
        self.slots, self.capacity = slots, capacity

    def ensure(self, slots: int, length: int) -> None:
        """Room for ``slots`` slots of ``length`` tokens (slots grow and capacity doubles, up to the ceiling).

        Raises :class:`KVCacheFull` when that cannot fit under ``max_tokens``.
        """
        need = max(slots, self.in_use)
        if need <= self.slots and length <= self.capacity:
            return
        s = self.slots if need <= self.slots else max(need, 2 * self.slots)
        cap = self.capacity
        while cap < length:
            cap *= 2
        if self.max_tokens is not None and s * cap > self.max_tokens:
            s = need  # no spare slots, no spare capacity: exactly what fits
            cap = max(length, min(cap, self.max_tokens // s))
            if s * cap > self.max_tokens:
                raise KVCacheFull(f"{s} slots of {length} tokens pass the KV cache ceiling of {self.max_tokens} tokens")
        self._resize(s, cap)

    def shrink(self) -> bool:
        """Give memory back: when the buffers hold over 4x what the live slots need, or no slot is live, cut them."""
        n = max(1, self.in_use)
        longest = int(self.lengths[: self.in_use].max()) if self.in_use else 0
        cap = self.initial[1]
        while cap < longest:
            cap *= 2
        if self.allocated_tokens <= 4 * n * cap and (self.in_use or (self.slots, self.capacity) == self.initial):
            return False  # (with no session open, everything goes back)
        self._resize(max(n, self.initial[0]), cap)
        return True

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

    def begin_static(self, positions: torch.Tensor, streams: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Prepare a forward of ``[slots, N]`` new tokens, one row for every slot, over the whole capacity (fixed
        shapes, for a compiled forward that writes the cells itself); returns key (positions, streams, filled)
        ``[slots, capacity]`` and the write index ``[slots, N]``."""
        n = positions.shape[1]
        self.ensure(self.slots, int(self.lengths.max()) + n)
        write = self.lengths[:, None] + torch.arange(n)
        rows, cells = torch.arange(self.slots, device=self.device)[:, None], write.to(self.device)
        self.positions[rows, cells] = positions.to(self.device)
        self.streams[rows, cells] = streams.to(self.device)
        filled = torch.arange(self.capacity)[None, :] < self.lengths[:, None]
        return self.positions, self.streams, filled.to(self.device), write

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

    def abandon(self) -> None:
        """A forward that failed: nothing it wrote counts (the slots' lengths are unchanged)."""
        self._batch = None

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

    def evict(self, slot: int, first: int, stop: int, rotate) -> int:
        """Drop the cells of ``slot`` whose positions lie in ``[first, stop)`` and move every later one back by
        ``stop - first`` positions: their keys are re-rotated by ``rotate(keys, -shift)``, so every distance
        between tokens that stay is what it was. Returns the cells dropped (often none: silent rows keep none,
        and the later cells move back all the same)."""
        n = int(self.lengths[slot])
        pos = self.positions[slot, :n]
        at = int((pos < first).sum())  # cells are in position order (rows are cached in order)
        k = int(((pos >= first) & (pos < stop)).sum())
        later, shift = slice(at + k, n), stop - first
        if at + k < n:
            for t in self.values:
                t[slot, :, at : n - k] = t[slot, :, later].clone()
            for t in self.keys:
                t[slot, :, at : n - k] = rotate(t[slot, :, later], -shift)
            self.positions[slot, at : n - k] = self.positions[slot, later] - shift
            self.streams[slot, at : n - k] = self.streams[slot, later].clone()
        self.lengths[slot] = n - k
        return k

    # transformers calls these on some code paths; they describe the batch as a whole
    def get_seq_length(self, layer_idx: int = 0) -> int:
        return int(self.lengths.max()) if len(self.lengths) else 0

    def __len__(self) -> int:
        return self.num_layers
