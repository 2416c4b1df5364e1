import pytest
import torch

from multistream.rows import IGNORE, RowFormat, RowGrid, pack_grid, pack_many, row_inputs, stream_causal_mask

S = 99  # the silence id in these tables
X = IGNORE


def fmt(outputs, silence="invisible"):
    return RowFormat(tuple(outputs), S, silence)


def full_mask(packed):
    pos, streams, doc, vis = packed.position_ids[None], packed.stream_ids[None], packed.doc_ids[None], packed.visible[None]
    return stream_causal_mask(pos, pos, streams, streams, doc, doc, k_visible=vis)[0, 0].int()


DESIGN_TABLE = [
    [1, 0, 0, 0, 0, 0],
    [0, 1, 0, 0, 0, 0],
    [1, 1, 1, 0, 0, 0],
    [1, 1, 0, 1, 0, 0],
    [1, 1, 1, 1, 1, 0],
    [1, 1, 1, 1, 0, 1],
]


@pytest.mark.parametrize("rule", ["visible", "invisible"])
def test_mask_matches_design_example(rule):
    # docs/design.md, "The attention mask": 2 streams (U input, A output), 3 rows, no prefix, nothing silent: both rules agree.
    grid = RowGrid(torch.tensor([], dtype=torch.long), torch.arange(6).view(3, 2), prefix_stream=0)
    assert torch.equal(full_mask(pack_grid(grid, fmt([False, True], rule))), torch.tensor(DESIGN_TABLE))


def test_visible_rule_materialises_and_shows_every_silence():
    grid = RowGrid(torch.tensor([], dtype=torch.long), torch.tensor([[0, S], [S, S], [4, 5]]), prefix_stream=0)
    p = pack_grid(grid, fmt([False, True], "visible"))
    assert p.input_ids.tolist() == [0, S, S, S, 4, 5]
    assert p.visible.all()
    assert torch.equal(full_mask(p), torch.tensor(DESIGN_TABLE))


def test_invisible_rule_drops_input_silence_and_hides_output_silence():
    # rows: (U=0, A=S), (U=S, A=S), (U=4, A=5): U's silence is not materialised, A's silences are queries only
    grid = RowGrid(torch.tensor([7]), torch.tensor([[0, S], [S, S], [4, 5]]), prefix_stream=0)
    p = pack_grid(grid, fmt([False, True]))
    assert p.input_ids.tolist() == [7, 0, S, S, 4, 5]
    assert p.stream_ids.tolist() == [0, 0, 1, 1, 0, 1]
    assert p.position_ids.tolist() == [0, 1, 1, 2, 3, 3]
    assert p.visible.tolist() == [True, True, False, False, True, True]
    assert p.labels.tolist() == [X, X, S, 5, X, X]  # output cells only, silence targets included
    assert full_mask(p).tolist() == [
        [1, 0, 0, 0, 0, 0],  # prefix
        [1, 1, 0, 0, 0, 0],  # U0: the prefix and itself
        [1, 0, 1, 0, 0, 0],  # A0 (silence): the prefix and itself, not its row's neighbour
        [1, 1, 0, 1, 0, 0],  # A1 (silence): row 0's visible token, never A0's silence
        [1, 1, 0, 0, 1, 0],  # U2: no silence of rows 0-1 is a key
        [1, 1, 0, 0, 0, 1],  # A2
    ]


def test_prefix_is_causal_and_seen_by_every_row():
    grid = RowGrid(torch.tensor([7, 8]), torch.arange(4).view(2, 2), prefix_stream=0)
    m = full_mask(pack_grid(grid, fmt([False, True])))
    assert m[:2, :2].tolist() == [[1, 0], [1, 1]]  # causal prefix
    assert m[2:, :2].eq(1).all()  # every row token sees the whole prefix
    assert m[:2, 2:].eq(0).all()  # the prefix sees no row


def test_pack_layout_positions_streams_and_labels():
    tokens = torch.tensor([[10, 20, 30], [11, 21, 31], [12, 22, 32]])
    p = pack_grid(RowGrid(torch.tensor([5, 6]), tokens, prefix_stream=0), fmt([False, True, True]))
    assert p.input_ids.tolist() == [5, 6, 10, 20, 30, 11, 21, 31, 12, 22, 32]
    assert p.stream_ids.tolist() == [0, 0, 0, 1, 2, 0, 1, 2, 0, 1, 2]
    assert p.position_ids.tolist() == [0, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    # label at (t, s) is the token of stream s at row t+1, for output streams only
    assert p.labels.tolist() == [X, X, X, 21, 31, X, 22, 32, X, X, X]


@pytest.mark.parametrize("rule", ["visible", "invisible"])
def test_packed_timelines_never_attend_to_each_other(rule):
    a = pack_grid(RowGrid(torch.tensor([1]), torch.tensor([[0, S], [2, 3]]), 0), fmt([False, True], rule))
    b = pack_grid(RowGrid(torch.tensor([2, 3]), torch.tensor([[S, S], [2, 3], [S, 5]]), 0), fmt([False, True], rule))
    m = full_mask(pack_many([a, b]))
    n = len(a)
    assert m[:n, n:].eq(0).all() and m[n:, :n].eq(0).all()
    assert torch.equal(m[:n, :n], full_mask(a)) and torch.equal(m[n:, n:], full_mask(b))


def test_row_inputs_keys_first_keeps_visible_tokens_row_major_in_front():
    tokens = torch.tensor([[S, 1, S], [2, S, 3], [S, S, S]])  # stream 0 input, 1-2 outputs
    rt = row_inputs(tokens, 4, 10, fmt([False, True, True]), keys_first=True)
    assert rt.ids.tolist() == [1, 2, 3, S, S, S, S]
    assert rt.streams.tolist() == [1, 0, 2, 2, 1, 1, 2]
    assert rt.rows.tolist() == [0, 1, 1, 0, 1, 2, 2]
    assert rt.positions.tolist() == [14, 15, 15, 14, 15, 16, 16]
    assert rt.visible.tolist() == [True] * 3 + [False] * 4


def test_cached_step_mask_sees_cache_and_only_itself():
    rt = row_inputs(torch.zeros(3, 4, dtype=torch.long), 0, 2, fmt([False, True, True, True]))
    k_pos = torch.cat([torch.arange(2), rt.positions])[None]
    k_stream = torch.cat([torch.zeros(2, dtype=torch.long), rt.streams])[None]
    m = stream_causal_mask(k_pos[:, -4:], k_pos, k_stream[:, -4:], k_stream)[0, 0]  # the last row as new tokens
    assert m[:, :-4].all()
    assert torch.equal(m[:, -4:], torch.eye(4, dtype=torch.bool))


def test_mask_does_not_depend_on_key_order_or_gaps():
    # a cache with a free slot (invalid) between rows, keys not in row-major order, one query-only key
    k_pos = torch.tensor([[0, 1, 1, 9, 2, 2, 1]])
    k_stream = torch.tensor([[0, 0, 1, 0, 1, 0, 2]])
    valid = torch.tensor([[1, 1, 1, 0, 1, 1, 1]], dtype=torch.bool)
    visible = torch.tensor([[1, 1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    m = stream_causal_mask(torch.tensor([[2, 2]]), k_pos, torch.tensor([[0, 1]]), k_stream, k_visible=visible, k_valid=valid)
    assert m[0, 0].int().tolist() == [[1, 1, 1, 0, 0, 1, 0], [1, 1, 1, 0, 1, 0, 0]]


def test_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="silence must be one of"):
        RowFormat((False, True), S, "sometimes")
