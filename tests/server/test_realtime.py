"""``/v1/realtime`` driven by the official ``openai`` SDK's realtime client against the real server (uvicorn on a
loopback port) and the echoing mock model: questions, function calls, cancel, input mid-answer, bad events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import openai
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, InvalidStatus

from multistream.server import ServerLimits
from multistream.server.realtime import call_arguments, tools_prompt
from multistream.server.realtime_events import CLIENT_TYPES, UNSUPPORTED_TYPES, EventError, FunctionInfo, parse_client

from .conftest import LiveServer, WsClient, echo_app
from .test_ws import health, wait_sessions

CALCULATOR = {
    "type": "function",
    "name": "calculator",
    "description": "Arithmetic.",
    "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]},
}


def client(server, key: str = "none", websocket: bool = False) -> openai.AsyncOpenAI:
    """The SDK pointed at the local server: by its base URL, or by ``websocket_base_url``."""
    if websocket:
        return openai.AsyncOpenAI(api_key=key, max_retries=0, websocket_base_url=f"ws://127.0.0.1:{server.port}/v1")
    return openai.AsyncOpenAI(base_url=server.http + "/v1", api_key=key, max_retries=0)


async def until(conn, pred, seen: list | None = None, timeout: float = 20.0):
    """Receive events until ``pred(event)``; returns that event (every event is appended to ``seen``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        ev = await asyncio.wait_for(conn.recv(), max(0.01, deadline - loop.time()))
        if seen is not None:
            seen.append(ev)
        if pred(ev):
            return ev


def of(kind: str):
    return lambda ev: ev.type == kind


def deltas(seen: list, response_id: str | None = None) -> str:
    return "".join(ev.delta for ev in seen if ev.type == "response.output_text.delta"
                   and (response_id is None or ev.response_id == response_id))


def user(text: str) -> dict:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def test_a_question_is_answered_by_deltas(live):
    server = live(think=True)

    async def go():
        async with client(server).realtime.connect(model="echo") as conn:
            created = await until(conn, of("session.created"))
            assert created.session.model == "echo" and created.session.output_modalities == ["text"]
            assert created.session.multistream["live_input"] is True
            await conn.session.update(session={"type": "realtime", "instructions": "You are a helpful assistant."})
            updated = await until(conn, of("session.updated"))
            assert updated.session.instructions == "You are a helpful assistant."
            await conn.conversation.item.create(item=user("What is the capital of France?"))
            added = await until(conn, of("conversation.item.added"))
            assert added.item.role == "user" and added.item.content[0].text == "What is the capital of France?"
            assert (await until(conn, of("conversation.item.done"))).item.id == added.item.id
            await conn.response.create()
            seen: list = []
            done = await until(conn, of("response.done"), seen)
            kinds = [ev.type for ev in seen]
            assert kinds[0] == "response.created" and kinds[-1] == "response.done"
            for a, b in [("response.output_item.added", "response.content_part.added"),
                         ("response.content_part.added", "response.output_text.delta"),
                         ("response.output_text.delta", "response.output_text.done"),
                         ("response.output_text.done", "response.content_part.done"),
                         ("response.content_part.done", "response.output_item.done")]:
                assert kinds.index(a) < kinds.index(b), (a, b, kinds)
            assert kinds.count("response.output_text.delta") > 2  # token by token
            assert deltas(seen) == "What is the capital of France?"
            text_done = next(ev for ev in seen if ev.type == "response.output_text.done")
            assert text_done.text == "What is the capital of France?"
            assert done.response.status == "completed" and done.response.id == seen[0].response.id
            [item] = done.response.output
            assert item.type == "message" and item.role == "assistant" and item.status == "completed"
            assert item.content[0].type == "output_text" and item.content[0].text == "What is the capital of France?"
            assert done.response.usage.output_tokens > done.response.usage.input_tokens > 0
            assert not any(ev.type.startswith("multistream.") for ev in seen)  # no side streams unless asked for

            # a second turn in the same session
            await conn.conversation.item.create(item=user("hello world"))
            await conn.response.create()
            seen = []
            done = await until(conn, of("response.done"), seen)
            assert deltas(seen) == "hello world" and done.response.status == "completed"

    asyncio.run(go())
    wait_sessions(server, 0)


def test_a_function_call_answered_with_its_output(live):
    server = live(results=True)

    async def go():
        async with client(server, websocket=True).realtime.connect(model="echo") as conn:
            await conn.session.update(session={"type": "realtime", "tools": [CALCULATOR]})
            await until(conn, of("session.updated"))
            await conn.conversation.item.create(item=user("2+3"))
            await conn.response.create()
            seen: list = []
            done = await until(conn, of("response.done"), seen)
            assert done.response.status == "completed"
            [call] = done.response.output
            assert call.type == "function_call" and call.name == "calculator" and call.status == "completed"
            assert json.loads(call.arguments) == {"expression": "2+3"}
            args = "".join(ev.delta for ev in seen if ev.type == "response.function_call_arguments.delta")
            assert args == call.arguments
            assert len([ev for ev in seen if ev.type == "response.function_call_arguments.delta"]) > 1  # streamed
            finished = next(ev for ev in seen if ev.type == "response.function_call_arguments.done")
            assert finished.arguments == call.arguments and finished.call_id == call.call_id
            assert not [ev for ev in seen if ev.type == "response.output_text.delta"]  # the calculator, not the server, answers

            await conn.conversation.item.create(
                item={"type": "function_call_output", "call_id": call.call_id, "output": "5"}
            )
            added = await until(conn, of("conversation.item.added"))
            assert added.item.type == "function_call_output" and added.item.call_id == call.call_id
            await until(conn, of("conversation.item.done"))
            await conn.response.create()
            seen = []
            done = await until(conn, of("response.done"), seen)
            assert done.response.status == "completed" and deltas(seen) == "5"  # the model read the output

    asyncio.run(go())


def test_response_cancel_mid_answer_then_a_new_response(live):
    server = live(repeats=0, delay=0.005)  # the answer repeats the question until stopped

    async def go():
        async with client(server).realtime.connect(model="echo") as conn:
            await conn.conversation.item.create(item=user("alpha question"))
            await conn.response.create()
            seen: list = []
            created = await until(conn, of("response.created"), seen)
            await until(conn, lambda ev: len(deltas(seen)) > 20, seen)
            await conn.response.cancel()
            done = await until(conn, of("response.done"), seen)
            assert done.response.id == created.response.id and done.response.status == "cancelled"
            assert done.response.status_details.reason == "client_cancelled"
            [item] = done.response.output
            assert item.status == "incomplete" and item.content[0].text == deltas(seen)
            assert "alpha question" in deltas(seen)
            text_done = next(ev for ev in seen if ev.type == "response.output_text.done")
            assert text_done.text == deltas(seen)

            # nothing more comes for the cancelled response; cancelling again is refused
            await conn.response.cancel()
            err = await until(conn, of("error"))
            assert err.error.code == "response_cancel_not_active"
            await asyncio.sleep(0.2)

            await conn.conversation.item.create(item=user("beta"))
            await conn.response.create()
            seen2: list = []
            created2 = await until(conn, of("response.created"), seen2)
            await until(conn, lambda ev: "betabeta" in deltas(seen2, created2.response.id), seen2)
            assert not [ev for ev in seen2 if getattr(ev, "response_id", None) == created.response.id]
            assert deltas(seen2).startswith("beta")  # the outputs were resumed, nothing of alpha's answer left
            await conn.response.cancel()
            done2 = await until(conn, of("response.done"), seen2)
            assert done2.response.status == "cancelled"

    asyncio.run(go())


def test_a_user_item_mid_answer_changes_the_answer(live):
    """The multi-stream extension: the new item reaches the model at once, the same response goes on."""
    server = live(delay=0.01)
    question = "What is the capital of France? Paris is the capital of France."

    async def go():
        async with client(server).realtime.connect(model="echo") as conn:
            await conn.conversation.item.create(item=user(question))
            await conn.response.create()
            seen: list = []
            created = await until(conn, of("response.created"), seen)
            await until(conn, lambda ev: len(deltas(seen)) >= 8, seen)
            await conn.conversation.item.create(item=user("hello world"))
            done = await until(conn, of("response.done"), seen)
            assert [ev.type for ev in seen].count("response.created") == 1
            assert done.response.id == created.response.id and done.response.status == "completed"
            text = deltas(seen)
            assert text.endswith("hello world")  # the answer turned to the new item
            before = text[: -len("hello world")]
            assert 8 <= len(before) < len(question) and question.startswith(before)  # cut short, not finished first
            [item] = done.response.output
            assert item.content[0].text == text
            assert not [ev for ev in seen if ev.type == "error"]

    asyncio.run(go())


def test_an_answer_left_open_ends_the_response_after_completion_idle_s(live):
    """Interrupted by a sum, the echo model leaves its answer open and calls the calculator instead."""
    server = live(delay=0.01, limits=ServerLimits(completion_idle_s=0.3))
    question = "What is the capital of France? Paris is the capital of France."

    async def go():
        async with client(server).realtime.connect(model="echo") as conn:
            await conn.session.update(session={"tools": [CALCULATOR]})
            await conn.conversation.item.create(item=user(question))
            await conn.response.create()
            seen: list = []
            await until(conn, lambda ev: len(deltas(seen)) >= 8, seen)
            await conn.conversation.item.create(item=user("2+3"))
            done = await until(conn, of("response.done"), seen)
            assert done.response.status == "completed"
            answer, call = done.response.output
            assert answer.type == "message" and answer.status == "completed" and question.startswith(answer.content[0].text)
            assert call.type == "function_call" and json.loads(call.arguments) == {"expression": "2+3"}
            # the session goes on: the answer was ended, the next response is heard
            await conn.conversation.item.create(item=user("hello world"))
            await conn.response.create()
            seen = []
            await until(conn, of("response.done"), seen)
            assert deltas(seen) == "hello world"

    asyncio.run(go())


def test_live_input_off_waits_for_the_next_response(live):
    server = live(delay=0.01)
    question = "What is the capital of France? Paris is the capital of France."

    async def go():
        async with client(server).realtime.connect(model="echo") as conn:
            await conn.session.update(session={"multistream": {"live_input": False}})
            await until(conn, of("session.updated"))
            await conn.conversation.item.create(item=user(question))
            await conn.response.create()
            seen: list = []
            await until(conn, lambda ev: len(deltas(seen)) >= 8, seen)
            await conn.conversation.item.create(item=user("hello world"))
            done = await until(conn, of("response.done"), seen)
            assert deltas(seen) == question and done.response.status == "completed"
            await conn.response.create()
            seen = []
            await until(conn, of("response.done"), seen)
            assert deltas(seen) == "hello world"

    asyncio.run(go())


def test_side_streams_and_server_tools_extensions(live):
    server = live(think=True, results=True)

    async def go():
        async with client(server).realtime.connect(model="echo") as conn:
            await conn.session.update(session={"multistream": {"side_streams": ["think"], "server_tools": ["calculator"]}})
            updated = await until(conn, of("session.updated"))
            assert updated.session.multistream["server_tools"] == ["calculator"]
            assert updated.session.multistream["available_server_tools"] == ["calculator", "clock"]
            await conn.conversation.item.create(item=user("2+3"))
            await conn.response.create()
            seen: list = []
            done = await until(conn, of("response.done"), seen)
            assert done.response.status == "completed"
            think = [ev for ev in seen if ev.type == "multistream.stream.delta"]
            assert think and {ev.stream for ev in think} == {"think"}
            assert "".join(ev.delta for ev in think).startswith("len=")
            assert any(ev.type == "multistream.stream.done" and ev.text.startswith("len=") for ev in seen)
            call = next(ev for ev in seen if ev.type == "multistream.tool.call")
            assert call.name == "calculator" and call.call.startswith("calculator(")
            result = next(ev for ev in seen if ev.type == "multistream.tool.result")
            assert result.output == "5"
            # no round trip: no function_call item, and the answer already says the result
            assert [item.type for item in done.response.output] == ["message"]
            assert deltas(seen) == "5"

    asyncio.run(go())


def test_bad_events_get_errors_and_the_session_and_server_live(live):
    server = live(limits=ServerLimits(max_message_bytes=2048))

    async def go():
        async with client(server).realtime.connect(model="echo") as conn:
            await until(conn, of("session.created"))
            cases = [
                ({"type": "no.such.event", "event_id": "evt_1"}, "unknown_event", "type"),
                ({"type": "input_audio_buffer.append", "audio": "AAAA"}, "unsupported_event", "type"),
                ({"type": "session.update", "session": {"instructions": 5}}, "invalid_value", "session.instructions"),
                ({"type": "session.update", "session": {"voice": "alloy"}}, "unknown_parameter", "session.voice"),
                ({"type": "session.update", "session": {"output_modalities": ["audio"]}}, "invalid_value",
                 "session.output_modalities.0"),
                ({"type": "conversation.item.create"}, "missing_required_parameter", "item"),
                ({"type": "conversation.item.create", "item": user("x") | {"role": "assistant"}}, "unsupported_item",
                 "item.role"),
                ({"type": "conversation.item.create", "item": user("x"), "previous_item_id": "item_nope"}, "invalid_value",
                 "previous_item_id"),
                ({"type": "session.update", "session": {"multistream": {"server_tools": ["rm"]}}}, "invalid_value",
                 "session.multistream.server_tools"),
                ({"type": "session.update", "session": {"multistream": {"streams": {"user": {}}}}}, "invalid_value",
                 "session.multistream.streams.user"),
                ({"type": "session.update", "session": {"multistream": {"streams": {"answer": {"top_p": 2}}}}},
                 "invalid_value", "session.multistream.streams.answer.top_p"),
                ({"type": "response.cancel"}, "response_cancel_not_active", None),
                ({"type": "conversation.item.create", "item": user("y" * 4000)}, "message_too_large", None),
            ]
            for event, code, param in cases:
                await conn.send(event)
                err = await until(conn, of("error"))
                assert (err.error.code, err.error.param) == (code, param), event
                assert err.error.type == "invalid_request_error" and err.error.message
            assert err.event_id.startswith("event_")
            await conn.send({"type": "no.such.event", "event_id": "evt_7"})
            assert (await until(conn, of("error"))).error.event_id == "evt_7"  # the error names the client's event
            for raw in ("{not json", "[1, 2]"):
                await conn.send_raw(raw)
                assert (await until(conn, of("error"))).error.code == "invalid_json"

            # the session goes on
            await conn.conversation.item.create(item=user("hello world"))
            await conn.response.create()
            seen: list = []
            done = await until(conn, of("response.done"), seen)
            assert deltas(seen) == "hello world" and done.response.status == "completed"
            await conn.response.create()  # nothing new to read: an empty response
            done = await until(conn, of("response.done"))
            assert done.response.status == "completed" and done.response.output == []

        # and so does the server: another session, on another endpoint, answers
        c = WsClient(server.ws)
        c.open()
        c.send(type="input", text="still here")
        c.until(lambda m: m["type"] == "message_end" and m["stream"] == "answer")
        assert c.text("answer") == "still here"
        c.close()

    asyncio.run(go())
    assert health(server)["status"] == "ok"


def test_stream_settings_extension_budgets_the_answer(live):
    server = live()

    async def go():
        async with client(server).realtime.connect(model="echo") as conn:
            await conn.session.update(session={"multistream": {"streams": {"answer": {"max_tokens": 3, "temperature": 0}}}})
            await until(conn, of("session.updated"))
            await conn.conversation.item.create(item=user("hello world, user tool think answer call system"))
            await conn.response.create()
            seen: list = []
            done = await until(conn, of("response.done"), seen)
            assert len([ev for ev in seen if ev.type == "response.output_text.delta"]) == 3
            assert done.response.status == "completed" and done.response.output[0].status == "completed"
            # fixed once the session has run
            await conn.session.update(session={"multistream": {"streams": {"answer": {"max_tokens": 5}}}})
            err = await until(conn, of("error"))
            assert err.error.code == "invalid_value" and err.error.param == "session.multistream"

    asyncio.run(go())


def test_max_output_tokens_and_a_second_response_create_while_one_runs(live):
    server = live(repeats=0, delay=0.005)

    async def go():
        async with client(server).realtime.connect(model="echo") as conn:
            await conn.conversation.item.create(item=user("alpha question"))
            await conn.response.create(response={"max_output_tokens": 5})
            await conn.response.create()  # (handled before the first response can have ended)
            seen: list = []
            err = await until(conn, of("error"), seen)
            assert [ev.type for ev in seen].count("response.created") == 1
            assert err.error.code == "conversation_already_has_active_response"
            done = await until(conn, of("response.done"), seen)
            assert done.response.status == "incomplete" and done.response.status_details.reason == "max_output_tokens"
            n = len([ev for ev in seen if ev.type == "response.output_text.delta"])
            assert n == 5 == done.response.usage.output_tokens

    asyncio.run(go())


def test_api_key_model_name_and_session_limit(live):
    server = live(api_key="sekret", max_sessions=1, limits=ServerLimits(max_sessions=1))

    async def go():
        with pytest.raises(InvalidStatus, match="HTTP 401"):  # refused before it opens
            async with client(server, key="wrong").realtime.connect(model="echo") as conn:
                await conn.recv()
        with pytest.raises(InvalidStatus, match="HTTP 404"):
            async with client(server, key="sekret").realtime.connect(model="gpt-4o-realtime") as conn:
                await conn.recv()
        async with client(server, key="sekret").realtime.connect(model="echo") as conn:
            await until(conn, of("session.created"))
            await conn.conversation.item.create(item=user("hello world"))
            await conn.response.create()
            await until(conn, of("response.done"))
            # the one place is taken: a second session is told so, then closed
            async with client(server, key="sekret").realtime.connect(model="echo") as other:
                err = await until(other, of("error"))
                assert err.error.code == "too_many_sessions"

    asyncio.run(go())
    for _ in range(200):
        if not server.app.state.hub.sessions:
            break
        time.sleep(0.05)
    assert not server.app.state.hub.sessions
    # a browser passes its key as a subprotocol beside "realtime", and gets "realtime" back
    url = f"ws://127.0.0.1:{server.port}/v1/realtime"
    c = WsClient(url, subprotocols=["realtime", "openai-insecure-api-key.sekret"])
    assert c.conn.subprotocol == "realtime" and c.recv()["type"] == "session.created"
    c.close()
    with pytest.raises(InvalidStatus, match="HTTP 401"):
        WsClient(url, subprotocols=["realtime", "openai-insecure-api-key.wrong"])


def test_instructions_changed_later_go_to_the_system_stream(live):
    server = live()

    async def go():
        async with client(server).realtime.connect(model="echo") as conn:
            await conn.session.update(session={"instructions": "Be brief.", "tools": [CALCULATOR]})
            await conn.conversation.item.create(item=user("hello world"))
            await conn.response.create()
            await until(conn, of("response.done"))
            hub = server.app.state.hub
            [sid] = list(hub.sessions)
            assert sid.startswith("rt-")
            await conn.session.update(session={"instructions": "Be very brief."})
            updated = await until(conn, of("session.updated"))
            assert updated.session.instructions == "Be very brief." and updated.session.tools[0].name == "calculator"
            await conn.response.create()
            seen: list = []
            await until(conn, of("response.done"), seen)
            assert seen[0].type == "response.created"

    asyncio.run(go())


def test_row_limit_ends_the_response_and_the_connection_with_an_error(live):
    server = live(repeats=0, max_rows=30)

    async def go():
        async with client(server).realtime.connect(model="echo") as conn:
            await conn.conversation.item.create(item=user("alpha question"))
            await conn.response.create()
            seen: list = []
            done = await until(conn, of("response.done"), seen)
            assert done.response.status == "incomplete" and done.response.status_details.reason == "row_limit"
            err = await until(conn, of("error"), seen)
            assert err.error.code == "row_limit"
            with pytest.raises(ConnectionClosed):
                await until(conn, lambda ev: False, timeout=5)

    asyncio.run(go())


def test_a_client_dropped_mid_answer_leaves_nothing_behind_and_others_go_on(live):
    server = live(repeats=0, delay=0.002)
    hub, cache = server.app.state.hub, server.app.state.hub.engine.core.cache
    before = cache.nbytes
    witness = WsClient(server.ws)
    witness.open()

    async def drop():
        async with client(server).realtime.connect(model="echo") as conn:
            await conn.conversation.item.create(item=user("alpha question"))
            await conn.response.create()
            await until(conn, of("response.output_text.delta"))
            conn._connection.transport.abort()  # no close frame, no goodbye

    for _ in range(3):
        with contextlib.suppress(ConnectionClosed):
            asyncio.run(drop())
    witness.send(type="input", text="still here")
    witness.until(lambda m: m["type"] == "token" and "still here" in witness.text("answer"))
    witness.send(type="close")
    witness.until(lambda m: m["type"] == "closed")
    for _ in range(200):
        if not hub.sessions:
            break
        time.sleep(0.05)
    assert not hub.sessions and cache.nbytes == before


def test_call_arguments_are_streamed_as_sure_prefixes():
    call = 'calculator({"expression": "(2+3)"})  '
    prefixes = [call_arguments(call[:k]) for k in range(call.index("(") + 1, len(call) + 1)]
    final = call_arguments(call)
    assert final == '{"expression": "(2+3)"}'
    assert all(final.startswith(p) for p in prefixes)
    assert tools_prompt([FunctionInfo(**CALCULATOR)]).splitlines()[1] == '- calculator({"expression": "string"}): Arithmetic.'


RT, OTHERS = 30, 15


async def rt_session(base: str, question: str) -> tuple[str, dict]:
    """One realtime session through the SDK: ask, read the answer's deltas until response.done."""
    c = openai.AsyncOpenAI(base_url=base + "/v1", api_key="none", max_retries=0)
    async with c.realtime.connect(model="echo") as conn:
        await conn.conversation.item.create(item=user(question))
        await conn.response.create()
        seen: list = []
        done = await until(conn, of("response.done"), seen, timeout=120)
    await c.close()
    return deltas(seen), {"status": done.response.status, "deltas": len([e for e in seen if e.type.endswith("text.delta")])}


@pytest.mark.slow  # a load test: 60 sessions at once
def test_thirty_realtime_sessions_beside_websocket_and_http_ones_all_finish(live):
    from .test_load import http_completion, ws_session

    server = live(limits=ServerLimits(max_sessions=RT + 2 * OTHERS + 4), max_sessions=RT + 2 * OTHERS + 4)
    hub, cache = server.app.state.hub, server.app.state.hub.engine.core.cache
    before = cache.nbytes
    questions = [f"question number {k} about {'xyz'[k % 3] * (1 + k % 4)}" for k in range(RT + 2 * OTHERS)]
    peak = {"sessions": 0}

    async def everyone():
        async def watch():
            while True:
                peak["sessions"] = max(peak["sessions"], len(hub.sessions))
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        t = time.perf_counter()
        rt = [rt_session(server.http, q) for q in questions[:RT]]
        ws = [ws_session(server.ws, q) for q in questions[RT : RT + OTHERS]]
        http = [http_completion(server.http, q) for q in questions[RT + OTHERS :]]
        results = await asyncio.gather(*rt, *ws, *http)
        wall = time.perf_counter() - t
        watcher.cancel()
        return results, wall

    results, wall = asyncio.run(everyone())
    rt_answers = results[:RT]
    for q, (text, info) in zip(questions, rt_answers):
        assert text == q and info["status"] == "completed" and info["deltas"] > 2  # its own question, nobody else's
    assert ["".join(tokens) for tokens in results[RT : RT + OTHERS]] == questions[RT : RT + OTHERS]
    assert results[RT + OTHERS :] == questions[RT + OTHERS :]
    for _ in range(200):
        if not hub.sessions:
            break
        time.sleep(0.05)
    assert not hub.sessions and cache.nbytes == before  # every session gone, the cache back where it was
    assert peak["sessions"] > RT  # they really were open at once
    print(f"\nrealtime load: {RT} realtime + {OTHERS} WebSocket + {OTHERS} HTTP sessions at once in {wall:.2f} s, "
          f"at most {peak['sessions']} open at once")


# -- fuzzing (hypothesis): every frame gets events of the protocol's shape, a witness beside answers as alone --------
_leaf = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=30)
         | st.sampled_from(["2+3", "<|im_end|>", "\ud800", "inf", "calculator", "user", "assistant", "function_call_output"]))
