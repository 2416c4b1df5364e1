"""The tool-call syntax on the ``call`` stream: ``name({"json": "args"})``, one call per message."""

from __future__ import annotations

import json
import re

_CALL = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*\((.*)\)\s*$", re.DOTALL)
_NAME = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*\(")


class ToolCallError(ValueError):
    pass


def format_call(name: str, arguments: dict | str | None) -> str:
    """``arguments`` as a dict or as the JSON string OpenAI messages carry."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as e:
            raise ToolCallError(f"tool call {name!r}: arguments are not valid JSON: {e.msg}") from e
    if not isinstance(arguments, (dict, type(None))):
        raise ToolCallError(f"tool call {name!r}: arguments must be a JSON object")
    return f"{name}({json.dumps(arguments or {}, ensure_ascii=False, separators=(', ', ': '))})"


def call_name(text: str) -> str | None:
    """The tool a call names, as soon as its ``(`` has been written (the rest may still be coming); None before."""
    m = _NAME.match(text)
    return m.group(1) if m else None


def parse_call(text: str) -> tuple[str, dict]:
    """Inverse of :func:`format_call`; raises :class:`ToolCallError` naming what is wrong."""
    m = _CALL.match(text)
    if not m:
        raise ToolCallError(f"not a tool call (expected name({{...}})): {text[:80]!r}")
    name, body = m.group(1), m.group(2).strip()
    try:
        args = json.loads(body) if body else {}
    except json.JSONDecodeError as e:
        raise ToolCallError(f"tool call {name!r}: arguments are not valid JSON: {e.msg}") from e
    if not isinstance(args, dict):
        raise ToolCallError(f"tool call {name!r}: arguments must be a JSON object")
    return name, args
