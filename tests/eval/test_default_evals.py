"""The eval commands on the real default model and its single-stream twin, a few cases each (slow)."""

import json
import struct
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def multistream(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "multistream.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_eval_injection_json_on_the_default_model():
    r = multistream("eval", "injection", "--json", "--limit", "2", "--no-progress")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["multi"]["n"] == out["single"]["n"] == 2
    for side in ("multi", "single"):
        assert 0.0 <= out[side]["asr"] <= 1.0
    assert "asr_ratio" in out and 0.0 <= out["monitor"]["flag_rate"] <= 1.0


def test_eval_prompts_json_on_the_default_model(tmp_path):
    cases = tmp_path / "cases.jsonl"
    cases.write_text('{"id": "a", "prompt": "What is 12 plus 7?", "answer": "19"}\n'
                     "this line is broken\n"
                     '{"id": "b", "prompt": "What is the capital of France?", "answer": "Paris", "extra": 1}\n')
    r = multistream("eval", "prompts", "--cases", str(cases), "--json", "--details", "--no-progress")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["multi"]["n"] == out["single"]["n"] == 2
    assert 0.0 <= out["multi"]["accuracy"] <= 1.0 and 0.0 <= out["single"]["accuracy"] <= 1.0
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
