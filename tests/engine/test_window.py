"""The window over a long session's rows (EngineConfig.window_rows): exact where it can be, bounded always."""

import pytest
import torch

from multistream.engine.core import EngineConfig, EngineCore
from multistream.engine.session import SamplingParams, StreamParams
from multistream.engine.window import KeyRotation
from multistream.model import MultiStreamModel
from multistream.rows import RowGrid, pack_grid
from multistream.streams import DEFAULT_LAYOUT

GREEDY = StreamParams(SamplingParams(temperature=0.0))
DOC = "The committee met on Tuesday to review the budget for the coming year, and agreed on most of it. " * 6


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])
def test_a_re_rotated_key_is_the_key_at_the_earlier_position(family, tokenizer):
    from conftest import make_base

    base = make_base(family, len(tokenizer) + 8)
    rotation = KeyRotation(base)
    rotation.check(base)  # position 7 moved back 4 == position 3, on the model's own keys
    k = torch.randn(2, 3, 5, base.config.hidden_size // base.config.num_attention_heads)
    assert torch.allclose(rotation(rotation(k, 9), -9), k, atol=1e-5)
    assert torch.allclose(rotation(rotation(k, 4), 5), rotation(k, 9), atol=1e-5)


def _one_layer(tokenizer):
    from conftest import make_base

    base = make_base("llama", len(tokenizer) + 8)
    base.model.layers = base.model.layers[:1]
    base.config.num_hidden_layers = 1
    with torch.no_grad():  # sharp attention: where a key sits matters (at the default init attention is ~uniform)
        for proj in (base.model.layers[0].self_attn.q_proj, base.model.layers[0].self_attn.k_proj):
            proj.weight *= 30
    model = MultiStreamModel.wrap(base, tokenizer, DEFAULT_LAYOUT, base_ref="tiny").eval()
    with torch.no_grad():
        model.stream_embed.weight.normal_(0, 0.5)
    return model


def test_after_eviction_the_next_row_is_the_full_forward_of_the_window(tokenizer):
    """In a one-layer model a cached key or value depends on its token and position only, so after the window
    has evicted rows the engine must give exactly the logits of a full forward over the prefix and the rows
    that stay, placed right after the prefix."""
    model = _one_layer(tokenizer)
    engine = EngineCore(model, EngineConfig(idle_rows=None, window_rows=16))
    sid = engine.open(prefix="Be brief.", params={"think": GREEDY, "answer": GREEDY, "call": GREEDY})
    engine.send(sid, "user", DOC)
    chunks = []
    forward = engine._forward
    engine._forward = lambda plans: chunks.append(forward(plans)) or chunks[-1]
    rows, evicted = [], []
    for _ in range(60):
        engine.step()
        sess = engine.sessions[sid]
        rows.append(sess.history[-1])
        evicted.append(sess.evicted)
    assert evicted[-1] > 0 and sess.history.maxlen == 16 + 64  # the window and one bulk chunk
    fmt, out = model.row_format, model.row_format.is_output.nonzero().squeeze(1)
    prefix = torch.tensor(sess.prefix)
    p = len(prefix)
    checked = 0
    for t in range(20, 60):
        grid = RowGrid(prefix, torch.stack(rows[evicted[t] : t + 1]), DEFAULT_LAYOUT.index(DEFAULT_LAYOUT.prefix_stream))
        packed = pack_grid(grid, fmt)
        with torch.no_grad():
            logits = model(packed.input_ids[None], packed.stream_ids[None], packed.position_ids[None],
                           visible=packed.visible[None]).logits[0]
        last = p + t - evicted[t]
        at = ((packed.position_ids == last) & torch.isin(packed.stream_ids, out)).nonzero().squeeze(1)
        torch.testing.assert_close(chunks[t][0][-1], logits[at], atol=1e-4, rtol=1e-4)
        checked += 1
    assert checked == 40


@pytest.mark.slow  # a long session, thousands of rows
def test_a_long_session_runs_in_bounded_memory(wrap):
    engine = EngineCore(wrap("llama"), EngineConfig(idle_rows=None, window_rows=32, max_rows=4096, bulk_chunk=8))
    sid = engine.open(prefix="Be brief.", params={"think": GREEDY, "answer": GREEDY, "call": GREEDY})
    most, p = 0, None
    for k in range(10):  # ten documents, some read in bulk: about 700 rows, far past the window
        engine.send(sid, "user" if k % 2 else "tool", DOC, bulk=k % 3 == 0)
        for _ in range(70):
            events = engine.step()
            assert not [e for e in events if e.type in ("error", "closed")]
            sess = engine.sessions[sid]
            p = len(sess.prefix)
            n = int(engine.cache.lengths[sess.slot])
            most = max(most, n)
            assert int(engine.cache.positions[sess.slot, :n].max()) < p + 32 + 8  # window plus one bulk chunk
    assert sess.row > 600 and sess.evicted > 500 and len(sess.history) == 32 + 8
    assert most <= p + (32 + 8) * len(DEFAULT_LAYOUT)
    assert engine.grid(sid).shape == (41, len(DEFAULT_LAYOUT))


def test_without_a_window_nothing_is_evicted(wrap):
    engine = EngineCore(wrap("llama"), EngineConfig(idle_rows=None))
    sid = engine.open(params={"think": GREEDY, "answer": GREEDY, "call": GREEDY})
    engine.send(sid, "user", DOC)
    for _ in range(80):
        engine.step()
    assert engine.sessions[sid].evicted == 0 and len(engine.sessions[sid].history) == 80


def test_a_window_needs_rotary_positions(tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    base = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer) + 8, n_embd=32, n_layer=1, n_head=2))
    with pytest.raises(ValueError, match="rotary"):
        KeyRotation(base)
    with pytest.raises(ValueError, match="window_rows"):
        EngineConfig(window_rows=4)


