"""One WebSocket connection = one session: a reader, a writer and an event pump, each its own task.

The reader parses client frames and acts on them at once (so input arrives while the
model writes); whatever it refuses becomes an ``error`` and the session goes on. The
pump turns the session's engine events into wire messages. The writer is the only task
that sends on the socket, from one queue, so messages never interleave; a client that
stops reading fills that queue and gets its session closed (``slow_client``), without
holding up anyone else. Every message goes through that one bound (events, pongs and
errors alike): a client that sends and never reads cannot grow the server's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from starlette.websockets import WebSocket, WebSocketDisconnect

from ..engine.session import StreamParams
from .hub import Hub
from .protocol import (
    Abort,
    Close,
    Closed,
    Error,
    Input,
    Mute,
    Open,
    Opened,
    Ping,
    Pong,
    ProtocolError,
    StreamInfo,
    from_event,
    parse_client,
)

log = logging.getLogger("multistream.server")
_CLOSE = object()


class WsSession:
    def __init__(self, hub: Hub, ws: WebSocket):
        self.hub, self.ws = hub, ws
        self.limits = hub.limits
        self.out: asyncio.Queue = asyncio.Queue()
        self.sid: str | None = None
        self.pump: asyncio.Task | None = None
        self.backlog: dict[str, int] = {}  # input stream -> characters sent and not yet read
        self.peer = f"{ws.client.host}:{ws.client.port}" if ws.client else "?"
        self.overflowed = False
        """The outbox reached ``max_outbox``: the session is closed and the reader stops."""
        self.last_activity = asyncio.get_running_loop().time()

    # -- the connection's life -------------------------------------------------------------
    async def serve(self) -> None:
        with self.hub.handler():
            tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._write())]
            watchdog = asyncio.create_task(self._watch_idle())
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                watchdog.cancel()
                for t in tasks:
                    t.cancel()
                if self.sid is not None:
                    self.hub.close(self.sid, "disconnected")
                if self.pump is not None:
                    with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                        await asyncio.wait_for(self.pump, 5)
                for t in tasks:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await t

    def _emit(self, msg) -> None:
        """Queue a message for the client; past ``max_outbox`` waiting, drop it and give up on the client."""
        if self.out.qsize() >= self.limits.max_outbox and not isinstance(msg, Closed):
            self._overflow()
            return
        self.out.put_nowait(msg.model_dump(exclude_none=True) if not isinstance(msg, dict) else msg)

    def _overflow(self) -> None:
        if self.overflowed:
            return
        self.overflowed = True
        log.warning("%s: %d messages wait for a client that does not read: closing (slow_client)", self.peer, self.out.qsize())
        if self.sid is not None:
            self.hub.close(self.sid, "slow_client")

    def _error(self, code: str, message: str) -> None:
        self._emit(Error(code=code, message=message, session=self.sid))

    async def _write(self) -> None:
        while True:
            msg = await self.out.get()
            if msg is _CLOSE:
                with contextlib.suppress(Exception):
                    await self.ws.close(1001 if self.hub.closing else 1000)
                return
            try:
                await self.ws.send_text(json.dumps(msg, ensure_ascii=False))
            except (WebSocketDisconnect, RuntimeError, OSError):
                return  # the client is gone; the reader notices too

    async def _watch_idle(self) -> None:
        loop = asyncio.get_running_loop()
        timeout = self.limits.idle_timeout_s
        while True:
            await asyncio.sleep(min(timeout / 4, 1.0))
            if loop.time() - self.last_activity > timeout:
                if self.sid is None:
                    self._error("idle_timeout", f"no message for {timeout:g} s (idle_timeout_s)")
                    self.out.put_nowait(_CLOSE)
                    return
                self._error("idle_timeout", f"no activity for {timeout:g} s (idle_timeout_s): closing the session")
                self.hub.close(self.sid, "idle_timeout")
                return

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            frame = await self.ws.receive()
            if frame["type"] == "websocket.disconnect":
                return
            self.last_activity = loop.time()
            if frame.get("bytes") is not None:
                self._error("binary_frame", "binary frames are not part of the protocol; send JSON text frames")
                continue
            text = frame.get("text") or ""
            if len(text.encode("utf-8", "surrogatepass")) > self.limits.max_message_bytes:
                self._error(
                    "message_too_large",
                    f"a frame of {len(text.encode('utf-8', 'surrogatepass'))} bytes; "
                    f"max_message_bytes is {self.limits.max_message_bytes}",
                )
                continue
            try:
                self._handle(parse_client(text))
            except ProtocolError as e:
                self._error(e.code, e.message)
            if self.overflowed:
                return  # read no more from a client that reads nothing
    # -- client messages ------------------------------------------------------------------
    def _handle(self, msg) -> None:
        if isinstance(msg, Ping):
            self._emit(Pong(session=self.sid))
            return
        if isinstance(msg, Open):
            self._open(msg)
            return
        if self.sid is None:
            raise ProtocolError("no_session", f"send 'open' before {msg.type!r}")
        if isinstance(msg, Input):
            stream = msg.stream or self.hub.layout.roles.get("user")  # (no stream: the user's)
            if stream is None:
                raise ProtocolError("invalid_value", "this model has no user stream: name the input's 'stream'")
            self.hub.check_stream(stream, "input")
            pending = self.backlog.get(stream, 0)
            cost = len(msg.text) + msg.end  # the end of a message is a token to read too (an empty input is not free)
            if pending + cost > self.limits.max_backlog_chars:
                raise ProtocolError(
                    "backlog_full",
                    f"{pending} characters on {stream!r} are still to be read; "
                    f"max_backlog_chars is {self.limits.max_backlog_chars}: wait for the model to read them",
                )
            self.hub.send(self.sid, stream, msg.text, bulk=msg.bulk, end=msg.end)
            self.backlog[stream] = pending + cost
        elif isinstance(msg, Abort):
            self.hub.abort(self.sid, msg.stream)
        elif isinstance(msg, Mute):
            self.hub.mute(self.sid, msg.stream, msg.muted)
        elif isinstance(msg, Close):
            self.hub.close(self.sid, "closed by client")

    def _open(self, msg: Open) -> None:
        if self.sid is not None:
            raise ProtocolError("already_open", f"this connection already carries session {self.sid}; one session per connection")
        layout = self.hub.layout
        if msg.layout is not None and list(msg.layout) != layout.names:
            raise ProtocolError("layout_mismatch", f"the model's streams are {layout.names}, not {list(msg.layout)}")
        params: dict[str, StreamParams] = {}
        for name, settings in msg.streams.items():
            self.hub.check_stream(name, "output")
            try:
                params[name] = settings.to_params()
            except ValueError as e:
                raise ProtocolError("invalid_message", f"open: streams.{name}: {e}") from None
        self.sid = self.hub.open("ws", self.peer, prefix=msg.prefix, params=params, tools=msg.tools)
        self._emit(
            Opened(
                session=self.sid,
                model=self.hub.model_name,
                layout=[StreamInfo(name=s.name, kind=s.kind, trust=s.trust, role=layout.role_of(s.name)) for s in layout],
                tools=self.hub.tools if msg.tools else [],
                limits=self.hub.public_limits(),
            )
        )
        self.pump = asyncio.create_task(self._pump(self.sid))

    # -- engine events --------------------------------------------------------------------
    async def _pump(self, sid: str) -> None:
        loop = asyncio.get_running_loop()
        inputs = {s.name for s in self.hub.layout.inputs}
        try:
            async for ev in self.hub.events(sid):
                self.last_activity = loop.time()
                if ev.type == "closed":
                    self._emit(Closed(session=sid, row=ev.row, reason=ev.text))
                    break
                if ev.type in ("token", "message_end") and ev.stream in inputs and ev.stream in self.backlog:
                    read = len(ev.text) if ev.type == "token" else 1
                    self.backlog[ev.stream] = max(0, self.backlog[ev.stream] - read)
                msg = from_event(ev)
                if msg is not None:
                    self._emit(msg)
        finally:
            self.out.put_nowait(_CLOSE)
