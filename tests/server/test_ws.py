"""The WebSocket protocol against the real server (uvicorn on a loopback port) and an echoing mock model."""

from __future__ import annotations

import asyncio
import json
import random
import time
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidStatus

from multistream.server import ServerLimits

from .conftest import RawWs, WsClient


def is_end(stream):
    return lambda m: m["type"] == "message_end" and m.get("stream") == stream


def health(server) -> dict:
    with urllib.request.urlopen(server.http + "/health", timeout=10) as r:
        return json.loads(r.read())


def wait_sessions(server, n: int, tries: int = 200) -> None:
    for _ in range(tries):
        if health(server)["sessions"] == n:
            return
        time.sleep(0.05)
    raise AssertionError(f"expected {n} open sessions, /health says {health(server)['sessions']}")


def test_open_question_answer_interrupt_abort_close(live):
    server = live(repeats=0, delay=0.005, think=True)  # the answer repeats the last question until stopped
    c = WsClient(server.ws)
    opened = c.open(prefix="You are a helpful assistant.", streams={"answer": {"temperature": 0}})
    assert opened["type"] == "opened" and opened["model"] == "echo"
    assert [s["name"] for s in opened["layout"]] == ["system", "user", "tool", "think", "answer", "call"]
    assert opened["tools"] == ["calculator", "clock"] and opened["limits"]["max_rows"] == 4096
    sid = opened["session"]

    c.send(type="input", text="alpha question")
    first = c.until(lambda m: m["type"] == "token" and m["stream"] == "answer")
    assert first["forced"] is False and first["session"] == sid
    # interrupt while the answer is still being written
    c.send(type="input", text="beta")
    interrupt_end = c.until(lambda m: is_end("user")(m) and m["text"] == "beta")
    assert c.until(lambda m: m["type"] == "token" and m["stream"] == "answer")  # answer tokens kept coming meanwhile
    mark = len(c.seen)
    c.until(lambda m: "betabeta" in c.text("answer", after=mark))
    assert interrupt_end["row"] > first["row"]
    answer_rows = [m["row"] for m in c.seen if m["type"] == "token" and m["stream"] == "answer"]
    assert any(r <= interrupt_end["row"] for r in answer_rows) and any(r > interrupt_end["row"] + 1 for r in answer_rows)
    assert "alpha question".startswith(first["text"]) and c.text("answer").startswith(first["text"])

    c.send(type="abort")
    end = c.until(is_end("answer"))
    assert end["forced"] and "beta" in end["text"]
    # after the abort the outputs stay silent: by the time a second message after "gamma" has been read
    # (events come in row order), the echo would have started answering "gamma"
    c.send(type="input", text="gamma")
    c.send(type="input", text="delta delta delta")
    later = c.until(lambda m: is_end("user")(m) and m["text"] == "delta delta delta")
    assert later["row"] > end["row"] + 3
    assert not [m for m in c.seen if m["type"] == "token" and m["stream"] == "answer" and m["row"] > end["row"]]

    c.send(type="close")
    closed = c.until(lambda m: m["type"] == "closed")
    assert closed["reason"] == "closed by client" and closed["session"] == sid
    with pytest.raises(ConnectionClosedOK):
        c.recv(timeout=10)
    assert all(m.get("session") in (sid, None) for m in c.seen)
    wait_sessions(server, 0)


def test_tool_call_and_result_and_one_stream_abort(live):
    server = live(think=True)
    c = WsClient(server.ws)
    c.open()
    c.send(type="input", text="2+3")
    call = c.until(lambda m: m["type"] == "tool_call")
    assert call["name"] == "calculator" and call["arguments"] == {"expression": "2+3"} and call["stream"] == "call"
    result = c.until(lambda m: m["type"] == "tool_result")
    assert result["text"] == "5" and result["stream"] == "tool"
    tool_end = c.until(is_end("tool"))  # the result is read into the tool stream, row by row
    assert tool_end["text"] == "5" and tool_end["forced"] and tool_end["row"] > call["row"]
    # abort one stream: think is cut, answer goes on
    c.send(type="input", text="a long enough question for both")
    c.until(lambda m: m["type"] == "token" and m["stream"] == "think" and m["row"] > tool_end["row"])
    c.send(type="abort", stream="think")
    think_end = c.until(lambda m: is_end("think")(m) and m["row"] > tool_end["row"])
    answer_end = c.until(lambda m: is_end("answer")(m) and m["row"] > tool_end["row"])
    assert answer_end["text"] == "a long enough question for both" and not answer_end["forced"]
    assert think_end["row"] <= answer_end["row"]
    c.close()


