"""The events of ``/v1/realtime``: the text subset of OpenAI's Realtime protocol, as pydantic models.

Client events are validated strictly: an unknown ``type``, an unknown field or a value of
the wrong kind is refused with an ``error`` event naming the parameter (codes as OpenAI's:
``unknown_parameter``, ``missing_required_parameter``, ``invalid_value``). Fields of the
protocol that a text session has no use for (audio settings, tracing, ...) are accepted and
ignored. Our own additions live under ``session.multistream`` and in events whose type
starts with ``multistream.`` (see docs/realtime.md).
"""

from __future__ import annotations

import json
import secrets
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from .protocol import ProtocolError, StreamSettings, check_unicode

MAX_ID = 64
"""Characters of an id a client may choose (an item's, an event's)."""
MAX_TOOLS = 64


def new_id(kind: str) -> str:
    """A random id such as ``item_3f9c1e0a7b2d4c55e1f0``."""
    return f"{kind}_{secrets.token_hex(10)}"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


_Id = Annotated[str, Field(min_length=1, max_length=MAX_ID)]


_ID = TypeAdapter(_Id)


def _client_id(value: object) -> str | None:
    """A client's ``event_id`` as an error may echo it: a string an id field would accept and UTF-8 can carry back,
    else none."""
    try:
        check_unicode(value)
        return _ID.validate_python(value)
    except (ProtocolError, ValidationError):
        return None


# -- client -> server -------------------------------------------------------------------------
class FunctionTool(_In):
    """A function the client runs itself; the model's calls of it come back as ``function_call`` items."""

    type: Literal["function"] = "function"
    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")]
    description: Annotated[str, Field(max_length=2000)] = ""
    parameters: dict[str, Any] = Field(default_factory=dict)


class Extensions(_In):
    """``session.multistream``: what only a multi-stream model can do."""

    live_input: bool = True
    """Items created while a response is written reach the model at once (no cancel needed)."""
    side_streams: bool | list[str] = False
    """Output streams besides the answer and the calls (``think``, ...) to forward as ``multistream.stream.*`` events
    (True: all of them)."""
    server_tools: bool | list[str] = False
    """The server's own tools (``calculator``, ``clock``) to run without a round trip to the client (True: all)."""
    streams: dict[str, StreamSettings] = Field(default_factory=dict)
    """Sampling and budget per output stream, as in ``/v1/sessions``' ``open`` (before the first response)."""


class SessionConfig(_In):
    type: Literal["realtime"] | None = None
    model: str | None = None
    instructions: Annotated[str, Field(max_length=1 << 20)] | None = None
    tools: Annotated[list[FunctionTool], Field(max_length=MAX_TOOLS)] | None = None
    tool_choice: str | dict[str, Any] | None = None
    max_output_tokens: Annotated[int, Field(ge=1, le=1 << 20)] | Literal["inf"] | None = None
    output_modalities: list[Literal["text"]] | None = None
    multistream: Extensions | None = None
    # accepted and ignored: nothing to do for them in a text session
    audio: dict[str, Any] | None = None
    include: list[str] | None = None
    parallel_tool_calls: bool | None = None
    prompt: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    tracing: str | dict[str, Any] | None = None
    truncation: str | dict[str, Any] | None = None


class SessionUpdate(_In):
    type: Literal["session.update"]
    event_id: _Id | None = None
    session: SessionConfig


class InputText(_In):
    type: Literal["input_text"]
    text: str


class MessageIn(_In):
    type: Literal["message"]
    role: Literal["user", "system", "assistant"]
    content: Annotated[list[InputText], Field(min_length=1, max_length=64)]
    id: _Id | None = None
    object: Literal["realtime.item"] | None = None
    status: Literal["completed", "incomplete", "in_progress"] | None = None


class FunctionCallOutputIn(_In):
    type: Literal["function_call_output"]
    call_id: _Id
    output: str
    id: _Id | None = None
    object: Literal["realtime.item"] | None = None
    status: Literal["completed", "incomplete", "in_progress"] | None = None


class ItemCreate(_In):
    type: Literal["conversation.item.create"]
    event_id: _Id | None = None
    previous_item_id: _Id | None = None
    item: Annotated[MessageIn | FunctionCallOutputIn, Field(discriminator="type")]


class ResponseParams(_In):
    instructions: Annotated[str, Field(max_length=1 << 20)] | None = None
    max_output_tokens: Annotated[int, Field(ge=1, le=1 << 20)] | Literal["inf"] | None = None
    output_modalities: list[Literal["text"]] | None = None
    metadata: Annotated[dict[str, Annotated[str, Field(max_length=512)]], Field(max_length=16)] | None = None
    conversation: Literal["auto"] | None = None
    tool_choice: str | dict[str, Any] | None = None  # accepted and ignored
    audio: dict[str, Any] | None = None  # accepted and ignored


