"""The server: full-duplex WebSocket sessions, OpenAI-compatible HTTP and a live web page around the asyncio engine."""

__all__ = ["create_app", "ServerLimits"]


def __getattr__(name: str):
    # imported on use, so that the command line (and training on a machine without FastAPI) does not load the web stack
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "ServerLimits":
        from .limits import ServerLimits

        return ServerLimits
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
