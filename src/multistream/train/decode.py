"""A small cached greedy decoder for evaluation, with the calculator tool in the loop.

One forward per row over the row's C tokens with a KV cache (the reference decoder
reruns the whole sequence every row, which is too slow for hundreds of held-out
examples). Scheduled inputs come from a timeline's input segments; with
``run_tools=True`` the ``tool`` stream is instead fed from the model's own calls: when a
``call`` message ends at row ``r``, the calculator's result enters the ``tool`` stream
at row ``r + 2`` (the converter's convention: one row after the row following the call).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..model import MultiStreamModel
from ..rows import row_inputs, timeline_to_grid
from ..timeline import Timeline
from ..toolcall import ToolCallError, parse_call


@dataclass
class Message:
    stream: str
    start_row: int
    text: str
    ended: bool


@dataclass
class MultiOutput:
    tokens: torch.Tensor
    """``[rows, streams]`` as fed and chosen."""
    messages: list[Message]
    """Output-stream messages in order of their first row."""

    def last(self, stream: str) -> Message | None:
        found = [m for m in self.messages if m.stream == stream]
        return found[-1] if found else None


def _messages(model: MultiStreamModel, tokens: torch.Tensor) -> list[Message]:
    out = []
    sil, end = model.tok.silence_id, model.tok.end_id
    for s, stream in enumerate(model.layout):
        if stream.kind != "output":
            continue
        col = tokens[:, s].tolist()
        start, ids = None, []
        for r, t in enumerate(col):
            if t == sil:
                continue
            if start is None:
                start, ids = r, []
            if t == end:
                out.append(Message(stream.name, start, model.tok.decode(ids), True))
                start = None
            else:
                ids.append(t)
        if start is not None:
            out.append(Message(stream.name, start, model.tok.decode(ids), False))
    return sorted(out, key=lambda m: (m.start_row, model.layout.index(m.stream)))


def run_calculator(call_text: str) -> str:
    from ..calculator import calculator

    try:
        name, args = parse_call(call_text)
        if name != "calculator":
            return f"error: unknown tool {name}"
        return calculator(str(args.get("expression", "")))
    except (ToolCallError, ValueError, SyntaxError, ArithmeticError, TypeError) as e:
        return f"error: {str(e)[:40]}"


@torch.no_grad()
def decode_multi(
    model: MultiStreamModel, timeline: Timeline, max_rows: int, run_tools: bool = False, stop_after_answer: bool = True
) -> MultiOutput:
    """Greedy decoding of every output stream, row by row with a cache.

    Stops at ``max_rows``, or (``stop_after_answer``) once every input has been fed and an
    ``answer`` message that started after the last input row has ended.
    """
    from transformers import DynamicCache

    layout, tok = model.layout, model.tok
    c = len(layout)
    grid = timeline_to_grid(timeline, tok, layout, kinds=("input",))
    tool_idx = layout.index("tool") if "tool" in layout else None
    call_idx = layout.index("call") if "call" in layout else None
    answer_idx = layout.index("answer") if "answer" in layout else None
    scheduled = torch.full((max(max_rows, grid.rows), c), tok.silence_id, dtype=torch.long)
    scheduled[: grid.rows] = grid.tokens
    if run_tools and tool_idx is not None:
        scheduled[:, tool_idx] = tok.silence_id
    inputs = torch.tensor([s.kind == "input" for s in layout])
    out_idx = (~inputs).nonzero().squeeze(1)
    tokens = torch.full((max_rows, c), tok.silence_id, dtype=torch.long)
    dev = model.device
    cache = DynamicCache()
    p = grid.prefix_ids.shape[0]
    fmt = model.row_format
    past_pos = torch.zeros((1, 0), dtype=torch.long, device=dev)
    past_str = torch.zeros((1, 0), dtype=torch.long, device=dev)
    past_vis = torch.zeros((1, 0), dtype=torch.bool, device=dev)
    if p:
        pos = torch.arange(p, device=dev)[None]
        strm = torch.full((1, p), grid.prefix_stream, device=dev)
        model(
            grid.prefix_ids[None].to(dev),
            strm,
            pos,
            past_key_values=cache,
            past_positions=past_pos,
            past_streams=past_str,
            use_cache=True,
            logits_to_keep=1,
        )
        past_pos, past_str, past_vis = pos, strm, torch.ones_like(pos, dtype=torch.bool)
    last_input_row = max((r for r in range(grid.rows) if (grid.tokens[r, inputs] != tok.silence_id).any()), default=0)
    call_ids: list[int] = []
    pending_tool: list[int] = []
    answer_start = None
    for t in range(max_rows):
        row = tokens[t]
        row[inputs] = scheduled[t, inputs]
        if run_tools and tool_idx is not None and pending_tool and t >= pending_tool[0]:
            row[tool_idx] = pending_tool[1]
            pending_tool = [pending_tool[0]] + pending_tool[2:] if len(pending_tool) > 2 else []
            last_input_row = max(last_input_row, t)
        rt = row_inputs(row[None], t, p, fmt)
        logits = model(
            rt.ids[None].to(dev),
            rt.streams[None].to(dev),
            rt.positions[None].to(dev),
            visible=rt.visible[None].to(dev),
            past_key_values=cache,
            past_positions=past_pos,
            past_streams=past_str,
            past_visible=past_vis,
            use_cache=True,
        ).logits[0]
        # query-only tokens stay in this simple cache, masked out by past_visible
        past_pos = torch.cat([past_pos, rt.positions[None].to(dev)], 1)
        past_str = torch.cat([past_str, rt.streams[None].to(dev)], 1)
        past_vis = torch.cat([past_vis, rt.visible[None].to(dev)], 1)
        if t + 1 >= max_rows:
            break
        tokens[t + 1, out_idx] = logits[torch.isin(rt.streams, out_idx).to(dev)].argmax(-1).cpu()
        if run_tools and call_idx is not None:
            nxt = int(tokens[t + 1, call_idx])
            if nxt == tok.end_id and call_ids:
                result = tok.encode_message(run_calculator(tok.decode(call_ids)))
                pending_tool = [t + 1 + 2] + result
                call_ids = []
            elif nxt != tok.silence_id and nxt != tok.end_id:
                call_ids.append(nxt)
        if answer_idx is not None and stop_after_answer:
            a = int(tokens[t + 1, answer_idx])
            if a != tok.silence_id and answer_start is None:
                answer_start = t + 1
            if a == tok.end_id:
                done = answer_start is not None and answer_start > last_input_row and not pending_tool and not call_ids
                answer_start = None
                if done:
                    tokens = tokens[: t + 2]
                    break
            if a == tok.silence_id:
                answer_start = None
    return MultiOutput(tokens, _messages(model, tokens))