_any = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=20)
_content = st.lists(st.fixed_dictionaries({"type": st.sampled_from(["input_text", "input_audio"]) | _leaf,
                                           "text": st.text(max_size=40) | _leaf}), max_size=3) | _leaf
_item = st.fixed_dictionaries({"type": st.sampled_from(["message", "function_call_output", "function_call"]) | _leaf},
                              optional={"role": st.sampled_from(["user", "system", "assistant"]) | _leaf, "content": _content,
                                        "call_id": _leaf, "output": st.text(max_size=20) | _leaf, "id": _leaf, "junk": _any})
_session = st.fixed_dictionaries({}, optional={
    "type": st.just("realtime") | _leaf, "instructions": st.text(max_size=40) | _leaf, "max_output_tokens": _leaf,
    "tools": st.lists(st.fixed_dictionaries({"type": st.just("function"), "name": st.sampled_from(["calculator", "f", "1x"]) | _leaf},
                                            optional={"parameters": _any}), max_size=2) | _leaf,
    "output_modalities": st.lists(st.sampled_from(["text", "audio"]), max_size=2) | _leaf,
    "multistream": st.fixed_dictionaries({}, optional={"live_input": _leaf, "side_streams": _leaf | st.just(["think"]),
                                                       "server_tools": _leaf | st.just(["calculator"]), "streams": _any}) | _leaf,
    "voice": _leaf})
