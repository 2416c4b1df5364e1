"""The engine core: a synchronous ``step()`` that advances every active session by one row.

At each step every session with work to do contributes a *plan*: its prefix (first
step only) and one row (its next queued input token per input stream or silence, and
the output tokens chosen at the previous step). All plans go through one batched
forward over a slotted KV cache; then each output stream's next token is sampled and
post-processed (mute, abort, budget, stop strings). Commands (open, send, abort, ...)
are queued and applied between steps, so text that arrives during a step enters at
the next row.

The engine follows the model's silence rule (``rows.RowFormat``): under ``invisible`` a
row feeds only its inputs that carry a token and every output stream (a silent output
is a query only). A plan lists the row tokens visible ones first, so the slotted cache
keeps a prefix of each forward's new tokens: only what was said is ever cached.

Two ways to feed several rows in one forward:

- *bulk*: input sent with ``bulk=True`` is read with the outputs held silent, up to
  ``bulk_chunk`` rows per forward (like a prefill); only the last row's outputs are
  computed. When the forward reaches the end of a complete message it also feeds the row
  past it, as speculation does, kept only if the end row's outputs stay silent: the reply
  starts in the same forward, and a whole message sent at once (a chat line, an HTTP
  request) costs what the twin's prompt costs;
- *speculative* (``EngineConfig.speculative = N``): when input is queued and no output
  is speaking, feed up to N rows assuming the outputs stay silent (the queued input and one
  row after it), keep the rows up to the first one where the model chose to speak and roll
  the cache back past it. At temperature 0 this gives exactly the tokens of step-by-step
  decoding.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass

import torch

from ..defaults import INPUT_WAIT_S, MAX_ROWS, MAX_SESSIONS, SPEAK_RULE
from ..model import MultiStreamModel
from ..rows import row_inputs, stream_causal_mask
from ..text import MessageText
from .cache import KVCacheFull, SlotKVCache
from .sampling import SPEAK_RULES, rule_silence, sample
from .session import Event, InputState, OutputState, Session, StreamParams

log = logging.getLogger(__name__)


class EngineError(ValueError):
    """A request the engine refuses (unknown session or stream, limits); nothing else is affected.

    ``code`` says which, for programs: ``unknown_session``, ``session_exists``, ``unknown_stream``,
    ``too_many_sessions``, ``prefix_too_long``, ``invalid_params``, ``out_of_memory`` or ``busy``.
    """

    def __init__(self, message: str, code: str = "invalid_request"):
        super().__init__(message)
        self.code = code


@dataclass
class EngineConfig:
    max_sessions: int = MAX_SESSIONS
    """Sessions open at once."""
    max_rows: int = MAX_ROWS
    """Rows per session; a session at the limit is closed."""
    max_prefix_tokens: int = 4096
    """Tokens in a session's prefix (system prompt)."""
    bulk_chunk: int = 64
    """Rows per forward when reading bulk input."""
    speculative: int = 0
    """Rows fed at once, assuming silent outputs, while input is queued (0: off)."""
    idle_rows: int | None = 32
    """Pause a session after this many rows with nothing queued and nothing spoken (None: never)."""
    capacity: int = 256
    """Initial KV cache length per session (grows by doubling)."""
    max_kv_tokens: int | None = None
    """Ceiling on the KV cache, in token cells over all sessions (None: none). A session that would
    pass it is refused at ``open`` or closed (``out_of_memory``); the others go on."""
    window_rows: int | None = None
    """Keep about this many recent rows of a session in the KV cache, plus its prefix (None: every row): past it
    the oldest rows are evicted down to 3/4 of it and the rest moved back (see :mod:`.window`), so a session can
    run for hours in bounded memory (its row budget is ``max_rows``), forgetting what it read longer ago. A bulk
    chunk or a speculative run may be read past the window before the next eviction."""
    compiled: bool = False
    """Run ordinary rows (one row per session, no prefix) through a ``torch.compile``d forward over a fixed-shape
    cache (:mod:`.compiled`): the same tokens, faster per row; the first row of each cache shape pays the
    compilation. Prefixes, bulk and speculative reading stay eager. The weights are folded into the compiled graph
    (inductor's freezing): a model whose weights change in place must be loaded anew to be seen. torch compiles at
    most ``torch._dynamo.config.recompile_limit`` shapes (8) per process; past that rows run uncompiled over the whole
    cache, slower than eager: a server whose session count swings widely should raise the limit or run eager. A
    forward that fails to compile falls back to eager for good (logged)."""
    autotune: bool = False
    """With ``compiled``: let inductor time its own matrix-product kernels (AMX, and 4-bit ones under
    ``quant="int4"``) against the library's for every weight shape and keep the faster (``max_autotune_gemm``):
    faster rows on CPUs with AMX, a few minutes more of compiling the first time."""
    speak_rule: str = SPEAK_RULE
    """How a greedy output stream chooses between silence and speech (:func:`.sampling.greedy`): ``likely``
    speaks when all spoken tokens together outweigh silence, ``argmax`` only when one spoken token alone does
    (the rule before; the model then misses answers it is sure to give but split between phrasings)."""
    input_wait: float | None = INPUT_WAIT_S
    """Seconds a session may wait for the next token of an input message it is part-way through, while every
    output is silent, before it runs a row without that token (None or 0: rows never wait). Training puts a
    message's tokens on consecutive rows (1-4 rows apart); rows run faster than people type (25 rows/s against 10
    tokens/s on this CPU in bf16), which spreads a message further apart than training ever did, and the model
    then miscopies it. Waiting keeps a message's tokens on nearby rows and costs nothing while the model speaks
    (a speaking session never waits). A session opened with ``input_wait`` overrides it (``run_session`` opens one
    whose input is scripted by rows with 0)."""
    quant: str = "none"
    """The weights' form: ``int4`` runs the linear layers in 4 bits (:mod:`multistream.quant`, CPU only). A model
    loaded with ``load_model(..., quant="int4")`` is already in that form (a LoRA adapter kept exact beside it, the
    conversion cached); any other is quantised when the engine is made."""
    max_pending_commands: int = 1024
    """Commands (send, abort, mute) of one session queued and not yet applied by a step; past it
    they are refused (``busy``): a caller that sends faster than the engine steps cannot grow
    the command queue without limit (in all, at most ``max_sessions`` times this)."""

    def __post_init__(self) -> None:
        if self.quant not in ("none", "int4"):
            raise ValueError(f"quant must be 'none' or 'int4', got {self.quant!r}")
        if self.max_sessions < 1 or self.max_rows < 2 or self.bulk_chunk < 1 or self.speculative < 0 \
                or self.max_pending_commands < 1:
            raise ValueError(
                "max_sessions >= 1, max_rows >= 2, bulk_chunk >= 1, speculative >= 0 and max_pending_commands >= 1 are required"
            )
        if self.speak_rule not in SPEAK_RULES:
            raise ValueError(f"speak_rule must be one of {', '.join(SPEAK_RULES)}, got {self.speak_rule!r}")
        if self.window_rows is not None and self.window_rows < 8:
            raise ValueError(f"window_rows must be at least 8 (or None), got {self.window_rows}")
        if self.input_wait is not None and not self.input_wait >= 0:
            raise ValueError(f"input_wait must be a number of seconds >= 0 (or None), got {self.input_wait!r}")
        if self.max_kv_tokens is not None and self.max_kv_tokens < self.capacity:
            raise ValueError(f"max_kv_tokens ({self.max_kv_tokens}) must be at least capacity ({self.capacity})")


