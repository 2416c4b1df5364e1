from multistream.bench import listening_cache


def test_listening_cache_keeps_one_token_per_row_under_invisible_silence(wrap):
    model = wrap("llama")
    got = listening_cache(model, doc_tokens=200)
    # a row of a listening session holds one input token: the visible rule stores all six streams of it
    assert got["invisible"] == 1.0
    assert got["visible"] == len(model.layout)
    assert got["rows"] >= 200 and model.silence == "invisible"


def test_bench_latency_is_the_evaluations_latency_benchmark(wrap, tokenizer):
    from conftest import make_base

    from multistream.bench import bench_latency

    r = bench_latency(wrap("llama"), (make_base("llama", len(tokenizer), seed=1), tokenizer), rate=400.0, limit=2,
                      max_tokens=6)
    assert r["n"] == 2 and r["warmup"] and set(r["modes"]) == {"all_at_once", "rate_400"}
    for d in r["modes"].values():  # accuracy beside every latency figure, medians over all cases and both correct
        assert {"ttft_ratio", "e2e_ratio", "ttft_ratio_both_correct", "accuracy_ratio"} <= set(d)
        assert {"accuracy", "accuracy_ci", "ttft_median", "e2e_median_both_correct"} <= set(d["multi"])
