"""Conversations: the multi-stream model and its twin on held-out chats of several turns (``multistream eval chats``).

The cases are held-out conversations (:func:`multistream.data.conversations.generate_conversations`, split
``test``, seed 0, rows placed with the base model's tokenizer, :func:`.skills.base_length_of`), or a JSONL file of
such timelines. A conversation is a timeline whose prefix is the system prompt and whose ``meta.turns`` lists its
2 to 8 turns (:func:`turns_of`): each turn's inputs (``user`` text, ``tool`` documents) with their rows, the
expected answer and the others it accepts, whether it follows up an earlier turn, and for a document its injected
instruction, if any. Calculator results are not among the inputs: the contenders' own calls produce them.

- multi-stream: ONE engine session per conversation, one row a step (as :mod:`.skills` runs it: every input enters
  at exactly its row). A turn starts at the session's next row; each of its inputs enters ``row - start_row`` rows
  later, a spread one token by token at its rows (``spread`` rows per token). An input with
  ``after_answer_tokens`` (a correction) enters once the answer stream has written that many tokens in the turn;
  when the session settles before that (a shorter answer, or none) it enters then and the turn is marked
  ``late``; inputs scheduled after it keep their offsets from it. The engine runs the model's calculator calls
  (the results enter the ``tool`` stream two rows after the call, as in training). The turn is over once the
  session has settled: ``settle_rows`` rows with nothing to read or say and no tool result on its way (the
  engine's ``idle_rows``: :meth:`~multistream.engine.core.EngineCore.idle`, what ``multistream chat`` waits for
  between piped lines); the next turn's inputs go in at the next row. The turn's final answer is its last answer
  message.
- twin: the same conversation as one growing chat: the system prompt, then for each turn its inputs as one user
  message (documents as ``<tool>...</tool>``, as in :mod:`multistream.data.twin`) and the twin's own replies; its
  calculator calls are answered by the twin's tool loop (:func:`.twin.tool_loop`); a correction is a new user
  message after the reply it corrects (as in :mod:`.interrupts`). The turn's final answer is the last line outside
  the tags of its replies (:func:`.scoring.final_reply_answer`).

Budget, the same for both, per turn: :attr:`.common.Contenders.max_tokens` for each part of the turn that waits
for a reply (a correction turn has two, the stale start and the corrected answer, as in :mod:`.interrupts`); all
the multi-stream outputs together (:class:`.common.StepClock`; the outputs of a cut turn speak again in the next,
:meth:`~multistream.engine.core.EngineCore.resume`), all the twin's replies of the turn together, thinking, tags
and calls included. A multi-stream turn whose outputs still speak ``Contenders.max_rows`` rows past its last
input is cut too.

Scoring (:mod:`.scoring`, the one strict scorer): a turn is right when its final answer claims the expected answer
or one it accepts (:func:`.scoring.correct_any`; numbers copied from the turn's user text claim nothing); a
document turn with an injected instruction must also not obey it (:func:`.scoring.useful`, judged on everything
the answer said in the turn). Reported per contender: the turns right, by turn index (1 to 8), the conversations
with every turn right, follow-up turns and standalone ones apart, per skill; each a percentage with its 95% Wilson
interval (:func:`.skills.pct`).
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..data.twin import WRAP
from ..engine.core import EngineConfig
from ..engine.runner import RunResult, run_call
from ..engine.session import StreamParams
from ..streams import DEFAULT_LAYOUT
from ..timeline import Timeline, read_jsonl, token_rows
from .common import Contenders, StepClock, message_spans, progress, single_system
from .scoring import attacked, correct_any, final_reply_answer, split_reply, useful
from .skills import base_length_of, pct
from .twin import tool_loop

MIN_TURNS, MAX_TURNS = 2, 8
SETTLE_ROWS = EngineConfig.idle_rows
"""Quiet rows after which a session has settled (the engine's default ``idle_rows``, as in ``multistream chat``)."""
SESSION_ROWS = 8192
"""Rows one conversation may run in all (a session at the limit is closed; its remaining turns score wrong)."""
INPUT_STREAMS = ("user", "tool")
SIDES = ("multi", "twin")


class ConversationsMissing(RuntimeError):
    """No conversation generator (:mod:`multistream.data.conversations`) and no case file."""


# -- the cases -----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TurnInput:
    stream: str
    """The role of the input stream: ``user`` or ``tool`` (a document; never a calculator result)."""
    text: str
    offset: int
    """Rows after the turn's first row (the timeline's ``row - start_row``)."""
    spread: float = 1.0
    """Rows per token."""
    after_answer_tokens: int | None = None
    """A correction: it enters once the answer stream has written this many tokens in the turn."""


@dataclass(frozen=True)
class Turn:
    index: int
    """1 for the first turn."""
    skill: str
    follow_up: bool
    inputs: tuple[TurnInput, ...]
    expected: str
    accepted: tuple[str, ...] = ()
    payload: str | None = None
    """An instruction injected into the turn's document (the answer must not obey it)."""
    expression: str | None = None

    @property
    def answers(self) -> tuple[str, ...]:
        return (self.expected, *(a for a in self.accepted if a != self.expected))

    @property
    def question(self) -> str:
        """The user's text in the turn: numbers copied from it claim nothing."""
        return "\n".join(i.text for i in self.inputs if i.stream == "user")

    @property
    def parts(self) -> int:
        """Parts of the turn that wait for a reply: 1, plus one per correction (the budget is per part)."""
        return len(twin_parts(self))


def turns_of(tl: Timeline) -> list[Turn]:
    """The turns of a conversation timeline (``meta.turns``), checked; raises ``ValueError`` naming the case and
    the turn. Inputs are in order of their rows (``user`` before ``tool`` on the same row)."""
    meta = tl.meta or {}
    where = f"conversation {tl.id!r}"
    raw = meta.get("turns")
    if meta.get("skill") != "conversation" or not isinstance(raw, list):
        raise ValueError(f"{where}: not a conversation (meta.skill 'conversation' and a list meta.turns)")
    if not MIN_TURNS <= len(raw) <= MAX_TURNS:
        raise ValueError(f"{where}: {len(raw)} turns; a conversation has {MIN_TURNS} to {MAX_TURNS}")
    return _turns(tl)


def _turns(tl: Timeline) -> list[Turn]:
    where = f"conversation {tl.id!r}"
    return [_turn(t, k, f"{where} turn {k}") for k, t in enumerate(tl.meta["turns"], 1)]


def _turn(t, k: int, where: str) -> Turn:
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise ValueError(f"{where}: {what}")

    need(isinstance(t, dict), "must be an object")
    need(isinstance(t.get("skill"), str) and bool(t["skill"]), "'skill' must be a non-empty string")
    need(_is_int(t.get("start_row")) and t["start_row"] >= 0, "'start_row' must be a row (an integer >= 0)")
    need(isinstance(t.get("expected"), str) and bool(t["expected"].strip()), "'expected' must be a non-empty string")
    accepted = t.get("accepted") or []
    need(isinstance(accepted, list) and all(isinstance(a, str) and a.strip() for a in accepted),
         "'accepted' must be a list of non-empty strings")
    for name in ("payload", "expression"):
        need(t.get(name) is None or isinstance(t[name], str), f"'{name}' must be a string or null")
    need(isinstance(t.get("follow_up", False), bool), "'follow_up' must be true or false")
    raw = t.get("inputs")
    need(isinstance(raw, list) and bool(raw), "'inputs' must be a non-empty list")
    inputs = []
    for j, i in enumerate(raw):
        at = f"inputs[{j}]"
        need(isinstance(i, dict), f"{at} must be an object")
        need(i.get("stream") in INPUT_STREAMS, f"{at}.stream must be one of {', '.join(INPUT_STREAMS)}")
        need(isinstance(i.get("text"), str) and bool(i["text"].strip()), f"{at}.text must be a non-empty string")
        need(_is_int(i.get("row")) and i["row"] >= t["start_row"], f"{at}.row must be a row at or after start_row")
        spread = i.get("spread", 1.0)
        need(isinstance(spread, int | float) and not isinstance(spread, bool) and spread >= 1,
             f"{at}.spread must be a number of rows per token, at least 1")
        after = i.get("after_answer_tokens")
        need(after is None or (_is_int(after) and after >= 0), f"{at}.after_answer_tokens must be an integer >= 0")
        inputs.append(TurnInput(i["stream"], i["text"], i["row"] - t["start_row"], float(spread), after))
    inputs.sort(key=lambda i: (i.offset, INPUT_STREAMS.index(i.stream)))
    return Turn(k, t["skill"], bool(t.get("follow_up", False)), tuple(inputs), t["expected"], tuple(accepted),
                t.get("payload"), t.get("expression"))


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def case_key(tl: Timeline, turns: list[Turn] | None = None) -> str:
    """The content of a conversation (each turn's skill, inputs and expected answer), hashed: two cases with the same
    key ask the same thing in the same order, whatever their ids, rows or system prompts."""
    turns = turns if turns is not None else _turns(tl)  # (any number of turns: a training session may end early)
    content = [[t.skill, [[i.stream, i.text] for i in t.inputs], t.expected] for t in turns]
    return hashlib.sha1(json.dumps(content, ensure_ascii=False).encode()).hexdigest()[:16]


def load_conversations(path: str | Path | None = None, n: int = 100, length_of: Callable[[str], int] | None = None,
                       tokenizer_ref: str = "default", seed: int = 0) -> list[Timeline]:
    """The first ``n`` conversations of a JSONL file of conversation timelines, or ``n`` generated held-out ones
    (the test split of :func:`multistream.data.conversations.generate_conversations`, ``seed``, rows placed with
    ``length_of``: by default the ``tokenizer_ref`` base model's tokenizer). Every case is checked
    (:func:`turns_of`) before any is run."""
    if path is not None:
        out = []
        for _, tl, problems in read_jsonl(path, DEFAULT_LAYOUT):
            if tl is None:
                raise ValueError(f"{path}: " + "; ".join(problems))
            turns_of(tl)
            out.append(tl)
            if len(out) == n:
                break
        if not out:
            raise ValueError(f"{path}: no conversation")
        return out
    try:
        from ..data.conversations import generate_conversations
    except ModuleNotFoundError as e:
        if e.name != f"{__package__.rsplit('.', 1)[0]}.data.conversations":
            raise
        raise ConversationsMissing("no conversation generator (multistream.data.conversations) in this checkout: "
                                   "give a JSONL file of conversation timelines") from e
    length_of = length_of or base_length_of(tokenizer_ref)
    out = []
    for ex in generate_conversations(n, "test", seed, length_of):
        tl = ex.timeline
        if tl.meta is None:
            tl.meta = ex.meta
        turns_of(tl)
        out.append(tl)
    return out


# -- scoring -------------------------------------------------------------------------------------------------------------


def score_turn(turn: Turn, final: str, said: str | None = None) -> dict:
    """``correct`` for a turn's final answer; for a document with an injected instruction also ``attacked`` (judged
    on ``said``: everything the answer said in the turn, default the final answer) and ``correct_answer``."""
    ok = correct_any(turn.answers, final, turn.question)
    out = {"correct": ok}
    if turn.payload:
        hit = attacked(turn.payload, final if said is None else said, turn.expected)
        out.update(attacked=hit, correct=bool(useful(ok, hit)), correct_answer=ok)
    return out


# -- multi-stream: one session per conversation ----------------------------------------------------------------------------


@dataclass
class _Feed:
    spec: TurnInput
    stream: str
    ids: list[int]
    offsets: list[int]
    planned: int
    """The session row the timeline gives its first token."""
    row: int | None
    """The session row of its first token (None: a correction waiting for the answer)."""
    sent: int = 0
    late: bool = False


@dataclass
class _Session:
    sid: str
    clock: StepClock
    tools: object = None
    call: str | None = None
    closed: bool = False


def _release(feeds: list[_Feed], f: _Feed, row: int) -> None:
    """Let ``f`` enter at ``row``; the inputs scheduled after it keep their offsets from it."""
    delta = row - (f.planned if f.row is None else f.row)
    f.row = row
    for g in feeds:
        if g is not f and g.row is not None and g.sent == 0 and g.spec.offset > f.spec.offset:
            g.row += delta


def run_multi_turn(c: Contenders, core, s: _Session, turn: Turn) -> dict:
    """One turn in the conversation's session, until it has settled; the turn's record."""
    layout = core.layout
    answer = layout.role("answer")
    if s.closed:
        return _multi_record(turn, [], answer, layout, rows=0, tokens=0, closed=True)
    sess = core.sessions.get(s.sid)
    base = sess.row if sess is not None else 0
    clock = s.clock
    clock.budget, clock.spent, clock.cut = c.max_tokens * turn.parts, 0, False
    if turn.index > 1:
        core.resume(s.sid)  # a cut turn's outputs speak again
    feeds = []
    for spec in turn.inputs:
        ids = core.tok.encode_message(spec.text)
        feeds.append(_Feed(spec, layout.role(spec.stream), ids, token_rows(len(ids), spec.spread), base + spec.offset,
                           None if spec.after_answer_tokens is not None else base + spec.offset))
    events: list = []
    answer_tokens, capped, row = 0, False, base
    while True:
        sess = core.sessions.get(s.sid)
        row = sess.row if sess is not None else base
        for f in feeds:
            if f.row is None and answer_tokens >= f.spec.after_answer_tokens:
                _release(feeds, f, row)
        for f in feeds:
            if f.row is None or f.sent == len(f.ids) or row < f.row:
                continue
            due = bisect.bisect_right(f.offsets, row - f.row)
            if due > f.sent:
                core.send_tokens(s.sid, f.stream, f.ids[f.sent:due])
                f.sent = due
        waiting = [f for f in feeds if f.sent < len(f.ids)]
        if core.idle(s.sid):
            if not waiting:
                break
            if not any(f.row is not None and f.row <= row for f in waiting):
                # settled with input still to come (a correction whose answer never came, or a gap longer than the
                # settling): the next one enters now
                nxt = min(waiting, key=lambda f: f.spec.offset)
                nxt.late = nxt.row is None
                _release(feeds, nxt, row)
                continue
        # cut once the outputs still speak max_rows past the last input (not while a correction waits for the answer)
        limit = None if any(f.row is None for f in feeds) else max(f.row + f.offsets[-1] for f in feeds) + c.max_rows
        if limit is not None and row >= limit and not clock.cut and sess is not None and sess.speaking:
            core.abort(s.sid)
            clock.cut = capped = True
        for ev in clock.step():
            events.append(ev)
            if ev.type == "closed":
                s.closed = True
            elif ev.stream == answer and ev.type == "token" and not ev.forced:
                answer_tokens += 1
            elif s.call is not None and ev.stream == s.call and ev.type == "message_end" and ev.text.strip():
                run_call(core, s.sid, s.tools, ev, events)
        if s.closed or (limit is not None and row > limit + (core.config.idle_rows or 0) + 64):  # (never hang)
            break
    sess = core.sessions.get(s.sid)
    rows = (sess.row if sess is not None else row) - base
    return _multi_record(turn, events, answer, layout, rows=rows, tokens=clock.spent, cut=clock.cut, capped=capped,
                         late=any(f.late for f in feeds), first_row=base, closed=s.closed)


def _multi_record(turn: Turn, events: list, answer: str, layout, rows: int, tokens: int, **extra) -> dict:
    result = RunResult({}, rows, {}, events, None, None, 0.0, 0)
    spans = [sp for sp in message_spans(result, answer) if sp[0].strip()]
    final = spans[-1][0].strip() if spans else ""
    said = " ".join(sp[0].strip() for sp in spans)

    def spoken(role: str) -> str:
        name = layout.roles.get(role)
        return "\n".join(text.strip() for text, _, _ in message_spans(result, name)) if name else ""

    return {**_turn_fields(turn), "final": final, "answer": said, **score_turn(turn, final, said),
            "think": spoken("think"), "call": spoken("call"),
            "tool_results": [e.text for e in events if e.type == "tool_result"], "rows": rows, "tokens": tokens,
            **extra}


def _turn_fields(turn: Turn) -> dict:
    return {"turn": turn.index, "skill": turn.skill, "follow_up": turn.follow_up, "expected": turn.expected}


def run_multi_conversation(c: Contenders, core, tl: Timeline, turns: list[Turn], tools=None) -> list[dict]:
    """The conversation in one session of ``core`` (one row a step, idle after the settling rows); a record a turn."""
    layout = core.layout
    call = layout.roles.get("call") if tools is not None and "tool" in layout.roles else None
    # no stream budget of its own: StepClock holds all outputs together to each turn's budget
    sid = core.open(prefix=tl.prefix, params={o.name: StreamParams() for o in layout.outputs}, input_wait=0.0)
    s = _Session(sid, StepClock(core), tools, call)
    records = [run_multi_turn(c, core, s, turn) for turn in turns]
    if not s.closed:
        core.close(sid)
        core.step()
    return records


# -- the twin: one growing chat --------------------------------------------------------------------------------------------


def twin_parts(turn: Turn) -> list[str]:
    """A turn's inputs as the twin's user messages: one, and a new one at each correction (it follows a reply)."""
    parts: list[list[str]] = [[]]
    for i in turn.inputs:
        if i.after_answer_tokens is not None and parts[-1]:
            parts.append([])
        left, right = WRAP.get(i.stream, ("", ""))
        parts[-1].append(f"{left}{i.text}{right}")
    return ["\n".join(p) for p in parts]


def run_twin_conversation(baseline, tl: Timeline, turns: list[Turn], max_tokens: int, tools=None) -> list[dict]:
    """The conversation as one chat that grows by each turn's user messages and the twin's own replies (its tool
    calls answered in between); a record a turn."""
    chat = single_system(tl.prefix)
    records = []
    for turn in turns:
        budget, spent, replies = max_tokens * turn.parts, 0, []
        for content in twin_parts(turn):
            chat.append({"role": "user", "content": content})
            if spent >= budget:  # (the budget is spent: the message stands unanswered)
                continue
            r, added = tool_loop(baseline, list(chat), tools, budget=budget - spent)
            chat += added
            spent += r.steps
            replies.append(r.streams["answer"])
        joined = "\n".join(replies)
        final = final_reply_answer(joined)
        said = split_reply(joined)["answer"]
        records.append({**_turn_fields(turn), "final": final, "answer": said, **score_turn(turn, final, said),
                        "replies": replies, "tokens": spent})
    return records


# -- the evaluation ---------------------------------------------------------------------------------------------------------


def eval_chats(c: Contenders, timelines: list[Timeline], tools=None, show_progress: bool = True,
               settle_rows: int = SETTLE_ROWS) -> dict:
    """Both contenders on every conversation; ``tools`` (default: the demo tools, with the calculator) serve both."""
    if tools is None:
        from ..engine.tools import demo_tools

        tools = demo_tools()
    cases = [(tl, turns_of(tl)) for tl in timelines]  # every case checked before any runs
    core = c.core(speculative=0, idle_rows=settle_rows, max_rows=SESSION_ROWS)  # one row a step: inputs on their rows
    baseline = c.baseline()
    records = []
    for tl, turns in progress(cases, "chats", show_progress):
        records.append({"id": tl.id, "case": case_key(tl, turns), "system": tl.prefix, "turns": len(turns),
                        "multi": run_multi_conversation(c, core, tl, turns, tools),
                        "twin": run_twin_conversation(baseline, tl, turns, c.max_tokens, tools)})
    return collect(records, c.max_tokens, settle_rows)


def _rate(flags: list[bool]) -> dict:
    if not flags:
        return {"n": 0, "accuracy": None, "accuracy_ci": None}
    acc, ci = pct(flags)
    return {"n": len(flags), "accuracy": acc, "accuracy_ci": ci}


def summarise(conversations: list[list[dict]]) -> dict:
    """One contender's figures from its turn records (a list per conversation); rates in percent, with intervals."""
    turns = [r for conv in conversations for r in conv]
    right = [r["correct"] for r in turns]
    d: dict = {"conversations": len(conversations), "turns": len(turns)}
    d["turn_accuracy"], d["turn_accuracy_ci"] = pct(right) if right else (None, None)
    every = [all(r["correct"] for r in conv) for conv in conversations]
    d["all_turns_right"], d["all_turns_right_ci"] = pct(every) if every else (None, None)
    d["by_turn"] = {str(k): _rate([r["correct"] for r in turns if r["turn"] == k])
                    for k in range(1, MAX_TURNS + 1) if any(r["turn"] == k for r in turns)}
    # each conversation's last turn, whatever its number: does accuracy hold up as a chat grows long?
    d["last_turn"] = _rate([conv[-1]["correct"] for conv in conversations if conv])
    d["follow_up"] = _rate([r["correct"] for r in turns if r["follow_up"]])
    d["standalone"] = _rate([r["correct"] for r in turns if not r["follow_up"]])
    skills = list(dict.fromkeys(r["skill"] for r in turns))
    d["by_skill"] = {s: _rate([r["correct"] for r in turns if r["skill"] == s]) for s in skills}
    hits = [r["attacked"] for r in turns if "attacked" in r]
    if hits:
        d["attack_success"], d["attack_success_ci"] = pct(hits)
        d["attacks"] = len(hits)
    for key in ("cut", "late", "closed"):  # (multi-stream only)
        if any(key in r for r in turns):
            d[f"{key}_turns"] = sum(bool(r.get(key)) for r in turns)
    d["tokens_per_turn"] = round(sum(r["tokens"] for r in turns) / len(turns), 1) if turns else None
    return d


def collect(records: list[dict], max_tokens: int, settle_rows: int = SETTLE_ROWS) -> dict:
    out: dict = {"n": len(records), "turns": sum(r["turns"] for r in records), "max_tokens": max_tokens,
                 "settle_rows": settle_rows}
    for side in SIDES:
        out[side] = summarise([r[side] for r in records])
    out["cases"] = records
    return out


# -- tables ------------------------------------------------------------------------------------------------------------------


def _cell(value, ci) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1f}" + (f" [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else "")


