"""Run one session to completion: scripted inputs (at rows, spread over rows, or arriving at a rate), tools, timings.

Used by ``multistream generate``, the benchmarks and the evaluations, so they all
measure the same thing. Timings are wall-clock seconds from the moment the first
input starts to arrive: ``ttft`` to the first token of the answer stream, ``e2e`` to
the end of the answer's first message.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field

from ..timeline import token_rows
from .core import EngineCore
from .session import Event, StreamParams
from .tools import RESULT_DELAY_ROWS, ToolRegistry


@dataclass
class Input:
    stream: str
    text: str
    row: int | None = None
    """Enter when the session reaches this row (None: at once). The first input opens row 0."""
    rate: float | None = None
    """Arrival rate in tokens per second (None: all at once)."""
    bulk: bool = False
    spread: float | None = None
    """Rows per token (at least 1; None: all at once): token ``i`` is sent once the session reaches row
    ``row + floor(i * spread)`` (``row``: the row of the first token), as a timeline's spread segment places it
    (:func:`multistream.timeline.token_rows`). Exact when the engine steps one row at a time: a speculative
    step over several rows of other queued input (and the row after a complete message) can pass a token's row,
    or an input's ``row``; it then enters at the next step."""

    def __post_init__(self) -> None:
        if self.spread is not None:
            if isinstance(self.spread, bool) or not isinstance(self.spread, (int, float)) or not self.spread >= 1:
                raise ValueError(f"spread must be a number of rows per token, at least 1, got {self.spread!r}")
            if self.rate is not None:
                raise ValueError("give an input either a rate (tokens/s) or a spread (rows per token), not both")


@dataclass
class RunResult:
    streams: dict[str, str]
    """Every output stream's text, messages separated by newlines."""
    rows: int
    first_output_row: dict[str, int]
    events: list[Event] = field(repr=False)
    ttft: float | None
    e2e: float | None
    input_done: float
    """When the last input token had arrived (seconds from the start)."""
    steps: int

    def to_dict(self, with_events: bool = True) -> dict:
        d = {"streams": self.streams, "rows": self.rows, "first_output_row": self.first_output_row,
             "ttft": self.ttft, "e2e": self.e2e, "input_done": self.input_done, "steps": self.steps}
        if with_events:
            d["events"] = [e.to_dict() for e in self.events]
        return d


@dataclass
class _Feed:
    spec: Input
    ids: list[int]
    sent: int = 0
    started_at: float | None = None
    start_row: int | None = None
    offsets: list[int] | None = None
    """Of a spread input: each token's row after the first token's (``token_rows``)."""


