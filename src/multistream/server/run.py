"""Running the app with uvicorn: open sessions are closed (each client gets ``closed``) before the server stops."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from .limits import ServerLimits


class Server(uvicorn.Server):
    """``uvicorn.Server`` whose shutdown (SIGINT, SIGTERM or ``should_exit``) first says goodbye to every session."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info"):
        limits: ServerLimits = app.state.hub.limits
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            lifespan="on",
            ws="websockets-sansio",
            ws_max_size=max(16 * 1024 * 1024, 4 * limits.max_message_bytes),  # larger frames: a clean close (1009)
            ws_ping_interval=20.0,
            ws_ping_timeout=20.0,
            timeout_graceful_shutdown=10,
        )
        super().__init__(config)
        self.app = app

    async def shutdown(self, sockets=None) -> None:
        await self.app.state.hub.shutdown()
        await super().shutdown(sockets)
        # a stop asked for by SIGINT/SIGTERM and carried out is a clean exit (status 0): do not re-raise the signal
        captured = getattr(self, "_captured_signals", None)
        if isinstance(captured, list):
            captured.clear()
