"""The wire protocol and the chat-message mapping as plain functions (no server)."""

from __future__ import annotations

import json

import pytest

from multistream.engine.session import Event
from multistream.server.app import _authorized, _same_origin
from multistream.server.limits import ServerLimits
from multistream.server.openai_compat import ChatRequest, _map_messages
from multistream.server.protocol import Input, Open, ProtocolError, from_event, parse_client


@pytest.mark.parametrize(
    "frame,code,words",
    [
        ("{", "bad_json", "not valid JSON"),
        ('"open"', "invalid_message", "JSON object"),
        ('{"type": "shout"}', "unknown_type", "'shout'"),
        ('{"type": "input"}', "invalid_message", "text"),
        ('{"type": "input", "text": 5}', "invalid_message", "text"),
        ('{"type": "open", "streams": {"answer": {"top_p": 0}}}', "invalid_message", "streams.answer.top_p"),
        ('{"type": "abort", "stream": "answer", "now": true}', "invalid_message", "now"),
        ('{"type": "input", "text": "a\\ud800"}', "invalid_message", "lone surrogate"),
    ],
)
def test_parse_client_names_what_is_wrong(frame, code, words):
    with pytest.raises(ProtocolError) as e:
        parse_client(frame)
    assert e.value.code == code and words in e.value.message


def test_parse_client_typed_messages_and_defaults():
    msg = parse_client(json.dumps({"type": "input", "text": "hi"}))
    assert isinstance(msg, Input) and msg.stream is None and msg.end and not msg.bulk  # (None: the user role's stream)
    msg = parse_client(
        json.dumps(
            {
                "type": "open",
                "prefix": "Be brief.",
                "streams": {"answer": {"temperature": 0.7, "seed": 3, "max_tokens": 9, "stop": ["\n"]}},
            }
        )
    )
    assert isinstance(msg, Open) and msg.tools
    params = msg.streams["answer"].to_params()
    assert params.sampling.temperature == 0.7 and params.sampling.seed == 3 and params.max_tokens == 9 and params.stop == ("\n",)


def test_events_become_wire_messages():
    tok = from_event(Event("s1", "token", 4, "answer", 17, "Par", False)).model_dump()
    assert tok == {"type": "token", "session": "s1", "row": 4, "stream": "answer", "text": "Par", "token_id": 17, "forced": False}
    call = from_event(Event("s1", "tool_call", 9, "call", text='calculator({"expression": "2+3"})'))
    assert call.name == "calculator" and call.arguments == {"expression": "2+3"}
    bad = from_event(Event("s1", "tool_call", 9, "call", text="not a call"))
    assert bad.name is None and bad.text == "not a call"
    assert from_event(Event("s1", "error", -1, "", text="engine step failed: boom")).code == "engine_error"


def test_chat_messages_map_onto_streams():
    req = ChatRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"id": "c", "type": "function", "function": {"name": "clock", "arguments": "{}"}}],
                },
                {"role": "tool", "tool_call_id": "c", "content": "12:00"},
                {"role": "user", "content": [{"type": "text", "text": "and "}, {"type": "text", "text": "now?"}]},
            ],
        }
    )
    prefix, sends = _map_messages(req, 1000)
    assert prefix == 'Be brief.\n\nEarlier in this conversation:\nuser: "hi"\nassistant: [called clock({})]'
    assert sends == [("tool", "12:00"), ("user", "and now?")]
    with pytest.raises(ProtocolError) as e:
        _map_messages(req, 4)
    assert e.value.code == "input_too_long" and e.value.message.startswith("messages[0].content has 9 characters")


def test_auth_origin_and_limits():
    assert _authorized(None, None, None)
    assert _authorized("Bearer k1", None, "k1") and _authorized(None, "k1", "k1")
    assert not _authorized("Bearer k2", None, "k1") and not _authorized(None, None, "k1") and not _authorized("k1", None, "k1")
    assert _same_origin(None, "127.0.0.1:8000", ())
    assert _same_origin("http://127.0.0.1:8000", "127.0.0.1:8000", ())
    assert not _same_origin("http://evil.example", "127.0.0.1:8000", ())
    assert _same_origin("http://evil.example", "127.0.0.1:8000", ("http://evil.example",))
    with pytest.raises(ValueError, match="max_rows"):
        ServerLimits(max_rows=0)
    assert "max_outbox" not in ServerLimits().public()
