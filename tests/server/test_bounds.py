"""Every queue and buffer on the way from a client to the engine and back has a bound, per session and in all.

Each test makes one of them overflow and checks the clear error or close reason that follows;
without the bound, each would grow (the queue, the list, the backlog) for as long as the client
went on, and the test would fail.
"""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from multistream.engine.aio import _CLOSED, AsyncEngine
from multistream.engine.core import EngineConfig, EngineCore, EngineError
from multistream.engine.tools import ToolRegistry
from multistream.server import ServerLimits

from .conftest import EchoModel, WsClient
from .test_ws import wait_sessions


def run(coro, timeout: float = 60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


# -- the engine's command queue: per session --------------------------------------------------
def test_a_session_cannot_queue_commands_without_limit():
    core = EngineCore(EchoModel(), EngineConfig(max_pending_commands=8))
    a, b = core.open("a"), core.open("b")
    core.step()
    for _ in range(8):
        core.mute(a, "think")
    with pytest.raises(EngineError) as e:
        core.send(a, "user", "one more")
    assert e.value.code == "busy" and "max_pending_commands" in str(e.value)
    core.send(b, "user", "the other session is not held up")  # the bound is per session
    assert core.pending_commands(a) == 8 and core.pending_commands(b) == 1
    core.step()  # applied: room again
    assert core.pending_commands(a) == 0 and core.pending_commands(b) == 0
    core.send(a, "user", "hello")


# -- the engine's event queue: a reader that never reads ---------------------------------------
def test_a_reader_that_does_not_read_has_its_session_closed():
    core = EngineCore(EchoModel(repeats=0), EngineConfig(idle_rows=None, max_rows=100_000))

    async def main():
        async with AsyncEngine(core, max_events=50) as engine:
            sid = engine.open()
            engine.send(sid, "user", "say this again and again")  # the answer never ends
            q = engine._queues[sid]
            for _ in range(2000):
                if sid not in engine._queues:  # its `closed` event has been queued
                    break
                await asyncio.sleep(0.01)
            assert sid not in engine._queues, "the session was never closed"
            items = [q.get_nowait() for _ in range(q.qsize())]
            return items

    items = run(main())
    assert len(items) <= 50 + 3  # the events, then the error, `closed` and the end mark
    error, closed, end = items[-3:]
    assert end is _CLOSED
    assert error.type == "error" and error.code == "slow_reader" and "max_events" in error.text
    assert closed.type == "closed" and closed.code == "slow_reader"


# -- tool calls: how many at once, and how long a result ---------------------------------------
def test_tool_calls_at_once_are_bounded_per_session():
    started = []

    async def calculator(expression: str) -> str:  # a slow stand-in for the calculator the echo model calls
        started.append(expression)
        await asyncio.sleep(3)
        return f"slow {expression}"

    tools = ToolRegistry()
    tools.register("calculator", calculator)
    core = EngineCore(EchoModel(), EngineConfig(idle_rows=None))

    async def main():
        async with AsyncEngine(core, tools, max_tool_calls=1) as engine:
            sid = engine.open()
            engine.send(sid, "user", "1+1")
            results, calls = [], 0
            async for ev in engine.events(sid):
                if ev.type == "tool_call":
                    calls += 1
                    if calls == 1:
                        engine.send(sid, "user", "2+2")  # a second call while the first one runs
                if ev.type == "tool_result":
                    results.append(ev.text)
                    if len(results) == 2:
                        engine.close(sid)
            return results

    first, second = run(main())
    assert first.startswith("error: too many tool calls running") and "max 1" in first  # the second, refused at once
    assert second == "slow 1+1" and started == ["1+1"]


def test_no_new_call_runs_while_the_tool_stream_has_much_left_to_read():
    core = EngineCore(EchoModel(), EngineConfig(idle_rows=None))
    engine = AsyncEngine(core, ToolRegistry(max_result_chars=5))
    sid = core.open("s")
    core.send_tokens(sid, "tool", core.tok.encode_text("a long earlier result, still being read"))
    core.step()
    assert core.queued(sid, "tool") > 5
    assert engine._refusal(sid).startswith("error: ") and "still to be read" in engine._refusal(sid)
    for _ in range(core.queued(sid, "tool")):
        core.step()
    assert core.queued(sid, "tool") == 0 and engine._refusal(sid) is None


def test_a_tool_result_is_cut_at_max_result_chars():
    def endless():
        while True:
            yield "spam "

    tools = ToolRegistry(timeout=30, max_result_chars=100)
    tools.register("long", lambda: "x" * 1000)
    tools.register("endless", endless)

    async def result(call: str) -> str:
        return "".join([p async for p in tools.run(call)])

    for name in ("long", "endless"):
        text = run(result(f"{name}({{}})"))
        body, note = text[:100], text[100:]
        assert len(body) == 100 and note == " [cut: the result is longer than 100 characters]"


# -- the WebSocket backlog: empty messages are not free ----------------------------------------
def test_empty_inputs_count_against_the_backlog(live):
    server = live(delay=0.05, limits=ServerLimits(max_backlog_chars=10))  # the model reads one token per 50 ms
    c = WsClient(server.ws)
    c.open()
    for _ in range(30):
        c.send(type="input", text="")  # each one is an end token to read
    err = c.until(lambda m: m["type"] == "error")
    assert err["code"] == "backlog_full"
    c.close()


# -- HTTP: a streamed completion whose client does not read ------------------------------------
def test_a_streaming_client_that_does_not_read_gets_slow_client(live):
    server = live(repeats=0, limits=ServerLimits(max_outbox=20), sndbuf=4096)  # the answer never ends
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", server.port))
    body = json.dumps({"model": "echo", "stream": True, "messages": [{"role": "user", "content": "again and again"}]})
    sock.sendall(
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}".encode()
    )
    wait_sessions(server, 1)
    wait_sessions(server, 0, tries=1200)  # the buffers fill, the completion's queue reaches max_outbox: closed
    raw = b""
    while chunk := sock.recv(65536):  # now read what was left: the answer so far, then the error
        raw += chunk
    sock.close()
    events = [line[6:] for line in raw.decode("utf-8", "replace").splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["error"]["code"] == "slow_client"
    assert "again and again" in "".join(
        json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-2]
    )