_event = st.fixed_dictionaries(
    {"type": st.sampled_from([*CLIENT_TYPES, *UNSUPPORTED_TYPES, "nope"]) | _leaf},
    optional={"event_id": _leaf, "session": _session | _leaf, "item": _item | _leaf, "previous_item_id": _leaf,
              "response": st.fixed_dictionaries({}, optional={"instructions": _leaf, "max_output_tokens": _leaf,
                                                             "conversation": _leaf, "metadata": _any}) | _leaf,
              "response_id": _leaf, "junk": _any},
)
_frame = _event.map(lambda e: json.dumps(e, allow_nan=True)) | _any.map(json.dumps) | st.text(max_size=60) | st.binary(max_size=30)
_FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.mark.slow  # hypothesis fuzzing
@_FUZZ
@given(text=_event.map(lambda e: json.dumps(e, allow_nan=True)) | _any.map(json.dumps) | st.text(max_size=100))
def test_parse_returns_an_event_or_an_error(text):
    try:
        ev = parse_client(text)
    except EventError as e:
        assert e.code and e.message
    else:
        assert ev.type in CLIENT_TYPES


@pytest.fixture(scope="module")
def fuzz_server():
    limits = ServerLimits(completion_idle_s=0.2, max_sessions=64)
    with LiveServer(echo_app(limits=limits, max_sessions=64, results=True)) as s:
        yield s


