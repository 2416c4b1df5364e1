"""``/v1/realtime``: OpenAI Realtime-compatible text sessions, one multi-stream session per connection.

How the protocol maps onto the streams (docs/realtime.md says it for clients):

- The engine session opens at the first ``response.create``; the session's ``instructions``, with a line per
  function tool, are its prefix. Later changes of either are sent as a message on the ``system`` stream.
- A ``conversation.item.create`` (user text, a system message, a ``function_call_output``) waits for the next
  ``response.create``, which sends what waited to the ``user``, ``system`` and ``tool`` streams, whole. While a
  response is being written, a new item goes to the model at once (``session.multistream.live_input``, on by
  default): the model hears it mid-answer and may change course, with no cancel.
- Each message of the ``answer`` stream is an assistant message item (``response.output_text.*``); each message of
  the ``call`` stream is a ``function_call`` item (``response.function_call_arguments.*``), unless it calls one of
  the server's tools that the session let run (``session.multistream.server_tools``): then the engine runs it
  and its result goes back to the model without a round trip (``multistream.tool.*`` events). Other output
  streams (``think``, ...) are forwarded as ``multistream.stream.*`` events when asked for.
- A response is done once the model has read everything sent to it, has replied (an answer or call message has
  ended since it last read input), and has no message open; or once it has gone quiet (the engine has paused the
  session, no tool running; or a message is left open with nothing written for ``completion_idle_s``).
  ``response.cancel`` and ``max_output_tokens`` stop the outputs until the next response has had its input read.
  When the model speaks unasked (a second message after the response was done), the server opens a response
  itself, as a server-side turn detection would, and it answers the next ``response.create``.

The socket's plumbing (bounded outbox, frame size, idle timeout) is :class:`.conn.Connection`'s, and every
session goes through the :class:`.hub.Hub` like the other endpoints' (same limits, same batching).
"""

from __future__ import annotations

import asyncio
import json

from starlette.websockets import WebSocket

from ..engine.session import Event
from ..toolcall import ToolCallError, call_name, parse_call
from .conn import Connection
from .hub import Hub
from .protocol import ProtocolError
from .realtime_events import (
    ArgumentsDelta,
    ArgumentsDone,
    ContentPart,
    ContentPartAdded,
    ContentPartDone,
    ErrorEvent,
    ErrorInfo,
    EventError,
    Extensions,
    FunctionCallItem,
    FunctionCallOutputIn,
    FunctionCallOutputItem,
    FunctionInfo,
    ItemAdded,
    ItemCreate,
    ItemDone,
    MessageItem,
    OutputItemAdded,
    OutputItemDone,
    ResponseCancel,
    ResponseCreate,
    ResponseCreated,
    ResponseDone,
    ResponseInfo,
    ResponseParams,
    ServerToolCall,
    ServerToolResult,
    SessionConfig,
    SessionCreated,
    SessionInfo,
    SessionUpdate,
    SessionUpdated,
    StatusDetails,
    StreamDelta,
    StreamDone,
    TextDelta,
    TextDone,
    Usage,
    new_id,
    parse_client,
)

SETTLE_POLL_S = 0.05
"""How often an open response checks whether the engine has paused its session."""
_SERVER_ERRORS = {"session_failed", "engine_error", "out_of_memory", "shutting_down", "slow_reader"}
_QUIET_ENDS = {"disconnected", "idle_timeout", "slow_client"}
"""Ends of a session the client hears no more about (it left, it was told already, it does not read)."""


def tools_prompt(tools: list[FunctionInfo]) -> str:
    """The function tools, one line each, for the model's system prompt."""
    if not tools:
        return ""
    lines = ['Functions you can call, one call per message, as name({"argument": value}):']
    for t in tools:
        props = t.parameters.get("properties") if isinstance(t.parameters.get("properties"), dict) else {}
        args = {k: (v.get("type", "any") if isinstance(v, dict) else "any") for k, v in props.items()}
        lines.append(f"- {t.name}({json.dumps(args, ensure_ascii=False)})" + (f": {t.description}" if t.description else ""))
    return "\n".join(lines)


def call_arguments(call_text: str) -> str:
    """The arguments of a (possibly unfinished) call as far as they are sure: what follows its ``(``, less a
    closing ``)`` and the blanks around it. Each such prefix of a call is a prefix of the whole call's."""
    args = call_text[call_text.index("(") + 1 :].rstrip()
    return args[:-1] if args.endswith(")") else args


