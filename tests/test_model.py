import json
import warnings

import pytest
import torch
from conftest import FAMILIES, make_base, make_tokenizer
from transformers import DynamicCache

from multistream.model import MultiStreamModel
from multistream.rows import RowGrid, pack_grid, pack_many, row_inputs
from multistream.streams import Layout

RULES = ["invisible", "visible"]


def forward_packed(model, packed):
    return model(
        packed.input_ids[None], packed.stream_ids[None], packed.position_ids[None],
        doc_ids=packed.doc_ids[None], visible=packed.visible[None],
    ).logits[0]


def random_grid(model, rows, seed=0, prefix_len=5):
    """Inputs and outputs at random, silent in about a third of the cells."""
    g = torch.Generator().manual_seed(seed)
    vocab = len(model.tok)
    tokens = torch.randint(0, vocab, (rows, len(model.layout)), generator=g)
    tokens[torch.rand(tokens.shape, generator=g) < 0.3] = model.tok.silence_id
    prefix = torch.randint(0, vocab, (prefix_len,), generator=g)
    return RowGrid(prefix, tokens, model.layout.index(model.layout.prefix_stream))


def cells(model, packed, prefix_len):
    """(row, stream) of every packed row token, in sequence order."""
    rows = (packed.position_ids[prefix_len:] - prefix_len).tolist()
    return list(zip(rows, packed.stream_ids[prefix_len:].tolist()))


@pytest.mark.parametrize("family", FAMILIES)
def test_one_stream_wrap_equals_base(family):
    tok = make_tokenizer()
    base = make_base(family, len(tok) + 8)
    ids = torch.randint(0, len(tok), (2, 17))
    with torch.no_grad():
        expected = base(input_ids=ids).logits
    n_vocab = len(tok)  # logits of the added silence token are new; every other one must match
    model = MultiStreamModel.wrap(base, tok, Layout.parse("text:output")).eval()
    # one stream, no silence: rows are ordinary tokens at positions 0..L-1
    streams = torch.zeros_like(ids)
    pos = torch.arange(ids.shape[1]).expand_as(ids)
    with torch.no_grad():
        got = model(ids, streams, pos).logits
    assert (got[..., :n_vocab] - expected[..., :n_vocab]).abs().max() <= 1e-5


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_cached_row_decoding_equals_full_forward(wrap, family, rule, attn):
    model = wrap(family, attn=attn, silence=rule)
    grid = random_grid(model, rows=6)
    packed = pack_grid(grid, model.row_format)
    with torch.no_grad():
        full = forward_packed(model, packed)
        p = grid.prefix_ids.shape[0]
        cache = DynamicCache(config=model.base.config)
        pre = torch.arange(p)[None]
        steps = [model(grid.prefix_ids[None], torch.full((1, p), grid.prefix_stream), pre,
                       past_key_values=cache, use_cache=True).logits[0]]
        past, past_streams, past_vis = pre, torch.full((1, p), grid.prefix_stream), torch.ones((1, p), dtype=torch.bool)
        for t in range(grid.rows):  # one row per forward
            rt = row_inputs(grid.tokens[t : t + 1], t, p, model.row_format)
            out = model(rt.ids[None], rt.streams[None], rt.positions[None], visible=rt.visible[None],
                        past_key_values=cache, past_positions=past, past_streams=past_streams,
                        past_visible=past_vis, use_cache=True)
            steps.append(out.logits[0])
            past = torch.cat([past, rt.positions[None]], 1)
            past_streams = torch.cat([past_streams, rt.streams[None]], 1)
            past_vis = torch.cat([past_vis, rt.visible[None]], 1)
    assert (torch.cat(steps) - full).abs().max() <= 1e-4


def test_cache_of_visible_tokens_only_equals_full_forward(wrap):
    """The engine's cache keeps visible tokens only: decoding over such a cache equals the full forward."""
    model = wrap("qwen3")
    grid = random_grid(model, rows=7, seed=3)
    packed = pack_grid(grid, model.row_format)
    p = grid.prefix_ids.shape[0]
    with torch.no_grad():
        full = forward_packed(model, packed)
        got = [full[:p]]
        kept = torch.arange(p)  # indices into ``packed`` of the tokens a visible-only cache holds
        for t in range(grid.rows):
            new = ((packed.position_ids == p + t).nonzero().squeeze(1))
            seq = torch.cat([kept, new])
            logits = model(packed.input_ids[None, seq], packed.stream_ids[None, seq], packed.position_ids[None, seq],
                           visible=packed.visible[None, seq]).logits[0]
            got.append(logits[len(kept):])
            kept = torch.cat([kept, new[packed.visible[new]]])
    assert len(kept) < len(packed)  # some silences were left out of the cache
    assert (torch.cat(got) - full).abs().max() <= 1e-4


