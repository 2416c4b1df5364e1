"""Trainable embedding rows for the tokens the wrapper added (the silence token).

With frozen (and, in SmolLM2, tied) embeddings, LoRA cannot tell the new silence token
from the many identical rows it was initialised beside. :class:`TrainableRows` holds a
trainable copy of just those rows and substitutes them through forward hooks on the
input embedding and the output projection, so the rest of the (large) embedding matrix
stays frozen and needs no gradient. :meth:`merge` writes the rows back into the base
weights, which is what ``MultiStreamModel.save`` stores as ``new_token_rows``.
"""

from __future__ import annotations

import torch
from torch import nn


class TrainableRows(nn.Module):
    def __init__(self, core: nn.Module, ids: list[int]):
        super().__init__()
        emb, out = core.get_input_embeddings(), core.get_output_embeddings()
        self.register_buffer("ids", torch.tensor(ids, dtype=torch.long, device=emb.weight.device), persistent=False)
        self.input = nn.Parameter(emb.weight[self.ids].detach().float())  # trained: float32 whatever the base
        self.tied = out is None or out.weight is emb.weight
        self.output = None if self.tied else nn.Parameter(out.weight[self.ids].detach().float())
        self._core = [core]  # not a submodule: the base belongs to the model
        self._hooks = [emb.register_forward_hook(self._embed_hook)]
        if out is not None:
            self._hooks.append(out.register_forward_hook(self._head_hook))

    def _embed_hook(self, module, args, output):
        input_ids = args[0]
        for j in range(self.ids.shape[0]):
            output = torch.where((input_ids == self.ids[j])[..., None], self.input[j].to(output.dtype), output)
        return output

    def _head_hook(self, module, args, output):
        rows = self.input if self.tied else self.output
        hidden = args[0]
        new = hidden @ rows.to(hidden.dtype).t()
        return output.index_copy(-1, self.ids, new.to(output.dtype))

    @torch.no_grad()
    def merge(self) -> None:
        """Write the trained rows into the base embedding (and untied output) matrices."""
        core = self._core[0]
        core.get_input_embeddings().weight[self.ids] = self.input.to(core.get_input_embeddings().weight.dtype)
        if not self.tied:
            core.get_output_embeddings().weight[self.ids] = self.output.to(core.get_output_embeddings().weight.dtype)

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []
