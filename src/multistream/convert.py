"""Converters from data people already have to timelines.

Chat records (OpenAI style) become timelines under a *schedule* that says when the
model starts to write:

- ``after-input``: outputs start once the input message has been read (one row after
  its end token, the earliest row whose prediction can see that token);
- ``wait-k``: the first output of a reply starts ``k`` rows after the user message
  *starts*, so the model writes while it reads.

Within a reply the parts follow one another (think, then answer, then tool calls),
each one row after the previous part ends; a tool result enters the ``tool`` stream one
row after the call ends, and the next user turn one row after the reply ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .streams import DEFAULT_LAYOUT, Layout
from .timeline import REACT_DELAY, JsonLineError, Segment, Timeline, json_line
from .toolcall import ToolCallError, format_call

SCHEDULES = ("after-input", "wait-k")
ROLE_STREAMS = {"user": "user", "tool": "tool", "system": "system"}


class ConvertError(ValueError):
    pass


@dataclass
class Schedule:
    kind: str = "after-input"
    k: int = 3
    """Rows between the start of a user message and the first output (``wait-k`` only)."""

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ConvertError(f"unknown schedule {self.kind!r}; choose from {', '.join(SCHEDULES)}")
        if self.k < 1:
            raise ConvertError(f"wait-k needs k >= 1 (outputs are silent at row 0), got {self.k}")


def chat_to_timeline(record: dict, schedule: Schedule, layout: Layout = DEFAULT_LAYOUT) -> Timeline:
    messages = record.get("messages") if isinstance(record, dict) else None
    if not isinstance(messages, list) or not messages:
        raise ConvertError("record needs a non-empty 'messages' list")
    segments: list[Segment] = []
    prefix = ""
    last: Segment | None = None  # the segment the next one is placed after
    last_input: Segment | None = None  # the input message a reply answers
    replied = True  # whether last_input already has a reply part

    def place(stream: str, text: str, start_after: Segment | None, anchor: str = "end", delay: int = REACT_DELAY) -> Segment:
        if stream not in layout:
            raise ConvertError(f"message needs stream {stream!r}, which the layout lacks")
        seg = Segment(stream, text, id=f"s{len(segments)}")
        if start_after is None:
            seg.start_row = 0 if layout[stream].kind == "input" else 1
        else:
            seg.after, seg.anchor, seg.delay = start_after.id, anchor, delay
        segments.append(seg)
        return seg

    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or "role" not in msg:
            raise ConvertError(f"messages[{i}]: needs a 'role'")
        role, content = msg["role"], msg.get("content") or ""
        if not isinstance(content, str):
            raise ConvertError(f"messages[{i}].content: must be a string")
        if role == "system" and i == 0:
            prefix = content
        elif role in ROLE_STREAMS:
            if not content:
                raise ConvertError(f"messages[{i}]: a {role} message with no content")
            last = last_input = place(ROLE_STREAMS[role], content, last)
            replied = False
        elif role == "assistant":
            parts = []
            if msg.get("reasoning_content"):
                parts.append(("think", msg["reasoning_content"]))
            if content:
                parts.append(("answer", content))
            for j, call in enumerate(msg.get("tool_calls") or []):
                fn = call.get("function", call) if isinstance(call, dict) else None
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                    raise ConvertError(f"messages[{i}].tool_calls[{j}]: needs function.name")
                try:
                    parts.append(("call", format_call(fn["name"], fn.get("arguments"))))
                except ToolCallError as e:
                    raise ConvertError(f"messages[{i}].tool_calls[{j}]: {e}") from e
            for stream, text in parts:
                if not replied and schedule.kind == "wait-k" and last_input is not None and last_input.stream == "user":
                    last = place(stream, text, last_input, anchor="start", delay=schedule.k)
                else:
                    last = place(stream, text, last)
                replied = True
        else:
            raise ConvertError(f"messages[{i}].role: unknown role {role!r} (system, user, assistant, tool)")
    if not any(layout[s.stream].kind == "output" for s in segments):
        raise ConvertError("record has no assistant output")
    tid = record.get("id")
    return Timeline(layout.names, segments, prefix, id=None if tid is None else str(tid))


def convert_chat_file(
    src: str | Path, dst: str | Path, schedule: Schedule, layout: Layout = DEFAULT_LAYOUT
) -> tuple[int, list[str]]:
    """Convert a chat JSONL file; bad records are reported by line and skipped, good ones kept."""
    n, errors = 0, []
    with open(src, encoding="utf-8") as fin, open(dst, "w", encoding="utf-8") as fout:
        for lineno, line in enumerate(fin, 1):
            if not line.strip():
                continue
            try:
                record = json_line(line, lineno)
                timeline = chat_to_timeline(record, schedule, layout)
            except JsonLineError as e:
                errors.append(str(e))
                continue
            except ConvertError as e:
                errors.append(f"line {lineno}: {e}")
                continue
            fout.write(timeline.to_json() + "\n")
            n += 1
    return n, errors