@pytest.mark.parametrize("rule", RULES)
def test_multi_row_cached_chunk_equals_full_forward(wrap, rule):
    model = wrap("llama", silence=rule)
    grid = random_grid(model, rows=7)
    packed = pack_grid(grid, model.row_format)
    p = grid.prefix_ids.shape[0]
    with torch.no_grad():
        full = forward_packed(model, packed)
        cache = DynamicCache(config=model.base.config)
        n = int((packed.position_ids < p + 3).sum())  # prefix and three rows in one go, then four rows in one go
        first = model(packed.input_ids[None, :n], packed.stream_ids[None, :n], packed.position_ids[None, :n],
                      visible=packed.visible[None, :n], past_key_values=cache, use_cache=True).logits[0]
        rest = model(packed.input_ids[None, n:], packed.stream_ids[None, n:], packed.position_ids[None, n:],
                     visible=packed.visible[None, n:], past_key_values=cache,
                     past_positions=packed.position_ids[None, :n], past_streams=packed.stream_ids[None, :n],
                     past_visible=packed.visible[None, :n], use_cache=True).logits[0]
    assert (torch.cat([first, rest]) - full).abs().max() <= 1e-4


@pytest.mark.parametrize("family", ["llama", "qwen2"])
@pytest.mark.parametrize("rule", RULES)
def test_tokens_a_position_must_not_see_do_not_change_its_logits(wrap, family, rule):
    model = wrap(family, silence=rule)
    grid = random_grid(model, rows=5)
    grid.tokens[2:4] = torch.arange(1, 7)  # rows 2 and 3 speak on every stream
    p = grid.prefix_ids.shape[0]
    t, s = 2, 4  # query: row 2, stream 'answer'
    with torch.no_grad():
        packed = pack_grid(grid, model.row_format)
        q = cells(model, packed, p).index((t, s)) + p
        before = forward_packed(model, packed)
        changed = grid.tokens.clone()
        changed[t, [0, 1, 2, 3, 5]] = (changed[t, [0, 1, 2, 3, 5]] + 1) % len(model.tok)  # its own row's neighbours
        changed[t + 1 :] = (changed[t + 1 :] + 1) % len(model.tok)  # later rows
        after = forward_packed(model, pack_grid(RowGrid(grid.prefix_ids, changed, grid.prefix_stream), model.row_format))
        assert torch.equal(before[q], after[q])
        changed = grid.tokens.clone()
        changed[t - 1, 0] = 7 if changed[t - 1, 0] != 7 else 8  # an earlier row's token: must matter
        after = forward_packed(model, pack_grid(RowGrid(grid.prefix_ids, changed, grid.prefix_stream), model.row_format))
        assert not torch.allclose(before[q], after[q])


@pytest.mark.parametrize("family", FAMILIES)
def test_a_silence_key_never_influences_another_logit(wrap, family):
    """Invisible rule: perturb the silence token's embedding; only the silence queries' own logits move."""
    results = {}
    for rule in RULES:
        model = wrap(family, silence=rule)
        grid = random_grid(model, rows=6, seed=5)
        packed = pack_grid(grid, model.row_format)
        silence = packed.input_ids == model.tok.silence_id
        assert silence.sum() >= 4
        with torch.no_grad():
            before = forward_packed(model, packed)
            model.base.get_input_embeddings().weight[model.tok.silence_id].normal_(0, 3.0)
            after = forward_packed(model, packed)
        others, cols = ~silence, torch.arange(before.shape[-1]) != model.tok.silence_id  # tied heads: its logit moves
        results[rule] = (before[others][:, cols] - after[others][:, cols]).abs().max().item()
        assert not torch.allclose(before[silence], after[silence])  # the perturbation is real
    assert results["invisible"] == 0.0
    assert results["visible"] > 1e-3  # the check can fail: under the old rule silence is a key


def test_invisible_rule_packs_fewer_tokens(wrap):
    grid = random_grid(wrap("llama"), rows=8)
    n = {rule: len(pack_grid(grid, wrap("llama", silence=rule).row_format)) for rule in RULES}
    silent_inputs = int((grid.tokens[:, :3] == wrap("llama").tok.silence_id).sum())
    assert n["visible"] - n["invisible"] == silent_inputs > 0


@pytest.mark.parametrize("rule", RULES)
def test_packed_timelines_do_not_see_each_other(wrap, rule):
    model = wrap("llama", silence=rule)
    a = pack_grid(random_grid(model, 3, seed=1, prefix_len=2), model.row_format)
    b = pack_grid(random_grid(model, 4, seed=2, prefix_len=4), model.row_format)
    with torch.no_grad():
        alone_a, alone_b = forward_packed(model, a), forward_packed(model, b)
        both = forward_packed(model, pack_many([a, b]))
    assert (both[: len(a)] - alone_a).abs().max() <= 1e-5
    assert (both[len(a) :] - alone_b).abs().max() <= 1e-5


