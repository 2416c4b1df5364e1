"""Per-session streaming state: typed, explicit, reset on close."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import torch

from .sampling import SamplingParams


@dataclass(frozen=True)
class StreamParams:
    """Settings of one output stream in one session."""

    sampling: SamplingParams = SamplingParams()
    max_tokens: int | None = None
    """Budget: text tokens this stream may write in the session; then it ends its message and stays silent."""
    stop: tuple[str, ...] = ()
    """The current message ends as soon as its text contains one of these."""


@dataclass
class Event:
    """Something that happened in a session, in order. ``type`` is ``token`` or ``message_end``."""

    session: str
    type: str
    row: int
    stream: str
    token_id: int | None = None
    text: str = ""
    forced: bool = False
    """False when the model sampled it; True for inputs and for tokens the engine imposed."""

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class OutputState:
    params: StreamParams
    generator: torch.Generator | None
    emitted: int = 0
    message: list[int] = field(default_factory=list)
    text: str = ""
    muted: bool = False
    stopped: bool = False
    """Aborted or out of budget: silent for the rest of the session."""
    end_next: bool = False
    """End the current message at the next row (abort, budget, stop string)."""


@dataclass
class InputState:
    queue: deque = field(default_factory=deque)
    bulk: int = 0
    """How many of the queued tokens are to be read in bulk (outputs silent meanwhile)."""
    hold_until: int = 0
    """The queue's first token enters no earlier than this row."""
    message: list[int] = field(default_factory=list)


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
    history: list[torch.Tensor] = field(default_factory=list)
    """Every row fed, ``[streams]`` each."""
    first_output_row: dict[str, int] = field(default_factory=dict)

    @property
    def pending_input(self) -> bool:
        return any(s.queue for s in self.inputs.values())

    @property
    def speaking(self) -> bool:
        return any(o.message for o in self.outputs.values())
