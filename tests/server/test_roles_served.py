"""The servers find the user, answer, call and tool streams by their roles: a model whose streams have other
names is served alike (WebSocket and OpenAI-compatible HTTP)."""

from __future__ import annotations

from multistream.streams import Layout

from .conftest import WsClient
from .test_openai import client

RENAMED = Layout.parse("sys:input,person:input:trusted:user,docs:input:untrusted:tool,"
                       "scratch:output:trusted:think,reply:output:trusted:answer,act:output:trusted:call")


def test_websocket_input_goes_to_the_user_role_and_tools_follow_the_roles(live):
    server = live(layout=RENAMED)
    c = WsClient(server.ws)
    opened = c.open()
    assert {s["name"]: s.get("role") for s in opened["layout"]} == {"sys": None, "person": "user", "docs": "tool",
                                                               "scratch": "think", "reply": "answer", "act": "call"}
    c.send(type="input", text="hello there")  # no stream named: the user role's stream
    reply = c.until(lambda m: m["type"] == "message_end" and m.get("stream") == "reply")
    assert reply["text"] == "hello there"
    c.send(type="input", text="2+3")
    call = c.until(lambda m: m["type"] == "tool_call")
    result = c.until(lambda m: m["type"] == "tool_result")
    assert (call["stream"], result["stream"], result["text"]) == ("act", "docs", "5")
    c.send(type="input", stream="user", text="x")  # a name this layout does not have
    err = c.until(lambda m: m["type"] == "error")
    assert "user" in err["message"]
    c.close()


def test_http_completion_reads_the_answer_role(live):
    server = live(layout=RENAMED, think=True)
    r = client(server).chat.completions.create(model="echo", messages=[{"role": "user", "content": "Where is Graz?"}])
    assert r.choices[0].message.content == "Where is Graz?"
    assert r.choices[0].message.reasoning_content.startswith("len=")  # the think role's stream


def test_a_model_without_tool_streams_offers_no_tools(live):
    server = live(layout=Layout.parse("user:input,answer:output"))
    c = WsClient(server.ws)
    assert c.open()["tools"] == []
    c.close()
