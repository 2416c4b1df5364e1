"""Fuzzing the timeline validator (hypothesis): any line of input gets a verdict, never a crash."""

import json

from conftest import make_tokenizer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multistream.streams import DEFAULT_LAYOUT
from multistream.text import StreamTokenizer
from multistream.timeline import validate_file

TOK = StreamTokenizer.wrap(make_tokenizer())
NAMES = [*DEFAULT_LAYOUT.names, "nope", ""]
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_leaf = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=30)
json_any = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                        max_leaves=20)
row = st.integers(-3, 40) | st.sampled_from([2**31, 10**30, -(10**30)]) | json_leaf
segment = st.fixed_dictionaries(
    {"text": st.text(max_size=20) | json_leaf},
    optional={"id": st.sampled_from(["a", "b", "c", ""]) | json_leaf, "start_row": row, "after": st.sampled_from(["a", "b", "c", "z"]),
              "anchor": st.sampled_from(["start", "end", "middle"]), "delay": row, "extra": json_any},
)
timeline = st.fixed_dictionaries(
    {"streams": st.lists(st.sampled_from(NAMES) | json_leaf, max_size=7) | json_any},
    optional={"id": json_leaf, "prefix": st.text(max_size=30) | json_leaf,
              "segments": st.dictionaries(st.sampled_from(NAMES), st.lists(segment, max_size=4) | json_any, max_size=4) | json_any,
              "surprise": json_any},
)
line = timeline.map(json.dumps) | json_any.map(json.dumps) | st.text(max_size=60).filter(lambda s: "\n" not in s and "\r" not in s)


def length_of(text: str) -> int:
    return len(TOK.encode_text(text)) + 1


@FUZZ
@given(lines=st.lists(line, min_size=1, max_size=5))
def test_any_lines_get_a_verdict_per_line_and_never_a_crash(tmp_path, lines):
    path = tmp_path / "fuzz.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    ok, rows, errors = validate_file(path, DEFAULT_LAYOUT, length_of, max_rows=64)
    nonblank = [i for i, s in enumerate(lines, 1) if s.strip()]
    assert 0 <= ok <= len(nonblank) and rows >= 0
    assert all(e.startswith("line ") for e in errors)
    assert {int(e.split()[1].rstrip(":")) for e in errors} <= set(nonblank)
    if ok < len(nonblank):
        assert errors  # every refused line says why


def test_a_deeply_nested_line_is_reported_not_raised(tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text("[" * 100_000 + "\n", encoding="utf-8")
    ok, _, errors = validate_file(path, DEFAULT_LAYOUT, length_of)
    assert ok == 0 and errors[0].startswith("line 1:")
