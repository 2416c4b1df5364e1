import json
import subprocess
import sys

import pytest

from multistream.streams import DEFAULT_LAYOUT, Layout, LayoutError
from multistream.text import StreamTokenizer
from multistream.timeline import TimelineError, parse_timeline, resolve_rows, validate_file

GOOD = {
    "id": "ok",
    "streams": DEFAULT_LAYOUT.names,
    "prefix": "Be brief.",
    "segments": {
        "user": [{"id": "q", "text": "What is 2+3?", "start_row": 0}],
        "answer": [{"id": "a", "text": "5", "after": "q", "delay": 1}],
        "think": [{"text": "add", "after": "q", "anchor": "start", "delay": 2}],
    },
}


def length_of(text):  # one row per character, plus the end token
    return len(text) + 1


def write(tmp_path, lines):
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def test_schedule_resolution():
    tl = parse_timeline(GOOD, DEFAULT_LAYOUT)
    starts, lengths, rows = resolve_rows(tl, length_of)
    assert starts == [0, 14, 2]  # user 0..12 (12 chars + end), answer one row after its end + delay, think start + 2
    assert lengths == [13, 2, 4]
    assert rows == 17  # last segment ends at row 15, plus one trailing row


def with_changes(**changes):
    obj = json.loads(json.dumps(GOOD))
    for key, value in changes.items():
        obj[key] = value
    return obj


BAD_CASES = [
    ("{not json", "invalid JSON"),
    (with_changes(streams=["user", "answr"]), "streams[1]: unknown stream 'answr'"),
    (with_changes(segments={"chat": [{"text": "x", "start_row": 0}]}), "segments.chat: unknown stream 'chat'"),
    (with_changes(segments={"user": [{"text": "x", "start_row": -2}]}), "segments.user[0].start_row: negative row -2"),
    (with_changes(segments={"answer": [{"text": "x", "start_row": 0}]}), "segments.answer[0].start_row: an output stream is silent"),
    (with_changes(segments={"user": [{"text": "x", "start_row": 0}, {"text": "y", "start_row": 1}]}), "segments.user[1]: overlaps segments.user[0]"),
    (with_changes(segments={"user": [{"text": "x" * 50, "start_row": 0}]}), "rows: timeline needs 52 rows, over the limit of 40"),
    (with_changes(streams=[{"name": "answer", "kind": "input"}]), "streams[0].kind: stream 'answer' is 'output' in the layout, marked 'input'"),
    (with_changes(segments={"user": [{"text": "x", "after": "nope"}]}), "segments.user[0].after: no segment has id 'nope'"),
    (with_changes(segments={"user": [{"text": 3, "start_row": 0}]}), "segments.user[0].text: required: a string"),
    (with_changes(segments={"user": [{"text": "x", "start_row": 0, "after": "q"}]}), "give exactly one of"),
    (with_changes(segments={"user": [{"text": "x", "start_row": 0, "delay": -1}]}), "segments.user[0].delay: negative delay"),
    (with_changes(colour="red"), "colour: unknown field"),
    (with_changes(segments={"user": [{"text": "x", "start_row": 0, "spread": 0.5}]}), "segments.user[0].spread: must be at least 1"),
    (with_changes(segments={"user": [{"text": "x", "start_row": 0, "spread": "2"}]}), "segments.user[0].spread: must be a number"),
    (with_changes(segments={"answer": [{"text": "x", "start_row": 1, "spread": 2}]}), "segments.answer[0].spread: only input streams"),
    ([1, 2], "a timeline must be a JSON object"),
    (with_changes(segments={"user": [{"id": "a", "text": "x", "after": "b"}, {"id": "b", "text": "y", "after": "a"}]}), "schedule has a cycle"),
]


