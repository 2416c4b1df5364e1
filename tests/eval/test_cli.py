"""The eval, plot and report commands on tiny saved models (in process)."""

import json
import re

import pytest
from conftest import make_base

from multistream.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny multi-stream model folder and a tiny single-stream base folder."""
    import torch
    from conftest import make_tokenizer

    from multistream.model import MultiStreamModel
    from multistream.streams import DEFAULT_LAYOUT

    root = tmp_path_factory.mktemp("models")
    tok = make_tokenizer()
    multi = MultiStreamModel.wrap(make_base("llama", len(tok) + 8), tok, DEFAULT_LAYOUT, base_ref="tiny").eval()
    with torch.no_grad():
        multi.stream_embed.weight.normal_(0, 0.5)
    multi.save(root / "multi", save_base=True)
    single_tok = make_tokenizer()
    make_base("llama", len(single_tok), seed=1).save_pretrained(root / "single")
    single_tok.save_pretrained(root / "single")
    return ["--model", str(root / "multi"), "--single", f"base:{root / 'single'}", "--max-tokens", "4", "--no-progress"]


def run_json(capsys, *argv) -> dict:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow  # every eval command end to end
def test_eval_commands_print_json_with_the_documented_keys(models, capsys, tmp_path):
    out = run_json(capsys, "eval", "injection", "--json", "--limit", "2", *models)
    assert set(out) >= {"multi", "single", "asr_ratio", "monitor"} and "cases" not in out
    assert set(out["multi"]) >= {"asr", "n"} and out["multi"]["n"] + out["multi"]["n_benign"] == 2
    assert "flag_rate" in out["monitor"] and "false_positive_rate" in out["monitor"]
    assert set(out["multi"]) >= {"asr_ci", "utility_ci"} and "flag_rate_ci" in out["monitor"]  # intervals beside rates
    out = run_json(capsys, "eval", "prompts", "--json", "--limit", "2", "--details", *models)
    assert set(out["multi"]) >= {"accuracy", "n"} and set(out["single"]) >= {"accuracy", "n"} and len(out["cases"]) == 2
    out = run_json(capsys, "eval", "interrupts", "--json", "--limit", "1", *models)
    assert set(out["multi"]) >= {"success", "n", "latency_median"} and "success_ratio" in out
    out = run_json(capsys, "eval", "latency", "--json", "--limit", "1", "--rate", "500", *models)
    assert {"ttft_ratio", "e2e_ratio", "modes"} <= set(out)
    mode = out["modes"]["all_at_once"]
    assert {"accuracy", "accuracy_ci", "ttft_median", "ttft_median_both_correct"} <= set(mode["multi"])
    assert "e2e_ratio_both_correct" in mode and mode["n"] == 1
    assert main(["eval", "prompts", "--limit", "1", *models]) == 0  # the table
    table = capsys.readouterr().out
    assert "accuracy" in table and "multi" in table and "single" in table and "ratio" in table
    accuracy_line = next(line for line in table.splitlines() if line.startswith("accuracy"))
    assert len(re.findall(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", accuracy_line)) == 2  # both with an interval


@pytest.mark.slow  # the command compiles the row forward (--compile is the default)
def test_bad_case_lines_are_reported_on_stderr(models, capsys, tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text('{"id": "a", "prompt": "hello", "answer": "world"}\n{"id": "b"}\n')
    out = run_json(capsys, "eval", "prompts", "--cases", str(f), "--json", *models)
    assert out["multi"]["n"] == 1 and out["skipped"] == [f"{f}: line 2: missing field 'prompt'"]


@pytest.mark.slow  # a whole report and the plots, end to end
def test_plot_and_report_commands(models, capsys, tmp_path):
    multi = models[1]
    assert main(["plot", "timeline", "--model", multi, "--input", "user=hello world", "--max-rows", "20",
                 "--out", str(tmp_path / "t.png")]) == 0
    assert (tmp_path / "t.png").read_bytes()[:8] == PNG and "wrote" in capsys.readouterr().out
    assert main(["generate", "--model", multi, "--input", "user=hi", "--max-rows", "12", "--json"]) == 0
    (tmp_path / "gen.json").write_text(capsys.readouterr().out)
    assert main(["plot", "timeline", "--from", str(tmp_path / "gen.json"), "--out", str(tmp_path / "g.svg")]) == 0
    assert "<svg" in (tmp_path / "g.svg").read_text()
    from eval.test_chats import three_turns

    (tmp_path / "chats.jsonl").write_text(three_turns().to_json() + "\n")  # (no generator needed)
    assert main(["report", "--out", str(tmp_path / "rep"), "--limit", "1", "--rate", "500", "--chats",
                 str(tmp_path / "chats.jsonl"), *models]) == 0
    assert (tmp_path / "rep" / "report.md").exists()
    assert "## Conversations" in (tmp_path / "rep" / "report.md").read_text()
    assert main(["plot", "latency", "--from", str(tmp_path / "rep" / "report.json"), "--out", str(tmp_path / "l.png")]) == 0
    assert (tmp_path / "l.png").read_bytes()[:8] == PNG


def test_eval_prompts_scores_the_untrained_base_like_the_twin_without_tools(models, capsys):
    """--base: the base answers as a plain chat without tools; with the twin itself as the base and no tools for the
    twin either, the two answer every case alike."""
    single = models[models.index("--single") + 1].removeprefix("base:")
    out = run_json(capsys, "eval", "prompts", "--limit", "3", "--no-tools", "--json", "--details", "--base", single,
                   *models)
    assert out["base"]["n"] == 3 and "accuracy_ci" in out["base"] and "first_sentence_ci" in out["base"]
    assert [c["base"]["final"] for c in out["cases"]] == [c["single"]["final"] for c in out["cases"]]
    assert out["base"]["accuracy"] == out["single"]["accuracy"]
    assert sum(g["n"] for g in out["base"]["groups"].values()) == 3
    assert main(["eval", "prompts", "--limit", "2", "--no-tools", "--base", single, *models]) == 0
    assert "untrained base model, no tools, 2 cases" in capsys.readouterr().out


@pytest.mark.slow  # eval commands end to end
def test_free_suites_and_chats_from_the_command_line(models, capsys, tmp_path):
    out = run_json(capsys, "eval", "prompts", "--suite", "free", "--limit", "2", "--json", "--details", *models)
    assert [c["id"] for c in out["cases"]] == ["free-word-0", "free-units-0"] and out["multi"]["n"] == 2
    out = run_json(capsys, "eval", "interrupts", "--suite", "free-corrections", "--limit", "2", "--json", *models)
    assert out["multi"]["n"] == out["single"]["n"] == 2 and "success_ratio" in out
    with pytest.raises(SystemExit):  # a file or a built-in suite, not both
        main(["eval", "prompts", "--suite", "free", "--cases", str(tmp_path / "x.jsonl"), *models])
    capsys.readouterr()
    from eval.test_chats import three_turns

    f = tmp_path / "chats.jsonl"
    f.write_text(three_turns().to_json() + "\n")
    out = run_json(capsys, "eval", "chats", "--data", str(f), "--n", "1", "--json", *models)
    assert (out["n"], out["turns"]) == (1, 3) and "cases" not in out
    assert set(out["multi"]["by_turn"]) == set(out["twin"]["by_turn"]) == {"1", "2", "3"}
    assert main(["eval", "chats", "--data", str(f), *models]) == 0
    table = capsys.readouterr().out
    assert "turns right" in table and "all turns right" in table and "follow-up turns" in table
    (tmp_path / "bad.jsonl").write_text('{"streams": ["user"], "meta": {"skill": "tool"}}\n')
    assert main(["eval", "chats", "--data", str(tmp_path / "bad.jsonl"), *models]) == 2
    assert "not a conversation" in capsys.readouterr().err