class ResponseCreate(_In):
    type: Literal["response.create"]
    event_id: _Id | None = None
    response: ResponseParams | None = None


class ResponseCancel(_In):
    type: Literal["response.cancel"]
    event_id: _Id | None = None
    response_id: _Id | None = None


ClientEvent = Annotated[SessionUpdate | ItemCreate | ResponseCreate | ResponseCancel, Field(discriminator="type")]
CLIENT_TYPES = ("session.update", "conversation.item.create", "response.create", "response.cancel")
UNSUPPORTED_TYPES = (
    "input_audio_buffer.append", "input_audio_buffer.commit", "input_audio_buffer.clear", "output_audio_buffer.clear",
    "conversation.item.retrieve", "conversation.item.truncate", "conversation.item.delete",
)
"""Client events of the protocol that a text session of a multi-stream model does not take."""
_adapter: TypeAdapter = TypeAdapter(ClientEvent)
_CODES = {"extra_forbidden": "unknown_parameter", "missing": "missing_required_parameter"}


class EventError(ProtocolError):
    """A refused client event: its code, the parameter at fault and the client's ``event_id``."""

    def __init__(self, code: str, message: str, param: str | None = None, event_id: str | None = None):
        super().__init__(code, message)
        self.param, self.event_id = param, event_id