@pytest.mark.parametrize("bad,message", BAD_CASES, ids=[m[:30] for _, m in BAD_CASES])
def test_validate_reports_each_error_with_its_line(tmp_path, bad, message):
    path = write(tmp_path, [GOOD, GOOD, bad, GOOD])
    n_ok, _, errors = validate_file(path, DEFAULT_LAYOUT, length_of, max_rows=40)
    assert n_ok == 3
    assert len(errors) >= 1 and all(e.startswith("line 3: ") for e in errors)
    assert any(message in e for e in errors), errors


def test_a_spread_segment_leaves_rows_empty_between_its_tokens(tokenizer):
    from multistream.rows import timeline_to_grid

    tok = StreamTokenizer.wrap(tokenizer)
    obj = with_changes(segments={"tool": [{"id": "d", "text": "abcdefgh", "start_row": 2, "spread": 2.5}],
                                 "answer": [{"text": "ok", "after": "d", "delay": 1}]})
    tl = parse_timeline(obj, DEFAULT_LAYOUT)
    assert parse_timeline(json.loads(tl.to_json()), DEFAULT_LAYOUT).segments[0].spread == 2.5  # round trip
    ids = tok.encode_message("abcdefgh")
    starts, lengths, _ = resolve_rows(tl, tok.message_rows)
    assert lengths[0] == int((len(ids) - 1) * 2.5) + 1 and starts[1] == 2 + lengths[0] + 1
    column = timeline_to_grid(tl, tok, DEFAULT_LAYOUT).tokens[:, DEFAULT_LAYOUT.index("tool")]
    spoken = (column != tok.silence_id).nonzero().flatten().tolist()
    assert spoken == [2 + int(i * 2.5) for i in range(len(ids))]  # token i at start + floor(i * spread)
    assert column[spoken].tolist() == ids


def test_validate_good_file(tmp_path):
    n_ok, rows, errors = validate_file(write(tmp_path, [GOOD, "", GOOD]), DEFAULT_LAYOUT, length_of)
    assert (n_ok, rows, errors) == (2, 34, [])


def test_timeline_round_trips_through_json():
    tl = parse_timeline(GOOD, DEFAULT_LAYOUT)
    again = parse_timeline(json.loads(tl.to_json()), DEFAULT_LAYOUT)
    assert again == tl


def test_layouts_are_validated_data():
    layout = Layout.parse("user:input,doc:input:untrusted,answer:output,notes:output")
    assert Layout.from_list(layout.to_list()) == layout
    assert [s.name for s in layout.outputs] == ["answer", "notes"] and layout["doc"].trust == "untrusted"
    with pytest.raises(LayoutError, match="duplicate"):
        Layout.parse("a:input,a:output")
    with pytest.raises(LayoutError, match="kind must be"):
        Layout.parse("a:sideways")
    with pytest.raises(LayoutError, match="unknown field"):
        Layout.from_list([{"name": "a", "kind": "input", "colour": 1}])


@pytest.mark.slow  # two command-line processes
def test_validate_cli_exit_codes(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path / "tok")
    good = write(tmp_path, [GOOD])
    cli = [sys.executable, "-m", "multistream.cli", "validate", "--model", str(tmp_path / "tok")]
    ok = subprocess.run(cli + [str(good)], capture_output=True, text=True)
    assert ok.returncode == 0 and "1 timeline(s) valid" in ok.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(GOOD) + "\n{oops\n")
    res = subprocess.run(cli + [str(bad)], capture_output=True, text=True)
    assert res.returncode == 1 and "line 2: invalid JSON" in res.stderr


def test_row_counts_follow_the_tokenizer(tokenizer):
    tok = StreamTokenizer.wrap(tokenizer)
    tl = parse_timeline(GOOD, DEFAULT_LAYOUT)
    starts, lengths, _ = resolve_rows(tl, tok.message_rows)
    assert lengths[0] == len(tok.encode_text("What is 2+3?")) + 1
    with pytest.raises(TimelineError):
        resolve_rows(tl, tok.message_rows, max_rows=3)
