"""Figures and the report on tiny random models: valid, non-trivial PNGs; numbers in report.json."""

import json
import struct

import pytest
from conftest import make_base

from multistream.evals.common import Contenders
from multistream.evals.plots import plot_bars, plot_latency, plot_timeline
from multistream.evals.report import build_report
from multistream.streams import DEFAULT_LAYOUT

PNG = b"\x89PNG\r\n\x1a\n"


def png_ok(path, min_w=200, min_h=150) -> None:
    """A PNG with the right signature, a sensible size and more than one colour."""
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == PNG and data[12:16] == b"IHDR"
    w, h = struct.unpack(">II", data[16:24])
    assert w >= min_w and h >= min_h, (path.name, w, h)
    pixels = matplotlib.image.imread(path)
    assert pixels.std() > 0.01, f"{path.name} is blank"


def test_timeline_plot_from_events(tmp_path):
    words = ["What", " is", " 2+2"]
    events = [{"type": "token", "row": r, "stream": "user", "text": t, "forced": True} for r, t in enumerate(words)]
    events += [{"type": "message_end", "row": 3, "stream": "user", "text": "What is 2+2", "forced": True},
               {"type": "token", "row": 5, "stream": "think", "text": "4", "forced": False},
               {"type": "token", "row": 6, "stream": "answer", "text": "4", "forced": False},
               {"type": "message_end", "row": 7, "stream": "answer", "text": "4", "forced": False},
               {"type": "tool_call", "row": 8, "stream": "call", "text": "calculator(2+2)"},
               {"type": "tool_result", "row": 8, "stream": "tool", "text": "4"},
               {"type": "token", "row": 9, "stream": "notes", "text": "?", "forced": True}]  # a stream outside the layout
    png = plot_timeline(events, [(s.name, s.kind) for s in DEFAULT_LAYOUT], tmp_path / "t.png", "test")
    png_ok(png)
    svg = plot_timeline(events, [(s.name, s.kind) for s in DEFAULT_LAYOUT], tmp_path / "t.svg")
    assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()


def test_bar_and_latency_plots(tmp_path):
    png_ok(plot_bars({"accuracy": {"multi": 0.8, "single": 0.7}, "ASR": {"multi": 0.1, "single": None}}, tmp_path / "b.png"))
    case = {"multi": {"ttft": 0.2, "e2e": 1.0}, "single": {"ttft": 0.5, "e2e": None}}
    result = {"modes": {"all_at_once": {"cases": [case | {"id": "a"}, case], "ttft_ratio": 0.4, "e2e_ratio": None}}}
    png_ok(plot_latency(result, tmp_path / "l.png"))


@pytest.fixture(autouse=True)
def conversations(monkeypatch):
    """The chats stage on one hand-built conversation (the generator is not needed, nor a tokenizer download)."""
    import multistream.evals.report as rep
    from eval.test_chats import three_turns

    asked = []

    def load(path, n):
        asked.append((path, n))
        return [three_turns()]

    monkeypatch.setattr(rep, "load_conversations", load)
    return asked


@pytest.fixture
def tiny(wrap, tokenizer):
    multi = wrap("llama")
    single = make_base("llama", len(tokenizer), seed=1), tokenizer
    return Contenders(multi, single, max_tokens=6, max_rows=40, model_name="tiny", single_name="tiny-single")


@pytest.mark.slow  # a whole report
def test_report_on_a_small_subset(tiny, tmp_path, conversations):
    report = build_report(tiny, tmp_path, limit=1, rate=400.0, show_progress=False)
    assert conversations == [(None, 1)]
    assert (tmp_path / "report.md").exists() and (tmp_path / "report.json").exists()
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["summary"] == json.loads(json.dumps(report["summary"]))
    s = saved["summary"]
    assert set(s) == {"accuracy", "asr", "utility_under_attack", "monitor", "injection_v3", "interrupts", "latency",
                      "listening", "chats"}
    assert s["injection_v3"]["asr"]["n"] == 1 and set(s["injection_v3"]["bar"]) == set(saved["injection-v3"]["bar"])
    assert (s["chats"]["conversations"], s["chats"]["turns"]) == (1, 3)
    assert set(s["chats"]["turns_right"]) == {"multi", "multi_ci", "single", "single_ci"}
    assert set(saved["chats"]["multi"]["by_turn"]) == {"1", "2", "3"} and "cases" in saved["chats"]
    assert s["accuracy"]["n"] == s["asr"]["n"] == s["interrupts"]["n"] == s["listening"]["n"] == 1
    assert set(saved["injection"]) >= {"multi", "single", "asr_ratio", "monitor"} and "flag_rate" in saved["injection"]["monitor"]
    assert set(saved["prompts"]["multi"]) >= {"accuracy", "n"}
    names = set(report["figures"].values())
    assert {"summary.png", "latency_all_at_once.png", "timeline_injection.png", "timeline_interrupt.png"} <= names
    for name in names:
        png_ok(tmp_path / name)
    md = (tmp_path / "report.md").read_text()
    for name in names:
        assert f"]({name})" in md
    assert "| accuracy (prompts) |" in md and "| attack success rate" in md and "| interrupt success |" in md
    assert "| listening: fact to final answer" in md and "## Prompt injection v3: completion attacks" in md
    assert "| conversations: every turn right (%) |" in md and "## Conversations" in md and "| turn 3 | 1 |" in md