def parse_client(text: str) -> SessionUpdate | ItemCreate | ResponseCreate | ResponseCancel:
    """One client frame -> a typed event, or :class:`EventError` naming what is wrong."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise EventError("invalid_json", f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise EventError("invalid_json", "not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise EventError("invalid_json", f"an event is a JSON object with a 'type', not {type(data).__name__}")
    kind = data.get("type")
    event_id = _client_id(data.get("event_id"))
    try:
        check_unicode(data)
    except ProtocolError as e:
        raise EventError("invalid_value", e.message, None, event_id) from None
    if kind in UNSUPPORTED_TYPES:
        raise EventError("unsupported_event", f"{kind!r} is not supported by this text-only server", "type", event_id)
    if kind not in CLIENT_TYPES:
        raise EventError(
            "unknown_event", f"unknown event type {kind!r:.80}; expected one of: {', '.join(CLIENT_TYPES)}", "type", event_id
        )
    try:
        return _adapter.validate_python(data)
    except ValidationError as e:
        err = e.errors()[0]
        param = ".".join(str(x) for x in err["loc"][1:])  # (the first is the event type)
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise EventError(_CODES.get(err["type"], "invalid_value"), f"{kind}: {param}: {err['msg']}{more}", param,
                         event_id) from None


# -- server -> client -------------------------------------------------------------------------
class _Out(BaseModel):
    event_id: str = Field(default_factory=lambda: new_id("event"))


class ErrorInfo(BaseModel):
    type: str = "invalid_request_error"
    code: str
    message: str
    param: str | None = None
    event_id: str | None = None
    """The client event that caused it, when it had an id."""


class ErrorEvent(_Out):
    type: Literal["error"] = "error"
    error: ErrorInfo


class FunctionInfo(BaseModel):
    type: Literal["function"] = "function"
    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)


class SessionInfo(BaseModel):
    """The session as the server holds it (``session.created``, ``session.updated``)."""

    type: Literal["realtime"] = "realtime"
    object: Literal["realtime.session"] = "realtime.session"
    id: str
    model: str
    instructions: str = ""
    tools: list[FunctionInfo] = Field(default_factory=list)
    tool_choice: str | dict[str, Any] = "auto"
    max_output_tokens: int | Literal["inf"] = "inf"
    output_modalities: list[str] = Field(default_factory=lambda: ["text"])
    multistream: dict[str, Any] = Field(default_factory=dict)
    """The extensions in force, the model's streams and the server's tools."""


class SessionCreated(_Out):
    type: Literal["session.created"] = "session.created"
    session: SessionInfo


class SessionUpdated(_Out):
    type: Literal["session.updated"] = "session.updated"
    session: SessionInfo


class ContentPart(BaseModel):
    type: Literal["input_text", "output_text", "text"]
    text: str = ""


class MessageItem(BaseModel):
    id: str
    object: Literal["realtime.item"] = "realtime.item"
    type: Literal["message"] = "message"
    role: Literal["user", "system", "assistant"]
    status: Literal["completed", "incomplete", "in_progress"] = "completed"
    content: list[ContentPart] = Field(default_factory=list)


class FunctionCallItem(BaseModel):
    id: str
    object: Literal["realtime.item"] = "realtime.item"
    type: Literal["function_call"] = "function_call"
    status: Literal["completed", "incomplete", "in_progress"] = "in_progress"
    call_id: str
    name: str
    arguments: str = ""


class FunctionCallOutputItem(BaseModel):
    id: str
    object: Literal["realtime.item"] = "realtime.item"
    type: Literal["function_call_output"] = "function_call_output"
    status: Literal["completed"] = "completed"
    call_id: str
    output: str


Item = MessageItem | FunctionCallItem | FunctionCallOutputItem


class ItemAdded(_Out):
    type: Literal["conversation.item.added"] = "conversation.item.added"
    previous_item_id: str | None = None
    item: Item


class ItemDone(_Out):
    type: Literal["conversation.item.done"] = "conversation.item.done"
    previous_item_id: str | None = None
    item: Item


class StatusDetails(BaseModel):
    type: Literal["completed", "cancelled", "incomplete", "failed"]
    reason: str | None = None
    error: dict[str, str] | None = None


class Usage(BaseModel):
    total_tokens: int = 0
    input_tokens: int = 0
    """Tokens the model read while the response ran (its items and anything else that came in)."""
    output_tokens: int = 0
    """Tokens the model wrote on any output stream."""


class ResponseInfo(BaseModel):
    id: str
    object: Literal["realtime.response"] = "realtime.response"
    status: Literal["in_progress", "completed", "cancelled", "incomplete", "failed"] = "in_progress"
    status_details: StatusDetails | None = None
    output: list[MessageItem | FunctionCallItem] = Field(default_factory=list)
    conversation_id: str
    output_modalities: list[str] = Field(default_factory=lambda: ["text"])
    max_output_tokens: int | Literal["inf"] = "inf"
    metadata: dict[str, str] | None = None
    usage: Usage | None = None


class ResponseCreated(_Out):
    type: Literal["response.created"] = "response.created"
    response: ResponseInfo


class ResponseDone(_Out):
    type: Literal["response.done"] = "response.done"
    response: ResponseInfo


class OutputItemAdded(_Out):
    type: Literal["response.output_item.added"] = "response.output_item.added"
    response_id: str
    output_index: int
    item: MessageItem | FunctionCallItem


class OutputItemDone(_Out):
    type: Literal["response.output_item.done"] = "response.output_item.done"
    response_id: str
    output_index: int
    item: MessageItem | FunctionCallItem


class _Part(_Out):
    response_id: str
    item_id: str
    output_index: int
    content_index: int = 0


class ContentPartAdded(_Part):
    type: Literal["response.content_part.added"] = "response.content_part.added"
    part: ContentPart


class ContentPartDone(_Part):
    type: Literal["response.content_part.done"] = "response.content_part.done"
    part: ContentPart


class TextDelta(_Part):
    type: Literal["response.output_text.delta"] = "response.output_text.delta"
    delta: str


class TextDone(_Part):
    type: Literal["response.output_text.done"] = "response.output_text.done"
    text: str


class ArgumentsDelta(_Out):
    type: Literal["response.function_call_arguments.delta"] = "response.function_call_arguments.delta"
    response_id: str
    item_id: str
    output_index: int
    call_id: str
    delta: str


class ArgumentsDone(_Out):
    type: Literal["response.function_call_arguments.done"] = "response.function_call_arguments.done"
    response_id: str
    item_id: str
    output_index: int
    call_id: str
    name: str
    arguments: str


# -- our extensions (namespaced) --------------------------------------------------------------
class StreamDelta(_Out):
    """A piece of a side stream's message (``session.multistream.side_streams``)."""

    type: Literal["multistream.stream.delta"] = "multistream.stream.delta"
    response_id: str | None = None
    stream: str
    row: int
    delta: str


class StreamDone(_Out):
    type: Literal["multistream.stream.done"] = "multistream.stream.done"
    response_id: str | None = None
    stream: str
    row: int
    text: str


class ServerToolCall(_Out):
    """The server runs one of its tools on the model's call (``session.multistream.server_tools``)."""

    type: Literal["multistream.tool.call"] = "multistream.tool.call"
    response_id: str | None = None
    row: int
    name: str | None = None
    call: str
    """The call as the model wrote it, ``name({...})``."""


class ServerToolResult(_Out):
    type: Literal["multistream.tool.result"] = "multistream.tool.result"
    response_id: str | None = None
    row: int
    output: str
