"""The asyncio engine: the step loop runs in the background, callers send text and read events live.

``AsyncEngine`` owns an :class:`EngineCore`. Its loop runs ``core.step()`` in a worker
thread whenever a session has work and sleeps otherwise; commands (open, send, abort,
close) go straight to the core's queue and are applied between steps. Each session's
events arrive on its own asyncio queue. When a session's ``call`` stream completes a
call, the tool runs as a task and its result streams into that session's ``tool``
stream while the model keeps going.

This is the interface servers and UIs use: ``open``, ``send``, ``abort``, ``resume``, ``mute``, ``close``
and ``events``, and what they read of the engine: ``layout``, ``tok`` and ``limits()``.

Everything waiting here is bounded. A session's event queue holds at most ``max_events``
events: a reader that falls that far behind gets an ``error`` and its session is closed
(code ``slow_reader``), so at most ``max_events + 3`` items per session (the error, the
``closed`` event and the end mark). Tool calls run at most ``max_tool_calls`` at once per
session and ``max_tool_calls_total`` in all; a call past either bound, or made while the
``tool`` stream still has more than ``tools.max_result_chars`` tokens of earlier results
to read, gets an error result at once instead of running. A tool's result is cut at
``tools.max_result_chars`` (see :class:`ToolRegistry`), and its pieces wait for room under
the engine's ``max_pending_commands`` rather than being dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Collection
from concurrent.futures import ThreadPoolExecutor

from ..streams import Layout
from ..text import StreamTokenizer
from ..toolcall import call_name
from .core import EngineCore, EngineError
from .session import Event, StreamParams
from .tools import RESULT_DELAY_ROWS, ToolRegistry

log = logging.getLogger(__name__)
_CLOSED = object()


class AsyncEngine:
    def __init__(
        self,
        core: EngineCore,
        tools: ToolRegistry | None = None,
        call_stream: str | None = None,
        tool_stream: str | None = None,
        max_events: int = 10_000,
        max_tool_calls: int = 4,
        max_tool_calls_total: int = 32,
    ):
        if min(max_events, max_tool_calls, max_tool_calls_total) < 1:
            raise ValueError("max_events, max_tool_calls and max_tool_calls_total must be >= 1")
        self.core = core
        self.tools = tools or ToolRegistry()
        # (default: the layout's call and tool roles; a layout without them runs no tools)
        self.call_stream = call_stream or core.layout.roles.get("call")
        self.tool_stream = tool_stream or core.layout.roles.get("tool")
        if self.tool_stream is None:
            self.call_stream = None
        self.max_events, self.max_tool_calls, self.max_tool_calls_total = max_events, max_tool_calls, max_tool_calls_total
        self._queues: dict[str, asyncio.Queue] = {}
        self._overflowed: set[str] = set()
        self._calls: dict[str, int] = {}  # session -> its tool calls running
        self._tools_on: dict[str, bool | frozenset[str]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="multistream-step")
        self.error: BaseException | None = None

    async def __aenter__(self) -> AsyncEngine:
        self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    def start(self) -> None:
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._run(), name="multistream-engine")

    async def stop(self) -> None:
        """Close every session (each gets its ``closed`` event) and stop the loop."""
        for sid in list(self._queues):
            with contextlib.suppress(EngineError):
                self.core.close(sid)
        self._wake.set()
        if self._loop_task is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._drain(), timeout=10)
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        for t in list(self._tasks):
            t.cancel()
        self._executor.shutdown(wait=True)

    async def _drain(self) -> None:
        while self._queues:
            await asyncio.sleep(0.01)

    # -- the client interface ------------------------------------------------------------
    @property
    def layout(self) -> Layout:
        """The model's streams."""
        return self.core.layout

    @property
    def tok(self) -> StreamTokenizer:
        """The model's stream tokenizer."""
        return self.core.tok

    def limits(self) -> dict:
        """``max_rows`` per session, ``max_kv_tokens`` (None: no ceiling), ``window_rows`` (None: every row kept) and
        ``kv_bytes_per_token`` (:meth:`EngineCore.limits`)."""
        return self.core.limits()

    def open(self, session_id: str | None = None, prefix: str = "", params: dict[str, StreamParams] | None = None,
             tools: bool | Collection[str] = True, max_rows: int | None = None) -> str:
        """Open a session (see :meth:`EngineCore.open`). ``tools``: run every completed call (True), none (False), or
        only the calls that name one of these tools (the others are left to the caller, who reads them as events)."""
        sid = self.core.open(session_id, prefix, params, max_rows=max_rows)
        self._queues[sid] = asyncio.Queue()
        self._tools_on[sid] = tools if isinstance(tools, bool) else frozenset(tools)
        self._wake.set()
        return sid

    def send(self, session_id: str, stream: str, text: str, bulk: bool = False, end: bool = True,
             not_before: int | None = None) -> None:
        self.core.send(session_id, stream, text, bulk=bulk, end=end, not_before=not_before)
        self._wake.set()

    def abort(self, session_id: str, stream: str | None = None) -> None:
        self.core.abort(session_id, stream)
        self._wake.set()

    def resume(self, session_id: str, stream: str | None = None) -> None:
        """Let output streams stopped by ``abort`` (or by their budget) speak again (:meth:`EngineCore.resume`)."""
        self.core.resume(session_id, stream)
        self._wake.set()

    def mute(self, session_id: str, stream: str, muted: bool = True) -> None:
        self.core.mute(session_id, stream, muted)
        self._wake.set()

    def close(self, session_id: str) -> None:
        self.core.close(session_id)
        self._wake.set()

    def idle(self, session_id: str) -> bool:
        """True when the session is paused and will say nothing more until it gets input."""
        return self.core.idle(session_id)

    def quiet(self, session_id: str, rows: int) -> bool:
        """The session has read and written nothing for at least ``rows`` rows, has nothing to read (a tool result
        sent is a command until the next step applies it) and none of its tool calls runs."""
        sess = self.core.sessions.get(session_id)
        return (sess is not None and sess.quiet_rows >= rows and not sess.pending_input and not self._calls.get(session_id)
                and self.core.pending_commands(session_id) == 0)

    def settled(self, session_id: str) -> bool:
        """Idle, with none of its tool calls running: nothing more comes until it gets input."""
        return self.core.idle(session_id) and not self._calls.get(session_id)

    async def events(self, session_id: str) -> AsyncIterator[Event]:
        """This session's events as they happen, ending after its ``closed`` event."""
        q = self._queues.get(session_id)
        if q is None:
            raise EngineError(f"unknown session {session_id!r}")
        while True:
            ev = await q.get()
            if ev is _CLOSED:
                return
            yield ev

    # -- the loop -------------------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.core.has_work():
                self._wake.clear()
                if not self.core.has_work():
                    # a session waiting for the rest of a message (input_wait) runs a row anyway when its wait ends
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.core.next_wake())
                continue
            try:
                events = await loop.run_in_executor(self._executor, self.core.step)
            except Exception as e:  # keep serving the other sessions; report to everyone
                log.exception("engine step failed")
                self.error = e
                for sid in list(self._queues):
                    self._put(Event(sid, "error", -1, "", text=f"engine step failed: {e}"))
                await asyncio.sleep(0.1)
                continue
            for ev in events:
                self._dispatch(ev)
            await asyncio.sleep(0)  # let clients run between steps

    def _put(self, ev: Event) -> None:
        """Queue an event for its session's reader; past ``max_events`` waiting, give up on that reader."""
        q = self._queues.get(ev.session)
        if q is None:
            return
        if ev.type == "closed":
            q.put_nowait(ev)
            q.put_nowait(_CLOSED)
            del self._queues[ev.session]
            self._tools_on.pop(ev.session, None)
            self._overflowed.discard(ev.session)
            return
        if q.qsize() < self.max_events:
            q.put_nowait(ev)
            return
        if ev.session in self._overflowed:
            return  # dropped: the session is closing
        self._overflowed.add(ev.session)
        log.warning("session %s: %d events wait for a reader that does not read: closing (slow_reader)", ev.session, q.qsize())
        q.put_nowait(Event(
            ev.session, "error", ev.row, "", code="slow_reader",
            text=f"{q.qsize()} events wait for a reader that does not read (max_events {self.max_events}): closing the session",
        ))
        with contextlib.suppress(EngineError):
            self.core.close(ev.session, code="slow_reader")
        self._wake.set()

    def _dispatch(self, ev: Event) -> None:
        if ev.session not in self._queues:
            return
        self._put(ev)
        if (ev.type == "message_end" and ev.stream == self.call_stream and ev.text.strip()
                and self._runs(ev.session, ev.text) and ev.session not in self._overflowed):
            task = asyncio.get_running_loop().create_task(self._run_tool(ev.session, ev.text, ev.row))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _runs(self, sid: str, call_text: str) -> bool:
        """Whether this session has its tools run on this completed call."""
        on = self._tools_on.get(sid, False)
        if isinstance(on, bool):
            return on
        return call_name(call_text) in on

    def _refusal(self, sid: str) -> str | None:
        """Why a new tool call of ``sid`` must not run now (None: it may)."""
        mine, total = self._calls.get(sid, 0), sum(self._calls.values())
        if mine >= self.max_tool_calls or total >= self.max_tool_calls_total:
            return (f"error: too many tool calls running ({mine} of this session, max {self.max_tool_calls}; {total} in all, "
                    f"max {self.max_tool_calls_total}); call again when a result has come")
        queued = self.core.queued(sid, self.tool_stream)
        if queued > self.tools.max_result_chars:
            return f"error: {queued} tokens of earlier tool results are still to be read; call again when they have been"
        return None

    async def _send_piece(self, sid: str, text: str, end: bool, not_before: int) -> bool:
        """Send a piece of a result on the tool stream, waiting for room under ``max_pending_commands``."""
        while sid in self._queues:
            try:
                self.core.send(sid, self.tool_stream, text, end=end, not_before=not_before)
                self._wake.set()
                return True
            except EngineError as e:
                if e.code != "busy":
                    return False
                self._wake.set()
                await asyncio.sleep(0.005)
        return False  # the session closed while the tool ran

    async def _run_tool(self, sid: str, call_text: str, row: int) -> None:
        if sid not in self._queues:
            return
        self._put(Event(sid, "tool_call", row, self.call_stream, text=call_text))
        refusal = self._refusal(sid)
        self._calls[sid] = self._calls.get(sid, 0) + 1
        pieces = []
        try:
            async for piece in (_one(refusal) if refusal else self.tools.run(call_text)):
                if not await self._send_piece(sid, piece, end=False, not_before=row + RESULT_DELAY_ROWS):
                    return
                pieces.append(piece)
            if await self._send_piece(sid, "", end=True, not_before=row + RESULT_DELAY_ROWS):
                self._put(Event(sid, "tool_result", row, self.tool_stream, text="".join(pieces)))
        finally:
            n = self._calls.pop(sid, 1) - 1
            if n > 0:
                self._calls[sid] = n


async def _one(text: str) -> AsyncIterator[str]:
    yield text