class _Response:
    """One response in progress and its open output items."""

    def __init__(self, conversation: str, budget: int | None, metadata: dict | None, requested: bool):
        self.info = ResponseInfo(id=new_id("resp"), conversation_id=conversation, max_output_tokens=budget or "inf",
                                 metadata=metadata)
        self.budget = budget
        self.requested = requested
        """False for a response the server opened because the model spoke unasked."""
        self.replied = False
        """An answer or call message has ended since the model last read input."""
        self.answer: MessageItem | None = None
        self.answer_index = 0
        self.answer_text: list[str] = []
        self.call_text = ""
        self.call_kind: str | None = None  # None until the call's name is known; then "client" or "server"
        self.call: FunctionCallItem | None = None
        self.call_index = 0
        self.call_sent = 0  # characters of arguments sent as deltas
        self.input_tokens = 0
        self.output_tokens = 0

    @property
    def id(self) -> str:
        return self.info.id


class RealtimeSession(Connection):
    def __init__(self, hub: Hub, ws: WebSocket):
        super().__init__(hub, ws)
        layout = hub.layout
        self.answer, self.call = layout.roles.get("answer"), layout.roles.get("call")
        self.user, self.tool = layout.roles.get("user"), layout.roles.get("tool")
        self.system = "system" if "system" in layout and layout["system"].kind == "input" else None
        self.inputs = {s.name for s in layout.inputs}
        self.side = [s.name for s in layout.outputs if s.name not in (self.answer, self.call)]
        self.info = SessionInfo(id=new_id("sess"), model=hub.model_name)
        self.ext = Extensions()
        self.server_tools: frozenset[str] = frozenset()
        self.conversation = new_id("conv")
        self.last_item: str | None = None
        self.pending: list[tuple[str, str]] = []
        """(stream, text) waiting for the next ``response.create``."""
        self.response: _Response | None = None
        self.stopped = False
        """The outputs are aborted (a cancel, a spent budget) until the next response has had its input read."""
        self.unread: dict[str, int] = {}
        """Messages sent (or tool results due) per input stream that the model has not read to their end yet."""
        self.backlog: dict[str, int] = {}
        """Characters sent per input stream and not yet read (``max_backlog_chars``)."""
        self.open: set[str] = set()
        """Output streams with a message in progress."""
        self.dropping: set[str] = set()
        """Output streams whose message in progress belongs to a stopped response: dropped until it ends."""
        self.event_id: str | None = None
        """The client event being handled (errors name it)."""
        self.last_event = 0.0
        """When the engine last said something of this session (``loop.time()``)."""
        self.reported = False
        """The engine's error that ends the session has been passed on to the client."""

    # -- the wire -------------------------------------------------------------------------------
    def error(self, code: str, message: str, param: str | None = None) -> None:
        kind = "server_error" if code in _SERVER_ERRORS else "invalid_request_error"
        self.emit(ErrorEvent(error=ErrorInfo(type=kind, code=code, message=message, param=param, event_id=self.event_id)))

    def started(self) -> None:
        refusal = None
        if self.answer is None:
            refusal = ("invalid_value", f"this model ({', '.join(self.hub.layout.names)}) has no answer stream")
        elif self.hub.closing:
            refusal = ("shutting_down", "the server is shutting down")
        elif len(self.hub.sessions) >= self.limits.max_sessions:
            refusal = ("too_many_sessions", f"{self.limits.max_sessions} sessions are open already (max_sessions); try later")
        if refusal:
            self.error(*refusal)
            self.hang_up()
            return
        self._describe()
        self.emit(SessionCreated(session=self.info))

    def handle(self, text: str) -> None:
        self.event_id = None
        try:
            ev = parse_client(text)
            self.event_id = ev.event_id
            if isinstance(ev, SessionUpdate):
                self._update(ev.session)
            elif isinstance(ev, ItemCreate):
                self._add_item(ev)
            elif isinstance(ev, ResponseCreate):
                self._create_response(ev.response or ResponseParams())
            elif isinstance(ev, ResponseCancel):
                self._cancel(ev.response_id)
        except ProtocolError as e:  # (an EventError names the parameter and the event too)
            self.event_id = getattr(e, "event_id", None) or self.event_id
            self.error(e.code, e.message, getattr(e, "param", None))
        finally:
            self.event_id = None

    # -- client events ----------------------------------------------------------------------------
    def _describe(self) -> None:
        self.info.multistream = {
            **self.ext.model_dump(),
            "layout": [{"name": s.name, "kind": s.kind, "role": self.hub.layout.role_of(s.name)} for s in self.hub.layout],
            "available_side_streams": self.side,
            "available_server_tools": self.hub.tools,
        }

    def _update(self, cfg: SessionConfig) -> None:
        given = cfg.model_fields_set
        if cfg.model is not None and cfg.model != self.hub.model_name:
            raise EventError("invalid_value", f"this server has the model {self.hub.model_name!r}, not {cfg.model!r}",
                             "session.model")
        info, ext = self.info.model_copy(deep=True), self.ext
        if cfg.multistream is not None:
            ext = cfg.multistream
            for field, names, available in (("side_streams", ext.side_streams, self.side),
                                            ("server_tools", ext.server_tools, self.hub.tools)):
                unknown = [n for n in names if n not in available] if isinstance(names, list) else []
                if unknown:
                    raise EventError("invalid_value", f"no such {field.replace('_', ' ')}: {', '.join(unknown)}; "
                                     f"this server has: {', '.join(available) or 'none'}", f"session.multistream.{field}")
            outputs = [s.name for s in self.hub.layout.outputs]
            for name, settings in ext.streams.items():
                param = f"session.multistream.streams.{name}"
                if name not in outputs:
                    raise EventError("invalid_value", f"no output stream {name!r}; outputs: {', '.join(outputs)}", param)
                try:
                    settings.to_params()
                except ValueError as e:
                    raise EventError("invalid_value", str(e), param) from None
            if self.sid is not None and (self._server_tools(ext) != self.server_tools or ext.streams != self.ext.streams):
                raise EventError("invalid_value", "server_tools and streams are set before the first response, not after",
                                 "session.multistream")
        if "instructions" in given:
            info.instructions = cfg.instructions or ""
        if "tools" in given:
            info.tools = [FunctionInfo(**t.model_dump()) for t in cfg.tools or []]
        if cfg.tool_choice is not None:
            info.tool_choice = cfg.tool_choice
        if cfg.max_output_tokens is not None:
            info.max_output_tokens = cfg.max_output_tokens
        prompt = self._prompt(info)
        if len(prompt) > self.limits.max_input_chars:
            raise EventError("input_too_long", f"instructions and tools make {len(prompt)} characters; "
                             f"max_input_chars is {self.limits.max_input_chars}", "session.instructions")
        told = self.sid is not None and prompt != self._prompt(self.info)
        if told:
            if self.system is None:
                raise EventError("invalid_value", "this model has no system stream: instructions and tools are fixed "
                                 "once the first response has run", "session.instructions")
            self._check_backlog(self.system, prompt)
            self._input(self.system, prompt)
        self.info, self.ext = info, ext
        self._describe()
        self.emit(SessionUpdated(session=self.info))

    @staticmethod
    def _prompt(info: SessionInfo) -> str:
        return "\n\n".join(p for p in (info.instructions, tools_prompt(info.tools)) if p)

    def _server_tools(self, ext: Extensions) -> frozenset[str]:
        return frozenset(self.hub.tools if ext.server_tools is True else ext.server_tools or ())

    def _add_item(self, ev: ItemCreate) -> None:
        if ev.previous_item_id is not None and ev.previous_item_id != self.last_item:
            raise EventError("invalid_value", "an item can only be added at the end of the conversation "
                             f"(previous_item_id {self.last_item!r} or none)", "previous_item_id")
        item = ev.item
        if isinstance(item, FunctionCallOutputIn):
            stream, text, param = self.tool, item.output, "item.output"
            out = FunctionCallOutputItem(id=item.id or new_id("item"), call_id=item.call_id, output=item.output)
        else:
            if item.role == "assistant":
                raise EventError("unsupported_item", "the model's own messages cannot be written by a client; "
                                 "give earlier turns in the instructions", "item.role")
            stream, param = (self.user if item.role == "user" else self.system), "item.content"
            text = "".join(part.text for part in item.content)
            out = MessageItem(id=item.id or new_id("item"), role=item.role, content=[ContentPart(type="input_text", text=text)])
        if stream is None:
            raise EventError("unsupported_item", f"this model has no input stream for {item.type} items of this kind",
                             "item.type")
        if len(text) > self.limits.max_input_chars:
            raise EventError("input_too_long", f"the item has {len(text)} characters; max_input_chars is "
                             f"{self.limits.max_input_chars}", param)
        self._check_backlog(stream, text)
        self._input(stream, text)
        self.emit(ItemAdded(previous_item_id=self.last_item, item=out))
        self.emit(ItemDone(previous_item_id=self.last_item, item=out))
        self.last_item = out.id

    def _check_backlog(self, stream: str, text: str) -> None:
        waiting = self.backlog.get(stream, 0) + sum(len(t) + 1 for s, t in self.pending if s == stream)
        if waiting + len(text) + 1 > self.limits.max_backlog_chars:
            raise EventError("backlog_full", f"{waiting} characters on {stream!r} are still to be read; max_backlog_chars "
                             f"is {self.limits.max_backlog_chars}: wait for the model to read them")

    def _input(self, stream: str, text: str) -> None:
        """Text for the model: now when a response is being written (live input), else at the next response."""
        if self.response is not None and self.ext.live_input and self.sid is not None:
            self._send(stream, text)
        else:
            self.pending.append((stream, text))

    def _send(self, stream: str, text: str) -> None:
        self.hub.send(self.sid, stream, text, bulk=True)  # whole messages, read like a prompt
        self.unread[stream] = self.unread.get(stream, 0) + 1
        self.backlog[stream] = self.backlog.get(stream, 0) + len(text) + 1

    def _create_response(self, params: ResponseParams) -> None:
        if params.instructions and self.system is None:
            raise EventError("invalid_value", "this model has no system stream for a response's instructions",
                             "response.instructions")
        if params.instructions and len(params.instructions) > self.limits.max_input_chars:
            raise EventError("input_too_long", f"instructions of {len(params.instructions)} characters; max_input_chars "
                             f"is {self.limits.max_input_chars}", "response.instructions")
        budget = params.max_output_tokens or self.info.max_output_tokens
        budget = None if budget == "inf" else budget
        r = self.response
        if r is not None:
            if r.requested:
                raise EventError("conversation_already_has_active_response", f"response {r.id} is in progress: "
                                 "wait for its response.done or cancel it")
            r.requested = True  # the model spoke before it was asked: its response answers this request
            r.budget = budget
            r.info.max_output_tokens, r.info.metadata = budget or "inf", params.metadata
            for stream, text in ([(self.system, params.instructions)] if params.instructions else []) + self.pending:
                self._send(stream, text)
            self.pending.clear()
            return
        sends = ([(self.system, params.instructions)] if params.instructions else []) + self.pending
        if self.sid is None and sends:
            self.server_tools = self._server_tools(self.ext)
            settings = {name: stream.to_params() for name, stream in self.ext.streams.items()}
            self.sid = self.hub.open("rt", self.peer, prefix=self._prompt(self.info), params=settings,
                                     tools=self.server_tools or False)
            self.pump = asyncio.create_task(self._pump(self.sid))
        self.response = r = _Response(self.conversation, budget, params.metadata, requested=True)
        self.emit(ResponseCreated(response=r.info))
        try:
            for stream, text in sends:
                self._send(stream, text)
            if self.stopped and not sends:
                self._resume()
        except ProtocolError as e:
            self.error(e.code, e.message)
            self._finish("failed", error=(e.code, e.message))
            return
        finally:
            self.pending.clear()
        if self.sid is None:
            self._finish("completed")  # nothing to read, nothing to say

    def _cancel(self, response_id: str | None) -> None:
        r = self.response
        if r is None or (response_id is not None and response_id != r.id):
            which = f"response {response_id}" if response_id else "response"
            raise EventError("response_cancel_not_active", f"no {which} is in progress", "response_id" if response_id else None)
        self._stop()
        self._finish("cancelled", reason="client_cancelled")

    def _resume(self) -> None:
        self.hub.resume(self.sid)
        self.stopped = False

    def _stop(self) -> None:
        """Silence every output until the next ``response.create``; what they have in progress is dropped."""
        self.hub.abort(self.sid)
        self.stopped = True
        self.dropping |= self.open

    # -- engine events ----------------------------------------------------------------------------
    async def _pump(self, sid: str) -> None:
        loop = asyncio.get_running_loop()
        watch = asyncio.create_task(self._watch_settled(sid))
        try:
            async for ev in self.hub.events(sid):
                self.last_activity = self.last_event = loop.time()
                if ev.type == "closed":
                    self._closed(ev)
                    break
                self._on_event(ev)
        finally:
            watch.cancel()
            self.hang_up()

    async def _watch_settled(self, sid: str) -> None:
        """End a response whose model has gone quiet: it said nothing more (the engine paused the session), or it
        left a message open and wrote nothing for ``completion_idle_s`` (that message is ended where it stopped)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SETTLE_POLL_S)
            r = self.response
            if r is None or any(self.unread.values()):
                continue
            if not self.open and self.hub.settled(sid):
                self._finish("completed")
            elif self.open - self.dropping and loop.time() - self.last_event > self.limits.completion_idle_s:
                self._stop()
                if r.answer is not None:
                    self._end_answer(r, "completed")  # what it said is its answer
                self._finish("completed")

    def _on_event(self, ev: Event) -> None:
        r = self.response
        if ev.stream in self.inputs and ev.type in ("token", "message_end"):  # the model reads what was sent
            self.backlog[ev.stream] = max(0, self.backlog.get(ev.stream, 0) - (len(ev.text) if ev.type == "token" else 1))
            if ev.type == "token" and r is not None:
                r.input_tokens += 1
            if ev.type == "message_end":
                self.unread[ev.stream] = max(0, self.unread.get(ev.stream, 0) - 1)
                if r is not None:
                    r.replied = False  # it owes a reply to what it has just read
                    if self.stopped and not any(self.unread.values()):
                        self._resume()  # after a stop, it speaks again once it has read the new input, not before
            return
        if ev.type == "token":
            self._output_token(ev)
        elif ev.type == "message_end":
            self._output_end(ev)
        elif ev.type == "tool_call":
            self.emit(ServerToolCall(response_id=r and r.id, row=ev.row, name=call_name(ev.text), call=ev.text))
        elif ev.type == "tool_result":
            self.emit(ServerToolResult(response_id=r and r.id, row=ev.row, output=ev.text))
        elif ev.type == "error":
            code = ev.code or "engine_error"
            self.error(code, ev.text)
            self.reported = True
            self._finish("failed", error=(code, ev.text))

    def _output_token(self, ev: Event) -> None:
        s = ev.stream
        new = s not in self.open
        self.open.add(s)
        if s in self.dropping:
            return
        if new and self.stopped:  # sampled before the abort took effect
            self.dropping.add(s)
            return
        r = self.response or self._auto_response()
        r.output_tokens += 1
        if s == self.answer:
            self._answer_delta(r, ev.text)
        elif s == self.call:
            self._call_delta(r, ev.text)
        elif self._forwards(s):
            self.emit(StreamDelta(response_id=r.id, stream=s, row=ev.row, delta=ev.text))
        if r.budget is not None and r.output_tokens >= r.budget:
            self._stop()
            self._finish("incomplete", reason="max_output_tokens")

    def _output_end(self, ev: Event) -> None:
        s = ev.stream
        self.open.discard(s)
        if s in self.dropping:
            self.dropping.discard(s)
            return
        r = self.response
        if r is None:
            return
        if s == self.answer:
            if r.answer is not None:
                self._end_answer(r, "completed")
                r.replied = True
        elif s == self.call:
            self._end_call(r)
            r.replied = True
        elif self._forwards(s):
            self.emit(StreamDone(response_id=r.id, stream=s, row=ev.row, text=ev.text))
        self._check_done()

    def _forwards(self, stream: str) -> bool:
        side = self.ext.side_streams
        return stream in self.side if side is True else bool(side) and stream in side

    def _auto_response(self) -> _Response:
        budget = self.info.max_output_tokens
        self.response = r = _Response(self.conversation, None if budget == "inf" else budget, None, requested=False)
        self.emit(ResponseCreated(response=r.info))
        return r

    def _add_output(self, r: _Response, item: MessageItem | FunctionCallItem) -> int:
        index = len(r.info.output)
        r.info.output.append(item)
        self.emit(OutputItemAdded(response_id=r.id, output_index=index, item=item))
        self.emit(ItemAdded(previous_item_id=self.last_item, item=item))
        self.last_item = item.id
        return index

    def _answer_delta(self, r: _Response, text: str) -> None:
        if r.answer is None:
            r.answer = MessageItem(id=new_id("item"), role="assistant", status="in_progress")
            r.answer_index = self._add_output(r, r.answer)
            r.answer_text = []
            self.emit(ContentPartAdded(response_id=r.id, item_id=r.answer.id, output_index=r.answer_index,
                                       part=ContentPart(type="text")))
        r.answer_text.append(text)
        self.emit(TextDelta(response_id=r.id, item_id=r.answer.id, output_index=r.answer_index, delta=text))

    def _end_answer(self, r: _Response, status: str) -> None:
        item = r.answer
        if item is None:
            return
        text = "".join(r.answer_text)
        where = dict(response_id=r.id, item_id=item.id, output_index=r.answer_index)
        self.emit(TextDone(**where, text=text))
        self.emit(ContentPartDone(**where, part=ContentPart(type="text", text=text)))
        item.status, item.content = status, [ContentPart(type="output_text", text=text)]
        self.emit(OutputItemDone(response_id=r.id, output_index=r.answer_index, item=item))
        self.emit(ItemDone(item=item))
        r.answer = None

    def _call_delta(self, r: _Response, text: str) -> None:
        r.call_text += text
        if r.call_kind is None:
            name = call_name(r.call_text)
            if name is None:
                return  # the name is not complete yet
            r.call_kind = "server" if name in self.server_tools else "client"
            if r.call_kind == "client":
                r.call = FunctionCallItem(id=new_id("item"), call_id=new_id("call"), name=name)
                r.call_index = self._add_output(r, r.call)
                r.call_sent = 0
        if r.call_kind == "client":
            sure = call_arguments(r.call_text)
            if len(sure) > r.call_sent:
                self.emit(ArgumentsDelta(response_id=r.id, item_id=r.call.id, output_index=r.call_index,
                                         call_id=r.call.call_id, delta=sure[r.call_sent :]))
                r.call_sent = len(sure)

    def _end_call(self, r: _Response, status: str | None = None) -> None:
        """The call message has ended (or its response is stopped, with ``status``)."""
        text, kind = r.call_text, r.call_kind
        r.call_text, r.call_kind = "", None
        if kind == "server":
            if status is None:
                self.unread[self.tool] = self.unread.get(self.tool, 0) + 1  # the engine runs it: its result is on the way
            return
        if kind is None:
            if status is not None or not text.strip():
                return
            # not a call at all: the client still sees what the model tried, marked incomplete
            r.call = FunctionCallItem(id=new_id("item"), call_id=new_id("call"), name="", arguments=text)
            r.call_index = self._add_output(r, r.call)
            r.call_sent = len(text)
            status = "incomplete"
        item = r.call
        args = call_arguments(text) if "(" in text else text
        where = dict(response_id=r.id, item_id=item.id, output_index=r.call_index, call_id=item.call_id)
        if status is None:
            if len(args) > r.call_sent:
                self.emit(ArgumentsDelta(**where, delta=args[r.call_sent :]))
            self.emit(ArgumentsDone(**where, name=item.name, arguments=args))
            try:
                parse_call(text)
                status = "completed"
            except ToolCallError:
                status = "incomplete"
        item.arguments, item.status = args, status
        self.emit(OutputItemDone(response_id=r.id, output_index=r.call_index, item=item))
        self.emit(ItemDone(item=item))
        r.call = None

    def _check_done(self) -> None:
        r = self.response
        if r is not None and r.replied and not self.open and not any(self.unread.values()):
            self._finish("completed")

    def _finish(self, status: str, reason: str | None = None, error: tuple[str, str] | None = None) -> None:
        r = self.response
        if r is None:
            return
        self.response = None
        if r.answer is not None:
            self._end_answer(r, "incomplete")
        if r.call is not None or r.call_kind is not None:
            self._end_call(r, "incomplete")
        r.info.status = status
        if status != "completed":
            detail = {"type": "server_error", "code": error[0], "message": error[1]} if error else None
            r.info.status_details = StatusDetails(type=status, reason=reason, error=detail)
        r.info.usage = Usage(input_tokens=r.input_tokens, output_tokens=r.output_tokens,
                             total_tokens=r.input_tokens + r.output_tokens)
        self.emit(ResponseDone(response=r.info))

    def _closed(self, ev: Event) -> None:
        reason = ev.text or "closed"
        code = reason.replace(" ", "_")
        self._finish("incomplete" if code == "row_limit" else "failed", reason=code, error=(code, f"the session ended: {reason}"))
        if code not in _QUIET_ENDS and not self.reported:
            self.error(code, f"the session has ended ({reason}); open a new connection to go on")