@pytest.mark.slow  # a whole report, in parts
def test_report_in_parts_then_assembled_from_the_kept_results(tiny, tmp_path, monkeypatch):
    import multistream.evals.report as rep

    opts = dict(limit=1, rate=400.0, show_progress=False)
    assert build_report(tiny, tmp_path, stages=["prompts", "latency"], **opts) is None
    assert build_report(tiny, tmp_path, stages=["injection", "injection-v3", "interrupts", "listening", "chats"],
                        **opts) is None
    assert not (tmp_path / "report.md").exists()
    assert sorted(p.stem for p in (tmp_path / "stages").iterdir()) == ["chats", "injection", "injection-v3",
                                                                      "interrupts", "latency", "listening", "prompts"]

    def ran_again(*a, **k):
        raise AssertionError("a suite ran again")

    for name in ("eval_prompts", "eval_injection", "eval_injection_v3", "eval_interrupts", "eval_latency",
                 "eval_listening", "eval_chats"):
        monkeypatch.setattr(rep, name, ran_again)
    report = build_report(tiny, tmp_path, **opts)  # only the figures are made
    assert report["summary"]["accuracy"]["n"] == report["summary"]["listening"]["n"] == 1
    assert (tmp_path / "report.md").exists() and "summary.png" in report["figures"].values()
    with pytest.raises(AssertionError, match="ran again"):  # other options: the kept results do not apply
        build_report(tiny, tmp_path, limit=1, rate=200.0, show_progress=False)
    with pytest.raises(AssertionError, match="ran again"):
        build_report(tiny, tmp_path, fresh=True, **opts)
    tiny.max_tokens += 1  # another budget
    with pytest.raises(AssertionError, match="ran again"):
        build_report(tiny, tmp_path, **opts)
    tiny.max_tokens -= 1
    (tmp_path / "stages" / "prompts.json").write_text('{"key": ')  # a broken file: that suite runs again
    with pytest.raises(AssertionError, match="ran again"):
        build_report(tiny, tmp_path, **opts)
    assert set(report["meta"]["stages"]) == {"prompts", "injection", "injection-v3", "interrupts", "latency",
                                             "listening", "chats"}
    with pytest.raises(ValueError, match="unknown stage"):
        build_report(tiny, tmp_path, stages=["figures"], **opts)


def test_weights_stamp_follows_the_contents_not_the_copy(tmp_path):
    """Kept suite results are reused for a copy of the same weights (a fresh clone) and not for retrained ones."""
    import os
    import shutil

    from multistream.evals.report import _weights_stamp

    a = tmp_path / "a"
    a.mkdir()
    (a / "adapter.safetensors").write_bytes(b"\x01" * 4096)
    (a / "config.json").write_text("{}")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    os.utime(b / "adapter.safetensors", (1, 1))
    assert _weights_stamp(str(a)) == _weights_stamp(str(b))
    (b / "README.md").write_text("# a model card with new figures")
    assert _weights_stamp(str(a)) == _weights_stamp(str(b))
    (b / "adapter.safetensors").write_bytes(b"\x01" * 4095 + b"\x02")  # retrained: same size, new contents
    assert _weights_stamp(str(a)) != _weights_stamp(str(b))
    assert _weights_stamp("not-a-folder") == "not-a-folder"


def test_chats_stage_follows_its_conversations_and_is_skipped_without_a_generator(tiny, tmp_path, monkeypatch):
    import multistream.evals.report as rep
    from eval.test_chats import three_turns

    opts = dict(limit=1, rate=400.0, show_progress=False, stages=["chats"])
    assert build_report(tiny, tmp_path, **opts) is None
    kept = json.loads((tmp_path / "stages" / "chats.json").read_text())
    assert kept["result"]["n"] == 1 and kept["key"]["n_conversations"] == 1

    def ran_again(*a, **k):
        raise AssertionError("a suite ran again")

    monkeypatch.setattr(rep, "eval_chats", ran_again)
    assert build_report(tiny, tmp_path, **opts) is None  # the same conversations: kept
    other = three_turns()
    other.meta["turns"][1]["expected"] = "43"
    monkeypatch.setattr(rep, "load_conversations", lambda path, n: [other])
    with pytest.raises(AssertionError, match="ran again"):  # other conversations: run again
        build_report(tiny, tmp_path, **opts)

    def missing(path, n):
        raise rep.ConversationsMissing("no conversation generator")

    monkeypatch.setattr(rep, "load_conversations", missing)
    assert build_report(tiny, tmp_path, **opts) is None  # nothing to run: skipped, not failed


def test_case_fields_added_later_leave_the_kept_keys_alone():
    import dataclasses

    from multistream.evals.cases import InterruptCase, PromptCase
    from multistream.evals.report import _case_dict

    p = PromptCase("a", "What is 2 plus 2?", "4")
    assert _case_dict(p) == {k: v for k, v in dataclasses.asdict(p).items() if k != "accepted"}
    assert _case_dict(PromptCase("a", "q", "4", accepted=("four",)))["accepted"] == ("four",)
    t = InterruptCase("t", "u", "i", 2, "5")
    assert "tools" not in _case_dict(t) and _case_dict(dataclasses.replace(t, tools=True))["tools"] is True
