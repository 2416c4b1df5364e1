"""OpenAI-compatible HTTP: ``GET /v1/models`` and ``POST /v1/chat/completions`` (plain and streamed).

Chat messages map onto the streams: system (and developer) messages become the session
prefix; the user and tool messages after the last assistant message are sent on the
``user`` and ``tool`` streams; earlier user and assistant turns (the assistant's replies
cannot be put back on output streams) are written into the prefix as a transcript, each
text quoted as a JSON string so that none can pose as a line of another role. Earlier
``tool`` messages are untrusted: they never enter the prefix, they are sent on the
``tool`` stream (before the live messages) and the transcript only says where they went.
The ``answer`` stream becomes ``content``, ``think`` becomes ``reasoning_content``, and
each complete message of the ``call`` stream that parses as ``name({...})`` becomes a
``tool_calls`` entry, except a call of one of the server's tools (the calculator, the clock) that
the request does not declare in ``tools``: the model calls those unasked, so the server runs them
and the model answers with the result. A completion ends with ``tool_calls`` when a tool
call is complete and no answer message is being written (the model waits for the result, which
the client sends); with ``stop`` a few quiet rows after an answer message ended with no tool
running (``AFTER_ANSWER_ROWS``: not at once, as the model often says "one moment" on the answer
stream and then writes the call), or when the engine has paused the session with nothing more
to say; with ``length`` when the answer's ``max_tokens`` ran out, the session reached its row
limit or the request its deadline (``completion_timeout_s``). If the session fails, the client gets an
error (500, or an ``error`` chunk when streaming), never a truncated answer posing as whole.
A streaming client that reads so slowly that ``max_outbox`` events wait for it has its
session closed and gets, once it reads on, an ``error`` chunk with code ``slow_client``.
The ``think`` and ``call`` streams have a budget too: the request's ``max_tokens``, or
``completion_side_tokens``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from typing import Annotated, Any, Literal

from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator
from starlette.requests import Request

from ..engine.sampling import MAX_SEED, SamplingParams
from ..engine.session import MAX_STOP, MAX_STOP_CHARS, StreamParams
from ..engine.tools import RESULT_DELAY_ROWS
from ..toolcall import ToolCallError, parse_call
from .hub import Hub
from .protocol import ProtocolError, check_temperature, check_unicode

POLL_S = 0.05
"""How often a completion with no event looks whether its session has ended."""
AFTER_ANSWER_ROWS = 4
"""Quiet rows after an answer message that end a completion: the model starts its call (if any) within a row or two
of its "one moment", and waiting for the engine's pause (32 rows) cost ~5 s a reply on a CPU."""
_SLOW = object()  # the mark a completion's reader leaves when its client fell ``max_outbox`` events behind
_STATUS = {
    "too_many_sessions": (429, "rate_limit_error"),
    "busy": (429, "rate_limit_error"),
    "out_of_memory": (503, "server_error"),
    "session_failed": (500, "server_error"),
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


_Stop = Annotated[str, StringConstraints(min_length=1, max_length=MAX_STOP_CHARS)]


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # other OpenAI parameters are accepted and ignored
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    temperature: float | None = Field(None, ge=0, le=2, allow_inf_nan=False)
    top_p: float | None = Field(None, gt=0, le=1, allow_inf_nan=False)
    max_tokens: int | None = Field(None, ge=1, le=1 << 20)
    max_completion_tokens: int | None = Field(None, ge=1, le=1 << 20)
    stop: _Stop | list[_Stop] | None = Field(None, max_length=MAX_STOP)
    seed: int | None = Field(None, ge=0, lt=MAX_SEED)
    n: int | None = Field(None, ge=1, le=1)
    tools: list[dict[str, Any]] | None = Field(None, max_length=128)

    def declared_tools(self) -> set[str]:
        """The function names the request declares: the client runs these itself."""
        names = set()
        for t in self.tools or []:
            fn = t.get("function")
            if isinstance(fn, dict) and isinstance(fn.get("name"), str):
                names.add(fn["name"])
        return names

    @field_validator("temperature")
    @classmethod
    def _temperature(cls, v: float | None) -> float | None:
        return v if v is None else check_temperature(v)


_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _one_line(text: str) -> str:
    """``text`` with every line break and control character escaped (as in JSON), unquoted."""
    return json.dumps(text, ensure_ascii=False)[1:-1].translate(_LINE_BREAKS)


def _quoted(text: str) -> str:
    """``text`` as a one-line quotation: it cannot end the line it is on or close its quotes."""
    return f'"{_one_line(text)}"'


def _map_messages(req: ChatRequest, max_chars: int) -> tuple[str, list[tuple[str, str]]]:
    """(prefix, [(role, text), ...] to send) from the chat messages; a role (``user`` or ``tool``) names the
    stream that plays it in the model's layout."""
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
    earlier_tool = []  # untrusted: to the tool stream, never into the (trusted) prefix
    if history:
        lines = []
        for m in history:
            if m.role == "tool":
                earlier_tool.append(m.text())
                lines.append("tool: (a result, given on the tool stream)")
                continue
            said = [_quoted(m.text().strip())] if m.text().strip() else []  # quoted, one line: no other role's line
            for call in m.tool_calls or []:
                fn = call.get("function") if isinstance(call.get("function"), dict) else {}
                said.append(f"[called {_one_line(str(fn.get('name')))}({_one_line(str(fn.get('arguments', '')))})]")
            lines.append(f"{m.role}: {' '.join(said)}")
        prefix = (prefix + "\n\n" if prefix else "") + "Earlier in this conversation:\n" + "\n".join(lines)
    if len(prefix) > max_chars:
        raise ProtocolError(
            "input_too_long", f"system messages and earlier turns make {len(prefix)} characters; max_input_chars is {max_chars}"
        )
    return prefix, [("tool", t) for t in earlier_tool] + [("user" if m.role == "user" else "tool", m.text()) for m in live]


def _call_key(name: str, args: dict) -> str:
    return f"{name}({json.dumps(args, sort_keys=True)})"


def _round_trip(req: ChatRequest) -> tuple[ChatRequest, dict[str, str], set[str]] | None:
    """A conversation that ends with the client's tool results for the calls of its last exchange (user, then
    assistant messages with ``tool_calls``, then ``tool`` messages): the request without that exchange's replies, the
    results by call (``_call_key``) and what the assistant said in it. The model was trained on a result that comes
    after its own call, not after a transcript: the exchange is replayed, and when it writes a call again, that
    call's result goes in."""
    turns = [m for m in req.messages if m.role not in ("system", "developer")]
    last_user = max((i for i, m in enumerate(turns) if m.role == "user"), default=None)
    tail = turns[last_user + 1 :] if last_user is not None else []
    if not tail or tail[-1].role != "tool" or any(m.role not in ("assistant", "tool") for m in tail):
        return None
    if any(m.role == "assistant" and not m.tool_calls for m in tail):
        return None  # (a reply after the results: not one exchange)
    calls, replies = {}, {}
    for m in tail:
        for call in (m.tool_calls or []) if m.role == "assistant" else []:
            fn = call.get("function") if isinstance(call.get("function"), dict) else {}
            try:
                args = json.loads(fn.get("arguments") or "{}")
            except (TypeError, json.JSONDecodeError):
                continue
            if isinstance(fn.get("name"), str) and isinstance(args, dict):
                calls[call.get("id")] = _call_key(fn["name"], args)
        if m.role == "tool" and m.tool_call_id in calls:
            replies[calls[m.tool_call_id]] = m.text()
    if not replies:
        return None
    said = {m.text().strip() for m in tail if m.role == "assistant" and m.text().strip()}
    kept = [m for m in req.messages if m.role in ("system", "developer")] + turns[: last_user + 1]
    return req.model_copy(update={"messages": kept}), replies, said


class _Completion:
    """Collects one session's events into an OpenAI completion, as deltas or as a whole."""

    def __init__(self, hub: Hub, req: ChatRequest, peer: str):
        self.hub, self.req = hub, req
        self.id = f"chatcmpl-{secrets.token_hex(12)}"
        self.created = int(time.time())
        layout = hub.layout
        self.answer, self.think, self.call, self.tool = (layout.roles.get(r) for r in ("answer", "think", "call", "tool"))
        if self.answer is None:
            raise ProtocolError("invalid_value", f"this model ({', '.join(layout.names)}) has no answer stream")
        stop = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        self.stops = tuple(stop)
        try:
            sampling = SamplingParams(req.temperature or 0.0, 0, req.top_p or 1.0, req.seed)
            self.budget = req.max_completion_tokens or req.max_tokens
            side = self.budget or hub.limits.completion_side_tokens
            params = {}
            for s in layout.outputs:
                if s.name == self.answer:
                    params[s.name] = StreamParams(sampling, self.budget, tuple(stop))
                else:
                    params[s.name] = StreamParams(sampling, side)
        except ValueError as e:
            raise ProtocolError("invalid_value", str(e)) from None
        trip = _round_trip(req)
        self.replies, self.said = (trip[1], trip[2]) if trip and self.tool else ({}, set())
        """The client's results of the exchange being replayed, by call, and what the assistant said in it."""
        self.replayed = False
        prefix, sends = _map_messages(trip[0] if self.replies else req, hub.limits.max_input_chars)
        for role, _ in sends:
            if role not in layout.roles:
                raise ProtocolError("invalid_value", f"this model has no input stream for {role!r} messages")
        self.sends = [(layout.roles[role], text) for role, text in sends]
        self.prompt_tokens = len(hub.tok.encode_prefix(prefix)) + sum(len(hub.tok.encode_message(t)) for _, t in self.sends)
        # the model calls its tools (the calculator) unasked: the server runs those the request does not declare
        self.server_tools = frozenset(set(hub.tools) - req.declared_tools())
        self.sid = hub.open("http", peer, prefix=prefix, params=params, tools=self.server_tools or False)
        try:
            for stream, text in self.sends:
                hub.send(self.sid, stream, text, bulk=True)  # whole messages: read like a prompt
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
        self.answer_open = False
        """An answer message is being written (a call completed meanwhile waits for its end)."""
        self.answered = False
        """An answer message has ended."""
        self.held = ""
        """Answer text not sent yet: it may be the start of a stop string."""
        self.message = ""
        """The answer message being written."""
        self.cut = False
        """A stop string ended the answer message being written: the rest of it is dropped."""
        self.finish: str | None = None
        self.error: tuple[str, str] | None = None
        """(code, message) when the session failed."""

    def _abandoned(self) -> None:
        if not self.started:
            self.hub.drop(self.sid)

    async def deltas(self):
        """Yields delta dicts as the model writes; sets ``self.finish`` at the end."""
        self.started = True
        queue: asyncio.Queue = asyncio.Queue()
        bound = self.hub.limits.max_outbox

        async def read():
            async for ev in self.hub.events(self.sid):
                if queue.qsize() >= bound:  # the client does not read what it asked for: stop its session
                    self.hub.close(self.sid, "slow_client")
                    self.hub.drop(self.sid)
                    queue.put_nowait(_SLOW)
                    return
                queue.put_nowait(ev)

        reader = asyncio.create_task(read())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.hub.limits.completion_timeout_s
        try:
            while self.finish is None:
                left = deadline - loop.time()
                if left <= 0:
                    self.finish = "length"  # the request's deadline
                    break
                try:
                    ev = await asyncio.wait_for(queue.get(), min(left, POLL_S))
                except TimeoutError:
                    answered = self.answered and not self.answer_open and self.hub.quiet(self.sid, AFTER_ANSWER_ROWS)
                    if answered or self.hub.settled(self.sid) or (reader.done() and queue.empty()):
                        self.finish = "stop"
                    continue
                if ev is _SLOW:
                    self.error = ("slow_client", f"{bound} events waited for a client that did not read them (max_outbox)")
                    self.finish = "error"
                    break
                delta = self._on_event(ev)
                if delta:
                    yield delta
            if self.held and self.error is None:  # ended otherwise than by the answer's end: what it said stands
                self.content.append(self.held)
                yield {"content": self.held}
                self.held = ""
        finally:
            self.hub.close(self.sid)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    def _on_event(self, ev) -> dict | None:
        if ev.type == "error":
            self.error = (ev.code or "session_failed", ev.text)
            self.finish = "error"
            return None
        if ev.type == "closed":
            self.finish = "length"
            return None
        if ev.forced and ev.type == "token":
            return None  # inputs echoed back
        if ev.type == "token":
            self.completion_tokens += 1
            if ev.stream == self.answer:
                self.answer_tokens += 1
                if not self.answer_open:
                    self.answer_open, self.cut, self.message = True, False, ""
                    self.held = "\n" if self.content else ""  # a later answer message: on a line of its own
                if self.cut:
                    return None
                self.message += ev.text
                self.held += ev.text
                return self._release()
            if ev.stream == self.think:
                self.reasoning.append(ev.text)
                return {"reasoning_content": ev.text}
            return None
        if ev.type == "message_end" and ev.stream == self.answer:
            self.answer_open, self.answered = False, True
            if self._echo():  # the replayed exchange's "one moment" again: the client has it already
                self.held = ""
                return None
            delta = self._release(final=True)
            if self.cut:  # a stop string ends the completion
                self.finish = "stop"
            elif ev.forced and self.budget is not None and self.answer_tokens >= self.budget:
                self.finish = "length"
            elif self.tool_calls:  # the call was complete before this message ended
                self.finish = "tool_calls"
            return delta
        if ev.type == "message_end" and ev.stream == self.think and self.reasoning:
            self.reasoning.append("\n")
            return {"reasoning_content": "\n"}
        if ev.type == "message_end" and ev.stream == self.call:
            try:
                name, args = parse_call(ev.text)
            except ToolCallError:
                return None
            if name in self.server_tools:  # the engine runs it; its result goes back to the model
                return None
            result = self.replies.pop(_call_key(name, args), None)
            if result is not None:  # the replayed exchange's call: the client's result goes in, as a tool's would
                self.hub.send(self.sid, self.tool, result, not_before=ev.row + RESULT_DELAY_ROWS)
                self.replayed = True
                return None
            call = {
                "id": f"call_{secrets.token_hex(8)}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)},
            }
            self.tool_calls.append(call)
            if not self.answer_open:
                self.finish = "tool_calls"
            return {"tool_calls": [{"index": len(self.tool_calls) - 1, **call}]}
        return None

    def _echo(self, partial: bool = False) -> bool:
        """The answer message being written is (``partial``: may still become) one the assistant already said in
        the replayed exchange, before the replayed call got its result."""
        if self.replayed or not self.said:
            return False
        text = self.message.strip()
        return any(s.startswith(text) for s in self.said) if partial else text in self.said

    def _release(self, final: bool = False) -> dict | None:
        """The held answer text that can be sent: all of it without stop strings; else up to a stop string (which
        ends the message: ``cut``), keeping back a tail that may be the start of one (all of it while it may be an
        echo), until the message ends (``final``)."""
        if not final and self._echo(partial=True):
            return None
        hits = [self.held.index(stop) for stop in self.stops if stop in self.held]
        if hits:
            out, self.held, self.cut = self.held[: min(hits)], "", True
        elif final or not self.stops:
            out, self.held = self.held, ""
        else:
            n = max(0, len(self.held) - (max(map(len, self.stops)) - 1))
            out, self.held = self.held[:n], self.held[n:]
        if not out:
            return None
        self.content.append(out)
        return {"content": out}

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

    def error_body(self) -> dict:
        code, message = self.error or ("session_failed", "the session failed")
        return json.loads(openai_error(code, message).body)

    async def stream(self):
        yield self.chunk({"role": "assistant", "content": ""})
        async for delta in self.deltas():
            yield self.chunk(delta)
        if self.error is not None:
            yield f"data: {json.dumps(self.error_body(), ensure_ascii=False)}\n\n"
            yield "data: [DONE]\n\n"
            return
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

    async def whole(self) -> dict | JSONResponse:
        async for _ in self.deltas():
            pass
        if self.error is not None:
            return openai_error(*self.error)
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
    except RecursionError:
        return openai_error("invalid_json", "the request body is not valid JSON: nested too deeply")
    try:
        check_unicode(data)
    except ProtocolError as e:
        return openai_error("invalid_value", e.message)
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
    result = await completion.whole()
    return result if isinstance(result, JSONResponse) else JSONResponse(result)
