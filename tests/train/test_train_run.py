"""Whole training runs on a tiny model: resume = uninterrupted, 2 processes = 1, both modes save loadable models."""

import json
import math
import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import tiny_config, tiny_setup

from multistream.model import MultiStreamModel
from multistream.train.config import TrainConfig
from multistream.train.loop import train


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    base, data = tiny_setup(root)
    return root, base, data


def _final_trainables(out_dir):
    return load_file(os.path.join(out_dir, "checkpoint", "trainable.safetensors"))


@pytest.mark.slow  # three training runs
def test_resume_after_interruption_reproduces_the_uninterrupted_run(tiny, tmp_path):
    root, base, data = tiny
    full = train(tiny_config(tmp_path / "a", base, data, output_dir=str(tmp_path / "a")), progress=False)
    cut = tiny_config(tmp_path / "b", base, data, output_dir=str(tmp_path / "b"))
    partial = train(cut, progress=False, _stop_after=2)  # "crashes" after step 2, before saving a final model
    assert partial.steps == 2 and not (tmp_path / "b" / "final").exists()
    resumed = train(cut, progress=False)
    assert resumed.steps == full.steps == 4
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in full.history], rel=1e-5)
    # tokens count the whole run, across the resume (the summary and the model card quote them)
    assert [h["tokens"] for h in resumed.history] == [h["tokens"] for h in full.history]
    assert resumed.tokens == full.tokens and resumed.seconds >= partial.seconds
    a, b = _final_trainables(tmp_path / "a"), _final_trainables(tmp_path / "b")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-7, msg=k)
    assert any("token_rows" in k for k in a) and any("lora" in k for k in a) and "stream_embed.weight" in a


@pytest.mark.slow  # a training run
def test_saved_multistream_model_loads_with_trained_rows(tiny, tmp_path):
    root, base, data = tiny
    result = train(tiny_config(tmp_path, base, data, output_dir=str(tmp_path / "m"), max_steps=2), progress=False)
    loaded = MultiStreamModel.load(result.final_dir)
    fresh = MultiStreamModel.from_base(str(base))
    sil = loaded.tok.silence_id
    trained_row = load_file(tmp_path / "m" / "checkpoint" / "trainable.safetensors")["token_rows.input"]
    torch.testing.assert_close(loaded.base.get_input_embeddings().weight[sil], trained_row[0])
    assert not torch.allclose(fresh.base.get_input_embeddings().weight[sil], trained_row[0])
    adapter = load_file(result.final_dir / "adapter_model.safetensors")
    assert adapter and all("lora" in k for k in adapter)  # no copies of the whole embedding matrix


@pytest.mark.slow  # a training run
def test_snapshot_of_the_last_checkpoint_is_the_model_the_run_saves(tiny, tmp_path):
    from multistream.train.loop import snapshot

    root, base, data = tiny
    cfg = tiny_config(tmp_path, base, data, output_dir=str(tmp_path / "m"), max_steps=2)
    with pytest.raises(FileNotFoundError, match="no checkpoint yet"):
        snapshot(cfg, tmp_path / "early")
    result = train(cfg, progress=False)
    path, step = snapshot(cfg, tmp_path / "snap")
    assert step == 2
    final, snap = MultiStreamModel.load(result.final_dir), MultiStreamModel.load(path)
    ids = torch.arange(3, 40).view(1, -1)
    streams = torch.zeros_like(ids)
    positions = torch.arange(ids.shape[1]).view(1, -1)
    torch.testing.assert_close(snap(ids, streams, positions).logits, final(ids, streams, positions).logits)
    fresh = MultiStreamModel.from_base(str(base))
    assert not torch.allclose(fresh(ids, streams, positions).logits, final(ids, streams, positions).logits)


@pytest.mark.slow  # a training run per mode
@pytest.mark.parametrize("mode", ["multi", "single"])
def test_bf16_base_trains_float32_parameters_and_loads(tiny, tmp_path, mode):
    from multistream.train.loop import build_model

    root, base, data = tiny
    cfg = tiny_config(tmp_path, base, data, mode=mode, output_dir=str(tmp_path / mode), max_steps=2, base_dtype="bfloat16")
    model = build_model(cfg)
    trainable = {n: p.dtype for n, p in model.named_parameters() if p.requires_grad}
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    assert trainable and set(trainable.values()) == {torch.float32}, trainable  # AdamW never steps bf16 weights
    assert frozen == {torch.bfloat16}
    result = train(cfg, model=model, progress=False)
    assert result.steps == 2 and math.isfinite(result.train_loss)
    if mode == "multi":
        assert MultiStreamModel.load(result.final_dir).silence == "invisible"


