"""The FastAPI application: ``create_app(engine_or_model, api_key=None, limits=ServerLimits())``.

Routes: ``GET /`` (the live page) and ``/static``, ``GET /health``, ``GET /v1/models``,
``POST /v1/chat/completions`` and the WebSockets ``/v1/sessions`` (our protocol) and ``/v1/realtime``
(OpenAI's Realtime protocol, text). With an API key every ``/v1`` route and ``/health`` need
``Authorization: Bearer KEY`` (WebSockets may pass ``?api_key=KEY`` instead, or on ``/v1/realtime`` the
subprotocol ``openai-insecure-api-key.KEY``, as browsers cannot set headers on them); without it HTTP
gets 401 and a WebSocket is refused before it opens.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..engine.aio import AsyncEngine
from ..engine.build import build_engine
from ..engine.core import EngineConfig, EngineCore
from ..engine.tools import ToolRegistry, demo_tools
from .hub import Hub
from .limits import ServerLimits
from .openai_compat import chat_completions, models_response, openai_error
from .realtime import RealtimeSession
from .ws import WsSession

STATIC = Path(__file__).parent / "static"
_KEY_PROTOCOL = "openai-insecure-api-key."
"""A browser's Realtime client passes its key as a WebSocket subprotocol, beside ``realtime``."""
log = logging.getLogger("multistream.server")


def async_engine(engine_or_model, limits: ServerLimits, tools: ToolRegistry | None = None) -> AsyncEngine:
    """An :class:`AsyncEngine` (not started) from an engine, an engine core or a model (its engine built with
    :func:`multistream.engine.build.build_engine` within ``limits``, not warmed up)."""
    if isinstance(engine_or_model, AsyncEngine):
        return engine_or_model
    core = engine_or_model if isinstance(engine_or_model, EngineCore) else build_engine(
        engine_or_model, EngineConfig(max_sessions=limits.max_sessions, max_rows=limits.max_rows), warm=False)
    return AsyncEngine(core, tools if tools is not None else demo_tools())


def _authorized(header: str | None, query: str | None, api_key: str | None) -> bool:
    if api_key is None:
        return True
    given = None
    if header and header.lower().startswith("bearer "):
        given = header[7:].strip()
    elif query:
        given = query
    return given is not None and hmac.compare_digest(given.encode(), api_key.encode())


def _subprotocols(ws: WebSocket) -> list[str]:
    return [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]


def _same_origin(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """Browsers send ``Origin`` on WebSockets, which CORS does not guard: accept only this server's own page.

    Clients that are not browsers send no ``Origin`` and are accepted (the API key guards them).
    """
    if not origin or "*" in allowed or origin in allowed:
        return True
    return urlsplit(origin).netloc.lower() == (host or "").lower()


def create_app(
    engine_or_model,
    api_key: str | None = None,
    limits: ServerLimits | None = None,
    model_name: str = "multistream",
    tools: ToolRegistry | None = None,
    allowed_origins: tuple[str, ...] = (),
) -> FastAPI:
    """The app around an :class:`AsyncEngine`, an :class:`EngineCore` or a model.

    ``allowed_origins``: web origins besides the server's own whose pages may open
    WebSocket sessions (``"*"``: any).
    """
    limits = limits or ServerLimits()
    engine = async_engine(engine_or_model, limits, tools)
    hub = Hub(engine, limits, model_name)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        engine.start()
        log.info("serving %r: streams %s; limits %s", model_name, ", ".join(hub.layout.names), hub.public_limits())
        try:
            yield
        finally:
            await hub.shutdown()
            await engine.stop()

    app = FastAPI(title="multistream", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.hub = hub
    app.state.api_key = api_key

    @app.middleware("http")
    async def auth(request: Request, call_next):
        guarded = request.url.path.startswith("/v1") or request.url.path == "/health"
        if guarded and not _authorized(request.headers.get("authorization"), None, api_key):
            return openai_error("invalid_api_key", "missing or wrong API key: send 'Authorization: Bearer KEY'")
        return await call_next(request)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if request.url.path.startswith("/v1"):
            code = "not_found" if exc.status_code == 404 else "invalid_request"
            return openai_error(code, f"{request.method} {request.url.path}: {exc.detail}", status=exc.status_code)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/health")
    async def health():
        return {
            "status": "closing" if hub.closing else "ok",
            "model": model_name,
            "sessions": len(hub.sessions),
            "max_sessions": limits.max_sessions,
            "outputs": [st.name for st in hub.layout.outputs],
        }

    @app.get("/v1/models")
    async def models():
        return models_response(hub)

    @app.post("/v1/chat/completions")
    async def completions(request: Request):
        return await chat_completions(hub, request)

    async def refused(ws: WebSocket, key: str | None = None, model: str | None = None) -> bool:
        """Refuse a WebSocket before it opens: no API key, another origin's page, another model."""
        refusal = None
        if not _authorized(ws.headers.get("authorization"), ws.query_params.get("api_key") or key, api_key):
            refusal = openai_error("invalid_api_key", "missing or wrong API key")
        elif not _same_origin(ws.headers.get("origin"), ws.headers.get("host"), tuple(allowed_origins)):
            refusal = openai_error("forbidden_origin", "WebSocket from another origin", status=403)
        elif model is not None and model != model_name:
            refusal = openai_error("model_not_found", f"the model {model!r} does not exist; this server has {model_name!r}")
        if refusal is None:
            return False
        with contextlib.suppress(RuntimeError):  # servers without the denial-response extension: a plain refusal
            await ws.send_denial_response(refusal)
            return True
        await ws.close(code=1008)
        return True

    @app.websocket("/v1/sessions")
    async def sessions(ws: WebSocket):
        if not await refused(ws):
            await ws.accept()
            await WsSession(hub, ws).serve()

    @app.websocket("/v1/realtime")
    async def realtime(ws: WebSocket):
        protocols = _subprotocols(ws)
        key = next((p.removeprefix(_KEY_PROTOCOL) for p in protocols if p.startswith(_KEY_PROTOCOL)), None)
        if not await refused(ws, key, ws.query_params.get("model")):
            await ws.accept(subprotocol="realtime" if "realtime" in protocols else None)
            await RealtimeSession(hub, ws).serve()

    return app