def test_evicting_silent_rows_still_moves_the_later_rows_back(tokenizer):
    """Rows with nothing visible keep no cells: evicting them drops nothing, yet every later row must move back
    (an early return here left the kept rows too high, where new rows reused their positions)."""
    model = _one_layer(tokenizer)
    engine = EngineCore(model, EngineConfig(idle_rows=None, window_rows=8))
    params = {"think": GREEDY, "answer": GREEDY, "call": GREEDY}
    sid = engine.open(prefix="Be brief.", params=params, start=True)
    for name in params:
        engine.mute(sid, name)
    for _ in range(6):  # rows 0-5: nothing visible
        engine.step()
    engine.send(sid, "user", "hello world " * 5)
    chunks, forward = [], engine._forward
    engine._forward = lambda plans: chunks.append(forward(plans)) or chunks[-1]
    for _ in range(8):
        engine.step()
    sess = engine.sessions[sid]
    p, n = len(sess.prefix), int(engine.cache.lengths[sess.slot])
    assert sess.evicted > 0
    kept = list(range(sess.evicted, sess.row))
    assert engine.cache.positions[sess.slot, p:n].tolist() == [p + r - sess.evicted for r in kept if r >= 6]
    grid = RowGrid(torch.tensor(sess.prefix), torch.stack(list(sess.history)[-len(kept):]),
                   DEFAULT_LAYOUT.index(DEFAULT_LAYOUT.prefix_stream))
    packed = pack_grid(grid, model.row_format)
    with torch.no_grad():
        logits = model(packed.input_ids[None], packed.stream_ids[None], packed.position_ids[None],
                       visible=packed.visible[None]).logits[0]
    out = model.row_format.is_output.nonzero().squeeze(1)
    at = ((packed.position_ids == p + len(kept) - 1) & torch.isin(packed.stream_ids, out)).nonzero().squeeze(1)
    torch.testing.assert_close(chunks[-1][0][-1], logits[at], atol=1e-4, rtol=1e-4)


def test_a_model_with_layers_the_rotation_cannot_move_is_refused(tokenizer):
    """Every layer's keys are checked, not the first one's only (e.g. a layer without positions)."""
    from conftest import make_base

    base = make_base("llama", len(tokenizer) + 8)
    rotary = base.model.rotary_emb
    last = base.model.layers[-1].self_attn
    forward = last.forward

    def no_positions(hidden_states, position_embeddings, *a, **k):  # this layer ignores positions, as NoPE layers do
        cos, sin = position_embeddings
        return forward(hidden_states, (torch.ones_like(cos), torch.zeros_like(sin)), *a, **k)

    last.forward = no_positions
    assert rotary is not None
    with pytest.raises(ValueError, match=r"layer\(s\) \[1\]"):
        KeyRotation(base).check(base)
