"""``multistream bench train`` on a tiny random base: every variant steps the same timelines, and the counts add up."""

from __future__ import annotations

import pytest
from train_helpers import tiny_setup

from multistream.train.throughput import VARIANTS, bench_train

TINY = dict(seq_len=2048, batch_size=2, micro_batch_size=1, lora_targets=["q_proj", "v_proj"], mixed_precision="no")


@pytest.mark.slow  # training steps of every variant
def test_bench_train_compares_the_variants_on_the_same_timelines(tmp_path):
    base, _ = tiny_setup(tmp_path, per_skill=1)
    r = bench_train(steps=2, warmup=1, base=str(base), per_skill=3, overrides=TINY, progress=False)
    assert r["reference"] == "visible" and list(r["variants"]) == list(VARIANTS)
    vis, inv, bf16 = (r["variants"][v] for v in VARIANTS)
    assert vis["tokens_per_s_ratio"] == 1.0 and all(v["steps"] == 2 for v in (vis, inv, bf16))
    # the same timelines in the same order: the invisible rule packs fewer tokens per timeline, bf16 weights the same
    assert inv["tokens_per_timeline"] < vis["tokens_per_timeline"]
    assert bf16["tokens"] == inv["tokens"] and bf16["tokens_per_timeline"] == inv["tokens_per_timeline"]
    for v in (vis, inv, bf16):
        assert v["timelines_per_s"] == pytest.approx(v["tokens_per_s"] / v["tokens_per_timeline"], rel=0.01)
    assert inv["timelines_per_s_ratio"] == pytest.approx(inv["timelines_per_s"] / vis["timelines_per_s"], abs=2e-3)


def test_bench_train_names_an_unknown_variant():
    with pytest.raises(ValueError, match="unknown variant.*fast"):
        bench_train(["fast"])
