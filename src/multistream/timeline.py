"""The timeline format: what each stream says and at which row.

One timeline per JSONL line::

    {"id": "ex-1",
     "streams": ["system", "user", "tool", "think", "answer", "call"],
     "prefix": "You are a helpful assistant.",
     "segments": {
       "user":   [{"id": "q", "text": "What is 2+3?", "start_row": 0}],
       "answer": [{"text": "5", "after": "q", "delay": 1}]}}

A segment is placed either at an explicit ``start_row`` or relative to another
segment: ``after`` names a segment ``id``, ``anchor`` is ``end`` (default: the row
after its last token) or ``start`` (its first row), and ``delay`` adds rows. Each
segment occupies one row per token plus one for the end-of-message token. An input
segment may arrive slower than the rows advance, as text streaming in at a rate does
in the engine: ``spread`` (rows per token, at least 1) puts its token ``i`` at row
``start + floor(i * spread)``, the rows between carrying nothing. Row 0 of
an output stream is always silence (nothing has been sampled yet), so output
segments start at row 1 or later.

``streams`` lists names from the model's layout, or objects ``{name, kind, trust}``
that must agree with it. Structural problems are found by :func:`parse_timeline`;
problems that need token counts (overlaps, rows over the limit) by :func:`resolve_rows`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .defaults import MAX_ROWS
from .streams import Layout

DEFAULT_MAX_ROWS = MAX_ROWS
TOP_FIELDS = {"id", "streams", "prefix", "segments", "rows", "meta"}
SEGMENT_FIELDS = {"id", "text", "start_row", "after", "anchor", "delay", "spread"}


class TimelineError(ValueError):
    """One or more problems in a timeline; ``problems`` holds ``(field, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{f}: {m}" if f else m for f, m in problems))


@dataclass
class Segment:
    stream: str
    text: str
    start_row: int | None = None
    after: str | None = None
    anchor: str = "end"
    delay: int = 0
    id: str | None = None
    spread: float = 1.0
    """Rows per token (input streams only): token ``i`` sits at row ``start + floor(i * spread)``."""

    def to_dict(self) -> dict:
        d: dict = {}
        if self.id is not None:
            d["id"] = self.id
        d["text"] = self.text
        if self.after is None:
            d["start_row"] = self.start_row
        else:
            d["after"] = self.after
            if self.anchor != "end":
                d["anchor"] = self.anchor
            if self.delay:
                d["delay"] = self.delay
        if self.spread != 1.0:
            d["spread"] = self.spread
        return d


@dataclass
class Timeline:
    streams: list[str]
    segments: list[Segment] = field(default_factory=list)
    prefix: str = ""
    rows: int | None = None
    id: str | None = None
    meta: dict | None = None

    def to_dict(self) -> dict:
        d: dict = {}
        if self.id is not None:
            d["id"] = self.id
        d["streams"] = list(self.streams)
        if self.prefix:
            d["prefix"] = self.prefix
        segs: dict[str, list] = {}
        for s in self.segments:
            segs.setdefault(s.stream, []).append(s.to_dict())
        d["segments"] = segs
        if self.rows is not None:
            d["rows"] = self.rows
        if self.meta is not None:
            d["meta"] = self.meta
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def parse_timeline(obj, layout: Layout) -> Timeline:
    """Check the structure of one decoded JSON timeline against ``layout``."""
    problems: list[tuple[str, str]] = []
    if not isinstance(obj, dict):
        raise TimelineError([("", f"a timeline must be a JSON object, got {type(obj).__name__}")])
    for key in sorted(set(obj) - TOP_FIELDS):
        problems.append((key, f"unknown field (allowed: {', '.join(sorted(TOP_FIELDS))})"))

    names: list[str] = []
    raw_streams = obj.get("streams")
    if not isinstance(raw_streams, list) or not raw_streams:
        problems.append(("streams", "required: a non-empty list of stream names"))
    else:
        for i, s in enumerate(raw_streams):
            where = f"streams[{i}]"
            spec = {"name": s} if isinstance(s, str) else s
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
                problems.append((where, "must be a stream name or an object with 'name'"))
                continue
            name = spec["name"]
            if name not in layout:
                problems.append((where, f"unknown stream {name!r}; the layout has: {', '.join(layout.names)}"))
                continue
            if name in names:
                problems.append((where, f"stream {name!r} listed twice"))
            names.append(name)
            known = layout[name]
            for attr in ("kind", "trust"):
                if attr in spec and spec[attr] != getattr(known, attr):
                    problems.append(
                        (f"{where}.{attr}", f"stream {name!r} is {getattr(known, attr)!r} in the layout, marked {spec[attr]!r}")
                    )

    prefix = obj.get("prefix", "")
    if not isinstance(prefix, str):
        problems.append(("prefix", "must be a string"))
        prefix = ""
    rows = obj.get("rows")
    if rows is not None and (not _is_int(rows) or rows < 1):
        problems.append(("rows", f"must be a positive integer, got {rows!r}"))
        rows = None
    tid = obj.get("id")
    if tid is not None and not isinstance(tid, (str, int)):
        problems.append(("id", "must be a string or an integer"))

    segments: list[Segment] = []
    raw_segs = obj.get("segments", {})
    if not isinstance(raw_segs, dict):
        problems.append(("segments", "must be an object mapping stream names to lists of segments"))
        raw_segs = {}
    ids: dict[str, str] = {}
    for stream, items in raw_segs.items():
        base = f"segments.{stream}"
        if stream not in layout:
            problems.append((base, f"unknown stream {stream!r}; the layout has: {', '.join(layout.names)}"))
            continue
        if names and stream not in names:
            problems.append((base, f"stream {stream!r} is not listed in 'streams'"))
        if not isinstance(items, list):
            problems.append((base, "must be a list of segments"))
            continue
        is_output = layout[stream].kind == "output"
        for j, seg in enumerate(items):
            where = f"{base}[{j}]"
            if not isinstance(seg, dict):
                problems.append((where, "must be an object with 'text' and 'start_row' or 'after'"))
                continue
            for key in sorted(set(seg) - SEGMENT_FIELDS):
                problems.append((f"{where}.{key}", f"unknown field (allowed: {', '.join(sorted(SEGMENT_FIELDS))})"))
            text = seg.get("text")
            if not isinstance(text, str):
                problems.append((f"{where}.text", "required: a string"))
                text = ""
            start, after = seg.get("start_row"), seg.get("after")
            if (start is None) == (after is None):
                problems.append((where, "give exactly one of 'start_row' or 'after'"))
            if start is not None:
                if not _is_int(start):
                    problems.append((f"{where}.start_row", f"must be an integer, got {start!r}"))
                    start = None
                elif start < 0:
                    problems.append((f"{where}.start_row", f"negative row {start}"))
                elif start == 0 and is_output:
                    problems.append((f"{where}.start_row", "an output stream is silent at row 0; start at row 1 or later"))
            if after is not None and not isinstance(after, str):
                problems.append((f"{where}.after", "must be the id of another segment"))
                after = None
            anchor = seg.get("anchor", "end")
            if anchor not in ("start", "end"):
                problems.append((f"{where}.anchor", f"must be 'start' or 'end', got {anchor!r}"))
            delay = seg.get("delay", 0)
            if not _is_int(delay):
                problems.append((f"{where}.delay", f"must be an integer, got {delay!r}"))
                delay = 0
            elif delay < 0:
                problems.append((f"{where}.delay", f"negative delay {delay}"))
            spread = seg.get("spread", 1.0)
            if isinstance(spread, bool) or not isinstance(spread, (int, float)) or not math.isfinite(spread):
                problems.append((f"{where}.spread", f"must be a number of rows per token, got {spread!r}"))
                spread = 1.0
            elif spread < 1:
                problems.append((f"{where}.spread", f"must be at least 1 row per token, got {spread}"))
                spread = 1.0
            elif spread != 1 and is_output:
                problems.append((f"{where}.spread", "only input streams can be spread: an output speaks one token a row"))
            sid = seg.get("id")
            if sid is not None:
                if not isinstance(sid, str):
                    problems.append((f"{where}.id", "must be a string"))
                    sid = None
                elif sid in ids:
                    problems.append((f"{where}.id", f"duplicate segment id {sid!r} (first at {ids[sid]})"))
                else:
                    ids[sid] = where
            segments.append(Segment(stream, text, start, after, anchor, delay, sid, float(spread)))
    for k, s in enumerate(segments):
        if s.after is not None and s.after not in ids:
            problems.append((_where(segments, k) + ".after", f"no segment has id {s.after!r}"))
    if problems:
        raise TimelineError(problems)
    return Timeline(names, segments, prefix, rows, None if tid is None else str(tid), obj.get("meta"))


def _where(segments: list[Segment], k: int) -> str:
    stream = segments[k].stream
    j = sum(1 for s in segments[:k] if s.stream == stream)
    return f"segments.{stream}[{j}]"


REACTION_ROWS = 2
"""The schedule convention every part shares: a token read at row ``r`` is first seen by the logits of row
``r + 1``, which pick the outputs of row ``r + REACTION_ROWS``. A reply, a tool result or a note reacting to a
message whose end token sits at row ``r`` starts at ``r + REACTION_ROWS`` at the earliest."""
REACT_DELAY = REACTION_ROWS - 1
"""The same as a ``delay`` after the ``end`` anchor (which counts from the row after the end token)."""


def reaction_row(end: int) -> int:
    """The earliest row that can react to a segment whose rows end before ``end`` (its end token at ``end - 1``)."""
    return end + REACT_DELAY


def token_rows(n: int, spread: float = 1.0) -> list[int]:
    """Row offsets of a segment's ``n`` tokens (end token included) from its start row."""
    return [i if spread == 1 else math.floor(i * spread) for i in range(n)]


def span(n: int, spread: float = 1.0) -> int:
    """Rows a segment of ``n`` tokens (end token included) occupies, first to last."""
    return 0 if n == 0 else math.floor((n - 1) * spread) + 1


def resolve_rows(
    timeline: Timeline, length_of: Callable[[str], int], max_rows: int = DEFAULT_MAX_ROWS
) -> tuple[list[int], list[int], int]:
    """Place every segment: returns (start rows, lengths in rows, total rows).

    ``length_of(text)`` is the number of tokens of a segment's text plus its end token,
    the rows it occupies unless it is spread (:func:`token_rows`). Raises :class:`TimelineError` on
    cycles, overlaps and rows over ``max_rows``.
    """
    segs = timeline.segments
    lengths = [span(length_of(s.text), s.spread) for s in segs]
    by_id = {s.id: k for k, s in enumerate(segs) if s.id is not None}
    starts: list[int | None] = [None] * len(segs)
    problems: list[tuple[str, str]] = []

    def start_of(k: int, visiting: set[int]) -> int:
        if starts[k] is not None:
            return starts[k]
        s = segs[k]
        if s.after is None:
            starts[k] = s.start_row
            return starts[k]
        if k in visiting:
            raise TimelineError([(_where(segs, k) + ".after", "schedule has a cycle")])
        visiting.add(k)
        ref = by_id[s.after]
        base = start_of(ref, visiting)
        if s.anchor == "end":
            base += lengths[ref]
        visiting.discard(k)
        starts[k] = base + s.delay
        return starts[k]

    for k in range(len(segs)):
        start_of(k, set())

    total = max((st + n for st, n in zip(starts, lengths)), default=0) + 1
    if timeline.rows is not None:
        if timeline.rows < total - 1:
            problems.append(("rows", f"{timeline.rows} rows given but the segments need {total - 1}"))
        total = timeline.rows
    if total > max_rows:
        problems.append(("rows", f"timeline needs {total} rows, over the limit of {max_rows}"))

    # overlaps within a stream: sort each stream's segments by start
    per_stream: dict[str, list[int]] = {}
    for k, s in enumerate(segs):
        per_stream.setdefault(s.stream, []).append(k)
    for stream, ks in per_stream.items():
        ks.sort(key=lambda k: starts[k])
        for a, b in zip(ks, ks[1:]):
            if starts[b] < starts[a] + lengths[a]:
                problems.append(
                    (
                        _where(segs, b),
                        f"overlaps {_where(segs, a)} on stream {stream!r}: rows "
                        f"{starts[b]}-{starts[b] + lengths[b] - 1} vs {starts[a]}-{starts[a] + lengths[a] - 1}",
                    )
                )
    if problems:
        raise TimelineError(problems)
    return [int(s) for s in starts], lengths, total


class JsonLineError(ValueError):
    """A JSONL line that is not JSON; the message names the line and where in it."""


def json_line(line: str, lineno: int):
    """One JSONL line parsed, or :class:`JsonLineError` saying where it went wrong (a column of this line, or its
    end: a record cut short)."""
    text = line.rstrip("\r\n")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        where = f"column {e.pos + 1}" if e.pos < len(text) else "at the end of the line (cut short?)"
        raise JsonLineError(f"line {lineno}: invalid JSON: {e.msg} ({where})") from None
    except RecursionError:
        raise JsonLineError(f"line {lineno}: invalid JSON: nested too deeply") from None


def read_jsonl(path: str | Path, layout: Layout) -> Iterator[tuple[int, Timeline | None, list[str]]]:
    """Yield ``(line number, timeline or None, problems)`` for every non-blank line."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json_line(line, lineno)
            except JsonLineError as e:
                yield lineno, None, [str(e)]
                continue
            try:
                yield lineno, parse_timeline(obj, layout), []
            except TimelineError as e:
                yield lineno, None, [_fmt(lineno, f, m) for f, m in e.problems]


def _fmt(lineno: int, fieldname: str, msg: str) -> str:
    return f"line {lineno}: {fieldname}: {msg}" if fieldname else f"line {lineno}: {msg}"


def validate_file(
    path: str | Path, layout: Layout, length_of: Callable[[str], int] | None, max_rows: int = DEFAULT_MAX_ROWS
) -> tuple[int, int, list[str]]:
    """Validate a timeline JSONL file: returns (valid timelines, total rows, error messages)."""
    n_ok, total_rows, errors = 0, 0, []
    for lineno, tl, problems in read_jsonl(path, layout):
        if tl is None:
            errors.extend(problems)
            continue
        if length_of is not None:
            try:
                total_rows += resolve_rows(tl, length_of, max_rows)[2]
            except TimelineError as e:
                errors.extend(_fmt(lineno, f, m) for f, m in e.problems)
                continue
        n_ok += 1
    return n_ok, total_rows, errors
