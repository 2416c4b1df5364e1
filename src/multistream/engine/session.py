"""Per-session streaming state: typed, explicit, reset on close."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import torch

from ..defaults import MAX_ROWS
from ..text import MessageText
from .sampling import SamplingParams

MAX_STOP, MAX_STOP_CHARS = 16, 256
"""Stop strings per stream, and characters per stop string."""


@dataclass(frozen=True)
class StreamParams:
    """Settings of one output stream in one session."""

    sampling: SamplingParams = SamplingParams()
    max_tokens: int | None = None
    """Budget: text tokens this stream may write in the session; then it ends its message and stays silent."""
    stop: tuple[str, ...] = ()
    """The current message ends as soon as its text contains one of these."""

    def __post_init__(self) -> None:
        if not isinstance(self.sampling, SamplingParams):
            raise ValueError(f"sampling must be SamplingParams, got {type(self.sampling).__name__}")
        m = self.max_tokens
        if m is not None and (not isinstance(m, int) or isinstance(m, bool) or m < 1):
            raise ValueError(f"max_tokens must be an integer >= 1 or None, got {m!r}")
        if isinstance(self.stop, str) or not isinstance(self.stop, tuple | list):
            raise ValueError(f"stop must be a tuple of strings, got {type(self.stop).__name__}")
        if len(self.stop) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop strings, got {len(self.stop)}")
        for s in self.stop:
            if not isinstance(s, str) or not 1 <= len(s) <= MAX_STOP_CHARS:
                raise ValueError(f"a stop string has 1 to {MAX_STOP_CHARS} characters, got {s!r:.60}")
        object.__setattr__(self, "stop", tuple(self.stop))


@dataclass
class Event:
    """Something that happened in a session, in order.

    ``type`` is ``token``, ``message_end``, ``error`` (the session failed; ``closed`` follows) or ``closed``.
    """

    session: str
    type: str
    row: int
    stream: str
    token_id: int | None = None
    text: str = ""
    forced: bool = False
    """False when the model sampled it; True for inputs and for tokens the engine imposed."""
    code: str | None = None
    """Of ``error`` and ``closed`` events: why, as a stable code (``closed``, ``row_limit``,
    ``session_failed``, ``out_of_memory``, ``slow_reader``); ``text`` says it in words."""

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class OutputState:
    params: StreamParams
    generator: torch.Generator | None
    emitted: int = 0
    message: MessageText = field(default_factory=MessageText)
    muted: bool = False
    stopped: bool = False
    """Aborted or out of budget: silent for the rest of the session (or until ``EngineCore.resume``)."""
    end_next: bool = False
    """End the current message at the next row (abort, budget, stop string)."""


@dataclass
class InputState:
    queue: deque = field(default_factory=deque)
    bulk: int = 0
    """How many of the queued tokens are to be read in bulk (outputs silent meanwhile)."""
    hold_until: int = 0
    """The queue's first token enters no earlier than this row."""
    message: MessageText = field(default_factory=MessageText)


@dataclass
class Session:
    id: str
    slot: int
    prefix: list[int]
    inputs: dict[int, InputState]
    outputs: dict[int, OutputState]
    row: int = 0
    """The next row to feed."""
    started: bool = False
    """Whether the prefix has been fed."""
    wait_for_input: bool = True
    """Whether row 0 waits for the first input."""
    next_out: dict[int, tuple[int, bool]] = field(default_factory=dict)
    """Output tokens (token id, forced) for row ``row``, chosen at the previous step."""
    quiet_rows: int = 0
    """Consecutive rows with nothing queued and no output speaking."""
    history: deque = field(default_factory=deque)
    """The rows fed, ``[streams]`` each (with a window, the last rows the cache may hold, see ``EngineCore._rows_kept``)."""
    evicted: int = 0
    """Rows evicted from the KV cache by the window: row ``r`` now has position ``prefix + r - evicted``."""
    first_output_row: dict[str, int] = field(default_factory=dict)
    max_rows: int = MAX_ROWS
    """Rows this session may run; at the limit it is closed (``row_limit``)."""
    input_wait: float = 0.0
    """Seconds it may wait for the rest of an input message before a row without it (``EngineConfig.input_wait``)."""
    fed_at: float = 0.0
    """When its last row was fed (``time.perf_counter``)."""

    @property
    def pending_input(self) -> bool:
        return any(s.queue for s in self.inputs.values())

    @property
    def speaking(self) -> bool:
        return any(o.message for o in self.outputs.values())