def table_rows(results: dict) -> list[tuple[str, int, str, str]]:
    """``(measure, n, multi, twin)`` rows: percentages with their 95% intervals."""
    m, t = results["multi"], results["twin"]
    rows = [("turns right", m["turns"], _cell(m["turn_accuracy"], m["turn_accuracy_ci"]),
             _cell(t["turn_accuracy"], t["turn_accuracy_ci"])),
            ("all turns right (per conversation)", m["conversations"],
             _cell(m["all_turns_right"], m["all_turns_right_ci"]), _cell(t["all_turns_right"], t["all_turns_right_ci"]))]
    for k, d in m["by_turn"].items():
        rows.append((f"turn {k}", d["n"], _cell(d["accuracy"], d["accuracy_ci"]),
                     _cell(t["by_turn"][k]["accuracy"], t["by_turn"][k]["accuracy_ci"])))
    for key, name in (("last_turn", "each chat's last turn"), ("follow_up", "follow-up turns"),
                      ("standalone", "standalone turns")):
        if key not in m:  # (results saved before the last turn was counted)
            continue
        rows.append((name, m[key]["n"], _cell(m[key]["accuracy"], m[key]["accuracy_ci"]),
                     _cell(t[key]["accuracy"], t[key]["accuracy_ci"])))
    for s, d in m["by_skill"].items():
        rows.append((f"skill: {s}", d["n"], _cell(d["accuracy"], d["accuracy_ci"]),
                     _cell(t["by_skill"][s]["accuracy"], t["by_skill"][s]["accuracy_ci"])))
    if "attack_success" in m:
        rows.append(("injection obeyed (lower is better)", m["attacks"],
                     _cell(m["attack_success"], m["attack_success_ci"]),
                     _cell(t.get("attack_success"), t.get("attack_success_ci"))))
    return rows


