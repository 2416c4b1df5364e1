"""The WebSocket protocol of ``/v1/sessions``: typed JSON messages, each with a ``type`` tag.

One connection carries one session. The client sends ``open`` first, then any number of
``input`` (at any moment, also while the model writes), ``abort``, ``mute`` and ``ping``,
and finally ``close``. The server answers ``opened``, then streams the session's events
(``token``, ``message_end``, ``tool_call``, ``tool_result``), an ``error`` for each
message it refuses (the session goes on), and ``closed`` as the last message before it
closes the socket.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError, field_validator

from ..engine.sampling import MAX_SEED, MAX_TEMPERATURE, MIN_TEMPERATURE, SamplingParams
from ..engine.session import MAX_STOP, MAX_STOP_CHARS, Event, StreamParams
from ..toolcall import ToolCallError, parse_call


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- client -> server -----------------------------------------------------------------------
class StreamSettings(_Msg):
    """Sampling and budget of one output stream."""

    temperature: float = Field(0.0, ge=0, le=MAX_TEMPERATURE, allow_inf_nan=False)
    """0 (greedy) or within [0.001, 100]."""
    top_k: int = Field(0, ge=0, le=1 << 20)
    top_p: float = Field(1.0, gt=0, le=1, allow_inf_nan=False)
    seed: int | None = Field(None, ge=0, lt=MAX_SEED)
    max_tokens: int | None = Field(None, ge=1, le=1 << 20)
    stop: list[Annotated[str, StringConstraints(min_length=1, max_length=MAX_STOP_CHARS)]] = Field(
        default_factory=list, max_length=MAX_STOP
    )

    @field_validator("temperature")
    @classmethod
    def _temperature(cls, v: float) -> float:
        return check_temperature(v)

    def to_params(self) -> StreamParams:
        return StreamParams(
            SamplingParams(self.temperature, self.top_k, self.top_p, self.seed), self.max_tokens, tuple(self.stop)
        )


class Open(_Msg):
    type: Literal["open"]
    layout: list[str] | None = None
    """Stream names the client expects, in order; the session is refused if the model's differ."""
    prefix: str = ""
    """System prompt (the session prefix)."""
    streams: dict[str, StreamSettings] = Field(default_factory=dict)
    """Settings per output stream."""
    tools: bool = True
    """Run the server's tools on completed calls of the ``call`` stream."""


class Input(_Msg):
    type: Literal["input"]
    text: str
    stream: str | None = None
    """The input stream (default: the one that plays the ``user`` role, ``user`` in the default layout)."""
    bulk: bool = False
    """Read the whole text with the outputs held silent (like a prefill)."""
    end: bool = True
    """End the message after this text (False: more text of the same message follows)."""


class Abort(_Msg):
    type: Literal["abort"]
    stream: str | None = None
    """One output stream, or all of them."""


class Mute(_Msg):
    type: Literal["mute"]
    stream: str
    muted: bool = True


class Ping(_Msg):
    type: Literal["ping"]


class Close(_Msg):
    type: Literal["close"]


def check_temperature(v: float) -> float:
    """0 or within [MIN_TEMPERATURE, MAX_TEMPERATURE]: logits divided by less overflow."""
    if v != 0 and not MIN_TEMPERATURE <= v <= MAX_TEMPERATURE:
        raise ValueError(f"must be 0 (greedy) or within [{MIN_TEMPERATURE:g}, {MAX_TEMPERATURE:g}]")
    return v


ClientMessage = Annotated[Open | Input | Abort | Mute | Ping | Close, Field(discriminator="type")]
CLIENT_TYPES = ("open", "input", "abort", "mute", "ping", "close")
_client_adapter: TypeAdapter = TypeAdapter(ClientMessage)


# -- server -> client -----------------------------------------------------------------------
class StreamInfo(_Msg):
    name: str
    kind: str
    trust: str
    role: str | None = None
    """What the stream is for (``user``, ``tool``, ``answer``, ``think``, ``call``; see the layout's roles)."""


