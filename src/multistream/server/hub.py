"""The server's one view of the engine: open sessions under the server's limits, send, abort, read events.

Every session the server opens (WebSocket or HTTP) goes through :class:`Hub`, which
gives it a fresh random id (clients never choose ids, so one client cannot reach
another's session), counts it against ``max_sessions``, and logs one line when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field

from ..engine.aio import AsyncEngine
from ..engine.core import EngineError
from ..engine.session import Event, StreamParams
from .limits import ServerLimits
from .protocol import ProtocolError

log = logging.getLogger("multistream.server")


@dataclass
class SessionInfo:
    id: str
    kind: str  # "ws" | "http"
    peer: str
    opened: float = field(default_factory=time.monotonic)
    rows: int = 0
    reason: str | None = None
    """Set when the server closes the session itself (idle, row limit, shutdown, ...)."""


class Hub:
    def __init__(self, engine: AsyncEngine, limits: ServerLimits, model_name: str):
        self.engine = engine
        self.limits = limits
        self.model_name = model_name
        self.layout = engine.layout
        self.tok = engine.tok
        self.sessions: dict[str, SessionInfo] = {}
        self.closing = False
        self.done: dict[str, asyncio.Event] = {}
        self.handlers: set[asyncio.Event] = set()
        """One per connection being served; set when it has finished (shutdown waits for them)."""

    @property
    def max_rows(self) -> int:
        """Rows per session: the server's limit, within the engine's (the engine enforces it)."""
        return min(self.limits.max_rows, self.engine.limits()["max_rows"])

    def public_limits(self) -> dict:
        """What a client is told of the limits (``opened.limits``)."""
        engine = self.engine.limits()
        return {
            **self.limits.public(),
            "max_rows": self.max_rows,
            "max_kv_tokens": engine["max_kv_tokens"],
            "window_rows": engine["window_rows"],
            "kv_bytes_per_token": engine["kv_bytes_per_token"],
        }

    @property
    def tools(self) -> list[str]:
        """The tools a session can call (none when the layout has no call and tool streams)."""
        return sorted(self.engine.tools.tools) if self.engine.call_stream else []

    # -- sessions ------------------------------------------------------------------------
    def open(
        self, kind: str, peer: str, prefix: str = "", params: dict[str, StreamParams] | None = None,
        tools: bool | Collection[str] = True,
    ) -> str:
        """A new session (its id: ``kind`` and a random part). ``tools``: run the server's tools on every completed
        call, on none, or on the calls that name one of these tools."""
        if self.closing:
            raise ProtocolError("shutting_down", "the server is shutting down")
        if len(self.sessions) >= self.limits.max_sessions:
            raise ProtocolError(
                "too_many_sessions", f"{self.limits.max_sessions} sessions are open already (max_sessions); try later"
            )
        if len(prefix) > self.limits.max_input_chars:
            raise ProtocolError(
                "input_too_long", f"prefix has {len(prefix)} characters; max_input_chars is {self.limits.max_input_chars}"
            )
        sid = f"{kind}-{secrets.token_hex(8)}"
        try:
            self.engine.open(sid, prefix=prefix, params=params, tools=tools, max_rows=self.max_rows)
        except EngineError as e:
            raise ProtocolError(_code(e), str(e)) from None
        self.sessions[sid] = SessionInfo(sid, kind, peer)
        self.done[sid] = asyncio.Event()
        log.debug("session %s opened (%s, %s)", sid, kind, peer)
        return sid

    def send(self, sid: str, stream: str, text: str, bulk: bool = False, end: bool = True,
             not_before: int | None = None) -> None:
        if len(text) > self.limits.max_input_chars:
            raise ProtocolError(
                "input_too_long", f"text has {len(text)} characters; max_input_chars is {self.limits.max_input_chars}"
            )
        self.check_stream(stream, "input")
        try:
            self.engine.send(sid, stream, text, bulk=bulk, end=end, not_before=not_before)
        except EngineError as e:
            raise ProtocolError(_code(e), str(e)) from None

    def abort(self, sid: str, stream: str | None = None) -> None:
        if stream is not None:
            self.check_stream(stream, "output")
        try:
            self.engine.abort(sid, stream)
        except EngineError as e:
            raise ProtocolError(_code(e), str(e)) from None

    def resume(self, sid: str, stream: str | None = None) -> None:
        """Let output streams stopped by ``abort`` speak again."""
        if stream is not None:
            self.check_stream(stream, "output")
        try:
            self.engine.resume(sid, stream)
        except EngineError as e:
            raise ProtocolError(_code(e), str(e)) from None

    def mute(self, sid: str, stream: str, muted: bool) -> None:
        self.check_stream(stream, "output")
        try:
            self.engine.mute(sid, stream, muted)
        except EngineError as e:
            raise ProtocolError(_code(e), str(e)) from None

    def close(self, sid: str, reason: str | None = None) -> None:
        """Ask the engine to close ``sid`` (its ``closed`` event follows); no-op if it is gone."""
        info = self.sessions.get(sid)
        if info is not None and reason and info.reason is None:
            info.reason = reason
        with contextlib.suppress(EngineError):
            self.engine.close(sid)

    def check_stream(self, stream: str, kind: str) -> None:
        """Refuse (``unknown_stream``) a name that is not one of the layout's streams of this kind."""
        if stream not in self.layout or self.layout[stream].kind != kind:
            names = ", ".join(s.name for s in self.layout if s.kind == kind)
            raise ProtocolError("unknown_stream", f"unknown {kind} stream {stream!r}; {kind}s: {names}")

    async def events(self, sid: str) -> AsyncIterator[Event]:
        """The session's events; ends after ``closed`` (whose text is the reason), then the session is forgotten."""
        info = self.sessions[sid]
        try:
            async for ev in self.engine.events(sid):
                if ev.row >= 0:
                    info.rows = max(info.rows, ev.row + 1)
                if ev.type == "closed":
                    reason = info.reason or ev.code or ev.text
                    ev = Event(ev.session, "closed", ev.row, "", text=reason, code=ev.code)
                    info.reason = reason
                yield ev
                if ev.type == "closed":
                    return
        finally:
            self.drop(sid)

    def drop(self, sid: str) -> None:
        """Close ``sid`` if it is still open, forget it and log its line (once)."""
        info = self.sessions.pop(sid, None)
        if info is None:
            return
        self.close(sid)  # the reader went away before the end: the engine must not keep it
        done = self.done.pop(sid, None)
        if done is not None:
            done.set()
        log.info(
            "session %s (%s, %s): %d rows in %.1f s, %s",
            sid,
            info.kind,
            info.peer,
            info.rows,
            time.monotonic() - info.opened,
            info.reason or "closed",
        )

    def quiet(self, sid: str, rows: int) -> bool:
        """True when ``sid`` has read and written nothing for ``rows`` rows, with none of its tool calls running."""
        return self.engine.quiet(sid, rows)

    def settled(self, sid: str) -> bool:
        """True when ``sid`` is idle with none of its tool calls running: nothing more comes until it gets input."""
        return self.engine.settled(sid)

    @contextlib.contextmanager
    def handler(self):
        """Wrap the serving of one connection, so that shutdown can wait for it to say goodbye."""
        done = asyncio.Event()
        self.handlers.add(done)
        try:
            yield
        finally:
            done.set()
            self.handlers.discard(done)

    async def shutdown(self, timeout: float = 5.0) -> None:
        """Close every session (each client gets ``closed``, reason ``shutdown``) and wait for them to go."""
        self.closing = True
        waits = [d.wait() for d in [*self.done.values(), *self.handlers]]
        for sid in list(self.sessions):
            self.close(sid, "shutdown")
        if waits:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits), timeout)


def _code(e: EngineError) -> str:
    """The wire code of an engine refusal."""
    return "invalid_session" if e.code == "unknown_session" else e.code
