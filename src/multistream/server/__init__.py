"""The server: full-duplex WebSocket sessions, OpenAI-compatible HTTP and a live web page around the asyncio engine."""

from .app import create_app
from .limits import ServerLimits

__all__ = ["create_app", "ServerLimits"]
