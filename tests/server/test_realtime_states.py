"""The Realtime session's response bookkeeping, driven by scripted engine events on a stand-in hub (no model, no
socket): responses the model opens unasked, a late token after a cancel, a call streamed piece by piece."""

from __future__ import annotations

import asyncio
import contextlib
import json
from types import SimpleNamespace

from multistream.engine.session import Event
from multistream.server import ServerLimits
from multistream.server.realtime import RealtimeSession
from multistream.streams import DEFAULT_LAYOUT

SID = "rt-1"


class FakeHub:
    """What a :class:`RealtimeSession` uses of the hub; it records the commands and never runs a model."""

    def __init__(self):
        self.layout, self.limits, self.model_name, self.tools = DEFAULT_LAYOUT, ServerLimits(), "fake", ["calculator"]
        self.sessions, self.closing, self.calls = {}, False, []
        self.forever = asyncio.Event()

    def open(self, kind, peer, prefix="", params=None, tools=True):
        self.calls.append(("open", prefix, tools))
        self.sessions[SID] = True
        return SID

    def send(self, sid, stream, text, bulk=False, end=True):
        self.calls.append(("send", stream, text))

    def abort(self, sid, stream=None):
        self.calls.append(("abort",))

    def resume(self, sid, stream=None):
        self.calls.append(("resume",))

    def close(self, sid, reason=None):
        self.calls.append(("close", reason))

    def settled(self, sid):
        return False

    async def events(self, sid):
        await self.forever.wait()  # the test feeds events itself
        yield

    @contextlib.contextmanager
    def handler(self):
        yield


def session() -> tuple[RealtimeSession, FakeHub]:
    hub = FakeHub()
    s = RealtimeSession(hub, SimpleNamespace(client=SimpleNamespace(host="test", port=1)))
    return s, hub


def drain(s: RealtimeSession) -> list[dict]:
    out = []
    while not s.out.empty():
        out.append(s.out.get_nowait())
    return out


def ev(kind: str, stream: str, text: str = "", row: int = 0, forced: bool = False) -> Event:
    return Event(SID, kind, row, stream, text=text, forced=forced)


def read(s: RealtimeSession, stream: str, text: str) -> None:
    """The model reads a message that was sent."""
    s._on_event(ev("token", stream, text, forced=True))
    s._on_event(ev("message_end", stream, text, forced=True))


def say(s: RealtimeSession, stream: str, *pieces: str, end: bool = True) -> None:
    for p in pieces:
        s._on_event(ev("token", stream, p))
    if end:
        s._on_event(ev("message_end", stream, "".join(pieces)))


def client(s: RealtimeSession, **event) -> None:
    s.handle(json.dumps(event))


def user(text: str) -> dict:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def types(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


def test_a_response_the_model_opens_unasked_answers_the_next_response_create():
    async def go():
        s, hub = session()
        client(s, type="session.update", session={"multistream": {"live_input": False}})
        client(s, type="conversation.item.create", item=user("hi"))
        client(s, type="response.create")
        read(s, "user", "hi")
        say(s, "answer", "Hel", "lo")
        out = drain(s)
        assert types(out).count("response.done") == 1 and out[-1]["response"]["status"] == "completed"

        say(s, "answer", "And", end=False)  # the model goes on unasked: the server opens a response
        out = drain(s)
        assert types(out)[0] == "response.created" and out[-1]["delta"] == "And"
        auto = out[0]["response"]["id"]
        client(s, type="conversation.item.create", item=user("more"))  # waits: live input is off
        assert ("send", "user", "more") not in hub.calls
        client(s, type="response.create")  # answered by the running response: its items go now
        assert hub.calls[-1] == ("send", "user", "more")
        out = drain(s)
        assert "response.created" not in types(out) and "error" not in types(out)
        s._on_event(ev("message_end", "answer", "And"))
        read(s, "user", "more")
        say(s, "answer", "ok")
        done = [e for e in drain(s) if e["type"] == "response.done"]
        assert [d["response"]["id"] for d in done] == [auto]
        assert [i["content"][0]["text"] for i in done[0]["response"]["output"]] == ["And", "ok"]
        client(s, type="response.create")  # now one is asked for again: a new response
        assert types(drain(s))[0] == "response.created"

    asyncio.run(go())


def test_after_a_cancel_the_old_message_is_dropped_and_outputs_resume_once_the_new_input_is_read():
    async def go():
        s, hub = session()
        client(s, type="conversation.item.create", item=user("alpha"))
        client(s, type="response.create")
        read(s, "user", "alpha")
        say(s, "answer", "al", "ph", end=False)
        client(s, type="response.cancel")
        out = drain(s)
        assert out[-1]["type"] == "response.done" and out[-1]["response"]["status"] == "cancelled"
        assert ("abort",) in hub.calls

        client(s, type="conversation.item.create", item=user("beta"))
        client(s, type="response.create")
        assert hub.calls[-1] == ("send", "user", "beta") and ("resume",) not in hub.calls  # not before beta is read
        say(s, "answer", "a", end=False)  # the old message's last token and its forced end, late: dropped
        s._on_event(ev("message_end", "answer", "alpha", forced=True))
        s._on_event(ev("token", "think", "x"))  # a new message sampled before the abort took effect: dropped too
        s._on_event(ev("message_end", "think", "x"))
        assert "response.output_text.delta" not in types(drain(s))
        read(s, "user", "beta")
        assert hub.calls[-1] == ("resume",)
        say(s, "answer", "be", "ta")
        out = drain(s)
        assert "".join(e["delta"] for e in out if e["type"] == "response.output_text.delta") == "beta"
        assert out[-1]["type"] == "response.done" and out[-1]["response"]["status"] == "completed"

    asyncio.run(go())


def test_a_call_is_streamed_as_its_arguments_come_and_a_server_tool_waits_for_its_result():
    async def go():
        s, hub = session()
        client(s, type="session.update", session={"multistream": {"server_tools": ["calculator"]}})
        client(s, type="conversation.item.create", item=user("weather and a sum"))
        client(s, type="response.create")
        assert hub.calls[0] == ("open", "", frozenset({"calculator"}))
        read(s, "user", "weather and a sum")
        say(s, "call", "get_", "weather", '({"ci', 'ty": "Gr', 'az"}', ")")
        out = drain(s)
        added = next(e for e in out if e["type"] == "response.output_item.added")
        assert added["item"]["name"] == "get_weather" and added["item"]["type"] == "function_call"
        pieces = [e["delta"] for e in out if e["type"] == "response.function_call_arguments.delta"]
        done = next(e for e in out if e["type"] == "response.function_call_arguments.done")
        assert "".join(pieces) == done["arguments"] == '{"city": "Graz"}' and len(pieces) > 1
        assert out[-1]["type"] == "response.done"  # a client's call ends the response: the client answers it

        client(s, type="conversation.item.create", item=user("and 2+3?"))
        client(s, type="response.create")
        read(s, "user", "and 2+3?")
        say(s, "call", 'calculator({"expression": "2+3"})')  # the server runs it: no item, and the response waits
        s._on_event(ev("tool_call", "call", 'calculator({"expression": "2+3"})'))
        out = drain(s)
        assert "response.output_item.added" not in types(out) and "response.done" not in types(out)
        assert out[-1]["type"] == "multistream.tool.call" and out[-1]["name"] == "calculator"
        read(s, "tool", "5")
        say(s, "answer", "5")
        out = drain(s)
        assert out[-1]["type"] == "response.done" and out[-1]["response"]["output"][0]["content"][0]["text"] == "5"

    asyncio.run(go())
