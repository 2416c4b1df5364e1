"""OpenAI-compatible HTTP: ``GET /v1/models`` and ``POST /v1/chat/completions`` (plain and streamed).

Chat messages map onto the streams: system (and developer) messages become the session
prefix; the user and tool messages after the last assistant message are sent on the
``user`` and ``tool`` streams; earlier turns (with the assistant's replies, which the
engine cannot put back on output streams) are written into the prefix as a transcript.
The ``answer`` stream becomes ``content``, ``think`` becomes ``reasoning_content``, and
each complete message of the ``call`` stream that parses as ``name({...})`` becomes a
``tool_calls`` entry. A completion ends when the answer message ends (``stop``, or
``length`` when its ``max_tokens`` ran out), when a tool call is complete and no answer
has started (``tool_calls``), when the session reaches its row limit (``length``), or
when the engine has paused the session with nothing more to say (``stop``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from typing import Any, Literal

from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request

from ..engine.sampling import SamplingParams
from ..engine.session import StreamParams
from ..toolcall import ToolCallError, parse_call
from .hub import Hub
from .protocol import ProtocolError

_STATUS = {
    "too_many_sessions": (429, "rate_limit_error"),
    "shutting_down": (503, "server_error"),
    "message_too_large": (413, "invalid_request_error"),
    "invalid_api_key": (401, "invalid_request_error"),
    "model_not_found": (404, "invalid_request_error"),
    "not_found": (404, "invalid_request_error"),
    "server_error": (500, "server_error"),
}


def openai_error(code: str, message: str, param: str | None = None, status: int | None = None) -> JSONResponse:
    """An error in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""
    st, kind = _STATUS.get(code, (400, "invalid_request_error"))
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status_code=status or st)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type", "text") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # other OpenAI parameters are accepted and ignored
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = Field(None, ge=1, le=1)


def _map_messages(req: ChatRequest, max_chars: int) -> tuple[str, list[tuple[str, str]]]:
    """(prefix, [(stream, text), ...] to send) from the chat messages."""
    for i, m in enumerate(req.messages):
        if len(m.text()) > max_chars:
            raise ProtocolError(
                "input_too_long", f"messages[{i}].content has {len(m.text())} characters; max_input_chars is {max_chars}"
            )
    system = [m.text() for m in req.messages if m.role in ("system", "developer")]
    turns = [m for m in req.messages if m.role not in ("system", "developer")]
    last_assistant = max((i for i, m in enumerate(turns) if m.role == "assistant"), default=-1)
    history, live = turns[: last_assistant + 1], turns[last_assistant + 1 :]
    if not live:
        raise ProtocolError("invalid_value", "the conversation must end with a user or tool message")
    prefix = "\n\n".join(system)
    if history:
        lines = []
        for m in history:
            said = m.text()
            for call in m.tool_calls or []:
                fn = call.get("function", {})
                said += f" [called {fn.get('name')}({fn.get('arguments', '')})]"
            lines.append(f"{m.role}: {said.strip()}")
        prefix = (prefix + "\n\n" if prefix else "") + "Earlier in this conversation:\n" + "\n".join(lines)
    if len(prefix) > max_chars:
        raise ProtocolError(
            "input_too_long", f"system messages and earlier turns make {len(prefix)} characters; max_input_chars is {max_chars}"
        )
    return prefix, [("user" if m.role == "user" else "tool", m.text()) for m in live]


