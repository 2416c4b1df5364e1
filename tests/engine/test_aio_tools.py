import asyncio
import time

import pytest

from multistream.engine.aio import AsyncEngine
from multistream.engine.core import EngineConfig, EngineCore
from multistream.engine.tools import ToolRegistry, calculator, clock, demo_tools

from .test_scheduler import ScriptedModel


def engine_with(call_text: str, tools: ToolRegistry, max_rows: int = 100_000):
    model = ScriptedModel({"call": call_text, "answer": "working on it, please hold on"}, {"call": 2, "answer": 4})
    return AsyncEngine(EngineCore(model, EngineConfig(idle_rows=None, max_rows=max_rows)), tools)


async def collect(engine, sid, until, timeout=20.0):
    events = []

    async def read():
        async for ev in engine.events(sid):
            events.append(ev)
            if until(events):
                return

    await asyncio.wait_for(read(), timeout)
    return events


def tool_text(events):
    return "".join(e.text for e in events if e.stream == "tool" and e.type == "token")


def test_tool_result_streams_into_the_tool_stream_while_rows_advance():
    async def slow_count(n: int):
        for i in range(n):
            await asyncio.sleep(0.05)
            yield f"{i} "

    reg = ToolRegistry()
    reg.register("count", slow_count)

    async def main():
        async with engine_with('count({"n": 4})', reg) as engine:
            sid = engine.open("s")
            engine.send(sid, "user", "go")
            events = await collect(engine, sid, lambda evs: any(e.type == "tool_result" for e in evs)
                                   and any(e.stream == "tool" and e.type == "message_end" for e in evs))
            engine.close(sid)
            return events

    events = asyncio.run(main())
    call = next(e for e in events if e.type == "tool_call")
    assert call.text == 'count({"n": 4})'
    assert next(e for e in events if e.type == "tool_result").text == "0 1 2 3 "
    assert tool_text(events) == "0 1 2 3 "
    tool_rows = [e.row for e in events if e.stream == "tool" and e.type == "token"]
    # the model kept going while the tool ran: rows advanced between the call and each piece
    assert tool_rows[0] > call.row and tool_rows[-1] - tool_rows[0] >= 3
    assert any(e.stream == "answer" and call.row < e.row < tool_rows[-1] for e in events if e.type == "token")


@pytest.mark.parametrize(
    "call,expected",
    [
        ('boom({})', "error: tool 'boom' failed: RuntimeError: kaput"),
        ('sleepy({})', "error: tool 'sleepy' timed out after 0.2 s"),
        ('nothere({})', "error: unknown tool 'nothere'"),
        ('calculator({"expression": "__import__(1)"})', "error: tool 'calculator' failed: ValueError"),
        ("calculator(not json)", "error: tool call 'calculator': arguments are not valid JSON"),
    ],
)
def test_failing_hanging_unknown_tools_give_error_text_and_the_session_continues(call, expected):
    def boom():
        raise RuntimeError("kaput")

    async def sleepy():
        await asyncio.sleep(30)

    reg = demo_tools(timeout=0.2 if call.startswith("sleepy") else 10.0)  # a loaded machine may start a worker slowly
    reg.register("boom", boom)
    reg.register("sleepy", sleepy)

    async def main():
        async with engine_with(call, reg) as engine:
            sid = engine.open("s")
            engine.send(sid, "user", "go")
            events = await collect(engine, sid, lambda evs: any(e.type == "tool_result" for e in evs))
            later = await collect(engine, sid, lambda evs: len(evs) > 0 and evs[-1].row > events[-1].row + 3)
            engine.close(sid)
            return events, later

    events, later = asyncio.run(main())
    result = next(e for e in events if e.type == "tool_result").text
    assert result.startswith(expected)
    assert later  # the session kept stepping after the failure


