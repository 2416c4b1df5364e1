"""The slow reference decoder: obviously correct, the oracle for the engine.

At every row it packs the whole session so far (prefix and all rows, under the
model's silence rule) and runs one full forward, no cache, then takes the greedy
choice of every output stream. Inputs
come from a timeline's input segments at their scheduled rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .defaults import SPEAK_RULE
from .engine.sampling import greedy, rule_silence
from .model import MultiStreamModel
from .rows import RowGrid, pack_grid, timeline_to_grid
from .timeline import Timeline


@dataclass
class Decoded:
    tokens: torch.Tensor
    """``[rows, streams]``: inputs as fed, outputs as chosen (row 0 outputs are silence)."""
    prefix_ids: torch.Tensor
    texts: dict[str, str]
    """Text of every output stream (silence and end tokens dropped)."""


def grid_texts(model: MultiStreamModel, tokens: torch.Tensor, kind: str = "output") -> dict[str, str]:
    return {
        s.name: model.tok.decode(tokens[:, i].tolist())
        for i, s in enumerate(model.layout)
        if s.kind == kind
    }


@torch.no_grad()
def reference_decode(model: MultiStreamModel, timeline: Timeline, rows: int | None = None,
                     speak_rule: str = SPEAK_RULE) -> Decoded:
    """Greedy decoding of all output streams for ``rows`` rows (default: the timeline's length), silence against
    speech decided by ``speak_rule`` (:func:`multistream.engine.sampling.greedy`)."""
    layout = model.layout
    grid = timeline_to_grid(timeline, model.tok, layout, kinds=("input",))
    rows = rows or grid.rows
    tokens = torch.full((rows, len(layout)), model.tok.silence_id, dtype=torch.long)
    n = min(rows, grid.rows)
    tokens[:n] = grid.tokens[:n]
    fmt = model.row_format
    out_streams = fmt.is_output.nonzero().squeeze(1)
    p = grid.prefix_ids.shape[0]
    silence = rule_silence(speak_rule, model.tok.silence_id)
    for t in range(rows - 1):
        packed = pack_grid(RowGrid(grid.prefix_ids, tokens[: t + 1], grid.prefix_stream), fmt)
        logits = model(
            packed.input_ids[None].to(model.device),
            packed.stream_ids[None].to(model.device),
            packed.position_ids[None].to(model.device),
            visible=packed.visible[None].to(model.device),
        ).logits[0]
        # the output cells of row t (outputs are always materialised, in stream order)
        at = ((packed.position_ids == p + t) & torch.isin(packed.stream_ids, out_streams)).nonzero().squeeze(1)
        tokens[t + 1, out_streams] = greedy(logits[at.to(logits.device)], silence).cpu()
    return Decoded(tokens, grid.prefix_ids, grid_texts(model, tokens))