def test_malformed_frames_get_errors_and_a_parallel_session_keeps_working(live):
    limits = ServerLimits(max_input_chars=200, max_message_bytes=2000)
    server = live(delay=0.002, limits=limits)
    good = WsClient(server.ws)
    good.open()
    good.send(type="input", text="first question")

    bad = WsClient(server.ws)
    cases = [
        ("{not json", "bad_json"),
        (json.dumps([1, 2]), "invalid_message"),
        (json.dumps({"type": "launch"}), "unknown_type"),
        (json.dumps({"text": "no type"}), "unknown_type"),
        (json.dumps({"type": "input", "text": "before open"}), "no_session"),
        (json.dumps({"type": "open", "layout": ["user", "answer"]}), "layout_mismatch"),
        (json.dumps({"type": "open", "streams": {"user": {}}}), "unknown_stream"),
        (json.dumps({"type": "open", "streams": {"answer": {"temperature": -1}}}), "invalid_message"),
        (json.dumps({"type": "open"}), None),
        (json.dumps({"type": "open"}), "already_open"),
        (json.dumps({"type": "input", "stream": "nowhere", "text": "x"}), "unknown_stream"),
        (json.dumps({"type": "input", "stream": "answer", "text": "x"}), "unknown_stream"),
        (json.dumps({"type": "input"}), "invalid_message"),
        (json.dumps({"type": "input", "text": "x", "colour": "red"}), "invalid_message"),
        (json.dumps({"type": "abort", "stream": "user"}), "unknown_stream"),
        (json.dumps({"type": "input", "text": "x" * 201}), "input_too_long"),
        (json.dumps({"type": "input", "text": "y" * 3000}), "message_too_large"),
        (b"\x00\x01binary", "binary_frame"),
    ]
    for frame, code in cases:
        bad.send_raw(frame)
        reply = bad.until(lambda m: m["type"] in ("error", "opened"))
        if code is None:
            assert reply["type"] == "opened"
        else:
            assert reply["type"] == "error" and reply["code"] == code, (frame, reply)
            assert reply["message"]
    # still usable after all that, and nothing accepted was lost
    bad.send(type="input", text="still here")
    assert bad.until(is_end("answer"))["text"] == "still here"

    # an abrupt disconnect in the middle of an answer
    rude = WsClient(server.ws)
    rude.open()
    rude.send(type="input", text="going away now")
    rude.until(lambda m: m["type"] == "token" and m["stream"] == "answer")
    rude.conn.socket.close()  # no close frame

    # a frame above the transport's limit: a clean close (1009), not a crash
    huge = WsClient(server.ws)
    huge.open()
    huge.send_raw("z" * (17 * 1024 * 1024))
    with pytest.raises(ConnectionClosed) as info:
        huge.until(lambda m: False, timeout=20)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009

    assert good.until(is_end("answer"))["text"] == "first question"
    good.send(type="input", text="second question")
    assert good.until(lambda m: is_end("answer")(m) and m["text"] == "second question")
    assert not [m for m in good.seen if m["type"] == "error"]
    bad.close()
    good.close()
    wait_sessions(server, 0)


def test_twenty_concurrent_sessions_get_their_own_answers(live):
    from websockets.asyncio.client import connect

    server = live(delay=0.002)
    rng = random.Random(5)
    words = ["paris", "capital", "france", "noon", "meeting", "answer", "tool", "hello", "world", "document"]
    questions = [f"q{i} " + " ".join(rng.choice(words) for _ in range(rng.randint(2, 6))) for i in range(20)]
    assert len(set(questions)) == 20

    async def one(q: str):
        async with connect(server.ws, open_timeout=10) as ws:
            await ws.send(json.dumps({"type": "open"}))
            opened = json.loads(await asyncio.wait_for(ws.recv(), 10))
            await ws.send(json.dumps({"type": "input", "text": q}))
            seen = []
            for _ in range(10_000):
                m = json.loads(await asyncio.wait_for(ws.recv(), 30))
                seen.append(m)
                if m["type"] == "message_end" and m["stream"] == "answer":
                    break
            await ws.send(json.dumps({"type": "close"}))
            for _ in range(10_000):
                m = json.loads(await asyncio.wait_for(ws.recv(), 30))
                seen.append(m)
                if m["type"] == "closed":
                    break
            return opened["session"], seen

    async def main():
        return await asyncio.gather(*(one(q) for q in questions))

    results = asyncio.run(main())
    sids = [sid for sid, _ in results]
    assert len(set(sids)) == 20
    for q, (sid, seen) in zip(questions, results):
        assert {m["session"] for m in seen} == {sid}
        answer = "".join(m["text"] for m in seen if m["type"] == "token" and m["stream"] == "answer")
        user = "".join(m["text"] for m in seen if m["type"] == "token" and m["stream"] == "user")
        assert answer == q and user == q
        assert seen[-1]["type"] == "closed"
    wait_sessions(server, 0)