def run_session(
    core: EngineCore,
    inputs: list[Input],
    prefix: str = "",
    params: dict[str, StreamParams] | None = None,
    max_rows: int = 512,
    tools: ToolRegistry | None = None,
    answer_stream: str | None = None,
    patience: int = 24,
    session_id: str | None = None,
    after_answer: int = 2,
    input_wait: float | None = None,
) -> RunResult:
    """Step until the inputs are read and the outputs have finished (or ``max_rows``).

    ``answer_stream`` (default: the layout's ``answer`` role) times the first answer; with ``tools``, messages of
    the ``call`` stream run and their results enter the ``tool`` stream. Once an answer has ended the session
    stops after ``after_answer`` quiet rows (``patience`` before any answer). ``input_wait``: how long the session
    waits for the rest of a message arriving at a rate (``EngineConfig.input_wait``; None: the engine's setting);
    a session with spread input runs on its rows and never waits."""
    if after_answer < 0 or patience < 0:
        raise ValueError("after_answer and patience must be >= 0")
    roles = core.layout.roles
    answer_stream = answer_stream or roles.get("answer")
    # tools run only where the layout has both a call stream and a stream for their results
    call_stream = roles.get("call") if tools is not None and "tool" in roles else None
    scripted = any(i.spread is not None for i in inputs)
    sid = core.open(session_id, prefix=prefix, params=params, input_wait=0.0 if scripted else input_wait)
    feeds = [_Feed(i, core.tok.encode_message(i.text)) for i in inputs]
    for f in feeds:
        if f.spec.spread is not None:
            f.offsets = token_rows(len(f.ids), f.spec.spread)
    messages: dict[str, list[str]] = {s.name: [] for s in core.layout.outputs}
    current: dict[str, str] = {name: "" for name in messages}
    events: list[Event] = []
    t0 = time.perf_counter()
    ttft = e2e = None
    input_done = 0.0
    steps = 0
    answered = False
    while True:
        sess = core.sessions.get(sid)
        row = sess.row if sess else 0
        now = time.perf_counter() - t0
        for f in feeds:
            if f.sent == len(f.ids) or (f.spec.row is not None and row < f.spec.row):
                continue
            if f.started_at is None:
                f.started_at, f.start_row = now, row if f.spec.row is None else f.spec.row
            if f.offsets is not None:
                due = bisect.bisect_right(f.offsets, row - f.start_row)
            elif f.spec.rate is not None:
                due = min(len(f.ids), int((now - f.started_at) * f.spec.rate) + 1)
            else:
                due = len(f.ids)
            if due > f.sent:
                core.send_tokens(sid, f.spec.stream, f.ids[f.sent : due], bulk=f.spec.bulk)
                f.sent = due
                if f.sent == len(f.ids):
                    input_done = max(input_done, now)
        if sess is not None and sess.started and not core.has_work():
            # it waits for the rest of a message (input_wait): sleep until its next token or the end of the wait
            waits = [w for w in (core.next_wake(), _next_due(feeds, time.perf_counter() - t0)) if w is not None]
            if waits:
                time.sleep(min(waits))
                continue
        step_events = core.step()
        steps += 1
        for ev in step_events:
            ev_time = time.perf_counter() - t0
            events.append(ev)
            if ev.stream in current and ev.type == "token":
                current[ev.stream] += ev.text
                if ev.stream == answer_stream and ttft is None:
                    ttft = ev_time
            elif ev.stream in current and ev.type == "message_end":
                messages[ev.stream].append(ev.text)
                current[ev.stream] = ""
                if ev.stream == answer_stream:
                    answered = True
                    e2e = e2e if e2e is not None else ev_time
                if call_stream is not None and ev.stream == call_stream and ev.text.strip():
                    run_call(core, sid, tools, ev, events)
        sess = core.sessions.get(sid)
        if sess is None:  # closed at the row limit
            break
        all_sent = all(f.sent == len(f.ids) for f in feeds)
        quiet = all_sent and not sess.pending_input and not sess.speaking
        if quiet and sess.quiet_rows >= (after_answer if answered else patience):
            break
        if sess.row >= max_rows or (not core.has_work() and all_sent):
            break
    final = core.sessions.get(sid)
    rows = final.row if final else row
    first = dict(final.first_output_row) if final else {}
    if final:
        core.close(sid)
        core.step()
    for name, text in current.items():
        if text:
            messages[name].append(text)
    streams = {name: "\n".join(m) for name, m in messages.items()}
    return RunResult(streams, rows, first, events, ttft, e2e, input_done, steps)


def _next_due(feeds: list[_Feed], now: float) -> float | None:
    """Seconds until the next token of an input arriving at a rate is due (None: no such token)."""
    due = [f.started_at + f.sent / f.spec.rate - now for f in feeds
           if f.spec.rate is not None and f.started_at is not None and f.sent < len(f.ids)]
    return max(0.0, min(due)) if due else None


def run_call(core: EngineCore, sid: str, tools: ToolRegistry, call: Event, events: list[Event]) -> None:
    """Run the tool call that ``call`` (a ``message_end`` of the ``call`` stream) ended, note it and its result in
    ``events`` and send the result to the session's ``tool`` stream, :data:`.tools.RESULT_DELAY_ROWS` rows after
    the call's end token (a driver that steps a session itself runs its tools so, as :func:`run_session` does)."""
    row = core.sessions[sid].row  # the row of the call's end token
    result = tools.run_all(call.text)
    tool_stream = core.layout.role("tool")
    events.append(Event(sid, "tool_call", row, call.stream, text=call.text))
    events.append(Event(sid, "tool_result", row, tool_stream, text=result))
    core.send(sid, tool_stream, result, not_before=row + RESULT_DELAY_ROWS)
