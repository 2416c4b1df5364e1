"""4-bit weights: the grid of a Q4_1 file survives quantisation, the kernel computes what the dequantised weights
compute, LoRA stays beside the quantised base, and the engine equals the reference decoder on an int4 model."""

import copy

import pytest
import torch
from torch import nn

from multistream.quant import GROUP, Int4Linear, dequantize, quantize_model, quantize_weight


def q4_1_weights(n: int, k: int, seed: int = 0) -> torch.Tensor:
    """Weights as a Q4_1 file stores them: per group of 32 inputs, ``d * q + m`` with q in 0..15 (both ends used)."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(0, 16, (n, k // GROUP, GROUP), generator=g)
    q[..., 0], q[..., 1] = 0, 15
    d = torch.rand(n, k // GROUP, 1, generator=g) * 0.01 + 1e-3
    m = (torch.rand(n, k // GROUP, 1, generator=g) - 1) * 0.08
    return (d * q + m).reshape(n, k)


def test_min_max_quantisation_recovers_a_q4_1_grid():
    w = q4_1_weights(48, 96)
    q, sz = quantize_weight(w)
    assert q.min() >= 0 and q.max() <= 15
    torch.testing.assert_close(dequantize(q, sz), w, atol=1e-6, rtol=0)


def test_off_grid_weights_round_to_within_half_a_step():
    w = torch.randn(32, 64)
    q, sz = quantize_weight(w)
    step = sz[..., 0].t().repeat_interleave(GROUP, dim=1)  # [N, K]
    assert ((dequantize(q, sz) - w).abs() <= step / 2 + 1e-6).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n", [48, 40])  # 40: not a multiple of 16, padded inside
def test_int4_linear_computes_the_dequantised_product(dtype, n):
    linear = nn.Linear(64, n, bias=True)
    with torch.no_grad():
        linear.weight.copy_(q4_1_weights(n, 64, seed=1))
    m = Int4Linear.from_linear(linear, dtype=dtype)
    x = torch.randn(3, 5, 64)
    want = x @ linear.weight.t() + linear.bias
    got = m(x)
    assert got.shape == (3, 5, n) and got.dtype == x.dtype
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(got, want, atol=tol * want.abs().max().item(), rtol=0)


def _tiny_lora(wrap):
    from peft import LoraConfig, get_peft_model

    model = wrap("llama")
    with torch.no_grad():  # base weights on a Q4_1 grid, as the default model's are
        for i, mod in enumerate(m for m in model.base.modules() if type(m) is nn.Linear and m.in_features % GROUP == 0):
            if mod is not model.base.get_output_embeddings():
                mod.weight.copy_(q4_1_weights(*mod.weight.shape, seed=i))
    model.base = get_peft_model(model.base, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"]))
    with torch.no_grad():
        for name, p in model.base.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)  # an adapter that changes the outputs
    return model.eval()


def test_quantised_model_keeps_lora_and_matches_float32(wrap):
    model = _tiny_lora(wrap)
    quant = copy.deepcopy(model)
    n = quantize_model(quant, dtype=torch.float32)
    assert n == 2 * 7  # every projection of both layers; the tied head stays
    assert not any("lora_" in name for name, m in quant.named_modules() if isinstance(m, Int4Linear))
    ids = torch.tensor([[5, 9, 12, 7, 3, 30]])
    sids = torch.tensor([[0, 1, 1, 3, 4, 5]])
    pos = torch.tensor([[0, 1, 2, 3, 3, 3]])
    with torch.no_grad():
        want = model(ids, sids, pos).logits
        got = quant(ids, sids, pos).logits
    torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-3)


def test_int4_engine_equals_the_int4_reference_decoder(wrap):
    from engine.test_core import INPUTS, reference, run_engine, talkative

    from multistream.engine.core import EngineConfig, EngineCore

    model = talkative(_tiny_lora(wrap))
    quantize_model(model, dtype=torch.bfloat16)
    model = model.to(torch.bfloat16)
    rows = 16
    expected = reference(model, INPUTS, rows)
    engine = EngineCore(model, EngineConfig(idle_rows=None))
    sid = run_engine(engine, INPUTS, rows)
    got = engine.grid(sid)
    assert torch.equal(got, expected)
    outs = [i for i, s in enumerate(model.layout) if s.kind == "output"]
    assert (got[1:, outs] != model.tok.silence_id).any(), "the test model never spoke: the comparison would be weak"


def test_bench_step_times_int4_rows_beside_bf16_ones(wrap, capsys, monkeypatch):
    from multistream.bench.step import bench_step, print_step

    model = wrap("llama")
    int4 = copy.deepcopy(model)
    quantize_model(int4, dtype=torch.float32)
    r = bench_step(model, streams=(1, 6), rounds=2, compiled=False, int4_model=int4)
    assert set(r["int4_streams"]) == set(r["streams"]) == {"1", "6"}
    for d in r["int4_streams"].values():
        assert d["eager_row_ms"] > 0 and d["eager_row_vs_decode"] > 0
    monkeypatch.setenv("COLUMNS", "200")
    print_step(r)
    assert "int4 engine row, 6 streams" in capsys.readouterr().out


def test_engine_config_quantises_a_plain_model_and_refuses_unknown_forms(wrap):
    from multistream.engine.core import EngineConfig, EngineCore

    model = wrap("llama")
    EngineCore(model, EngineConfig(quant="int4"))
    assert sum(isinstance(m, Int4Linear) for m in model.modules()) == 14
    EngineCore(model, EngineConfig(quant="int4"))  # already in that form: left as it is
    assert sum(isinstance(m, Int4Linear) for m in model.modules()) == 14
    with pytest.raises(ValueError, match="quant must be"):
        EngineConfig(quant="int3")


@pytest.mark.slow  # torch.compile
def test_compiled_int4_rows_equal_the_reference_decoder(wrap):
    from engine.test_core import INPUTS, reference, run_engine

    from multistream.engine.core import EngineConfig, EngineCore

    model = wrap("llama")
    quantize_model(model, dtype=torch.float32)
    expected = reference(model, INPUTS, 16)
    engine = EngineCore(model, EngineConfig(idle_rows=None, compiled=True))
    sid = run_engine(engine, INPUTS, 16)
    assert engine.compiled is not None, "the compiled forward fell back to eager"
    assert torch.equal(engine.grid(sid), expected)


@pytest.mark.slow  # torch.compile with autotuning
def test_autotuned_int4_rows_equal_eager_int4_rows(wrap):
    """``EngineConfig.autotune`` lets inductor swap the 4-bit product for its own kernel: the same tokens."""
    from engine.test_core import INPUTS, run_engine, talkative

    from multistream.engine.core import EngineConfig, EngineCore

    torch._dynamo.reset()
    model = talkative(wrap("llama")).to(torch.bfloat16)
    quantize_model(model)
    eager = EngineCore(model, EngineConfig(idle_rows=None))
    tuned = EngineCore(model, EngineConfig(idle_rows=None, compiled=True, autotune=True))
    expected = eager.grid(run_engine(eager, INPUTS, 16))
    got = tuned.grid(run_engine(tuned, INPUTS, 16))
    assert tuned.compiled is not None and tuned.compiled.rows >= 13, "the compiled forward did not run"
    assert torch.equal(got, expected)
    outs = [i for i, s in enumerate(model.layout) if s.kind == "output"]
    assert (got[1:, outs] != model.tok.silence_id).any(), "the test model never spoke: the comparison would be weak"


@pytest.mark.slow  # torch.compile with autotuning
def test_autotuned_int4_layer_equals_the_kernel():
    """A layer of the default model's shapes (N a multiple of 64: inductor's own 4-bit kernel qualifies)."""
    import torch._inductor.config as inductor

    torch._dynamo.reset()
    torch.manual_seed(0)
    layer = Int4Linear.from_linear(nn.Linear(192, 320, bias=False).to(torch.bfloat16))
    x = torch.randn(6, 192, dtype=torch.bfloat16)
    with torch.no_grad(), inductor.patch(freezing=True, max_autotune_gemm=True):
        got = torch.compile(layer, dynamic=False)(x)
        torch.testing.assert_close(got, layer(x), rtol=2e-2, atol=2e-2)
