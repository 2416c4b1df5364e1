"""Rows: the one place where timelines become model inputs.

A timeline becomes a grid ``[rows, streams]`` of token ids (silence where a stream is
idle). A grid is packed row-major after its prefix into one sequence of token ids,
stream ids, positions, visibility and labels; under the invisible silence rule input
silences are left out and output silences are queries only. The attention mask is
derived from these index vectors (and document ids when several timelines share a
sequence), never stored per sample.
Training, the reference decoder and the engine all call these functions, so what the
model is trained on and what it runs on cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from .streams import Layout
from .text import StreamTokenizer
from .timeline import DEFAULT_MAX_ROWS, Timeline, resolve_rows, token_rows

IGNORE = -100
SILENCE_RULES = ("invisible", "visible")


@dataclass
class RowGrid:
    """A tokenised timeline."""

    prefix_ids: torch.Tensor
    """``[P]`` prefix (system prompt) token ids, processed causally before row 0."""
    tokens: torch.Tensor
    """``[rows, streams]`` token ids; silence where a stream is idle."""
    prefix_stream: int
    """Index of the stream whose embedding the prefix tokens get."""

    @property
    def rows(self) -> int:
        return self.tokens.shape[0]


def timeline_to_grid(
    timeline: Timeline,
    tok: StreamTokenizer,
    layout: Layout,
    *,
    kinds: tuple[str, ...] = ("input", "output"),
    max_rows: int = DEFAULT_MAX_ROWS,
) -> RowGrid:
    """Tokenise ``timeline`` into a grid. ``kinds=("input",)`` keeps only what is fed from outside."""
    messages = {id(s): tok.encode_message(s.text) for s in timeline.segments}
    length_of = {s.text: len(messages[id(s)]) for s in timeline.segments}.__getitem__
    starts, _, rows = resolve_rows(timeline, length_of, max_rows)
    tokens = torch.full((rows, len(layout)), tok.silence_id, dtype=torch.long)
    for seg, start in zip(timeline.segments, starts):
        stream = layout[seg.stream]
        if stream.kind in kinds:
            ids = messages[id(seg)]
            at = [start + r for r in token_rows(len(ids), seg.spread)]
            tokens[at, layout.index(seg.stream)] = torch.tensor(ids)
    prefix = torch.tensor(tok.encode_prefix(timeline.prefix), dtype=torch.long)
    return RowGrid(prefix, tokens, layout.index(layout.prefix_stream))


@dataclass(frozen=True)
class RowFormat:
    """What turning rows into tokens needs to know about a model."""

    output_mask: tuple[bool, ...]
    """Per stream of the layout: True for output streams."""
    silence_id: int
    silence: str = "invisible"
    """The silence rule (docs/design.md, "Silence"): ``invisible`` (silence is never a key; input
    silence is not materialised, output silence is a query only) or ``visible`` (the
    paper's original form: every cell of every row is a token that later rows see)."""

    def __post_init__(self) -> None:
        if self.silence not in SILENCE_RULES:
            raise ValueError(f"silence must be one of {', '.join(SILENCE_RULES)}, got {self.silence!r}")

    @cached_property
    def is_output(self) -> torch.Tensor:
        """``output_mask`` as a bool tensor ``[streams]``, made once (the engine uses it every step)."""
        return torch.tensor(self.output_mask, dtype=torch.bool)


@dataclass
class RowTokens:
    """Rows flattened into tokens (``[N]`` each), in the order of the sequence."""

    ids: torch.Tensor
    streams: torch.Tensor
    positions: torch.Tensor
    visible: torch.Tensor
    """False for tokens that are queries only (output silence under the invisible rule)."""
    rows: torch.Tensor
    """Row of each token, counted from the first row given."""

    def __len__(self) -> int:
        return self.ids.shape[0]


def row_inputs(
    tokens: torch.Tensor, first_row: int, prefix_len: int, fmt: RowFormat, keys_first: bool = False
) -> RowTokens:
    """Flatten rows ``[n, C]`` (starting at row ``first_row``) row-major into tokens.

    Every token of a row gets position ``prefix_len + row``. Under the invisible rule an
    input stream's silence is dropped and an output stream's silence is kept as a query
    that no token attends to. ``keys_first`` puts the visible tokens (still row-major)
    before the query-only ones: attention does not depend on the order, and a KV cache
    then keeps a prefix of the new tokens (the engine's cache stores visible tokens only).
    """
    n, c = tokens.shape
    ids = tokens.reshape(-1)
    streams = torch.arange(c).repeat(n)
    rows = torch.arange(n).repeat_interleave(c)
    if fmt.silence == "invisible":
        silent = ids == fmt.silence_id
        keep = ~silent | fmt.is_output[streams]
        ids, streams, rows, visible = ids[keep], streams[keep], rows[keep], ~silent[keep]
    else:
        visible = torch.ones_like(ids, dtype=torch.bool)
    if keys_first:
        order = torch.argsort((~visible).to(torch.int8), stable=True)
        ids, streams, rows, visible = ids[order], streams[order], rows[order], visible[order]
    return RowTokens(ids, streams, prefix_len + first_row + rows, visible, rows)


@dataclass
class Packed:
    """One training/inference sequence: prefix then rows, for one or more timelines."""

    input_ids: torch.Tensor
    stream_ids: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor
    """Next-row token of the same stream at output-stream cells, ``IGNORE`` elsewhere."""
    doc_ids: torch.Tensor
    """Which timeline each token belongs to; tokens only attend within their own."""
    visible: torch.Tensor
    """Whether other tokens may attend to it (False: a query only, see ``RowFormat.silence``)."""

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def pack_grid(grid: RowGrid, fmt: RowFormat, doc: int = 0) -> Packed:
    """Prefix then rows, with labels on output streams (silence targets included)."""
    out = fmt.is_output
    p = grid.prefix_ids.shape[0]
    rt = row_inputs(grid.tokens, 0, p, fmt)
    label_grid = torch.full_like(grid.tokens, IGNORE)
    label_grid[:-1, out] = grid.tokens[1:, out]
    return Packed(
        input_ids=torch.cat([grid.prefix_ids, rt.ids]),
        stream_ids=torch.cat([torch.full((p,), grid.prefix_stream), rt.streams]),
        position_ids=torch.cat([torch.arange(p), rt.positions]),
        labels=torch.cat([torch.full((p,), IGNORE), label_grid[rt.rows, rt.streams]]),
        doc_ids=torch.full((p + len(rt),), doc),
        visible=torch.cat([torch.ones(p, dtype=torch.bool), rt.visible]),
    )


def pack_many(packs: list[Packed]) -> Packed:
    """Concatenate packed timelines into one sequence; document ids keep them apart."""
    return Packed(
        input_ids=torch.cat([p.input_ids for p in packs]),
        stream_ids=torch.cat([p.stream_ids for p in packs]),
        position_ids=torch.cat([p.position_ids for p in packs]),
        labels=torch.cat([p.labels for p in packs]),
        doc_ids=torch.cat([torch.full_like(p.doc_ids, i) for i, p in enumerate(packs)]),
        visible=torch.cat([p.visible for p in packs]),
    )


def collate(packs: list[Packed], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad sequences into a batch. Padding is its own document (doc id -1) with no labels."""
    n = max(len(p) for p in packs)

    def pad(t: torch.Tensor, value: int) -> torch.Tensor:
        return torch.cat([t, torch.full((n - t.shape[0],), value, dtype=t.dtype)])

    return {
        "input_ids": torch.stack([pad(p.input_ids, pad_id) for p in packs]),
        "stream_ids": torch.stack([pad(p.stream_ids, 0) for p in packs]),
        "position_ids": torch.stack([pad(p.position_ids, 0) for p in packs]),
        "labels": torch.stack([pad(p.labels, IGNORE) for p in packs]),
        "doc_ids": torch.stack([pad(p.doc_ids, -1) for p in packs]),
        "visible": torch.stack([pad(p.visible, False) for p in packs]),
    }


def stream_causal_mask(
    q_pos: torch.Tensor,
    k_pos: torch.Tensor,
    q_stream: torch.Tensor,
    k_stream: torch.Tensor,
    q_doc: torch.Tensor | None = None,
    k_doc: torch.Tensor | None = None,
    k_visible: torch.Tensor | None = None,
    k_valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Boolean mask ``[B, 1, Q, K]``: True where a query token may attend a key token.

    The attention rule as a function of index vectors (position, stream, document,
    visible): a token sees every *visible* token at an earlier position (the prefix and
    all earlier rows) and, among the tokens sharing its position (its own row), only
    itself. ``k_visible`` (default: all) is False for query-only tokens (silence under
    the invisible rule); with ``*_doc`` a token sees only its own document; ``k_valid``
    masks padding and free cache slots. All inputs are ``[B, Q]`` or ``[B, K]``, so
    queries may sit anywhere among the keys (a cache with gaps, several rows at once).
    """
    earlier = k_pos[:, None, :] < q_pos[:, :, None]
    if k_visible is not None:
        earlier = earlier & k_visible[:, None, :]
    itself = (k_pos[:, None, :] == q_pos[:, :, None]) & (k_stream[:, None, :] == q_stream[:, :, None])
    mask = earlier | itself
    if q_doc is not None and k_doc is not None:
        mask = mask & (q_doc[:, :, None] == k_doc[:, None, :])
    if k_valid is not None:
        mask = mask & k_valid[:, None, :]
    return mask[:, None]
