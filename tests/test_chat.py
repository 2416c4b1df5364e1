"""The terminal chat, driven through a pipe like a user at the keyboard."""

import asyncio

from engine.test_scheduler import ScriptedModel
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from multistream.chat import ChatApp, chat_lines
from multistream.engine.aio import AsyncEngine
from multistream.engine.core import EngineConfig, EngineCore


def test_chat_sends_typed_text_and_shows_streams_then_quits_cleanly():
    n = len(ScriptedModel({}, {}).tok.encode_message("hi"))  # a typed line is read in bulk: replies start after it
    model = ScriptedModel({"answer": "hello there, friend", "think": "greeting"}, {"answer": n + 1, "think": n})

    async def main():
        with create_pipe_input() as pipe:
            async with AsyncEngine(EngineCore(model, EngineConfig(idle_rows=4))) as engine:
                app = ChatApp(engine, input=pipe, output=DummyOutput())
                runner = asyncio.create_task(app.run())
                await asyncio.sleep(0.2)
                pipe.send_text("hi\r")
                for _ in range(200):
                    await asyncio.sleep(0.02)
                    if "friend" in app.texts["answer"]:
                        break
                pipe.send_text("/tool some result\r")  # typing while the model may still be writing
                for _ in range(200):
                    await asyncio.sleep(0.02)
                    if "some result" in app.texts["tool"]:
                        break
                pipe.send_text("/nosuchstream x\r")
                await asyncio.sleep(0.1)
                status = app.status
                pipe.send_text("/quit\r")
                await asyncio.wait_for(runner, 10)
                return app, status

    app, status = asyncio.run(main())
    assert app.texts["user"].strip() == "hi"
    assert app.texts["answer"].strip() == "hello there, friend" and app.texts["think"].strip() == "greeting"
    assert app.texts["tool"].strip() == "some result"
    assert status.startswith("error: unknown input stream 'nosuchstream'")
    assert not app.app.is_running


def test_chat_without_a_terminal_reads_lines_and_prints_whole_messages():
    n = len(ScriptedModel({}, {}).tok.encode_message("hi"))
    model = ScriptedModel({"answer": "hello there, friend", "think": "greeting"}, {"answer": n + 1, "think": n})
    lines = ["hi\n", "\n", "/nosuchstream x\n", "/tool some result\n", "/quit\n", "never sent\n"]
    out: list[str] = []
    sent = []

    class Recording(AsyncEngine):
        def send(self, session_id, stream, text, bulk=False, end=True):
            super().send(session_id, stream, text, bulk=bulk, end=end)
            sent.append((stream, text))

    core = EngineCore(model, EngineConfig(idle_rows=4))
    asyncio.run(asyncio.wait_for(chat_lines(Recording(core), lines, out.append, settle_timeout=30), 60))
    # the line as it went in, then each message once, when complete
    assert out[:3] == ["user: hi", "think: greeting", "answer: hello there, friend"]
    assert out[3].startswith("error: unknown input stream 'nosuchstream'")  # a bad line does not end the chat
    assert out[4:] == ["tool (typed): some result"]
    assert sent == [("user", "hi"), ("tool", "some result")]  # nothing after /quit
    assert core.sessions == {}  # closed


def test_chat_without_a_terminal_says_why_the_engine_ended_the_session_and_stops_cleanly():
    model = ScriptedModel({"answer": " ".join(["word"] * 200)}, {"answer": 1})
    out: list[str] = []
    core = EngineCore(model, EngineConfig(idle_rows=4, max_rows=30))
    # the settle timeout is far longer than the whole test may take: the chat must notice the end, not time out
    asyncio.run(asyncio.wait_for(chat_lines(AsyncEngine(core), ["hi\n", "again\n"], out.append, settle_timeout=600), 60))
    ended = [line for line in out if line.startswith("session ended:")]
    assert len(ended) == 1 and "row" in ended[0]
    assert out[-1].startswith("answer: ") and "word word" in out[-1] and out[-1].endswith("[unfinished]")
    assert not any("still writing" in line for line in out)


def test_chat_without_a_terminal_does_not_wait_after_an_abort():
    out: list[str] = []
    core = EngineCore(ScriptedModel({}, {}), EngineConfig(idle_rows=4))
    asyncio.run(asyncio.wait_for(chat_lines(AsyncEngine(core), ["/abort\n"], out.append, settle_timeout=600), 60))
    assert out == []
