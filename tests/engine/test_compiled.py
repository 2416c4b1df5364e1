"""The compiled row forward (``EngineConfig(compiled=True)``) against the eager one: the same tokens and the same
cache, on tiny random models (each test compiles once or twice: a 2-layer model compiles in seconds)."""

import pytest
import torch

from multistream.engine.core import EngineConfig, EngineCore

from .test_core import INPUTS, run_engine, talkative


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    """Each test compiles anew: dynamo falls back to eager past its cache limit, which other tests' models could fill
    (the comparison would then hold trivially)."""
    torch._dynamo.reset()


def _pair(model, **config):
    eager = EngineCore(model, EngineConfig(idle_rows=None, **config))
    compiled = EngineCore(model, EngineConfig(idle_rows=None, compiled=True, **config))
    return eager, compiled


def _same_cache(a: EngineCore, b: EngineCore) -> None:
    """What the caches hold, not only what was sampled: a wrong write that no query happened to read shows here."""
    assert torch.equal(a.cache.lengths[: a.cache.in_use], b.cache.lengths[: b.cache.in_use])
    for slot in range(a.cache.in_use):
        n = int(a.cache.lengths[slot])
        assert torch.equal(a.cache.positions[slot, :n], b.cache.positions[slot, :n])
        for x, y in zip(a.cache.keys + a.cache.values, b.cache.keys + b.cache.values):
            torch.testing.assert_close(x[slot, :, :n], y[slot, :, :n])


@pytest.mark.slow  # torch.compile
@pytest.mark.parametrize("rule", ["invisible", "visible"])
def test_compiled_rows_equal_eager_rows_with_a_prefix_and_several_streams(wrap, rule):
    model = talkative(wrap("llama", silence=rule))
    eager, compiled = _pair(model)
    assert compiled.warm_up(capacities=(512,)) > 0 and eager.warm_up() == 0  # compiling ahead commits nothing
    assert compiled.compiled.shapes == {(1, 256), (1, 512)}
    rows = 16
    expected = eager.grid(run_engine(eager, INPUTS, rows))
    got = compiled.grid(run_engine(compiled, INPUTS, rows))
    assert torch.equal(got, expected)
    outs = [i for i, s in enumerate(model.layout) if s.kind == "output"]
    assert (got[1:, outs] != model.tok.silence_id).any(), "the test model never spoke: the comparison would be weak"
    assert compiled.compiled.rows >= rows - 3, "the compiled path did not run"
    _same_cache(compiled, eager)


@pytest.mark.slow  # torch.compile
def test_compiled_batched_sessions_of_different_lengths_and_speculative_rollback_equal_eager(wrap):
    """Sessions opened at different steps with different prefixes share each forward; one closes mid-way (its slot is
    compacted); speculative reading (eager) alternates with compiled rows and rolls back where the model speaks."""
    model = talkative(wrap("qwen2"))
    script = {  # session -> (prefix, inputs as (stream, text, row), the step it opens)
        "a": ("Be brief.", INPUTS, 0),
        "b": ("", [("user", "Tell me a story about a cat", 0)], 2),
        "c": ("Be kind and brief, please.", [("tool", "x", 0), ("user", "hi", 4)], 5),
    }
    grids, engines = [], _pair(model, speculative=4)
    for engine in engines:
        sent, grid = set(), {}
        for step in range(24):
            for sid, (prefix, inputs, opened) in script.items():
                if step == opened:
                    engine.open(sid, prefix=prefix)
                if sid in engine.sessions:
                    row = engine.sessions[sid].row
                    for k, (stream, text, at) in enumerate(inputs):
                        if at <= row and (sid, k) not in sent:
                            engine.send(sid, stream, text)
                            sent.add((sid, k))
            if step == 14:
                grid["a"] = engine.grid("a")
                engine.close("a")  # "b" and "c" move down a slot
            engine.step()
        grid.update({sid: engine.grid(sid) for sid in ("b", "c")})
        grids.append(grid)
    eager, compiled = grids
    for sid in script:
        assert torch.equal(compiled[sid], eager[sid]), sid
    outs = [i for i, s in enumerate(model.layout) if s.kind == "output"]
    assert all((g[1:, outs] != model.tok.silence_id).any() for g in eager.values()), "a session never spoke"
    assert engines[1].compiled.rows > 5, "the compiled path did not run"
    _same_cache(*engines)


def test_a_compiled_forward_that_fails_falls_back_to_eager_rows(wrap, caplog):
    """A machine where inductor cannot compile (no C++ compiler, an op it cannot take) still gets the same tokens."""
    model = talkative(wrap("llama"))
    eager, compiled = _pair(model)

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    compiled.compiled.fn = broken
    expected = eager.grid(run_engine(eager, INPUTS, 12))
    with caplog.at_level("WARNING"):
        assert torch.equal(compiled.grid(run_engine(compiled, INPUTS, 12)), expected)
    assert compiled.compiled is None and "no C++ compiler" in caplog.text
    _same_cache(compiled, eager)


@pytest.mark.gpu
def test_compiled_rows_equal_eager_rows_on_cuda(wrap):
    """The same comparison on a CUDA device: the cache, the mask and the padding built where the model is."""
    model = talkative(wrap("llama")).to("cuda")
    eager, compiled = _pair(model)
    expected = eager.grid(run_engine(eager, INPUTS, 16))
    assert torch.equal(compiled.grid(run_engine(compiled, INPUTS, 16)), expected)
    assert compiled.compiled.rows >= 13
    _same_cache(compiled, eager)