def test_session_limit_then_a_free_place(live):
    server = live(limits=ServerLimits(max_sessions=2))
    a, b, c = WsClient(server.ws), WsClient(server.ws), WsClient(server.ws)
    assert a.open()["type"] == "opened" and b.open()["type"] == "opened"
    refused = c.open()
    assert refused["type"] == "error" and refused["code"] == "too_many_sessions" and "max_sessions" in refused["message"]
    a.send(type="close")
    a.until(lambda m: m["type"] == "closed")
    wait_sessions(server, 1)
    assert c.open()["type"] == "opened"  # the same connection may try again
    c.send(type="input", text="hello")
    assert c.until(is_end("answer"))["text"] == "hello"


def test_row_limit_and_idle_timeout_close_sessions_with_a_reason(live):
    server = live(repeats=0, limits=ServerLimits(max_rows=40, idle_timeout_s=0.5))
    c = WsClient(server.ws)
    c.open()
    c.send(type="input", text="talk forever")
    closed = c.until(lambda m: m["type"] == "closed")
    assert closed["reason"] == "row_limit" and closed["row"] <= 40

    idle = WsClient(server.ws)
    idle.open()
    err = idle.until(lambda m: m["type"] == "error")
    assert err["code"] == "idle_timeout"
    assert idle.until(lambda m: m["type"] == "closed")["reason"] == "idle_timeout"
    with pytest.raises(ConnectionClosedOK):
        idle.recv(timeout=10)


def test_backlog_limit_ping_and_mute(live):
    server = live(delay=0.05, limits=ServerLimits(max_backlog_chars=100))
    c = WsClient(server.ws)
    c.send(type="ping")
    assert c.recv() == {"type": "pong"}
    c.open()
    c.send(type="input", text="a" * 60)  # read one token per row: the 60 characters take many rows
    c.send(type="input", text="b" * 60)
    err = c.until(lambda m: m["type"] == "error")
    assert err["code"] == "backlog_full" and "max_backlog_chars" in err["message"]
    assert c.until(lambda m: m["type"] == "token" and m["stream"] == "user")["text"].startswith("a")
    c.send(type="mute", stream="answer")
    c.send(type="ping")
    assert c.until(lambda m: m["type"] in ("pong", "error"))["type"] == "pong"


def test_api_key_refuses_websockets_without_it(live):
    server = live(api_key="sekret")
    with pytest.raises(InvalidStatus) as info:
        WsClient(server.ws)
    assert info.value.response.status_code == 401
    with pytest.raises(InvalidStatus):
        WsClient(server.ws + "?api_key=wrong")
    for c in (
        WsClient(server.ws + "?api_key=sekret"),
        WsClient(server.ws, additional_headers={"Authorization": "Bearer sekret"}),
    ):
        assert c.open()["type"] == "opened"
        c.send(type="input", text="with key")
        assert c.until(is_end("answer"))["text"] == "with key"
        c.close()


def test_websockets_from_another_web_origin_are_refused(live):
    server = live()
    with pytest.raises(InvalidStatus) as info:
        WsClient(server.ws, origin="http://evil.example")
    assert info.value.response.status_code == 403
    own = WsClient(server.ws, origin=f"http://127.0.0.1:{server.port}")  # the server's own page
    assert own.open()["type"] == "opened"


def test_a_client_that_stops_reading_loses_only_its_own_session(live):
    limits = ServerLimits(max_outbox=50, max_rows=200_000)
    server = live(repeats=0, limits=limits, max_rows=200_000, sndbuf=8192)
    lazy = RawWs(server.port)  # small buffers, and it reads nothing until told to
    lazy.send(type="open")
    lazy.send(type="input", text="say this again and again")
    good = WsClient(server.ws)
    good.open()
    good.send(type="input", text="hello there")
    good.until(lambda m: good.text("answer").count("hello there") >= 3)
    good.send(type="abort")
    good.until(is_end("answer"))
    wait_sessions(server, 1, tries=1200)  # the socket buffers fill, the outbox grows, the server gives up on it
    good.send(type="input", text="still served")
    assert good.until(lambda m: is_end("user")(m))["text"] == "still served"
    seen = list(lazy.messages())  # now read what was left for the lazy one: its answer, then goodbye
    assert seen[0]["type"] == "opened" and seen[-1] == {**seen[-1], "type": "closed", "reason": "slow_client"}
    assert "say this again and again" in "".join(m["text"] for m in seen if m["type"] == "token" and m["stream"] == "answer")
