"""One WebSocket connection on ``/v1/sessions`` = one session (the socket's plumbing: :mod:`.conn`).

The reader parses client frames and acts on them at once (so input arrives while the
model writes); whatever it refuses becomes an ``error`` and the session goes on. The
pump turns the session's engine events into wire messages, through the connection's
one bounded outbox.
"""

from __future__ import annotations

import asyncio

from starlette.websockets import WebSocket

from ..engine.session import StreamParams
from .conn import Connection
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


class WsSession(Connection):
    def __init__(self, hub: Hub, ws: WebSocket):
        super().__init__(hub, ws)
        self.backlog: dict[str, int] = {}  # input stream -> characters sent and not yet read

    def error(self, code: str, message: str) -> None:
        self.emit(Error(code=code, message=message, session=self.sid))

    def handle(self, text: str) -> None:
        self._handle(parse_client(text))

    # -- client messages ------------------------------------------------------------------
    def _handle(self, msg) -> None:
        if isinstance(msg, Ping):
            self.emit(Pong(session=self.sid))
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
        self.emit(
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
                    self.emit(Closed(session=sid, row=ev.row, reason=ev.text), final=True)
                    break
                if ev.type in ("token", "message_end") and ev.stream in inputs and ev.stream in self.backlog:
                    read = len(ev.text) if ev.type == "token" else 1
                    self.backlog[ev.stream] = max(0, self.backlog[ev.stream] - read)
                msg = from_event(ev)
                if msg is not None:
                    self.emit(msg)
        finally:
            self.hang_up()
