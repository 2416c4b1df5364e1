"""A compiled row forward over the whole slotted KV cache, for the engine's ordinary rows.

The engine's common forward, one row per session, is cheap to give fixed shapes: every slot of
the cache takes part (``[slots, width]`` new tokens, ``width`` the number of streams; slots
without a row get padding that is never kept), attention runs over the cache's whole capacity
(cells a slot has not filled are masked), and each slot's logits are read at its output
streams. ``torch.compile`` then traces the base model's own code once per (slots, capacity),
fuses its small kernels and folds the weights in (freezing: :func:`compile_frozen`), which removes
Python and dispatch; what remains on a CPU is reading the weights once per row.

Plans that feed a prefix, several rows (bulk or speculative reading) or need several rows'
logits keep the eager path: they are prefill-like, bound by arithmetic, and their shapes vary.
Both paths compute the same function; the tests hold them to the same tokens.
"""

from __future__ import annotations

import time

import torch

from ..rows import stream_causal_mask


class _CacheView:
    """What the base model's attention layers call on a cache (``update``): write the new keys and values into the
    static buffers at ``write`` and attend over the whole capacity."""

    is_compileable = True

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], write: torch.Tensor):
        self.keys, self.values, self.write = keys, values, write

    def update(self, key_states, value_states, layer_idx: int, cache_kwargs=None):
        k, v = self.keys[layer_idx], self.values[layer_idx]
        rows = torch.arange(k.shape[0], device=k.device)[:, None]
        k[rows, :, self.write] = key_states.transpose(1, 2).to(k.dtype)
        v[rows, :, self.write] = value_states.transpose(1, 2).to(v.dtype)
        return k, v

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0

    def __len__(self) -> int:
        return len(self.keys)


def _row_forward(model, body, head, keys, values, ids, streams, pos, write, k_pos, k_stream, k_valid, k_visible, out_at):
    """Logits ``[slots, outputs, vocab]`` of one row per slot; ``out_at`` ``[slots, outputs]`` says where the output
    cells sit among the row's ``width`` tokens."""
    mask = stream_causal_mask(pos, k_pos, streams, k_stream, k_visible=k_visible, k_valid=k_valid)
    hidden = body(
        inputs_embeds=model.embed(ids, streams), position_ids=pos, attention_mask=mask,
        past_key_values=_CacheView(keys, values, write), use_cache=True,
    ).last_hidden_state
    picked = hidden.gather(1, out_at[:, :, None].expand(-1, -1, hidden.shape[-1]))
    return head(picked).float()


def compile_frozen(fn, autotune: bool = False):
    """``torch.compile(fn)`` with inductor's freezing (and ``max_autotune_gemm`` if ``autotune``): the weights become
    constants of the graph, prepacked for the CPU's matrix units (oneDNN), and 4-bit layers qualify for inductor's own
    AMX kernel. Freezing is read from inductor's config when a graph compiles; handed to ``torch.compile`` as an option
    it is silently ignored (torch 2.13: the weights stayed graph inputs), so every call runs under a patched config
    (a graph may compile again on any call, for a new shape)."""
    import torch._inductor.config as inductor

    compiled = torch.compile(fn, dynamic=False)
    settings = {"freezing": True, **({"max_autotune_gemm": True} if autotune else {})}

    def call(*args):
        with inductor.patch(settings):
            return compiled(*args)

    return call


class CompiledRows:
    """The engine's compiled forward of one row per slot (see the module docstring).

    ``compile_seconds`` adds up the time spent compiling (the first call per cache shape pays it).
    """

    def __init__(self, model, autotune: bool = False):
        from ..model import unwrap_base

        core = unwrap_base(model.base)
        self.model = model
        self.body = core.get_decoder() if hasattr(core, "get_decoder") else core.model
        self.head = core.get_output_embeddings()
        self.width = len(model.layout)
        # freezing needs the weights to stay as they are (see EngineConfig); autotune: inductor's own GEMM templates
        # (AMX micro-kernels, 4-bit weight ones) timed against the library's
        self.fn = compile_frozen(_row_forward, autotune)
        self.shapes: set[tuple[int, int]] = set()
        self.compile_seconds = 0.0
        self.rows = 0
        """Forwards run compiled (for tests and benchmarks: which path ran)."""

    def eligible(self, plans) -> bool:
        """Whether every plan is one row with no prefix, whose output logits are all that is read."""
        return all(p.prefix_len == 0 and len(p.needed) == 1 and len(p.ids) <= self.width for p in plans)

    def warm_up(self, cache, silence: int, capacities: tuple[int, ...] = ()) -> float:
        """Compile for the cache's present shape now, and for each of ``capacities`` (on a scratch cache of as many
        slots), with no session (a row of padding in every slot, nothing committed), so that the first real row of
        those shapes does not wait; returns the seconds it took."""
        from .cache import SlotKVCache

        t = time.perf_counter()
        outputs = len(self.model.layout.outputs)
        self(cache, [], silence, outputs=outputs)
        for capacity in capacities:
            if capacity != cache.capacity:
                scratch = SlotKVCache.for_model(self.model.base, slots=cache.slots, capacity=capacity)
                self(scratch, [], silence, outputs=outputs)
        return time.perf_counter() - t

    @torch.no_grad()
    def __call__(self, cache, plans, silence: int, outputs: int | None = None) -> list[torch.Tensor]:
        """The plans' logits ``[1, outputs, vocab]`` each; writes every slot's new cells past its length, as the eager
        forward does (the engine commits what it keeps)."""
        w, slots = self.width, cache.slots
        ids = torch.full((slots, w), silence, dtype=torch.long)
        streams = torch.zeros((slots, w), dtype=torch.long)
        pos = torch.zeros((slots, w), dtype=torch.long)
        q_visible = torch.zeros((slots, w), dtype=torch.bool)
        n_out = plans[0].out_at.shape[1] if plans else outputs
        out_at = torch.zeros((slots, n_out), dtype=torch.long)
        for p in plans:
            s, k = p.session.slot, len(p.ids)
            ids[s, :k], streams[s, :k], pos[s, :k], q_visible[s, :k] = p.ids, p.streams, p.positions, p.visible
            pos[s, k:] = int(p.positions.max()) + 1
            out_at[s] = p.out_at[0]
        # padding (and slots without a row) is valid for the mask, so that each of its queries sees at least itself
        # (a query that sees nothing would write NaN into the cache); nothing else sees it (not visible)
        k_pos, k_stream, filled, write = cache.begin_static(pos, streams)
        dev = filled.device  # the cache's (and the model's) device; the plans' tensors are built on the CPU
        rows, write = torch.arange(slots, device=dev)[:, None], write.to(dev)
        k_valid, k_visible = filled.clone(), filled.clone()
        k_valid[rows, write] = True
        k_visible[rows, write] = q_visible.to(dev)
        shape = (slots, cache.capacity)
        t = time.perf_counter()
        logits = self.fn(
            self.model, self.body, self.head, cache.keys, cache.values, ids.to(dev), streams.to(dev), pos.to(dev),
            write, k_pos, k_stream, k_valid, k_visible, out_at.to(dev),
        )
        self.rows += 1
        if shape not in self.shapes:
            self.shapes.add(shape)
            self.compile_seconds += time.perf_counter() - t
        return [logits[p.session.slot][None] for p in plans]