@pytest.mark.slow  # two training runs per mode
@pytest.mark.parametrize("mode", ["multi", "single"])
def test_init_from_continues_from_a_saved_model(tiny, tmp_path, mode):
    from multistream.train.loop import _trainable, build_model

    root, base, data = tiny
    first = train(tiny_config(tmp_path, base, data, mode=mode, output_dir=str(tmp_path / "first"), max_steps=2), progress=False)
    saved = _final_trainables(tmp_path / "first")
    model = build_model(tiny_config(tmp_path, base, data, mode=mode, output_dir=str(tmp_path / "next"),
                                    init_from=str(first.final_dir)))
    params = _trainable(model)
    assert params.keys() == saved.keys()
    for k, p in params.items():
        torch.testing.assert_close(p.detach(), saved[k], msg=k)
    assert any(p.abs().sum() > 0 for k, p in params.items() if "lora_B" in k)  # trained, not freshly initialised
    with pytest.raises(ValueError, match="r=16, this config 4"):
        build_model(tiny_config(tmp_path, base, data, mode=mode, output_dir=str(tmp_path / "x"), lora_r=4,
                                init_from=str(first.final_dir)))
    other = "single" if mode == "multi" else "multi"
    with pytest.raises(ValueError, match=f"not a {other} model folder"):
        build_model(tiny_config(tmp_path, base, data, mode=other, output_dir=str(tmp_path / "y"),
                                init_from=str(first.final_dir)))


@pytest.mark.slow  # a training run
def test_single_stream_twin_run(tiny, tmp_path):
    root, base, data = tiny
    result = train(tiny_config(tmp_path, base, data, mode="single", output_dir=str(tmp_path / "s"), max_steps=2), progress=False)
    assert (result.final_dir / "adapter_config.json").exists() and result.eval_loss is not None
    assert result.history[-1]["loss"] > 0