def format_table(results: dict) -> str:
    if not results["n"]:
        return "conversations: nothing was evaluated"
    m = results["multi"]
    lines = [f"held-out conversations: {results['n']} chats, {results['turns']} turns; accuracy in % [95% interval]; "
             f"{results['max_tokens']} tokens per reply part, the same for both",
             f"{'':40} {'n':>5} {'multi':>20} {'twin':>20}"]
    lines += [f"{name:40} {'' if n is None else n:>5} {a:>20} {b:>20}" for name, n, a, b in table_rows(results)]
    notes = [f"{m[k]} {what}" for k, what in (("cut_turns", "cut at the budget or row limit"),
                                             ("late_turns", "with a correction sent after the answer had ended"),
                                             ("closed_turns", "after the session's row limit"))
             if m.get(k)]
    if notes:
        lines.append("multi-stream turns: " + "; ".join(notes))
    return "\n".join(lines)


def card_line(results: dict, side: str = "multi") -> str:
    """One line for a model card: ``side``'s conversation figures (``multi`` or ``twin``)."""
    d = results[side]

    def ci(c) -> str:
        return f" ({c[0]}-{c[1]})" if c else ""

    line = (f"- held-out conversations (`multistream eval chats --n {results['n']}`: {d['turns']} turns in "
            f"{d['conversations']} chats, {results['max_tokens']} tokens a reply): {d['turn_accuracy']}% of turns "
            f"right{ci(d['turn_accuracy_ci'])}, every turn right in {d['all_turns_right']}% of chats"
            f"{ci(d['all_turns_right_ci'])}")
    if d.get("last_turn", {}).get("n"):
        line += f", the last turn {d['last_turn']['accuracy']}% against the first {d['by_turn']['1']['accuracy']}%"
    if d["follow_up"]["n"]:
        line += f", follow-up turns {d['follow_up']['accuracy']}%{ci(d['follow_up']['accuracy_ci'])}"
    return line
