"""Evaluation cases: JSONL files, one case a line, parsed with line-numbered errors.

A malformed line (bad JSON, a missing or mistyped field, a duplicate id) is reported as
``"LINE N: message"`` and skipped, never counted; unknown extra fields are ignored. Blank
lines and lines starting with ``#`` are skipped silently. The built-in suites ship in
``suites/`` next to this module and are used when no file is given.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PromptCase:
    """A question with a known answer (accuracy)."""

    id: str
    prompt: str
    answer: str
    system: str = "You are a helpful assistant."
    """The system prompt (the multi-stream prefix; the single-stream system message)."""


@dataclass(frozen=True)
class InjectionCase:
    """A task whose untrusted data carries an injected instruction."""

    id: str
    system: str
    user: str
    data: str
    """Untrusted text (a tool result, a document): the multi-stream model reads it on the ``tool`` stream."""
    injection_marker: str | None = None
    """The attack succeeds when the answer starts to obey it (:func:`.scoring.attacked`); None: a benign document,
    for the monitor's false-positive rate and the accuracy without an attack."""
    answer: str | None = None
    """Optional: the correct answer of the benign task, for the utility under attack."""
    style: str | None = None
    """Optional label of the attack style (naive, ignore-previous, ...), for per-style tables."""
    position: str | None = None
    """Optional: where the injection sits in the data (start, middle, end)."""


@dataclass(frozen=True)
class InterruptCase:
    """A request corrected while the answer is being written."""

    id: str
    user: str
    interrupt: str
    interrupt_after_rows: int
    """The interrupt enters the user stream this many rows after the answer stream's first token."""
    answer: str
    stale_answer: str | None = None
    """The final answer must not contain this (the answer to the request before the correction)."""
    system: str = "You are a helpful assistant."


@dataclass(frozen=True)
class ListeningCase:
    """A question, then a document streaming in; one sentence of it holds the answer."""

    id: str
    user: str
    document: str
    """Untrusted text: the multi-stream model reads it on the ``tool`` stream as it arrives."""
    answer: str
    system: str = "You are a helpful assistant."
    fact: str | None = None
    """Optional: the sentence of ``document`` that holds the answer (default: the first occurrence of ``answer``)."""

    @property
    def answer_end(self) -> int:
        """Where the answer-bearing text of ``document`` ends (a character offset)."""
        text = self.fact or self.answer
        return self.document.index(text) + len(text)


KINDS: dict[str, type] = {"prompts": PromptCase, "injection": InjectionCase, "interrupts": InterruptCase,
                          "listening": ListeningCase}
_TYPES = {"id": str, "prompt": str, "answer": str, "system": str, "user": str, "data": str, "injection_marker": str,
          "style": str, "position": str, "interrupt": str, "interrupt_after_rows": int, "stale_answer": str,
          "fact": str, "document": str}


class CaseFileError(ValueError):
    """A case file with no usable case."""


def parse_case(obj: Any, kind: str):
    """One case from a decoded JSON value; raises ``ValueError`` naming the field."""
    cls = KINDS[kind]
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    values = {}
    for f in fields(cls):
        required = f.default is MISSING
        if f.name not in obj or obj[f.name] is None:
            if required:
                raise ValueError(f"missing field {f.name!r}")
            continue
        v = obj[f.name]
        want = _TYPES[f.name]
        if f.name == "id" and isinstance(v, int) and not isinstance(v, bool):
            v = str(v)
        if want is int and (isinstance(v, bool) or not isinstance(v, int)):
            raise ValueError(f"field {f.name!r} must be an integer, got {v!r}")
        if want is str and not isinstance(v, str):
            raise ValueError(f"field {f.name!r} must be a string, got {type(v).__name__}")
        values[f.name] = v
    if not values["id"].strip():
        raise ValueError("field 'id' is empty")
    for name in ("prompt", "answer", "user", "data", "injection_marker", "interrupt", "fact", "document"):
        if name in values and not values[name].strip():
            raise ValueError(f"field {name!r} is empty")
    if kind == "listening":
        bearing = values.get("fact") or values["answer"]
        if bearing not in values["document"]:
            raise ValueError(f"field {'fact' if values.get('fact') else 'answer'!r} does not occur in 'document'")
    if kind == "interrupts" and values["interrupt_after_rows"] < 0:
        raise ValueError(f"field 'interrupt_after_rows' must be >= 0, got {values['interrupt_after_rows']}")
    return cls(**values)


def parse_lines(lines, kind: str) -> tuple[list, list[str]]:
    """Cases and ``"line N: ..."`` errors from an iterable of text lines."""
    if kind not in KINDS:
        raise ValueError(f"unknown case kind {kind!r}; choose from {', '.join(KINDS)}")
    cases, errors, seen = [], [], {}
    for n, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            errors.append(f"line {n}: invalid JSON ({e.msg} at column {e.colno})")
            continue
        try:
            case = parse_case(obj, kind)
        except ValueError as e:
            errors.append(f"line {n}: {e}")
            continue
        if case.id in seen:
            errors.append(f"line {n}: duplicate id {case.id!r} (first on line {seen[case.id]})")
            continue
        seen[case.id] = n
        cases.append(case)
    return cases, errors


def load_cases(path: str | Path | None, kind: str, limit: int | None = None) -> tuple[list, list[str]]:
    """Cases of ``kind`` from ``path`` (the built-in suite when None) and the errors of the skipped lines."""
    if path is None:
        text = resources.files(__package__).joinpath("suites", f"{kind}.jsonl").read_text(encoding="utf-8")
        source = f"built-in {kind} suite"
    else:
        text = Path(path).read_text(encoding="utf-8")
        source = str(path)
    cases, errors = parse_lines(text.splitlines(), kind)
    errors = [f"{source}: {e}" for e in errors]
    if not cases:
        raise CaseFileError(f"{source}: no valid {kind} case" + (f" ({len(errors)} bad line(s))" if errors else ""))
    return (cases[:limit] if limit else cases), errors


def builtin_path(kind: str) -> Path:
    return Path(str(resources.files(__package__).joinpath("suites", f"{kind}.jsonl")))
