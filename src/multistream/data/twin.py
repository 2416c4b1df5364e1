"""The single-stream twin: a timeline rendered as an ordinary sequential chat.

Segments are taken in time order (start row, then stream order). Runs of input
segments become one ``user`` message, runs of output segments one ``assistant``
message. Text on the ``tool`` stream (tool results, documents) is delimited as
``<tool>...</tool>`` inside the user message, thinking as ``<think>...</think>`` and
tool calls as ``<call>...</call>`` inside the assistant message; the prefix becomes
the system message. Nothing else is added, so a single-stream model trained on the
twin sees exactly the same content as the multi-stream model.
"""

from __future__ import annotations

import re

from ..streams import DEFAULT_LAYOUT, Layout
from ..timeline import Timeline, resolve_rows

WRAP = {"tool": ("<tool>", "</tool>"), "think": ("<think>", "</think>"), "call": ("<call>", "</call>")}
_TAGS = re.compile(r"<(/?)(tool|think|call)>")
_CALLS = re.compile(r"<call>(.*?)</call>", re.DOTALL)


def reply_calls(reply: str) -> list[str]:
    """The tool calls inside a twin's reply (``<call>...</call>``), in order."""
    return _CALLS.findall(reply)


def tool_turn(result: str) -> dict:
    """A tool result as the twin sees it: a user turn ``<tool>...</tool>``."""
    left, right = WRAP["tool"]
    return {"role": "user", "content": f"{left}{result}{right}"}


def _ordered(timeline: Timeline, layout: Layout, length_of) -> list[tuple[int, str, str]]:
    starts, _, _ = resolve_rows(timeline, length_of)
    order = sorted(range(len(timeline.segments)), key=lambda k: (starts[k], layout.index(timeline.segments[k].stream)))
    return [(starts[k], timeline.segments[k].stream, timeline.segments[k].text) for k in order]


def twin_messages(timeline: Timeline, length_of, layout: Layout = DEFAULT_LAYOUT) -> list[dict]:
    """OpenAI-style messages with the timeline's content in time order."""
    messages: list[dict] = []
    if timeline.prefix:
        messages.append({"role": "system", "content": timeline.prefix})
    for _, stream, text in _ordered(timeline, layout, length_of):
        role = "assistant" if layout[stream].kind == "output" else "user"
        left, right = WRAP.get(layout.role_of(stream) or "", ("", ""))  # the tags follow the streams' roles
        piece = f"{left}{text}{right}"
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] += "\n" + piece
        else:
            messages.append({"role": role, "content": piece})
    return messages


def twin_record(timeline: Timeline, length_of, layout: Layout = DEFAULT_LAYOUT) -> dict:
    rec = {"id": timeline.id, "messages": twin_messages(timeline, length_of, layout)}
    if timeline.meta is not None:
        rec["meta"] = timeline.meta
    return rec


def twin_pieces(messages: list[dict]) -> list[tuple[str, str]]:
    """Inverse of the rendering: ``(stream, text)`` pieces of a twin chat, in order (system excluded)."""
    out = []
    for m in messages:
        if m["role"] == "system":
            continue
        plain = "user" if m["role"] == "user" else "answer"
        for line_piece in _split(m["content"]):
            tag = _TAGS.match(line_piece)
            if tag:
                name = tag.group(2)
                out.append((name, line_piece[len(name) + 2 : -(len(name) + 3)]))
            else:
                out.append((plain, line_piece))
    return out


def _split(content: str) -> list[str]:
    """Pieces joined by newlines; a delimited piece may itself contain newlines."""
    pieces, i = [], 0
    while i < len(content):
        m = _TAGS.match(content, i)
        if m and not m.group(1):
            close = content.index(f"</{m.group(2)}>", i)
            end = close + len(m.group(2)) + 3
        else:
            nxt = content.find("\n", i)
            end = len(content) if nxt < 0 else nxt
        pieces.append(content[i:end])
        i = end + 1  # skip the joining newline
    return pieces
