import torch

from multistream.rows import IGNORE, RowGrid, pack_grid, pack_many, row_inputs, stream_causal_mask


def full_mask(packed):
    pos, streams, doc = packed.position_ids[None], packed.stream_ids[None], packed.doc_ids[None]
    return stream_causal_mask(pos, pos, streams, streams, doc, doc)[0, 0].int()


def test_mask_matches_design_example():
    # DESIGN.md section 1: 2 streams (U input, A output), 3 rows, no prefix.
    grid = RowGrid(torch.tensor([], dtype=torch.long), torch.arange(6).view(3, 2), prefix_stream=0)
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0, 0],
            [0, 1, 0, 0, 0, 0],
            [1, 1, 1, 0, 0, 0],
            [1, 1, 0, 1, 0, 0],
            [1, 1, 1, 1, 1, 0],
            [1, 1, 1, 1, 0, 1],
        ]
    )
    assert torch.equal(full_mask(pack_grid(grid, [False, True])), expected)


def test_prefix_is_causal_and_seen_by_every_row():
    grid = RowGrid(torch.tensor([7, 8]), torch.arange(4).view(2, 2), prefix_stream=0)
    m = full_mask(pack_grid(grid, [False, True]))
    assert m[:2, :2].tolist() == [[1, 0], [1, 1]]  # causal prefix
    assert m[2:, :2].eq(1).all()  # every row token sees the whole prefix
    assert m[:2, 2:].eq(0).all()  # the prefix sees no row


def test_pack_layout_positions_streams_and_labels():
    tokens = torch.tensor([[10, 20, 30], [11, 21, 31], [12, 22, 32]])
    p = pack_grid(RowGrid(torch.tensor([5, 6]), tokens, prefix_stream=0), [False, True, True])
    assert p.input_ids.tolist() == [5, 6, 10, 20, 30, 11, 21, 31, 12, 22, 32]
    assert p.stream_ids.tolist() == [0, 0, 0, 1, 2, 0, 1, 2, 0, 1, 2]
    assert p.position_ids.tolist() == [0, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    X = IGNORE
    # label at (t, s) is the token of stream s at row t+1, for output streams only
    assert p.labels.tolist() == [X, X, X, 21, 31, X, 22, 32, X, X, X]


def test_packed_timelines_never_attend_to_each_other():
    a = pack_grid(RowGrid(torch.tensor([1]), torch.arange(4).view(2, 2), 0), [False, True])
    b = pack_grid(RowGrid(torch.tensor([2, 3]), torch.arange(6).view(3, 2), 0), [False, True])
    m = full_mask(pack_many([a, b]))
    n = len(a)
    assert m[:n, n:].eq(0).all() and m[n:, :n].eq(0).all()
    assert torch.equal(m[:n, :n], full_mask(a)) and torch.equal(m[n:, n:], full_mask(b))


def test_cached_step_mask_sees_cache_and_only_itself():
    _, streams, pos = row_inputs(torch.zeros(3, 4, dtype=torch.long), 0, 2)
    k_pos = torch.cat([torch.arange(2), pos])[None]
    k_stream = torch.cat([torch.zeros(2, dtype=torch.long), streams])[None]
    m = stream_causal_mask(k_pos[:, -4:], k_pos, k_stream[:, -4:], k_stream)[0, 0]  # the last row as new tokens
    assert m[:, :-4].all()
    assert torch.equal(m[:, -4:], torch.eye(4, dtype=torch.bool))


def test_mask_does_not_depend_on_key_order_or_gaps():
    # a cache with a free slot (invalid) between rows, keys not in row-major order
    k_pos = torch.tensor([[0, 1, 1, 9, 2, 2]])
    k_stream = torch.tensor([[0, 0, 1, 0, 1, 0]])
    valid = torch.tensor([[1, 1, 1, 0, 1, 1]], dtype=torch.bool)
    m = stream_causal_mask(torch.tensor([[2, 2]]), k_pos, torch.tensor([[0, 1]]), k_stream, k_valid=valid)[0, 0]
    assert m.int().tolist() == [[1, 1, 1, 0, 0, 1], [1, 1, 1, 0, 1, 0]]
