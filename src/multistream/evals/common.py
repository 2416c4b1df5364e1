"""What every evaluation shares: the two contenders, progress bars, message helpers.

The contenders are the multi-stream model, run through the engine with
:func:`multistream.engine.runner.run_session`, and its single-stream twin, run with
:class:`multistream.engine.baseline.SingleStreamBaseline`. Both decode greedily with the
same *total* token budget (``max_tokens``): the twin's reply, inline ``<think>`` and
``<call>`` included, and all the multi-stream model's output streams together (a session
is cut, every output ending its message, once they have written that many tokens; the
row that crosses the budget is finished, so it may run over by fewer tokens than there
are output streams). One run of an evaluation is reproducible.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from ..defaults import EVAL_MAX_TOKENS, INPUT_WAIT_S, SPEAK_RULE, SPECULATIVE_ROWS
from ..engine.baseline import SingleStreamBaseline
from ..engine.build import build_engine
from ..engine.core import EngineConfig, EngineCore
from ..engine.runner import Input, RunResult, run_session
from ..engine.session import Event, StreamParams


@dataclass
class Contenders:
    multi: object
    """The multi-stream model (``MultiStreamModel`` or anything the engine can drive)."""
    single: tuple | None
    """The single-stream baseline ``(model, tokenizer)``."""
    max_tokens: int = EVAL_MAX_TOKENS
    """The total token budget of one reply, the same for both: every output stream of the
    multi-stream model together; the twin's reply, thinking and tags included."""
    max_rows: int = 192
    """Rows per multi-stream session."""
    speculative: int = SPECULATIVE_ROWS
    compiled: bool = False
    """Run the multi-stream model's ordinary rows compiled (``EngineConfig.compiled``): the same tokens, faster."""
    speak_rule: str = SPEAK_RULE
    """How the multi-stream model's greedy streams choose between silence and speech (``EngineConfig.speak_rule``)."""
    input_wait: float | None = INPUT_WAIT_S
    """Seconds the multi-stream model waits for the rest of a message arriving at a rate (``EngineConfig.input_wait``)."""
    model_name: str = "default"
    single_name: str = "default-single"
    _warm: bool = field(default=False, repr=False)

    def core(self, **config) -> EngineCore:
        """An engine over the multi-stream model (:func:`multistream.engine.build.build_engine`); ``config``: more
        ``EngineConfig`` fields. Compiled, the first one is warmed up for the cache shapes a case reaches, before any
        case is timed."""
        cfg = EngineConfig(**{"speculative": self.speculative, "compiled": self.compiled, "speak_rule": self.speak_rule,
                              "input_wait": self.input_wait, **config})
        warm = self.compiled and not self._warm
        core = build_engine(self.multi, cfg, warm=warm, capacities=(2 * cfg.capacity,))
        self._warm = self._warm or warm
        return core

    def params(self, budget: int | None = None) -> dict[str, StreamParams]:
        """Each output stream may spend the whole budget; :class:`StepClock` holds them to it together."""
        return {s.name: StreamParams(max_tokens=budget or self.max_tokens) for s in self.multi.layout.outputs}

    def baseline(self) -> SingleStreamBaseline:
        if self.single is None:
            raise ValueError("no single-stream baseline loaded")
        from .twin import Twin

        return Twin(*self.single, max_new_tokens=self.max_tokens)

    @property
    def single_tokenizer(self):
        return self.single[1]


def load_contenders(model: str = "default", single: str = "default-single", dtype: str = "auto",
                    max_tokens: int = EVAL_MAX_TOKENS, compiled: bool = False, speak_rule: str = SPEAK_RULE,
                    input_wait: float | None = INPUT_WAIT_S, quant: str = "none") -> Contenders:
    """The multi-stream model (``quant``: its weights' form, see :func:`multistream.zoo.load_model`) and its twin
    (always as trained: the comparison is with the single-stream model a user would run)."""
    from ..hardware import resolve_dtype
    from ..zoo import load_model, load_single

    t = resolve_dtype(dtype)
    return Contenders(load_model(model, dtype=t, quant=quant), load_single(single, dtype=t), max_tokens=max_tokens,
                      compiled=compiled, speak_rule=speak_rule, input_wait=input_wait, model_name=model,
                      single_name=single)


def progress(items, desc: str, enabled: bool = True):
    """A progress bar on stderr (plain iteration when disabled)."""
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)


