"""The eval commands on the real default model and its single-stream twin, a few cases each (slow)."""

import json
import struct
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def multistream(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    # --no-compile: these tests check what the commands report, and compiling the row forward costs minutes on a cold
    # cache (CI's); the compiled path on the real model is tested by `generate` (tests/engine/test_runner.py), the
    # server and the demo, and equals the eager one (tests/engine/test_compiled.py)
    return subprocess.run([sys.executable, "-m", "multistream.cli", *args, "--no-compile"], capture_output=True,
                          text=True, timeout=timeout)


def test_eval_injection_json_on_the_default_model():
    from multistream.evals.cases import load_cases
    from multistream.evals.scoring import attacked, flags_injection, wilson

    r = multistream("eval", "injection", "--json", "--details", "--limit", "4", "--no-progress")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    cases = {c.id: c for c in load_cases(None, "injection", 4)[0]}
    assert set(cases) == {c["id"] for c in out["cases"]}
    attacks = [c for c in out["cases"] if c["marker"] is not None]  # the first 4 mix attacks and benign documents
    benign = [c for c in out["cases"] if c["marker"] is None]
    k = len(attacks)
    assert out["multi"]["n"] == out["single"]["n"] == k == 2 and out["multi"]["n_benign"] == len(benign) == 2
    for side in ("multi", "single"):
        # every rate is the share of its per-case verdicts, each verdict the scorer's on the recorded answer
        hits = [attacked(cases[c["id"]].injection_marker, c[side]["answer"], cases[c["id"]].answer) for c in attacks]
        assert [c[side]["attacked"] for c in attacks] == hits and all(c[side]["attacked"] is None for c in benign)
        assert out[side]["asr"] == round(sum(hits) / k, 4) and out[side]["asr_ci"] == wilson(sum(hits), k)
        assert all(c[side]["useful"] == (c[side]["correct"] and not c[side]["attacked"]) for c in attacks
                   if c[side]["correct"] is not None)
    flags = [flags_injection(c["multi"]["think"], c["marker"]) for c in attacks]
    assert out["monitor"]["flag_rate"] == round(sum(flags) / k, 4)
    false_flags = [flags_injection(c["multi"]["think"], None) for c in benign]
    assert out["monitor"]["false_positive_rate"] == round(sum(false_flags) / len(benign), 4)


def test_eval_prompts_json_on_the_default_model(tmp_path):
    cases = tmp_path / "cases.jsonl"
    cases.write_text('{"id": "a", "prompt": "What is 12 plus 7?", "answer": "19"}\n'
                     "this line is broken\n"
                     '{"id": "b", "prompt": "What is the capital of France?", "answer": "Paris", "extra": 1}\n')
    r = multistream("eval", "prompts", "--cases", str(cases), "--json", "--details", "--no-progress")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    from multistream.evals.scoring import correct

    assert out["multi"]["n"] == out["single"]["n"] == 2
    for side in ("multi", "single"):
        verdicts = [correct(c["expected"], c[side]["final"], c["prompt"]) for c in out["cases"]]
        assert [c[side]["correct"] for c in out["cases"]] == verdicts
        assert out[side]["accuracy"] == round(sum(verdicts) / 2, 4)
    assert out["skipped"] == [f"{cases}: line 2: invalid JSON (Expecting value at column 1)"]
    assert "line 2" in r.stderr
    assert [c["id"] for c in out["cases"]] == ["a", "b"] and all(c["multi"]["answer"] is not None for c in out["cases"])


def test_report_on_the_default_model(tmp_path):
    r = multistream("report", "--out", str(tmp_path), "--limit", "1", "--max-tokens", "24", "--rate", "40", "--no-progress")
    assert r.returncode == 0, r.stderr
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["summary"]["accuracy"]["n"] == 1 and saved["meta"]["model"] == "default"
    for name in saved["figures"].values():
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and min(struct.unpack(">II", data[16:24])) >= 150
