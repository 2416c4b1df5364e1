import json

import pytest

from multistream.convert import ConvertError, Schedule, chat_to_timeline, convert_chat_file
from multistream.streams import DEFAULT_LAYOUT
from multistream.text import StreamTokenizer
from multistream.timeline import resolve_rows, validate_file

CHAT = {
    "id": "c1",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 12 times 3?"},
        {
            "role": "assistant",
            "reasoning_content": "Use the calculator.",
            "content": "Let me check.",
            "tool_calls": [{"id": "t", "type": "function",
                            "function": {"name": "calculator", "arguments": "{\"expression\": \"12*3\"}"}}],
        },
        {"role": "tool", "content": "36"},
        {"role": "assistant", "content": "It is 36."},
        {"role": "user", "content": "Thanks <|im_end|>"},
        {"role": "assistant", "content": "You're welcome."},
    ],
}


def rows_by_stream(timeline, tok):
    starts, lengths, _ = resolve_rows(timeline, tok.message_rows)
    return [(s.stream, s.text, st, n) for s, st, n in zip(timeline.segments, starts, lengths)]


def test_after_input_schedule(tokenizer):
    tok = StreamTokenizer.wrap(tokenizer)
    tl = chat_to_timeline(CHAT, Schedule("after-input"))
    assert tl.prefix == "You are terse." and tl.id == "c1"
    placed = rows_by_stream(tl, tok)
    assert [(s, t) for s, t, _, _ in placed] == [
        ("user", "What is 12 times 3?"),
        ("think", "Use the calculator."),
        ("answer", "Let me check."),
        ("call", 'calculator({"expression": "12*3"})'),
        ("tool", "36"),
        ("answer", "It is 36."),
        ("user", "Thanks <|im_end|>"),
        ("answer", "You're welcome."),
    ]
    for (_, _, prev_start, prev_n), (_, _, start, _) in zip(placed, placed[1:]):
        assert start == prev_start + prev_n + 1  # each part one row after the previous one's end token


def test_wait_k_starts_while_reading(tokenizer):
    tok = StreamTokenizer.wrap(tokenizer)
    placed = rows_by_stream(chat_to_timeline(CHAT, Schedule("wait-k", k=2)), tok)
    user_start = placed[0][2]
    assert placed[1][0] == "think" and placed[1][2] == user_start + 2  # k rows after the question starts
    user2 = placed[6]
    assert placed[7][2] == user2[2] + 2


def test_converted_file_validates(tmp_path, tokenizer):
    tok = StreamTokenizer.wrap(tokenizer)
    src, dst = tmp_path / "chat.jsonl", tmp_path / "tl.jsonl"
    bad = {"messages": [{"role": "robot", "content": "beep"}]}
    cut = '{"messages": [{"role": "user", "content": "Hi"} '
    src.write_text("\n".join([json.dumps(CHAT), "{broken", json.dumps(bad), json.dumps(CHAT), cut, '{"a": 1 2}']) + "\n")
    for kind in ("after-input", "wait-k"):
        n, errors = convert_chat_file(src, dst, Schedule(kind, 3))
        assert n == 2
        assert errors[0].startswith("line 2: invalid JSON") and errors[1].startswith("line 3: messages[0].role")
        assert errors[2].startswith("line 5: invalid JSON") and errors[2].endswith("(at the end of the line (cut short?))")
        assert errors[3] == "line 6: invalid JSON: Expecting ',' delimiter (column 9)"
        assert validate_file(dst, DEFAULT_LAYOUT, tok.message_rows)[::2] == (2, [])


@pytest.mark.parametrize(
    "record,message",
    [
        ({"messages": []}, "non-empty 'messages'"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "no assistant output"),
        ({"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]}, r"messages\[0\]: a user message with no content"),
        ({"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{x"}}]}]},
         "not valid JSON"),
    ],
)
def test_bad_records(record, message):
    with pytest.raises(ConvertError, match=message):
        chat_to_timeline(record, Schedule())


def test_schedule_checks():
    with pytest.raises(ConvertError):
        Schedule("wait-k", 0)
    with pytest.raises(ConvertError):
        Schedule("whenever")