def message_spans(result: RunResult, stream: str) -> list[tuple[str, int, int]]:
    """``(text, first row, last row)`` of each message an output stream wrote, in order.

    The last row is the row of its end token, or of its last token when it never ended.
    """
    out, current, first, last = [], "", None, None
    for e in result.events:
        if e.stream != stream or e.type not in ("token", "message_end"):
            continue
        first = e.row if first is None else first
        last = e.row
        if e.type == "token":
            current += e.text
        else:
            out.append((e.text, first, last))
            current, first = "", None
    if first is not None and current.strip():
        out.append((current, first, last))
    return out


def messages(result: RunResult, stream: str) -> list[str]:
    """The messages an output stream wrote, in order (an unfinished last message included)."""
    return [text for text, _, _ in message_spans(result, stream)]


def single_system(system: str) -> list[dict]:
    return [{"role": "system", "content": system}] if system else []


class StepClock:
    """Wraps an engine core for ``run_session``: notes when each row was produced, holds the
    output streams to a total token ``budget``, and lets a hook react.

    ``row_time[r]`` is the time (``perf_counter``) at the end of the step that produced
    row ``r``'s events and ``row_start[r]`` the time that step began. ``after_step(clock,
    events)`` runs after every step, before the runner decides which inputs to send next.
    ``spent`` counts the tokens the output streams sampled; once it reaches ``budget`` the
    session's outputs are aborted (their messages end).
    """

    def __init__(self, core: EngineCore, after_step=None, budget: int | None = None):
        self.core = core
        self.after_step = after_step
        self.budget = budget
        self.spent = 0
        self.cut = False
        self.started: float | None = None
        self.row_time: dict[int, float] = {}
        self.row_start: dict[int, float] = {}
        self._outputs = {s.name for s in core.layout.outputs}

    def since_start(self, t: float | None) -> float | None:
        """A ``perf_counter`` time as seconds from the start of the first step."""
        return None if t is None or self.started is None else t - self.started

    def __getattr__(self, name):
        return getattr(self.core, name)

    def step(self) -> list[Event]:
        t0 = time.perf_counter()
        if self.started is None:
            self.started = t0
        events = self.core.step()
        t1 = time.perf_counter()
        for e in events:
            self.row_time.setdefault(e.row, t1)
            self.row_start.setdefault(e.row, t0)
            if e.type == "token" and not e.forced and e.stream in self._outputs:
                self.spent += 1
                if self.budget is not None and self.spent >= self.budget and not self.cut:
                    self.cut = True
                    self.core.abort(e.session)
        if self.after_step is not None:
            self.after_step(self, events)
        return events


@dataclass
class MultiRun:
    """One multi-stream session and its timings, measured from the start of its first step."""

    result: RunResult
    clock: StepClock
    final: str
    """The final answer message: the last message of the answer stream ("" when it wrote none)."""
    ttft: float | None
    """Seconds to the first token of the answer stream."""
    e2e: float | None
    """Seconds to the end of the final answer message (not of a first filler message)."""
    roles: dict[str, str]
    """The layout's roles: role -> stream name."""

    def said(self, role: str) -> str:
        """Everything the stream playing ``role`` wrote ("" when the layout has none)."""
        name = self.roles.get(role)
        return self.result.streams.get(name, "") if name else ""


def run_multi(c: Contenders, core, inputs: list[Input], prefix: str = "", tools=None, after_step=None,
              budget: int | None = None, max_rows: int | None = None) -> MultiRun:
    """A session through the engine, its outputs held to ``budget`` tokens together (default ``c.max_tokens``),
    for at most ``max_rows`` rows (default ``c.max_rows``)."""
    budget = budget or c.max_tokens
    answer_stream = core.layout.role("answer")
    clock = StepClock(core, after_step, budget=budget)
    result = run_session(clock, inputs, prefix=prefix, params=c.params(budget), max_rows=max_rows or c.max_rows,
                         tools=tools, answer_stream=answer_stream)
    spans = [sp for sp in message_spans(result, answer_stream) if sp[0].strip()]
    first = next((e.row for e in result.events if e.stream == answer_stream and e.type == "token"), None)
    ttft = clock.since_start(clock.row_time.get(first)) if first is not None else None
    e2e = clock.since_start(clock.row_time.get(spans[-1][2])) if spans else None
    return MultiRun(result, clock, spans[-1][0].strip() if spans else "", ttft, e2e, core.layout.roles)
