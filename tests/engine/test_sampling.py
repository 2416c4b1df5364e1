import pytest
import torch

from multistream.engine.sampling import SamplingParams, greedy, sample


def fake_logits():
    return torch.tensor([[0.0, 3.0, 1.0, 2.0], [5.0, 0.0, 0.0, 4.9]])


def test_greedy_is_argmax():
    p = SamplingParams()
    assert sample(fake_logits(), [p, p], [None, None]).tolist() == [1, 0]


def test_greedy_decides_silence_against_all_speech_together():
    silence = 0
    # silence 0.4; two openings 0.3 each: speech (0.6) is likelier, so the stream speaks its likeliest opening
    split = torch.tensor([0.4, 0.3, 0.3, 0.0]).log()
    # silence 0.55 outweighs all speech (0.45) however it is spread
    quiet = torch.tensor([0.55, 0.3, 0.15, 0.0]).log()
    # one spoken token alone beats silence: both rules speak it
    sure = torch.tensor([0.2, 0.1, 0.7, 0.0]).log()
    logits = torch.stack([split, quiet, sure])
    assert greedy(logits, silence).tolist() == [1, 0, 2]
    assert greedy(logits).tolist() == logits.argmax(-1).tolist() == [0, 0, 2]  # the argmax rule stays silent on `split`
    p = SamplingParams()
    assert sample(logits, [p] * 3, [None] * 3, silence=silence).tolist() == [1, 0, 2]
    assert greedy(logits.bfloat16(), silence).tolist() == [1, 0, 2]


def test_top_k_one_and_tiny_top_p_are_argmax_at_any_temperature():
    k1 = SamplingParams(temperature=5.0, top_k=1, seed=0)
    p0 = SamplingParams(temperature=5.0, top_p=0.01, seed=0)
    for _ in range(20):
        assert sample(fake_logits(), [k1, p0], [k1.generator(), p0.generator()]).tolist() == [1, 0]


def test_top_k_and_top_p_restrict_the_support():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0]])
    k2 = SamplingParams(temperature=10.0, top_k=2, seed=1)
    g = k2.generator()
    seen = {sample(logits, [k2], [g]).item() for _ in range(200)}
    assert seen == {1, 3}
    # probabilities ~ [0.03, 0.64, 0.09, 0.24]: top_p=0.8 keeps {1, 3}; 0.9 adds 2
    for top_p, support in ((0.8, {1, 3}), (0.9, {1, 2, 3})):
        p = SamplingParams(temperature=1.0, top_p=top_p, seed=2)
        g = p.generator()
        assert {sample(logits, [p], [g]).item() for _ in range(400)} == support


def test_seeded_sampling_is_reproducible_and_follows_temperature():
    logits = torch.tensor([[0.0, 1.0]])
    p = SamplingParams(temperature=1.0, seed=7)
    a = [sample(logits, [p], [g]).item() for g in [p.generator()] for _ in range(50)]
    b = [sample(logits, [p], [g]).item() for g in [p.generator()] for _ in range(50)]
    assert a == b
    g = p.generator()
    freq = sum(sample(logits, [p], [g]).item() for _ in range(2000)) / 2000
    assert abs(freq - torch.sigmoid(torch.tensor(1.0)).item()) < 0.04  # 0.731


def test_rows_use_their_own_parameters():
    greedy, hot = SamplingParams(), SamplingParams(temperature=100.0, seed=3)
    g = hot.generator()
    rows = [sample(fake_logits(), [greedy, hot], [None, g]).tolist() for _ in range(100)]
    assert all(r[0] == 1 for r in rows) and len({r[1] for r in rows}) == 4


def test_bad_parameters_are_refused():
    for kwargs in ({"temperature": -1}, {"top_k": -2}, {"top_p": 0.0}, {"top_p": 1.5}):
        with pytest.raises(ValueError):
            SamplingParams(**kwargs)
