"""``multistream bench serve`` on the tiny random model, with small numbers: its figures, and what they must say.

No wall-clock time is asserted (the machines are shared): only that every session answered,
answered as it does alone (no cross-talk), that nothing was left open and that the server
still answers after the soak.
"""

from __future__ import annotations

import sys

import pytest

from multistream.bench.serve import _questions, bench_serve
from multistream.cli import build_parser

N = 8


@pytest.mark.slow  # a load test: a server process, sessions at once, a soak
def test_bench_serve_every_session_answers_as_it_does_alone():
    r = bench_serve("tiny", sessions=N, soak=50, max_tokens=8, soak_concurrency=8, realtime=N)
    assert r["model"] == "tiny" and r["sessions"] == N and r["max_tokens"] == 8 and r["realtime"] == N
    mixed = f"mixed_{N}rt_{N}ws_{N}http"
    assert set(r["modes"]) == {"ws_1", f"ws_{N}", f"http_{N}", f"realtime_{N}", mixed}
    for name, m in r["modes"].items():
        n = 3 * N if name == mixed else N
        assert m["sessions"] == n and m["answered"] == n, (name, m.get("errors"))
        assert m["left_open"] == 0
        assert m["tokens"] > 0 and m["sessions_per_s"] > 0 and m["tokens_per_s"] > 0
        assert set(m["rss_mb"]) == {"before", "peak", "after"}
        if sys.platform == "linux":
            assert 0 < m["rss_mb"]["before"] <= m["rss_mb"]["peak"]
    assert r["modes"]["ws_1"]["held_at_once"] == 1
    for name in (f"ws_{N}", f"http_{N}", f"realtime_{N}", mixed):
        assert r["modes"][name]["same_as_alone"] == r["modes"][name]["sessions"]  # token for token as alone: no cross-talk
        assert r["modes"][name]["held_at_once"] > 1
        assert set(r["ratios"][f"{name}_vs_ws_1"]) == {"sessions_per_s", "tokens_per_s"}
    # every output stream writes its 8 tokens, in every mode: the same work, so the rates compare
    assert r["modes"]["ws_1"]["tokens"] == r["modes"][f"ws_{N}"]["tokens"] == r["modes"][f"http_{N}"]["tokens"]
    soak = r["soak"]
    assert soak["sessions"] == 50 and sum(soak["first_message"].values()) == 50
    assert set(soak["first_message"]) <= {"opened", "too_many_sessions"}, soak  # opened, or refused when full
    assert soak["first_message"].get("opened", 0) >= 25, soak
    assert soak["left_open"] == 0 and soak["still_answers"] and soak["same_as_alone_after"]


def test_questions_differ_from_their_first_word():
    qs = _questions(200)
    assert len({q.split()[0] for q in qs}) == 200


def test_bench_serve_is_on_the_command_line():
    args = build_parser().parse_args(["bench", "serve", "--sessions", "5", "--soak", "0", "--json"])
    assert args.what == "serve" and args.sessions == 5 and args.soak == 0 and args.model is None and args.json
    assert args.realtime == 0 and build_parser().parse_args(["bench", "serve", "--realtime", "30"]).realtime == 30