@dataclass
class _Plan:
    session: Session
    ids: torch.Tensor  # [N] the prefix (first step only), then the rows' visible tokens, then query-only ones
    streams: torch.Tensor
    positions: torch.Tensor
    visible: torch.Tensor
    out_at: torch.Tensor  # [rows whose logits are needed, outputs]: index of each output cell in ``ids``
    keys_per_row: list[int]  # visible tokens of each row fed (what the cache keeps of it)
    rows: list[list[int]]  # the rows fed, [streams] each
    popped: list[dict[int, int]]  # per row: input stream -> token taken from its queue
    prefix_len: int
    mode: str  # "step" | "bulk" | "spec"
    needed: list[int]  # the rows whose output logits are computed, ascending (``out_at``'s rows)


class EngineCore:
    def __init__(self, model: MultiStreamModel, config: EngineConfig | None = None):
        self.model = model.eval()
        self.config = config or EngineConfig()
        if self.config.quant == "int4":
            from ..quant import Int4Linear, quantize_model

            if not any(isinstance(m, Int4Linear) for m in model.modules()):
                quantize_model(model)
        self.layout = model.layout
        self.tok = model.tok
        self.silence, self.end = model.tok.silence_id, model.tok.end_id
        self.out_idx = [i for i, s in enumerate(self.layout) if s.kind == "output"]
        self.in_idx = [i for i, s in enumerate(self.layout) if s.kind == "input"]
        self.fmt = model.row_format  # the silence rule: the cache keeps visible tokens only
        self.cache = SlotKVCache.for_model(
            model.base, slots=1, capacity=self.config.capacity, max_tokens=self.config.max_kv_tokens
        )
        self.compiled = None
        if self.config.compiled:
            from .compiled import CompiledRows

            self.compiled = CompiledRows(model, autotune=self.config.autotune)
        self.rotation = None
        if self.config.window_rows is not None:
            from ..model import unwrap_base
            from .window import KeyRotation

            self.rotation = KeyRotation(unwrap_base(model.base))
            self.rotation.check(unwrap_base(model.base))
        self.sessions: dict[str, Session] = {}
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: dict[str, int] = {}  # session -> its send/abort/mute commands in ``_commands``
        self._pending_lock = threading.Lock()  # callers add, the step thread takes away
        self._ids = itertools.count()
        self._live: set[str] = set()  # ids opened and not closed, as the callers see them
        self.steps = 0

    # -- commands (thread-safe; applied at the start of the next step) ---------------
    def open(
        self,
        session_id: str | None = None,
        prefix: str = "",
        params: dict[str, StreamParams] | None = None,
        start: bool = False,
        max_rows: int | None = None,
        input_wait: float | None = None,
    ) -> str:
        """Open a session (validated now, applied at the next step); returns its id.

        A session starts stepping at its first input (that row is row 0), or at once with ``start``.
        ``max_rows``: this session's row limit, at most ``EngineConfig.max_rows``; ``input_wait``: this session's
        (``EngineConfig.input_wait`` when None; 0 for a session whose input is scripted by rows, which must not wait).
        """
        sid = session_id or f"s{next(self._ids)}"
        if not isinstance(sid, str) or not sid:
            raise EngineError(f"a session id is a non-empty string, got {sid!r}", "invalid_params")
        if sid in self._live:
            raise EngineError(f"session {sid!r} is already open", "session_exists")
        if len(self._live) >= self.config.max_sessions:
            raise EngineError(f"{self.config.max_sessions} sessions are open already; close one first", "too_many_sessions")
        params = params or {}
        for name, value in params.items():
            if name not in self.layout or self.layout[name].kind != "output":
                raise EngineError(
                    f"unknown output stream {name!r}; outputs: {', '.join(s.name for s in self.layout.outputs)}",
                    "unknown_stream",
                )
            if not isinstance(value, StreamParams):
                raise EngineError(f"params[{name!r}] must be StreamParams, got {type(value).__name__}", "invalid_params")
        if max_rows is not None and (not isinstance(max_rows, int) or not 2 <= max_rows <= self.config.max_rows):
            raise EngineError(f"max_rows must be within [2, {self.config.max_rows}], got {max_rows!r}", "invalid_params")
        if input_wait is not None and (isinstance(input_wait, bool) or not isinstance(input_wait, int | float)
                                       or not input_wait >= 0):
            raise EngineError(f"input_wait must be a number of seconds >= 0, got {input_wait!r}", "invalid_params")
        prefix_ids = self.tok.encode_prefix(prefix)
        if len(prefix_ids) > self.config.max_prefix_tokens:
            raise EngineError(
                f"prefix of {len(prefix_ids)} tokens is over the limit of {self.config.max_prefix_tokens}", "prefix_too_long"
            )
        longest = max([len(prefix_ids) + len(self.layout), *(int(n) for n in self.cache.lengths[: self.cache.in_use])])
        if not self.cache.fits(len(self._live) + 1, longest):
            raise EngineError(
                f"the KV cache cannot hold {len(self._live) + 1} sessions of {longest} tokens "
                f"(max_kv_tokens {self.config.max_kv_tokens}); try later",
                "out_of_memory",
            )
        self._live.add(sid)
        wait = self.config.input_wait if input_wait is None else input_wait
        self._commands.put(("open", sid, prefix_ids, params, start, max_rows or self.config.max_rows, wait or 0.0))
        return sid

    def _check(self, session_id: str) -> None:
        if session_id not in self._live:
            raise EngineError(f"unknown session {session_id!r}", "unknown_session")

    def send(
        self, session_id: str, stream: str, text: str, bulk: bool = False, end: bool = True, not_before: int | None = None
    ) -> None:
        """Queue ``text`` on an input stream, then the end-of-message token (``end=False``: more text follows).

        ``not_before``: the row before which it must not enter (e.g. tool results, which the
        training data places two rows after the call's end token).
        """
        if stream not in self.layout or self.layout[stream].kind != "input":
            raise EngineError(
                f"unknown input stream {stream!r}; inputs: {', '.join(s.name for s in self.layout.inputs)}", "unknown_stream"
            )
        ids = self.tok.encode_message(text) if end else self.tok.encode_text(text)
        self.send_tokens(session_id, stream, ids, bulk, not_before)

    def send_tokens(
        self, session_id: str, stream: str, ids: list[int], bulk: bool = False, not_before: int | None = None
    ) -> None:
        """Queue token ids (from ``tok.encode_text``/``encode_message``) on an input stream."""
        if stream not in self.layout or self.layout[stream].kind != "input":
            raise EngineError(
                f"unknown input stream {stream!r}; inputs: {', '.join(s.name for s in self.layout.inputs)}", "unknown_stream"
            )
        self._check(session_id)
        self._queue(("send", session_id, self.layout.index(stream), list(ids), bulk, not_before))

    def abort(self, session_id: str, stream: str | None = None) -> None:
        """End one output stream's message now and keep it silent (or all outputs when ``stream`` is None)."""
        if stream is not None and (stream not in self.layout or self.layout[stream].kind != "output"):
            raise EngineError(f"unknown output stream {stream!r}", "unknown_stream")
        self._check(session_id)
        self._queue(("abort", session_id, stream))

    def resume(self, session_id: str, stream: str | None = None) -> None:
        """Let an output stream stopped by ``abort`` (or one that spent its ``max_tokens``) speak again, or every
        output when ``stream`` is None: e.g. the next turn of a conversation whose last turn was cut. A stream still
        over its own ``max_tokens`` stops again at its next token."""
        if stream is not None and (stream not in self.layout or self.layout[stream].kind != "output"):
            raise EngineError(f"unknown output stream {stream!r}", "unknown_stream")
        self._check(session_id)
        self._queue(("resume", session_id, stream))

    def mute(self, session_id: str, stream: str, muted: bool = True) -> None:
        """Hold an output stream silent (its message pauses) until unmuted."""
        if stream not in self.layout or self.layout[stream].kind != "output":
            raise EngineError(f"unknown output stream {stream!r}", "unknown_stream")
        self._check(session_id)
        self._queue(("mute", session_id, stream, muted))

    def close(self, session_id: str, code: str = "closed", reason: str | None = None) -> None:
        """Close a session at the next step; its ``closed`` event carries ``code`` (and ``reason``, in words)."""
        self._check(session_id)
        self._live.discard(session_id)
        self._commands.put(("close", session_id, code, reason or code))

    def limits(self) -> dict:
        """The bounds a caller may tell its clients: rows per session, the KV-cache ceiling in tokens over all sessions
        (None: none), the rows a session keeps in the cache (None: every row) and the cache's bytes per token."""
        return {"max_rows": self.config.max_rows, "max_kv_tokens": self.config.max_kv_tokens,
                "window_rows": self.config.window_rows, "kv_bytes_per_token": self.cache.bytes_per_token}

    def pending_commands(self, session_id: str) -> int:
        """The session's send, abort, resume and mute commands not yet applied (at most ``max_pending_commands``)."""
        return self._pending.get(session_id, 0)

    def queued(self, session_id: str, stream: str) -> int:
        """Tokens queued on one of the session's input streams and not yet read (0 for an unknown session)."""
        sess = self.sessions.get(session_id)
        state = sess.inputs.get(self.layout.index(stream)) if sess is not None and stream in self.layout else None
        return len(state.queue) if state is not None else 0

    def _queue(self, cmd: tuple) -> None:
        sid, limit = cmd[1], self.config.max_pending_commands
        with self._pending_lock:
            n = self._pending.get(sid, 0)
            if n >= limit:
                raise EngineError(
                    f"{n} commands of session {sid!r} wait for the next step (max_pending_commands {limit}); "
                    "wait for the engine to catch up", "busy",
                )
            self._pending[sid] = n + 1
        self._commands.put(cmd)

    def _apply(self, events: list[Event]) -> None:
        while True:
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                return
            if cmd[0] in ("send", "abort", "resume", "mute"):
                with self._pending_lock:
                    n = self._pending.pop(cmd[1], 1) - 1
                    if n > 0:
                        self._pending[cmd[1]] = n
            try:
                self._apply_one(cmd, events)
            except Exception as e:  # one bad command fails its own session, nothing else
                self._fail(cmd[1], e, events)

    def _apply_one(self, cmd: tuple, events: list[Event]) -> None:
        kind, sid = cmd[0], cmd[1]
        if kind == "open":
            self._open(sid, *cmd[2:])
            return
        sess = self.sessions.get(sid)
        if sess is None:
            return  # closed meanwhile: the command has nothing to act on
        if kind == "send":
            _, _, stream, ids, bulk, not_before = cmd
            state = sess.inputs[stream]
            if not state.queue:
                state.bulk = 0
                state.hold_until = not_before or 0
            if bulk and state.bulk == len(state.queue):  # (bulk text queued behind bulk text is read in bulk too)
                state.bulk += len(ids)
            state.queue.extend(ids)
            sess.quiet_rows = 0
        elif kind == "abort":
            names = [cmd[2]] if cmd[2] else [self.layout.streams[i].name for i in self.out_idx]
            for name in names:
                o = sess.outputs[self.layout.index(name)]
                o.stopped = True
                o.end_next = bool(o.message)
        elif kind == "resume":
            for name in [cmd[2]] if cmd[2] else [self.layout.streams[i].name for i in self.out_idx]:
                sess.outputs[self.layout.index(name)].stopped = False
        elif kind == "mute":
            sess.outputs[self.layout.index(cmd[2])].muted = cmd[3]
        elif kind == "close":
            self._close(sess, events, reason=cmd[3], code=cmd[2])

    def _open(
        self, sid: str, prefix: list[int], params: dict[str, StreamParams], start: bool, max_rows: int | None = None,
        input_wait: float = 0.0,
    ) -> None:
        outputs = {}
        for i in self.out_idx:  # first what can fail: then a failure leaves nothing behind
            p = params.get(self.layout.streams[i].name, StreamParams())
            outputs[i] = OutputState(p, p.sampling.generator())
        slot = len(self.sessions)
        self.cache.ensure(slot + 1, 1)
        self.cache.clear(slot)
        self.cache.in_use = slot + 1
        self.sessions[sid] = Session(
            sid, slot, prefix, {i: InputState() for i in self.in_idx}, outputs,
            next_out={i: (self.silence, True) for i in self.out_idx}, wait_for_input=not start,
            max_rows=max_rows or self.config.max_rows, history=deque(maxlen=self._rows_kept()), input_wait=input_wait,
        )

    def _close(self, sess: Session, events: list[Event], reason: str = "closed", code: str = "closed") -> None:
        del self.sessions[sess.id]
        self._live.discard(sess.id)
        last = len(self.sessions)  # keep live slots at the front: move the last one into the hole
        if sess.slot != last:
            for other in self.sessions.values():
                if other.slot == last:
                    self.cache.move(last, sess.slot)
                    other.slot = sess.slot
        self.cache.clear(last)
        self.cache.in_use = last
        events.append(Event(sess.id, "closed", sess.row, "", text=reason, code=code))

    def _fail(self, sid: str, error: BaseException, events: list[Event], code: str = "session_failed") -> None:
        """End one session after an error of its own: an ``error`` event, then ``closed``; others are untouched."""
        sess = self.sessions.get(sid)
        row = sess.row if sess is not None else 0
        if code == "session_failed":
            log.error("session %s failed at row %d", sid, row, exc_info=error)
            text = f"session failed at row {row}: {type(error).__name__}: {error}"
        else:
            text = str(error)
        events.append(Event(sid, "error", row, "", text=text, code=code))
        if sess is not None:
            self._close(sess, events, reason=code, code=code)
        elif sid in self._live:  # it never opened: still tell its reader that it is over
            self._live.discard(sid)
            events.append(Event(sid, "closed", row, "", text=code, code=code))

    # -- the step ----------------------------------------------------------------------
    def has_work(self) -> bool:
        return any(self._wants_step(s) for s in self.sessions.values()) or not self._commands.empty()

    def idle(self, session_id: str) -> bool:
        """True when a started session is paused: nothing queued, nothing said for ``idle_rows`` rows."""
        sess = self.sessions.get(session_id)
        if sess is None or not sess.started:
            return False
        return not self._wants_step(sess) and not self._waiting_for(sess) and self._commands.empty()

    def _wants_step(self, sess: Session, now: float | None = None) -> bool:
        if not sess.started and sess.wait_for_input:
            return sess.pending_input
        if sess.pending_input or sess.speaking or any(t != self.silence for t, _ in sess.next_out.values()):
            return True
        if self._waiting_for(sess, now) > 0:
            return False
        return self.config.idle_rows is None or sess.quiet_rows < self.config.idle_rows

    def _waiting_for(self, sess: Session, now: float | None = None) -> float:
        """Seconds this session still waits for the rest of an input message (0: none; see ``input_wait``).

        Only called for a started session with nothing queued and every output silent."""
        if not sess.input_wait or not any(st.message.ids for st in sess.inputs.values()):
            return 0.0
        return max(0.0, sess.fed_at + sess.input_wait - (time.perf_counter() if now is None else now))

    def next_wake(self) -> float | None:
        """Seconds until a session that waits for input (``input_wait``) runs a row anyway (None: none waits).

        A driver with no work (``has_work``) sleeps at most this long, or until new input comes; 0 when a wait
        ended since it asked ``has_work`` (so a driver never sleeps past it)."""
        now = time.perf_counter()
        if any(self._wants_step(s, now) for s in self.sessions.values()):
            return 0.0
        waits = [w for s in self.sessions.values() if s.started and (w := self._waiting_for(s, now)) > 0]
        return min(waits, default=None)

    @torch.no_grad()
    def step(self) -> list[Event]:
        """Apply the queued commands, then advance every session with work by one row (or several, see above).

        Transactional per session: an error in one session's plan, forward or sampling fails
        that session alone (``error``, then ``closed``); the others advance exactly as if it
        had not been there, and none of their input is lost.
        """
        events: list[Event] = []
        self._apply(events)
        plans = []
        for sess in sorted(self.sessions.values(), key=lambda s: s.slot):
            if not self._wants_step(sess):
                continue
            try:
                self._slide(sess)
                plans.append(self._plan(sess))
            except Exception as e:
                self._fail(sess.id, e, events)
        plans = self._admit(plans, events)
        if plans:
            self.steps += 1
            self._run(plans, events)
            for p in plans:
                if p.session.id in self.sessions and p.session.row >= p.session.max_rows - 1:
                    self._close(
                        p.session, events, reason=f"row limit ({p.session.max_rows}) reached", code="row_limit"
                    )
        self.cache.shrink()
        return events

    def _rows_kept(self) -> int | None:
        """The most rows a session holds in the cache: the window, plus one bulk chunk or speculative run read
        past it before the next slide (None: no window)."""
        w = self.config.window_rows
        return None if w is None else w + max(self.config.bulk_chunk, self.config.speculative)

    def _slide(self, sess: Session) -> None:
        """Past ``window_rows`` cached rows, evict the oldest down to three quarters of the window."""
        window = self.config.window_rows
        if window is None or not sess.started or sess.row - sess.evicted <= window:
            return
        drop = sess.row - sess.evicted - (window - window // 4)
        p = len(sess.prefix)
        self.cache.evict(sess.slot, p, p + drop, self.rotation)
        sess.evicted += drop

    def _admit(self, plans: list[_Plan], events: list[Event]) -> list[_Plan]:
        """Plans whose cache growth fits under ``max_kv_tokens``; the sessions of the others are closed."""
        if self.config.max_kv_tokens is None:
            return plans
        n = len(self.sessions)
        allowed = self.config.max_kv_tokens // max(1, n)
        admitted = []
        for p in plans:
            need = int(self.cache.lengths[p.session.slot]) + len(p.ids)
            if need <= allowed:
                admitted.append(p)
                continue
            self._fail(
                p.session.id,
                KVCacheFull(
                    f"the session needs {need} KV cache tokens; with {n} sessions open each may hold "
                    f"{allowed} (max_kv_tokens {self.config.max_kv_tokens})"
                ),
                events,
                code="out_of_memory",
            )
        return [p for p in admitted if p.session.id in self.sessions]

    def _run(self, plans: list[_Plan], events: list[Event]) -> None:
        """One batched forward for ``plans``; if it fails, halve the batch until the failing session is found."""
        try:
            chunks = self._forward(plans)
        except Exception as e:
            self.cache.abandon()
            if len(plans) == 1:
                self._fail(plans[0].session.id, e, events)
                return
            half = len(plans) // 2
            self._run(plans[:half], events)
            self._run([p for p in plans[half:] if p.session.id in self.sessions], events)
            return
        kept, failed = [], []
        for p, chunk in zip(plans, chunks):
            try:
                choices, accepted = self._choose(p, chunk)
            except Exception as e:  # nothing of this session has changed but its popped input: it is closed
                kept.append(0)
                failed.append((p, e))
                continue
            kept.append(self._finish(p, choices, accepted, events))
        self.cache.commit(torch.tensor([p.session.slot for p in plans]), torch.tensor(kept))
        for p, e in failed:
            self._fail(p.session.id, e, events)

    def warm_up(self, capacities: tuple[int, ...] = ()) -> float:
        """Compile the row forward for the present cache shape, and for these cache capacities, before a session
        needs them (a no-op when the engine runs eager); returns the seconds it took."""
        return self.compiled.warm_up(self.cache, self.silence, capacities) if self.compiled is not None else 0.0

    def _forward(self, plans: list[_Plan]) -> list[torch.Tensor]:
        """The batched forward; per plan the logits of its output cells ``[rows needed, outputs, vocab]``."""
        if self.compiled is not None and self.compiled.eligible(plans):
            try:
                return self.compiled(self.cache, plans, self.silence)
            except KVCacheFull:  # the compiled forward writes a full row for every slot: the eager one may fit
                pass
            except Exception as e:  # no compiler, an op inductor cannot take...: run eager (it commits nothing first)
                log.warning("the compiled row forward failed (%s: %s); running eager from now on", type(e).__name__, e)
                self.compiled = None
        n = max(len(p.ids) for p in plans)
        b = len(plans)
        ids = torch.full((b, n), self.silence, dtype=torch.long)
        streams = torch.zeros((b, n), dtype=torch.long)
        pos = torch.zeros((b, n), dtype=torch.long)
        q_valid = torch.zeros((b, n), dtype=torch.bool)
        q_visible = torch.zeros((b, n), dtype=torch.bool)
        keep = torch.zeros((b, n), dtype=torch.bool)
        for j, p in enumerate(plans):
            k = len(p.ids)
            ids[j, :k], streams[j, :k], pos[j, :k], q_visible[j, :k] = p.ids, p.streams, p.positions, p.visible
            pos[j, k:] = int(p.positions.max()) + 1  # padding: never attended (see k_valid), harmless as queries
            q_valid[j, :k] = True
            keep[j, p.out_at.reshape(-1)] = True
        slots = torch.tensor([p.session.slot for p in plans])
        k_pos, k_stream, filled, write = self.cache.begin(slots, pos, streams)
        dev_k = k_pos.device  # where the cache is (the plans are built on the CPU)
        k_valid, k_visible = filled.clone(), filled.clone()  # what the cache holds is visible
        rows = torch.arange(b, device=dev_k)[:, None]
        k_valid[rows, write] = q_valid.to(dev_k)
        k_visible[rows, write] = (q_valid & q_visible).to(dev_k)
        mask = stream_causal_mask(
            pos.to(dev_k), k_pos, streams.to(dev_k), k_stream, k_visible=k_visible, k_valid=k_valid
        )
        dev = self.model.device
        out = self.model(
            ids.to(dev), streams.to(dev), pos.to(dev), attention_mask=mask.to(dev),
            past_key_values=self.cache, use_cache=True, logits_to_keep=keep.to(dev),
        )
        logits = out.logits.float()  # the kept positions of every plan, in sequence order
        chunks, offset = [], 0
        for p in plans:
            flat = p.out_at.reshape(-1)
            rank = torch.argsort(torch.argsort(flat))  # where each output cell sits among the plan's kept positions
            chunks.append(logits[offset : offset + len(flat)][rank.to(logits.device)].view(*p.out_at.shape, -1))
            offset += len(flat)
        return chunks

    def _plan(self, sess: Session) -> _Plan:
        c = len(self.layout)
        prefix = [] if sess.started else sess.prefix
        p = len(prefix)
        mode, n_rows = "step", 1
        bulk = max((s.bulk for s in sess.inputs.values()), default=0)
        # rows the queued input needs: a held queue (``not_before``) first waits for its row
        waiting = max((len(s.queue) + max(s.hold_until - sess.row, 0) for s in sess.inputs.values() if s.queue), default=0)
        silent_next = all(t == self.silence for t, _ in sess.next_out.values())
        tail = False  # the plan's last two rows are decided as in speculation (see below)
        if bulk and not sess.speaking and silent_next:
            mode, n_rows = "bulk", min(bulk, self.config.bulk_chunk)
            # a complete message read to its end in this forward: one row past it too, as speculation does, so that
            # a reply starts in this forward (the row past it is kept only if the end row's outputs stay silent)
            if bulk < self.config.bulk_chunk and all(
                len(st.queue) <= bulk and (not st.queue or st.queue[-1] == self.end) and st.hold_until <= sess.row
                for st in sess.inputs.values()
            ):
                n_rows, tail = bulk + 1, True
        elif self.config.speculative > 1 and waiting and silent_next and not any(
            o.end_next for o in sess.outputs.values()
        ):
            # when the queued input ends its messages, one row past it: that row's output queries are the first to
            # see the end, so a reply can start in this forward instead of the next one. (Not before a message is
            # complete: more of it may arrive for that row, as it would when stepping row by row.)
            complete = all(not st.queue or st.queue[-1] == self.end for st in sess.inputs.values())
            if complete or waiting > 1:
                mode, n_rows = "spec", min(waiting + complete, self.config.speculative)
        n_rows = max(1, min(n_rows, sess.max_rows - 1 - sess.row))
        rows: list[list[int]] = []
        popped: list[dict[int, int]] = []
        for r in range(n_rows):
            row = [self.silence] * c
            took = {}
            for i, state in sess.inputs.items():
                if state.queue and sess.row + r >= state.hold_until:
                    took[i] = row[i] = state.queue.popleft()
                    if state.bulk:
                        state.bulk -= 1
            if r == 0:
                for i, (tok, _) in sess.next_out.items():
                    row[i] = tok
            rows.append(row)
            popped.append(took)
        # the same flattening as training (rows.row_inputs), visible tokens first: the cache keeps a prefix of them
        rt = row_inputs(torch.tensor(rows), sess.row - sess.evicted, len(sess.prefix), self.fmt, keys_first=True)
        needed = torch.arange(n_rows) if mode == "spec" else torch.arange(n_rows - 1 - tail, n_rows)
        is_out = self.fmt.is_output[rt.streams]
        # a query-only token of a row whose logits nobody reads (bulk reading) changes nothing: leave it out
        drop = ~rt.visible & ~torch.isin(rt.rows, needed)
        rt_ids, rt_streams, rt_pos, rt_vis, rt_rows = (t[~drop] for t in (rt.ids, rt.streams, rt.positions, rt.visible, rt.rows))
        is_out = is_out[~drop]
        cells = (torch.isin(rt_rows, needed) & is_out).nonzero().squeeze(1)
        cells = cells[torch.argsort(rt_rows[cells] * len(self.layout) + rt_streams[cells])]  # by row, then stream
        out_at = (p + cells).view(len(needed), len(self.out_idx))
        keys_per_row = torch.bincount(rt_rows[rt_vis], minlength=n_rows).tolist()
        return _Plan(
            sess,
            ids=torch.cat([torch.tensor(prefix, dtype=torch.long), rt_ids]),
            streams=torch.cat([torch.full((p,), self.layout.index(self.layout.prefix_stream)), rt_streams]),
            positions=torch.cat([torch.arange(p), rt_pos]),
            visible=torch.cat([torch.ones(p, dtype=torch.bool), rt_vis]),
            out_at=out_at,
            keys_per_row=keys_per_row,
            rows=rows,
            popped=popped,
            prefix_len=p,
            mode=mode,
            needed=needed.tolist(),
        )

    def _choose(self, plan: _Plan, logits: torch.Tensor) -> tuple[list[int], int]:
        """Sample the plan's rows (speculative: up to the first row where the model speaks).

        Changes nothing but the session's random generators; returns (the last row's choices, rows accepted).
        """
        sess = plan.session
        params = [sess.outputs[i].params.sampling for i in self.out_idx]
        gens = [sess.outputs[i].generator for i in self.out_idx]
        accepted = len(plan.rows)
        choices: list[int] = []
        # a speculative row, or the end row of a bulk message read with the row past it, is kept whole; the rows
        # after it only if its outputs stay silent
        for r, row in enumerate(plan.needed):
            choices = sample(logits[r], params, gens, rule_silence(self.config.speak_rule, self.silence)).tolist()
            if row < len(plan.rows) - 1:
                speaks = any(
                    tok != self.silence and not sess.outputs[i].muted and not sess.outputs[i].stopped
                    for i, tok in zip(self.out_idx, choices)
                )
                if speaks:
                    accepted = row + 1
                    break
        return choices, accepted

    def _finish(self, plan: _Plan, choices: list[int], accepted: int, events: list[Event]) -> int:
        """Accept rows (speculative rollback), emit events; returns tokens kept in the cache."""
        sess = plan.session
        # roll back rejected rows: their input tokens go back to the front of the queues
        for took in reversed(plan.popped[accepted:]):
            for i, tok in took.items():
                sess.inputs[i].queue.appendleft(tok)
        for r in range(accepted):
            self._feed_row(sess, plan.rows[r], events)
        sess.started = True
        reading = plan.mode == "bulk" and any(s.bulk for s in sess.inputs.values())
        for i, tok in zip(self.out_idx, choices):
            # while a bulk text is being read, outputs are held silent
            sess.next_out[i] = (self.silence, tok != self.silence) if reading else self._decide(sess, i, tok, events)
        return plan.prefix_len + sum(plan.keys_per_row[:accepted])

    def _feed_row(self, sess: Session, row: list[int], events: list[Event]) -> None:
        t = sess.row
        for i in self.in_idx:
            tok = row[i]
            if tok == self.silence:
                continue
            state = sess.inputs[i]
            name = self.layout.streams[i].name
            if tok == self.end:
                events.append(Event(sess.id, "message_end", t, name, tok, self.tok.decode(state.message.ids), True))
                state.message = MessageText()
            else:
                events.append(Event(sess.id, "token", t, name, tok, state.message.push(tok, self.tok), True))
        sess.history.append(torch.tensor(row))
        sess.row += 1
        sess.fed_at = time.perf_counter()
        busy = sess.pending_input or sess.speaking or any(tok != self.silence for tok in row)
        sess.quiet_rows = 0 if busy else sess.quiet_rows + 1

    def _decide(self, sess: Session, i: int, sampled: int, events: list[Event]) -> tuple[int, bool]:
        """The token output stream ``i`` holds at row ``sess.row``, given the model's choice."""
        o = sess.outputs[i]
        name = self.layout.streams[i].name
        t = sess.row
        if o.end_next and o.message:
            o.end_next = False
            return self._end_message(sess, o, name, t, forced=True, events=events)
        o.end_next = False
        if o.stopped or o.muted:
            return self.silence, sampled != self.silence
        if sampled == self.silence:
            return self.silence, False
        if sampled == self.end:
            if not o.message:
                return self.silence, True  # an end with nothing said: nothing to end
            return self._end_message(sess, o, name, t, forced=False, events=events)
        if o.params.max_tokens is not None and o.emitted >= o.params.max_tokens:
            o.stopped = True
            if o.message:
                return self._end_message(sess, o, name, t, forced=True, events=events)
            return self.silence, True
        piece = o.message.push(sampled, self.tok)
        o.emitted += 1
        sess.first_output_row.setdefault(name, t)
        events.append(Event(sess.id, "token", t, name, sampled, piece, False))
        text = o.message.text
        # a stop string that the new piece completes lies within the text's last len(piece) + len(stop) characters
        if any(piece and s in text[-(len(piece) + len(s)) :] for s in o.params.stop) or (
            o.params.max_tokens is not None and o.emitted >= o.params.max_tokens
        ):
            o.end_next = True
            if o.params.max_tokens is not None and o.emitted >= o.params.max_tokens:
                o.stopped = True
        return sampled, False

    def _end_message(self, sess, o: OutputState, name: str, t: int, forced: bool, events) -> tuple[int, bool]:
        text = self.tok.decode(o.message.ids)
        for s in o.params.stop:
            if s in text:
                text = text[: text.index(s)]
        events.append(Event(sess.id, "message_end", t, name, self.end, text, forced))
        o.message = MessageText()
        return self.end, forced

    # -- conveniences for tests and scripts ---------------------------------------------
    def grid(self, session_id: str) -> torch.Tensor:
        """Rows fed so far ``[rows, streams]``, plus the output tokens chosen for the next row."""
        sess = self.sessions[session_id]
        nxt = torch.full((1, len(self.layout)), self.silence)
        for i, (tok, _) in sess.next_out.items():
            nxt[0, i] = tok
        return torch.cat([torch.stack(list(sess.history)), nxt]) if sess.history else nxt