def test_silence_token_added_with_mean_embedding(tokenizer):
    base = make_base("qwen2", len(tokenizer))
    old = base.get_input_embeddings().weight.detach().clone()
    model = MultiStreamModel.wrap(base, tokenizer)
    sid = model.tok.silence_id
    assert model.new_token_ids == [sid]
    assert torch.allclose(model.base.get_input_embeddings().weight[sid], old.mean(0), atol=1e-6)
    assert torch.count_nonzero(model.stream_embed.weight) == 0


@pytest.mark.parametrize("family", ["llama", "qwen2"])
@pytest.mark.parametrize("rule", RULES)
def test_save_then_load_reproduces_logits_and_rule(wrap, family, rule, tmp_path):
    model = wrap(family, silence=rule)
    with torch.no_grad():
        model.base.get_input_embeddings().weight[model.tok.silence_id].normal_()  # as if trained
    base_dir = tmp_path / "base"
    tiny = make_base(family, len(make_tokenizer()) + 8)  # the same seed: the same base weights
    tiny.save_pretrained(base_dir)
    model.base_ref = str(base_dir)
    packed = pack_grid(random_grid(model, 4), model.row_format)
    with torch.no_grad():
        before = forward_packed(model, packed)
    model.save(tmp_path / "ms")
    loaded = MultiStreamModel.load(tmp_path / "ms")
    assert loaded.layout == model.layout and loaded.tok.silence_id == model.tok.silence_id
    assert loaded.silence == rule
    with torch.no_grad():
        after = forward_packed(loaded, packed)
    assert torch.equal(before, after)


def test_save_then_load_with_lora_adapter(wrap, tmp_path):
    from peft import LoraConfig, get_peft_model

    model = wrap("llama")
    base_dir = tmp_path / "base"
    make_base("llama", len(make_tokenizer()) + 8).save_pretrained(base_dir)
    model.base_ref = str(base_dir)
    model.base = get_peft_model(model.base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    # as in training: the adapter names a base folder whose vocabulary is smaller (the silence token was added)
    original = tmp_path / "original"
    original.mkdir()
    config = json.loads((base_dir / "config.json").read_text())
    (original / "config.json").write_text(json.dumps({**config, "vocab_size": config["vocab_size"] - 2}))
    model.base.peft_config["default"].base_model_name_or_path = str(original)
    packed = pack_grid(random_grid(model, 4), model.row_format)
    with torch.no_grad():
        before = forward_packed(model.eval(), packed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (peft warned that it saved whole embedding matrices the vocabulary grew)
        model.save(tmp_path / "ms")
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "ms" / "adapter_model.safetensors")
    assert saved and not any("embed_tokens" in k or "lm_head" in k for k in saved)  # the base has them
    loaded = MultiStreamModel.load(tmp_path / "ms")
    with torch.no_grad():
        after = forward_packed(loaded, packed)
    assert torch.equal(before, after)


def test_load_rejects_layout_mismatch(wrap, tmp_path):

    model = wrap("llama")
    folder = model.save(tmp_path / "ms")
    cfg = json.loads((folder / "multistream_config.json").read_text())
    cfg["layout"] = cfg["layout"][:2]
    (folder / "multistream_config.json").write_text(json.dumps(cfg))
    with pytest.raises(Exception, match="stream embeddings for 2 streams"):
        MultiStreamModel.load(folder)


def test_load_checks_the_silence_rule(wrap, tmp_path):

    model = wrap("llama")
    make_base("llama", len(make_tokenizer()) + 8).save_pretrained(tmp_path / "base")
    model.base_ref = str(tmp_path / "base")
    folder = model.save(tmp_path / "ms")
    cfg_file = folder / "multistream_config.json"
    cfg = json.loads(cfg_file.read_text())
    assert cfg["silence"] == "invisible" and cfg["format_version"] == 2
    cfg["silence"] = "sometimes"
    cfg_file.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="silence must be one of"):
        MultiStreamModel.load(folder)
    # a version-1 folder (the rule was not recorded then) was trained with visible silence
    del cfg["silence"]
    cfg["format_version"] = 1
    cfg_file.write_text(json.dumps(cfg))
    assert MultiStreamModel.load(folder).silence == "visible"


def test_load_keeps_how_an_empty_prefix_was_trained(wrap, tmp_path):

    model = wrap("llama")
    assert model.tok.empty_prefix == "template"  # a new model: the template's own block where no prompt is given
    make_base("llama", len(make_tokenizer()) + 8).save_pretrained(tmp_path / "base")
    model.base_ref = str(tmp_path / "base")
    model.tok.empty_prefix = "none"
    folder = model.save(tmp_path / "ms")
    cfg_file = folder / "multistream_config.json"
    assert MultiStreamModel.load(folder).tok.empty_prefix == "none"
    cfg = json.loads(cfg_file.read_text())
    del cfg["empty_prefix"]  # saved before the choice existed: trained with nothing there
    cfg_file.write_text(json.dumps(cfg))
    assert MultiStreamModel.load(folder).tok.empty_prefix == "none"
    cfg["empty_prefix"] = "sometimes"
    cfg_file.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="empty_prefix must be one of"):
        MultiStreamModel.load(folder)