@pytest.mark.slow  # accelerate with two processes
def test_two_processes_match_one(tiny, tmp_path):
    root, base, data = tiny
    cfg = tiny_config(tmp_path, base, data, max_steps=2, output_dir=str(tmp_path / "two"), eval_every=2)
    path = tmp_path / "two.yaml"
    cfg.save(path)
    # accelerate's --cpu flag alone starts several processes only through MPI; --multi_gpu uses torchrun (gloo on a
    # CPU-only machine) and ACCELERATE_USE_CPU keeps it on the CPU where there is a GPU too
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "ACCELERATE_USE_CPU": "true"}
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        "2",
        "--multi_gpu",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "multistream.cli",
        "train",
        str(path),
        "--no-progress",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert two["processes"] == 2

    one_cfg = TrainConfig(**{**cfg.to_dict(), "output_dir": str(tmp_path / "one")})
    one = train(one_cfg, progress=False)
    two_log = [json.loads(line) for line in (tmp_path / "two" / "log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in two_log] == pytest.approx([h["loss"] for h in one.history], rel=1e-4)
    assert two["eval_loss"] == pytest.approx(one.eval_loss, rel=1e-4)
    a, b = _final_trainables(tmp_path / "one"), _final_trainables(tmp_path / "two")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-3, atol=1e-5, msg=k)


@pytest.mark.parametrize("native", [True, False])
def test_auto_base_dtype_is_bf16_only_where_the_hardware_multiplies_it(tiny, tmp_path, monkeypatch, caplog, native):
    from multistream.train import loop

    root, base, data = tiny
    monkeypatch.setattr(loop, "fast_bf16", lambda device: native)
    frozen = lambda model: {p.dtype for p in model.parameters() if not p.requires_grad}  # noqa: E731
    auto = tiny_config(tmp_path, base, data, output_dir=str(tmp_path / "a"), base_dtype="auto")
    assert frozen(loop.build_model(auto)) == {torch.bfloat16 if native else torch.float32}
    full = tiny_config(tmp_path, base, data, output_dir=str(tmp_path / "f"), base_dtype="auto", lora=False)
    assert loop.base_dtype(full) == torch.float32  # full fine-tuning trains the base weights: never bf16
    asked = tiny_config(tmp_path, base, data, output_dir=str(tmp_path / "b"), base_dtype="bfloat16")
    with caplog.at_level("WARNING", logger=loop.__name__):
        assert loop.base_dtype(asked) == torch.bfloat16  # what the config asks for, with a warning where it is slow
    assert ("emulated" in caplog.text) == (not native)


def test_config_checks(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        TrainConfig(train_file="x", output_dir="y", mode="both")
    path = tmp_path / "c.yaml"
    path.write_text("train_file: a.jsonl\noutput_dir: out\nlearning_rate: 1\n")
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig.from_yaml(path)
    with pytest.raises(ValueError, match="base_dtype must be auto, float32 or bfloat16"):
        TrainConfig(train_file="x", output_dir="y", base_dtype="float16")


def test_killed_recipe_leaves_no_training_process_behind(tmp_path, monkeypatch):
    """SIGTERM to a recipe stops the side-by-side training processes it started."""
    import signal
    import threading
    import time

    from multistream.train import recipes

    fake = tmp_path / "python"  # stands in for the interpreter: records its pid, then "trains" for a minute
    fake.write_text(f"#!/bin/sh\necho $$ >> {tmp_path}/pids\nexec sleep 60\n")
    fake.chmod(0o755)
    monkeypatch.setattr(recipes.sys, "executable", str(fake))
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
    with pytest.raises(SystemExit):
        recipes.train_side_by_side([tmp_path / "multi.yaml", tmp_path / "single.yaml"], tmp_path)
    pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
    assert len(pids) == 2
    time.sleep(0.1)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_the_ablation_recipe_trains_without_injected_documents(tmp_path, monkeypatch):
    """`train --recipe R --injected-share 0` builds the recipe's data with no injected document in training
    (the test split keeps its attacks), then trains both models on it."""
    from multistream.cli import main
    from multistream.train import recipes

    class Trained(Exception):
        pass

    def fake_train(configs, log_dir, *_):
        raise Trained([TrainConfig.from_yaml(c).train_file for c in configs])

    monkeypatch.setattr(recipes, "train_side_by_side", fake_train)
    with pytest.raises(Trained) as got:
        main(["train", "--recipe", "tiny", "--injected-share", "0", "--out", str(tmp_path / "ablation")])
    assert got.value.args[0] == [str(tmp_path / "ablation" / "data" / f) for f in ("train.jsonl", "twin_train.jsonl")]

    def payloads(split):
        lines = (tmp_path / "ablation" / "data" / f"{split}.jsonl").read_text().splitlines()
        metas = [json.loads(line)["meta"] for line in lines]
        return [m["payload"] for m in metas if m["skill"] == "document"]

    assert payloads("train") and not any(payloads("train"))
    with pytest.raises(Exception, match="injected_share"):
        recipes.run_recipe("tiny", tmp_path / "bad", injected_share=1.5)


def test_init_from_points_a_recipe_at_an_earlier_run(tmp_path, monkeypatch):
    from multistream.cli import main
    from multistream.train import recipes

    class Trained(Exception):
        pass

    def fake_train(configs, log_dir, *_):
        raise Trained([TrainConfig.from_yaml(c).init_from for c in configs])

    monkeypatch.setattr(recipes, "train_side_by_side", fake_train)
    earlier = tmp_path / "v7"
    for mode in ("multi", "single"):
        (earlier / mode / "final").mkdir(parents=True)
    with pytest.raises(Trained) as got:
        main(["train", "--recipe", "tiny", "--init-from", str(earlier), "--out", str(tmp_path / "next")])
    assert got.value.args[0] == [str(earlier / "multi" / "final"), str(earlier / "single" / "final")]
    with pytest.raises(FileNotFoundError, match="no trained model"):
        recipes.run_recipe("tiny", tmp_path / "next", init_from=tmp_path / "nowhere")


def test_side_by_side_runs_get_a_bar_each_from_their_logs(tmp_path, capsys):
    from multistream.train.recipes import _Progress

    configs = []
    for mode in ("multi", "single"):
        cfg = TrainConfig(train_file="x.jsonl", output_dir=str(tmp_path / mode), mode=mode, max_steps=10)
        cfg.save(tmp_path / f"{mode}.yaml")
        configs.append(tmp_path / f"{mode}.yaml")
    progress = _Progress(configs, show=True)
    progress.update()  # no log yet: nothing moves
    bars = [bar for _, bar in progress.runs.values()]
    assert [b.n for b in bars] == [0, 0] and [b.total for b in bars] == [10, 10]
    (tmp_path / "multi").mkdir()
    record = {"step": 4, "loss": 1.5, "tokens": 800, "seconds": 4.0}
    (tmp_path / "multi" / "log.jsonl").write_text(json.dumps({**record, "step": 2}) + "\n" + json.dumps(record) + "\n{\"st")
    progress.update()  # the half-written last line is passed over
    assert [b.n for b in bars] == [4, 0]
    progress.update(finished={0})  # the first run ended: its bar closes, the other goes on
    assert list(progress.runs) == [1]
    progress.close()
    assert not progress.runs
    err = capsys.readouterr().err
    assert "train multi" in err and "4/10" in err and "loss=1.5000, tok_s=200" in err and "train single" in err


def test_max_steps_overrides_a_recipe_s_step_count_for_both_runs(tmp_path, monkeypatch, capsys):
    from multistream.cli import main
    from multistream.train import recipes

    class Trained(Exception):
        pass

    def fake_train(configs, log_dir, *_):
        cfgs = [TrainConfig.from_yaml(c) for c in configs]
        raise Trained([(c.max_steps, c.max_minutes, c.save_every) for c in cfgs])

    monkeypatch.setattr(recipes, "train_side_by_side", fake_train)
    monkeypatch.setitem(recipes.RECIPES, "tiny", replace(recipes.RECIPES["tiny"], train={
        **recipes.RECIPES["tiny"].train, "max_minutes": 5}))  # (the time limit goes: the steps asked for are run)
    with pytest.raises(Trained) as got:
        main(["train", "--recipe", "tiny", "--max-steps", "30", "--out", str(tmp_path / "longer")])
    # tiny: 3 steps, a checkpoint every 2; 30 steps keep about as many checkpoints
    assert got.value.args[0] == [(30, None, 20), (30, None, 20)] and recipes.RECIPES["tiny"].train["max_steps"] == 3
    with pytest.raises(SystemExit):
        main(["train", "--recipe", "tiny", "--max-steps", "0"])
    assert "--max-steps: a step count must be at least 1, got 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="max_steps must be at least 1"):
        recipes.run_recipe("tiny", tmp_path / "none", max_steps=0)


def test_a_continued_run_keeps_only_cards_the_toolkit_wrote(tmp_path):
    from multistream.train.recipes import earlier_cards, model_card

    exported, run = tmp_path / "weights" / "default", tmp_path / "v8" / "single" / "final"
    for folder in (exported, run):
        folder.mkdir(parents=True)
    report = {"recipe": "tiny", "multi": {"steps": 3, "tokens": 10, "tokens_per_s": 1.0, "seconds": 6}}
    (exported / "README.md").write_text(model_card(report, "multi"))
    (run / "README.md").write_text("---\nlibrary_name: peft\n---\n# Model Card for Model ID\n- **License:** [More Information Needed]\n")
    cards = earlier_cards({"multi": exported, "single": run})
    assert set(cards) == {"multi"} and cards["multi"]["folder"] == "weights/default"
    assert "3 steps" in cards["multi"]["card"]


def test_a_continued_run_s_model_card_keeps_the_earlier_run_s_facts_but_not_its_figures():
    from multistream.train.recipes import model_card

    run = {"steps": 200, "tokens": 1000, "tokens_per_s": 300.0, "seconds": 600, "mixed_precision": "bf16"}
    earlier = "# old card\n\n- training: 1120 steps on a GPU\n- hardware: one H200\n\n| skill | accuracy |\n| tool | 100.0 |\n"
    report = {"recipe": "refresh", "train_per_skill": 400, "hardware": "x86_64 CPU, 2 cores, no GPU", "multi": run,
              "config": {"multi": {"lora_r": 16, "batch_size": 2, "threads": 1}},
              "continued_from": {"multi": {"folder": "weights/default", "card": earlier}}}
    card = model_card(report, "multi")
    assert "--recipe refresh" in card and "200 steps of 2 packed sequences" in card
    assert "Continued from the weights shipped before this run (`weights/default`)" in card
    assert "  - training: 1120 steps on a GPU" in card and "  - hardware: one H200" in card
    assert "| tool | 100.0 |" not in card
