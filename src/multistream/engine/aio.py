"""The asyncio engine: the step loop runs in the background, callers send text and read events live.

``AsyncEngine`` owns an :class:`EngineCore`. Its loop runs ``core.step()`` in a worker
thread whenever a session has work and sleeps otherwise; commands (open, send, abort,
close) go straight to the core's queue and are applied between steps. Each session's
events arrive on its own asyncio queue. When a session's ``call`` stream completes a
call, the tool runs as a task and its result streams into that session's ``tool``
stream while the model keeps going.

This is the interface servers and UIs use: ``open``, ``send``, ``abort``, ``close`` and
``events``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from .core import EngineCore, EngineError
from .session import Event, StreamParams
from .tools import RESULT_DELAY_ROWS, ToolRegistry

log = logging.getLogger(__name__)
_CLOSED = object()


class AsyncEngine:
    def __init__(self, core: EngineCore, tools: ToolRegistry | None = None, call_stream: str = "call", tool_stream: str = "tool"):
        self.core = core
        self.tools = tools or ToolRegistry()
        self.call_stream, self.tool_stream = call_stream, tool_stream
        self._queues: dict[str, asyncio.Queue] = {}
        self._tools_on: dict[str, bool] = {}
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
    def open(self, session_id: str | None = None, prefix: str = "", params: dict[str, StreamParams] | None = None,
             tools: bool = True, max_rows: int | None = None) -> str:
        sid = self.core.open(session_id, prefix, params, max_rows=max_rows)
        self._queues[sid] = asyncio.Queue()
        self._tools_on[sid] = tools
        self._wake.set()
        return sid

    def send(self, session_id: str, stream: str, text: str, bulk: bool = False, end: bool = True) -> None:
        self.core.send(session_id, stream, text, bulk=bulk, end=end)
        self._wake.set()

    def abort(self, session_id: str, stream: str | None = None) -> None:
        self.core.abort(session_id, stream)
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
                    await self._wake.wait()
                continue
            try:
                events = await loop.run_in_executor(self._executor, self.core.step)
            except Exception as e:  # keep serving the other sessions; report to everyone
                log.exception("engine step failed")
                self.error = e
                for sid, q in list(self._queues.items()):
                    q.put_nowait(Event(sid, "error", -1, "", text=f"engine step failed: {e}"))
                await asyncio.sleep(0.1)
                continue
            for ev in events:
                self._dispatch(ev)
            await asyncio.sleep(0)  # let clients run between steps

    def _dispatch(self, ev: Event) -> None:
        q = self._queues.get(ev.session)
        if q is None:
            return
        q.put_nowait(ev)
        if ev.type == "closed":
            q.put_nowait(_CLOSED)
            del self._queues[ev.session]
            self._tools_on.pop(ev.session, None)
        elif (ev.type == "message_end" and ev.stream == self.call_stream and ev.text.strip()
              and self._tools_on.get(ev.session)):
            task = asyncio.get_running_loop().create_task(self._run_tool(ev.session, ev.text, ev.row))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run_tool(self, sid: str, call_text: str, row: int) -> None:
        q = self._queues.get(sid)
        if q is None:
            return
        q.put_nowait(Event(sid, "tool_call", row, self.call_stream, text=call_text))
        pieces = []
        async for piece in self.tools.run(call_text):
            if sid not in self._queues:
                return  # the session closed while the tool ran
            pieces.append(piece)
            with contextlib.suppress(EngineError):
                self.core.send(sid, self.tool_stream, piece, end=False, not_before=row + RESULT_DELAY_ROWS)
            self._wake.set()
        if sid in self._queues:
            with contextlib.suppress(EngineError):
                self.core.send(sid, self.tool_stream, "", end=True, not_before=row + RESULT_DELAY_ROWS)
            self._wake.set()
            self._queues[sid].put_nowait(Event(sid, "tool_result", row, self.tool_stream, text="".join(pieces)))