@pytest.mark.slow  # hypothesis fuzzing through a live server
@settings(_FUZZ, max_examples=60)
@given(frames=st.lists(_frame, min_size=1, max_size=6))
# text that cannot go back as UTF-8 (a lone surrogate escape) once closed the socket
@example(frames=['{"type": null, "event_id": "\\ud800"}'])
@example(frames=['{"type": "conversation.item.create", "item": {"type": "message", "role": "user", '
                 '"content": [{"type": "input_text", "text": "a\\ud800"}]}}'])
def test_realtime_frames_of_any_shape(fuzz_server, frames):
    url = f"ws://127.0.0.1:{fuzz_server.port}/v1/realtime"
    witness = WsClient(fuzz_server.ws)
    witness.open()
    c = WsClient(url)
    try:
        assert c.recv()["type"] == "session.created"
        witness.send(type="input", text="witness question")  # a session beside, while the frames go in
        for f in frames:
            c.send_raw(f)
        c.send(type="probe", event_id="probe")  # always refused: its error says every frame before it was handled
        c.until(lambda m: m["type"] == "error" and m["error"].get("event_id") == "probe", timeout=20)
        for m in c.seen:
            assert isinstance(m.get("type"), str) and m["event_id"], m
            if m["type"] == "error":
                assert m["error"]["code"] and m["error"]["message"], m
        witness.until(lambda m: m["type"] == "message_end" and m["stream"] == "answer")
        assert witness.text("answer") == "witness question"  # as alone: nobody heard the fuzz
    finally:
        c.close()
        witness.close()
