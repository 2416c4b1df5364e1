"""``multistream serve``: load and warm a model, then serve it (WebSocket sessions, OpenAI HTTP, the web page)."""

from __future__ import annotations

import logging
import os
import time

from ..defaults import SPECULATIVE_ROWS
from ..engine.cli import add_dtype_arg, add_engine_args
from .limits import ServerLimits


def cmd_serve(args) -> int:
    from ..engine.aio import AsyncEngine
    from ..engine.build import build_engine
    from ..engine.core import EngineConfig
    from ..engine.tools import demo_tools
    from .app import create_app
    from .run import Server

    logging.basicConfig(level=getattr(logging, args.log_level.upper()), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("multistream.server")
    limits = ServerLimits(
        max_message_bytes=args.max_message_bytes,
        max_input_chars=args.max_input_chars,
        max_sessions=args.max_sessions,
        max_rows=args.max_rows,
        idle_timeout_s=args.idle_timeout,
    )
    t0 = time.perf_counter()
    core = build_engine(
        args.model,
        EngineConfig(
            max_sessions=limits.max_sessions,
            max_rows=limits.max_rows,
            speculative=args.speculative,
            max_kv_tokens=args.max_kv_tokens or None,
            window_rows=args.window_rows or None,
            compiled=args.compile,
            autotune=args.autotune,
            speak_rule=args.speak_rule,
            input_wait=args.input_wait,
            quant=args.quant,
        ),
        dtype=args.dtype,
    )
    log.info("model %r loaded and warmed up in %.1f s (%s)", args.model, time.perf_counter() - t0,
             f"row forward compiled in {core.compiled.compile_seconds:.1f} s" if core.compiled else "eager")
    api_key = args.api_key or os.environ.get("MULTISTREAM_API_KEY") or None
    app = create_app(
        AsyncEngine(core, demo_tools()),
        api_key=api_key,
        limits=limits,
        model_name=args.name or args.model,
        allowed_origins=tuple(args.allow_origin),
    )
    where = f"http://{args.host}:{args.port}"
    log.info(
        "open %s/ in a browser; WebSocket %s/v1/sessions; OpenAI base URL %s/v1 (chat completions, and Realtime at "
        "%s/v1/realtime)%s",
        where,
        where.replace("http", "ws", 1),
        where,
        where.replace("http", "ws", 1),
        " (API key required)" if api_key else "",
    )
    Server(app, args.host, args.port, log_level=args.log_level.lower()).run()
    return 0


def register(sub) -> None:
    limits = ServerLimits()  # the defaults
    s = sub.add_parser("serve", help="serve a model: WebSocket sessions, OpenAI-compatible HTTP and a live web page")
    s.add_argument("--model", default="default", help="'default', 'base[:REF]' or a saved multistream model folder")
    s.add_argument("--name", help="model id clients use (default: the --model value)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--api-key", help="require 'Authorization: Bearer KEY' (or MULTISTREAM_API_KEY)")
    s.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a web origin (https://host:port) whose pages may open WebSocket sessions besides the server's own; '*': any",
    )
    s.add_argument("--max-sessions", type=int, default=limits.max_sessions, help="sessions open at once")
    s.add_argument("--max-rows", type=int, default=limits.max_rows, help="rows per session")
    s.add_argument(
        "--max-kv-tokens",
        type=int,
        default=131_072,
        help="ceiling of the KV cache in tokens over all sessions (0: none); a session that would pass it is refused "
        "or closed with 'out_of_memory'",
    )
    s.add_argument(
        "--window-rows",
        type=int,
        default=0,
        help="keep only a session's last N rows (and its system prompt) in the KV cache: with a large --max-rows a "
        "session can run for hours in bounded memory, forgetting what it read longer ago (0: keep every row)",
    )
    s.add_argument("--max-input-chars", type=int, default=limits.max_input_chars, help="text per input message")
    s.add_argument("--max-message-bytes", type=int, default=limits.max_message_bytes,
                   help="largest WebSocket frame or HTTP body")
    s.add_argument("--idle-timeout", type=float, default=limits.idle_timeout_s,
                   help="seconds without traffic before a session is closed")
    s.add_argument("--speculative", type=int, default=SPECULATIVE_ROWS,
                   help="rows fed at once while reading input, assuming silent outputs (exact at temperature 0; 0: off)")
    add_dtype_arg(s)
    add_engine_args(s)
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    s.set_defaults(func=cmd_serve)