class Opened(_Msg):
    type: Literal["opened"] = "opened"
    session: str
    model: str
    layout: list[StreamInfo]
    tools: list[str]
    limits: dict[str, Any]


class Token(_Msg):
    type: Literal["token"] = "token"
    session: str
    row: int
    stream: str
    text: str
    token_id: int | None = None
    forced: bool = False
    """False: the model sampled it; True: an input, or a token the engine imposed."""


class MessageEnd(_Msg):
    type: Literal["message_end"] = "message_end"
    session: str
    row: int
    stream: str
    text: str
    """The whole message."""
    forced: bool = False


class ToolCall(_Msg):
    type: Literal["tool_call"] = "tool_call"
    session: str
    row: int
    stream: str
    text: str
    name: str | None = None
    arguments: dict | None = None


class ToolResult(_Msg):
    type: Literal["tool_result"] = "tool_result"
    session: str
    row: int
    stream: str
    text: str


class Error(_Msg):
    type: Literal["error"] = "error"
    code: str
    message: str
    session: str | None = None


class Pong(_Msg):
    type: Literal["pong"] = "pong"
    session: str | None = None


class Closed(_Msg):
    type: Literal["closed"] = "closed"
    session: str
    row: int
    reason: str


ServerMessage = Opened | Token | MessageEnd | ToolCall | ToolResult | Error | Pong | Closed


class ProtocolError(Exception):
    """A client message the server refuses; becomes an ``error`` message with this code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def check_unicode(data) -> None:
    """Refuse parsed JSON holding a lone surrogate (``"\\ud800"`` is valid JSON, but no UTF-8 text): it could
    neither be tokenised nor sent back."""
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError("invalid_message", "the message holds text that is not valid Unicode (a lone surrogate "
                            "escape such as \\ud800)") from None


def parse_client(text: str) -> Open | Input | Abort | Mute | Ping | Close:
    """One client frame -> a typed message, or :class:`ProtocolError` naming what is wrong."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ProtocolError("bad_json", f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise ProtocolError("bad_json", "not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise ProtocolError("invalid_message", f"a message is a JSON object with a 'type', not {type(data).__name__}")
    check_unicode(data)
    kind = data.get("type")
    if kind not in CLIENT_TYPES:
        raise ProtocolError("unknown_type", f"unknown message type {kind!r}; expected one of: {', '.join(CLIENT_TYPES)}")
    try:
        return _client_adapter.validate_python(data)
    except ValidationError as e:
        raise ProtocolError("invalid_message", f"{kind}: {describe(e)}") from None


def describe(e: ValidationError, limit: int = 3) -> str:
    """Pydantic errors as one short line: ``field.path: what``."""
    parts = []
    for err in e.errors()[:limit]:
        loc = ".".join(str(x) for x in err["loc"] if x not in ("open", "input", "abort", "mute", "ping", "close"))
        parts.append(f"{loc or 'message'}: {err['msg']}")
    more = len(e.errors()) - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def from_event(ev: Event) -> Token | MessageEnd | ToolCall | ToolResult | Error | None:
    """An engine event as a wire message (``closed`` is built by the server, which knows the reason)."""
    if ev.type == "token":
        return Token(session=ev.session, row=ev.row, stream=ev.stream, text=ev.text, token_id=ev.token_id, forced=ev.forced)
    if ev.type == "message_end":
        return MessageEnd(session=ev.session, row=ev.row, stream=ev.stream, text=ev.text, forced=ev.forced)
    if ev.type == "tool_call":
        try:
            name, args = parse_call(ev.text)
        except ToolCallError:
            name, args = None, None
        return ToolCall(session=ev.session, row=ev.row, stream=ev.stream, text=ev.text, name=name, arguments=args)
    if ev.type == "tool_result":
        return ToolResult(session=ev.session, row=ev.row, stream=ev.stream, text=ev.text)
    if ev.type == "error":
        return Error(code=ev.code or "engine_error", message=ev.text, session=ev.session)
    return None
