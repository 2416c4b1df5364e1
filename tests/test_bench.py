import pytest

from multistream.bench import listening_cache


def test_listening_cache_keeps_one_token_per_row_under_invisible_silence(wrap):
    model = wrap("llama")
    got = listening_cache(model, doc_tokens=200)
    # the invisible rule stores each token read, and nothing else; the visible rule all six streams of every row
    assert got["invisible"] == 1.0
    assert got["visible"] == round(len(model.layout) * got["rows"] / got["read"], 3) >= len(model.layout)
    assert got["read"] >= 200 and got["rows"] <= got["read"] + 2 and model.silence == "invisible"


def test_bench_latency_is_the_evaluations_latency_benchmark(wrap, tokenizer):
    from conftest import make_base

    from multistream.bench import bench_latency

    r = bench_latency(wrap("llama"), (make_base("llama", len(tokenizer), seed=1), tokenizer), rate=400.0, limit=2,
                      max_tokens=6)
    assert r["n"] == 2 and r["warmup"] and set(r["modes"]) == {"all_at_once", "rate_400"}
    for d in r["modes"].values():  # accuracy beside every latency figure, medians over all cases and both correct
        assert {"ttft_ratio", "e2e_ratio", "ttft_ratio_both_correct", "accuracy_ratio"} <= set(d)
        assert {"accuracy", "accuracy_ci", "ttft_median", "e2e_median_both_correct"} <= set(d["multi"])


@pytest.mark.slow  # torch.compile, every stream count
def test_bench_step_runs_on_a_tiny_model_and_reports_every_column(wrap, capsys, monkeypatch):
    from multistream.bench.step import bench_step, print_step

    r = bench_step(wrap("llama"), streams=(1, 2), rounds=2)
    assert set(r["streams"]) == {"1", "2"} and r["bare_decode_ms"] > 0 and r["bare_compiled_decode_ms"] > 0
    assert set(r["compile_seconds"]) == {"bare", "1", "2"}
    for d in r["streams"].values():
        assert d["eager_row_ms"] > 0 and d["compiled_row_ms"] > 0 and d["compiled_row_vs_decode"] > 0
        assert d["eager_row_vs_decode"] > 0 and d["compiled_row_vs_compiled_decode"] > 0
    detok = r["detokenize_us_per_token"]
    assert set(detok) == {"100", "4000"} and all(v["incremental"] > 0 and v["whole_message"] > 0 for v in detok.values())
    monkeypatch.setenv("COLUMNS", "200")  # a wide terminal: cells unwrapped
    print_step(r)  # the table a user sees: a line per step, ms and ratios
    shown = capsys.readouterr().out
    assert "bare model, one token" in shown and "engine row, 2 streams" in shown
    assert f"{r['streams']['2']['compiled_row_ms']:.1f}" in shown and "4000-token message" in shown


@pytest.mark.slow  # torch.compile
def test_compiled_bare_step_is_the_eager_decode_step_at_every_call(wrap):
    """The bench's compiled one-token step decodes the same token at the same cell however often it runs (a cache
    that kept counting would run past its end, or attend to more and more copies)."""
    import torch

    from multistream.bench.step import _compiled_bare_step
    from multistream.model import unwrap_base

    torch._dynamo.reset()
    base = unwrap_base(wrap("llama").base)
    ctx = torch.randint(0, base.config.vocab_size, (1, 12))
    with torch.no_grad():
        step, _ = _compiled_bare_step(base, ctx)
        expected = base(input_ids=torch.cat([ctx, ctx[:, -1:]], dim=1)).logits[:, -1:]
        for _ in range(12):
            torch.testing.assert_close(step(), expected, rtol=1e-4, atol=1e-4)


def test_stream_counts_parse_and_reject_nonsense():
    import argparse

    import pytest

    from multistream.bench.cli import stream_counts

    assert stream_counts("1,6") == (1, 6) and stream_counts("8") == (8,)
    for bad in ("", "0", "1,x", "-2"):
        with pytest.raises(argparse.ArgumentTypeError):
            stream_counts(bad)