def test_interrupt_via_async_send_enters_the_next_rows():
    async def main():
        model = ScriptedModel({"answer": "a long answer that goes on and on and on"}, {"answer": 2})
        async with AsyncEngine(EngineCore(model, EngineConfig(idle_rows=None))) as engine:
            sid = engine.open("s")
            engine.send(sid, "user", "hi")
            first = await collect(engine, sid, lambda evs: sum(e.stream == "answer" for e in evs) >= 3)
            engine.send(sid, "user", "stop!")
            more = await collect(engine, sid, lambda evs: any(e.stream == "user" and e.type == "message_end" for e in evs))
            engine.close(sid)
            async for _ in engine.events(sid):
                pass
            return first, more

    first, more = asyncio.run(main())
    user = [e for e in more if e.stream == "user" and e.type == "token"]
    assert "".join(e.text for e in user) == "stop!"
    # the loop keeps stepping while the client reacts, so the exact row is the core tests' business; here:
    # it entered after answer tokens we had seen, and the answer went on past it
    assert user[0].row >= max(e.row for e in first if e.stream == "answer")
    assert any(e.stream == "answer" and e.row > user[0].row for e in more)


def test_stop_closes_sessions_with_a_closed_event():
    async def main():
        model = ScriptedModel({}, {})
        engine = AsyncEngine(EngineCore(model, EngineConfig(idle_rows=None)))
        engine.start()
        sid = engine.open("s")
        engine.send(sid, "user", "hi")
        await asyncio.sleep(0.05)
        reader = asyncio.create_task(collect(engine, sid, lambda evs: evs[-1].type == "closed"))
        await engine.stop()
        return await reader

    assert asyncio.run(main())[-1].type == "closed"


def test_demo_tools():
    assert calculator("2 + 3 * (4 - 1)") == "11"
    assert calculator("sqrt(16) / 2") == "2"
    assert calculator("7 // 2 + 7 % 2 + 2 ** 3") == "12"
    # decimals without binary noise or an exponent, whole results as integers, huge ones as they are
    assert calculator("0.1 * 3") == "0.3" and calculator("2.3 + 1.1") == "3.4" and calculator("12.50 - 0.37") == "12.13"
    assert calculator("7 / 2") == "3.5" and calculator("2 / 3") == "0.6666666667" and calculator("1.5 * 4") == "6"
    assert calculator("0.1 + 0.2 - 0.3") == "0" and calculator("1 / 100000") == "0.00001"
    assert calculator("123456789012.75 + 0") == "123456789012.75" and calculator("-0.5 * 0") == "0"
    assert calculator("1e20 / 3") == str(int(1e20 / 3)) and calculator("-7 / 4") == "-1.75"  # (huge: not rounded)
    for bad in ("__import__('os')", "open('x')", "a + 1", "2 ** 1000", "(1).real"):
        with pytest.raises(ValueError):
            calculator(bad)
    now = clock()
    assert now.startswith(time.strftime("%Y-", time.gmtime())) and now.endswith("+0000")
    assert clock(utc_offset_hours=2).endswith("+0200")


def test_a_silent_session_waits_for_the_rest_of_a_message_then_runs_on():
    def user_rows(events):
        return [e.row for e in events if e.stream == "user" and e.type in ("token", "message_end")]

    async def main(wait: float):
        core = EngineCore(ScriptedModel({}, {}), EngineConfig(idle_rows=None, input_wait=wait))
        async with AsyncEngine(core) as engine:
            sid = engine.open("s")
            engine.send(sid, "user", "hello", end=False)
            await asyncio.sleep(0.3)
            rows_after_wait = core.sessions[sid].row
            engine.send(sid, "user", " world")  # the rest of the message, and its end
            events = await collect(engine, sid, lambda evs: any(e.type == "message_end" for e in evs))
            engine.close(sid)
            return user_rows(events), rows_after_wait

    rows, _ = asyncio.run(main(5.0))
    assert rows == list(range(rows[0], rows[0] + len(rows)))  # 300 ms apart, yet on consecutive rows: it waited
    rows, rows_after_wait = asyncio.run(main(0.05))
    n_hello = len(ScriptedModel({}, {}).tok.encode_text("hello"))
    assert rows_after_wait > n_hello  # the wait ended: rows ran on without the rest of the message
    assert rows_after_wait < 100  # one row per wait, not one per step
    assert rows[-1] - rows[0] > len(rows)