class _Completion:
    """Collects one session's events into an OpenAI completion, as deltas or as a whole."""

    def __init__(self, hub: Hub, req: ChatRequest, peer: str):
        self.hub, self.req = hub, req
        self.id = f"chatcmpl-{secrets.token_hex(12)}"
        self.created = int(time.time())
        layout = hub.layout
        self.answer, self.think, self.call = ("answer", "think", "call")
        stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        sampling = SamplingParams(req.temperature or 0.0, 0, req.top_p or 1.0, req.seed)
        self.budget = req.max_completion_tokens or req.max_tokens
        params = {}
        for s in layout.outputs:
            if s.name == self.answer:
                params[s.name] = StreamParams(sampling, self.budget, tuple(stop))
            else:
                params[s.name] = StreamParams(sampling)
        prefix, self.sends = _map_messages(req, hub.limits.max_input_chars)
        for stream, _ in self.sends:
            if stream not in layout or layout[stream].kind != "input":
                raise ProtocolError("invalid_value", f"this model has no {stream!r} input stream")
        self.prompt_tokens = len(hub.tok.encode_prefix(prefix)) + sum(len(hub.tok.encode_message(t)) for _, t in self.sends)
        self.sid = hub.open("http", peer, prefix=prefix, params=params, tools=False)
        try:
            for stream, text in self.sends:
                hub.send(self.sid, stream, text)
        except ProtocolError:
            hub.drop(self.sid)
            raise
        self.started = False
        # a streamed response whose client left before the first byte never runs ``deltas``: free its session
        asyncio.get_running_loop().call_later(30.0, self._abandoned)
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.tool_calls: list[dict] = []
        self.completion_tokens = 0
        self.answer_tokens = 0
        self.finish: str | None = None

    def _abandoned(self) -> None:
        if not self.started:
            self.hub.drop(self.sid)

    async def deltas(self):
        """Yields delta dicts as the model writes; sets ``self.finish`` at the end."""
        self.started = True
        queue: asyncio.Queue = asyncio.Queue()

        async def read():
            async for ev in self.hub.events(self.sid):
                queue.put_nowait(ev)

        reader = asyncio.create_task(read())
        try:
            while self.finish is None:
                try:
                    ev = await asyncio.wait_for(queue.get(), self.hub.limits.completion_idle_s)
                except TimeoutError:
                    if self.hub.idle(self.sid) or reader.done():
                        self.finish = "stop"
                    continue
                delta = self._on_event(ev)
                if delta:
                    yield delta
        finally:
            self.hub.close(self.sid)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    def _on_event(self, ev) -> dict | None:
        if ev.type == "closed":
            self.finish = "length"
            return None
        if ev.forced and ev.type == "token":
            return None  # inputs echoed back
        if ev.type == "token":
            self.completion_tokens += 1
            if ev.stream == self.answer:
                self.answer_tokens += 1
                self.content.append(ev.text)
                return {"content": ev.text}
            if ev.stream == self.think:
                self.reasoning.append(ev.text)
                return {"reasoning_content": ev.text}
            return None
        if ev.type == "message_end" and ev.stream == self.answer:
            self.finish = "length" if ev.forced and self.budget is not None and self.answer_tokens >= self.budget else "stop"
            return None
        if ev.type == "message_end" and ev.stream == self.think and self.reasoning:
            self.reasoning.append("\n")
            return {"reasoning_content": "\n"}
        if ev.type == "message_end" and ev.stream == self.call:
            try:
                name, args = parse_call(ev.text)
            except ToolCallError:
                return None
            call = {
                "id": f"call_{secrets.token_hex(8)}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)},
            }
            self.tool_calls.append(call)
            if not self.content:
                self.finish = "tool_calls"
            return {"tool_calls": [{"index": len(self.tool_calls) - 1, **call}]}
        return None

    def usage(self) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }

    def chunk(self, delta: dict, finish: str | None = None) -> str:
        body = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.req.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    async def stream(self):
        yield self.chunk({"role": "assistant", "content": ""})
        async for delta in self.deltas():
            yield self.chunk(delta)
        yield self.chunk({}, self.finish or "stop")
        if (self.req.stream_options or {}).get("include_usage"):
            body = {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.req.model,
                "choices": [],
                "usage": self.usage(),
            }
            yield f"data: {json.dumps(body)}\n\n"
        yield "data: [DONE]\n\n"

    async def whole(self) -> dict:
        async for _ in self.deltas():
            pass
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.content)}
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning).strip("\n")
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.req.model,
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish or "stop", "logprobs": None}],
            "usage": self.usage(),
        }


def models_response(hub: Hub) -> dict:
    return {
        "object": "list",
        "data": [
            {
                "id": hub.model_name,
                "object": "model",
                "created": 0,
                "owned_by": "multistream",
                "streams": [s.name for s in hub.layout],
            }
        ],
    }


async def chat_completions(hub: Hub, request: Request):
    body = await request.body()
    if len(body) > hub.limits.max_message_bytes:
        return openai_error(
            "message_too_large", f"request body of {len(body)} bytes; max_message_bytes is {hub.limits.max_message_bytes}"
        )
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return openai_error("invalid_json", f"the request body is not valid JSON: {e}")
    try:
        req = ChatRequest.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        param = ".".join(str(x) for x in err["loc"])
        return openai_error("invalid_value", f"{param}: {err['msg']}", param=param)
    if req.model != hub.model_name:
        return openai_error(
            "model_not_found", f"the model {req.model!r} does not exist; this server has {hub.model_name!r}", param="model"
        )
    peer = f"{request.client.host}:{request.client.port}" if request.client else "?"
    try:
        completion = _Completion(hub, req, peer)
    except ProtocolError as e:
        return openai_error(e.code, e.message, param="messages" if e.code == "input_too_long" else None)
    if req.stream:
        return StreamingResponse(
            completion.stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
    return JSONResponse(await completion.whole())
