"""``multistream chat``: talk to a multi-stream model in the terminal, streams side by side.

One lane per stream fills as tokens are fed or written; type at the bottom at any
moment, also while the model writes (Enter sends to the ``user`` stream: an interrupt
if the model is answering). Commands: ``/tool TEXT`` or ``/system TEXT`` send to that
input stream, ``/abort`` stops the outputs, ``/quit`` (or Ctrl-C, Ctrl-D) leaves cleanly.

Input that is not a terminal (``echo "What is 2 plus 3?" | multistream chat``) runs in
lines (:func:`chat_lines`): each line is sent as if typed, the model's messages are
printed as ``stream: text`` once complete, and the next line goes in once the model has
settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Iterable

from .defaults import MAX_ROWS, SYSTEM_PROMPT
from .engine.aio import AsyncEngine
from .engine.core import EngineError
from .engine.session import Event

HELP = "Enter: send to user · /tool TEXT · /system TEXT · /abort · /quit (or Ctrl-C)"


class ChatApp:
    def __init__(self, engine: AsyncEngine, prefix: str = "", params=None, **app_kwargs):
        # imported here: the rest of the command line works without a terminal UI library
        from prompt_toolkit.application import Application
        from prompt_toolkit.key_binding import KeyBindings
        from prompt_toolkit.layout import HSplit, Layout, VSplit, Window
        from prompt_toolkit.layout.controls import FormattedTextControl
        from prompt_toolkit.widgets import Frame, TextArea

        self.engine = engine
        self.prefix, self.params = prefix, params
        self.layout = engine.layout
        self.lanes = {s.name: TextArea(read_only=True, wrap_lines=True, focusable=False) for s in self.layout}
        self.texts = {s.name: "" for s in self.layout}
        self.row = 0
        self.status = "type a message and press Enter"
        self.input = TextArea(height=1, prompt="> ", multiline=False, accept_handler=self._accept)
        frames = [
            Frame(self.lanes[s.name], title=f"{s.name} ({s.kind}{', untrusted' if s.trust == 'untrusted' else ''})")
            for s in self.layout
        ]
        status = Window(FormattedTextControl(lambda: f" row {self.row} · {self.status} · {HELP}"), height=1, style="reverse")
        keys = KeyBindings()

        @keys.add("c-c")
        @keys.add("c-d")
        def _(event):
            self.quit()

        self.app = Application(layout=Layout(HSplit([VSplit(frames), status, self.input]), focused_element=self.input),
                               key_bindings=keys, full_screen=True, **app_kwargs)
        self.sid: str | None = None

    # -- input ------------------------------------------------------------------------------
    def _accept(self, buf) -> bool:
        text = buf.text.strip()
        if not text:
            return False
        if text in ("/quit", "/exit"):
            self.quit()
            return False
        try:
            if send_line(self.engine, self.sid, text) == "aborted":
                self.status = "outputs aborted"
        except Exception as e:  # a bad command must not end the chat
            self.status = f"error: {e}"
        return False  # clear the input line

    def quit(self) -> None:
        if self.sid is not None:
            try:
                self.engine.close(self.sid)
            except Exception:
                pass
        if self.app.is_running:
            self.app.exit()

    # -- output -----------------------------------------------------------------------------
    def show(self, ev: Event) -> None:
        if ev.row >= 0:
            self.row = max(self.row, ev.row)
        if ev.type == "token" and ev.stream in self.texts:
            self._append(ev.stream, ev.text)
        elif ev.type == "message_end" and ev.stream in self.texts:
            self._append(ev.stream, "\n")
        elif ev.type == "tool_call":
            self.status = f"tool call: {ev.text}"
        elif ev.type == "tool_result":
            self.status = f"tool result: {ev.text[:60]}"
        elif ev.type in ("error", "closed"):
            self.status = f"{ev.type}: {ev.text}"
        self.app.invalidate()

    def _append(self, stream: str, text: str) -> None:
        self.texts[stream] += text
        lane = self.lanes[stream]
        from prompt_toolkit.document import Document

        lane.buffer.set_document(Document(self.texts[stream], len(self.texts[stream])), bypass_readonly=True)

    async def run(self) -> None:
        self.sid = self.engine.open(prefix=self.prefix, params=self.params)

        async def pump():
            async for ev in self.engine.events(self.sid):
                self.show(ev)

        pump_task = asyncio.create_task(pump())
        try:
            await self.app.run_async()
        finally:
            pump_task.cancel()


def send_line(engine: AsyncEngine, sid: str, text: str) -> str:
    """One typed line (not ``/quit``): ``/abort``, ``/STREAM TEXT`` or text for the user; says which it was."""
    if text == "/abort":
        engine.abort(sid)
        return "aborted"
    if text.startswith("/"):  # /STREAM TEXT: to any input stream
        stream, _, body = text[1:].partition(" ")
        engine.send(sid, stream, body, bulk=True)
        return stream
    # a whole line at once: read in bulk, like a prompt (the reply can start in the same forward)
    engine.send(sid, engine.layout.role("user"), text, bulk=True)
    return "user"


async def chat_lines(engine: AsyncEngine, lines: Iterable[str], write: Callable[[str], None] | None = None,
                     prefix: str = "", params=None, settle_timeout: float = 120.0) -> None:
    """The chat without a terminal: each line of ``lines`` as if typed, then wait until the model has settled
    (idle, no tool call running; at most ``settle_timeout`` seconds); each line sent, every complete output message
    and tool result is written as ``stream: text`` (default: printed and flushed, for a program reading the pipe)."""
    write = write or (lambda text: print(text, flush=True))
    loop = asyncio.get_running_loop()
    async with engine:
        sid = engine.open(prefix=prefix, params=params)
        outputs = {s.name for s in engine.layout if s.kind == "output"}
        parts: dict[str, str] = {}

        async def pump():
            async for ev in engine.events(sid):
                if ev.type == "token" and ev.stream in outputs:
                    parts[ev.stream] = parts.get(ev.stream, "") + ev.text
                elif ev.type == "message_end" and ev.stream in outputs:
                    if text := parts.pop(ev.stream, "").strip():
                        write(f"{ev.stream}: {text}")
                elif ev.type == "tool_result":
                    write(f"{ev.stream}: {ev.text}")
                elif ev.type == "error" or (ev.type == "closed" and ev.code != "closed"):
                    write(f"{'error' if ev.type == 'error' else 'session ended'}: {ev.text}")

        pump_task = asyncio.create_task(pump())
        source = iter(lines)
        # read in a thread: the engine goes on writing while the next line is awaited
        while not pump_task.done() and (line := await loop.run_in_executor(None, next, source, None)) is not None:
            text = line.strip()
            if not text:
                continue
            if text in ("/quit", "/exit"):
                break
            try:
                sent = send_line(engine, sid, text)
            except Exception as e:  # a bad line is reported and the chat goes on
                write(f"error: {e}")
                continue
            if sent != "aborted":  # (an abort gives the model nothing to answer)
                # the transcript: who said what (a line typed into another stream marked, unlike a tool's own result)
                write(f"user: {text}" if sent == "user" else f"{sent} (typed): {text[1:].partition(' ')[2]}")
                await _settle(engine, sid, settle_timeout, write, pump_task)
        with contextlib.suppress(EngineError):  # (the engine may have closed it: row limit, failure)
            engine.close(sid)
        await asyncio.wait_for(pump_task, 10)
        for stream, text in parts.items():  # cut off by the end of the input
            if text.strip():
                write(f"{stream}: {text.strip()} [unfinished]")


async def _settle(engine: AsyncEngine, sid: str, timeout: float, write: Callable[[str], None],
                  pump_task: asyncio.Task) -> None:
    loop = asyncio.get_running_loop()
    deadline, quiet = loop.time() + timeout, 0
    while quiet < 3 and not pump_task.done():  # three checks in a row: a tool result may be on its way between them
        if loop.time() > deadline:
            write(f"(still writing after {timeout:.0f} s; the next line goes in now)")
            return
        await asyncio.sleep(0.05)
        quiet = quiet + 1 if engine.settled(sid) else 0


async def chat(engine: AsyncEngine, prefix: str = "", params=None, **app_kwargs) -> ChatApp:
    async with engine:
        app = ChatApp(engine, prefix, params, **app_kwargs)
        await app.run()
    return app


LONG_SESSION_ROWS = 100_000_000  # with a window, rows cost no memory: the row limit is only a backstop


def cmd_chat(args) -> int:
    from .engine.cli import engine_from_args
    from .engine.tools import demo_tools

    window = {"window_rows": args.window_rows, "max_rows": LONG_SESSION_ROWS} if args.window_rows else {}
    core, params = engine_from_args(args, **window)
    engine = AsyncEngine(core, None if args.no_tools else demo_tools())
    if sys.stdin.isatty():
        asyncio.run(chat(engine, prefix=args.prefix, params=params))
    else:
        asyncio.run(chat_lines(engine, sys.stdin, prefix=args.prefix, params=params))
    return 0


def register(sub) -> None:
    from .engine.cli import add_model_args, add_sampling_args

    c = sub.add_parser("chat", help="chat in the terminal with every stream shown side by side")
    add_model_args(c)
    c.add_argument("--prefix", default=SYSTEM_PROMPT, help="system prompt")
    add_sampling_args(c)
    c.add_argument("--no-tools", action="store_true")
    c.add_argument(
        "--window-rows", type=int, default=1024,
        help="rows kept in memory besides the system prompt, so a chat can go on for hours (0: all, and the chat "
        f"ends after {MAX_ROWS} rows)",
    )
    c.set_defaults(func=cmd_chat)
