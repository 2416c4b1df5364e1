"""What the server's WebSocket endpoints share: one connection, a reader, a writer and one bounded outbox.

:class:`Connection` serves one socket: the reader checks each frame (text, at most
``max_message_bytes``) and hands it to :meth:`Connection.handle` at once, so input arrives
while the model writes; whatever ``handle`` refuses (a :class:`ProtocolError`) becomes an
error message and the connection goes on. The writer is the only task that sends on the
socket, from one queue, so messages never interleave; a client that stops reading fills
that queue and gets its session closed (``slow_client``) without holding up anyone else.
Every message goes through that one bound, so a client that sends and never reads cannot
grow the server's memory. A watchdog closes the session after ``idle_timeout_s`` without a
message either way. Subclasses (``/v1/sessions``, ``/v1/realtime``) say how a frame is
handled and how an error looks on their wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from pydantic import BaseModel
from starlette.websockets import WebSocket, WebSocketDisconnect

from .hub import Hub
from .protocol import ProtocolError

log = logging.getLogger("multistream.server")
_CLOSE = object()


class Connection:
    """One WebSocket connection; ``sid`` is its engine session once it has one, ``pump`` the task reading it."""

    def __init__(self, hub: Hub, ws: WebSocket):
        self.hub, self.ws = hub, ws
        self.limits = hub.limits
        self.out: asyncio.Queue = asyncio.Queue()
        self.sid: str | None = None
        self.pump: asyncio.Task | None = None
        self.peer = f"{ws.client.host}:{ws.client.port}" if ws.client else "?"
        self.overflowed = False
        """The outbox reached ``max_outbox``: the session is closed and the reader stops."""
        self.last_activity = asyncio.get_running_loop().time()

    # -- for subclasses ------------------------------------------------------------------
    def handle(self, text: str) -> None:
        """Act on one client frame; raise :class:`ProtocolError` to refuse it."""
        raise NotImplementedError

    def error(self, code: str, message: str) -> None:
        """Tell the client that something was refused or went wrong, in the endpoint's own shape."""
        raise NotImplementedError

    def started(self) -> None:
        """Called once the socket is accepted, before the first frame is read."""

    # -- the connection's life -------------------------------------------------------------
    async def serve(self) -> None:
        with self.hub.handler():
            self.started()
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

    def emit(self, msg: BaseModel | dict, final: bool = False) -> None:
        """Queue a message for the client; past ``max_outbox`` waiting, drop it and give up on the client
        (a ``final`` message, the last one of a session, always goes)."""
        if self.out.qsize() >= self.limits.max_outbox and not final:
            self._overflow()
            return
        self.out.put_nowait(msg.model_dump(exclude_none=True) if isinstance(msg, BaseModel) else msg)

    def hang_up(self) -> None:
        """Close the socket once what is queued before it has been sent."""
        self.out.put_nowait(_CLOSE)

    def _overflow(self) -> None:
        if self.overflowed:
            return
        self.overflowed = True
        log.warning("%s: %d messages wait for a client that does not read: closing (slow_client)", self.peer, self.out.qsize())
        if self.sid is not None:
            self.hub.close(self.sid, "slow_client")

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
                    self.error("idle_timeout", f"no message for {timeout:g} s (idle_timeout_s)")
                    self.hang_up()
                    return
                self.error("idle_timeout", f"no activity for {timeout:g} s (idle_timeout_s): closing the session")
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
                self.error("binary_frame", "binary frames are not part of the protocol; send JSON text frames")
                continue
            text = frame.get("text") or ""
            size = len(text.encode("utf-8", "surrogatepass"))
            if size > self.limits.max_message_bytes:
                self.error("message_too_large", f"a frame of {size} bytes; max_message_bytes is {self.limits.max_message_bytes}")
                continue
            try:
                self.handle(text)
            except ProtocolError as e:
                self.error(e.code, e.message)
            except Exception:  # a bug: say so in the log, and end this connection alone
                log.exception("%s: handling a message failed", self.peer)
                self.error("server_error", "the server failed on this message; closing the connection")
                raise
            if self.overflowed:
                return  # read no more from a client that reads nothing
