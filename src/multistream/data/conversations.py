"""Conversations: sessions of several exchanges in one timeline.

A model trained on one question per session drifted in a chat: the second or third question often
got no answer. Here a session chains 2-8 exchanges (3-8 in the test split), each drawn from any
skill (:mod:`.skills`, :mod:`.wording`) or a follow-up that needs an earlier turn: another
capital ("And of Spain?"), arithmetic on the last result ("Add 10 to that."), another fact from a
document read earlier, or a comparison of two results. Gaps between exchanges vary (the engine
pauses a session after 32 quiet rows, so longer gaps look the same), and in training the next
question is sometimes typed while the previous answer is still being written. The model answers
each question once and is silent in between: every row not holding an answer trains silence.

``meta["turns"]`` describes each exchange for the evaluation (:mod:`multistream.evals.chats`): its
skill, whether it is a follow-up, its input segments (calculator results excluded: a running tool
writes them) and the expected answer.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from ..streams import DEFAULT_LAYOUT
from ..timeline import reaction_row, resolve_rows, span
from . import problems, skills, wording
from .skills import FACTS, Example, Placer, _item_ok, _pick, calculator_turn, held_out_templates, user_spread
from .tables import CAPITAL_OTHER_NAMES, CAPITALS

TURN_WEIGHTS = {
    "retention": 2.0, "everyday": 3.0, "tool": 1.5, "wordproblem": 2.5, "reading": 1.0, "listening": 1.0,
    "document": 1.0, "prose": 2.0, "interrupt": 0.5, "correction": 1.0, "arithmetic": 2.0, "units": 1.5,
}
"""How often each skill opens an exchange."""
PLACERS = {**skills.PLACERS, **wording.PLACERS, **problems.PLACERS}
FOLLOW_UP_SHARE = 0.4
"""Chance that an exchange is a follow-up, where the session so far allows one."""
OVERLAP_SHARE = 0.15
"""Chance (training only) that the next question is typed while the previous answer is being written."""
MAX_ROWS = 400
"""No exchange starts past this row (keeps most sessions within a 2048-token training sequence)."""
TRAIN_MAX_TOKENS = 2048
"""A training session longer than this once packed (:func:`packed_tokens`) is drawn again: the recipes train on
sequences of 2048 tokens, and a longer example stops training."""
EMPTY_PREFIX_TOKENS = 24
"""What a session with no system prompt may still hold before row 0: the chat template's own system block (21
tokens for SmolLM2, see ``StreamTokenizer.encode_prefix``)."""
TURNS = {"train": (2, 8), "test": (3, 8)}

CAPITAL_FOLLOW_UPS = ["And of {c}?", "What about {c}?", "And {c}?", "How about {c}?", "And the capital of {c}?",
                      "Same for {c}?",
                      # held out
                      "Now do {c}.", "Then {c}?"]
CAPITAL_REPLY = wording.CAPITAL_REPLY
ARITH_FOLLOW_UPS = [
    ("add", "Add {k} to that."), ("mul", "Now multiply that by {k}."), ("sub", "Subtract {k} from it."),
    ("add", "And if I add {k}?"), ("sub", "Take away {k}."), ("mul", "What is that times {k}?"),
    ("add", "Plus {k}?"), ("sub", "Minus {k}?"), ("mul", "Multiply it by {k}."),
    # held out
    ("add", "Now add {k} more."), ("mul", "Multiply the result by {k}."), ("sub", "Then remove {k}."),
]
PERSON_FOLLOW_UPS = [
    ("city", "And where does {n} live?"), ("job", "And what is {n}'s job?"), ("color", "What about {n}'s favourite colour?"),
    ("pet", "And what pet does {n} have?"), ("city", "Which city is {n} in?"), ("job", "What does {n} work as, then?"),
    ("color", "And {n}'s favourite colour?"), ("pet", "Does {n} have a pet?"),
    # held out
    ("city", "One more: where does {n} live?"), ("job", "And {n}'s work?"),
]
COMPARE_FOLLOW_UPS = ["Which of those two results was bigger?", "Which result was larger?",
                      "Of the last two answers, which is bigger?",
                      # held out
                      "Which was the bigger number of the two?"]
COMPARE_REPLY = ["The bigger one is {x}.", "{x} is bigger.", "{x}."]


def _follow_up_capital(rng, split, p, at, ctx) -> dict | None:
    if not ctx.get("capital"):
        return None
    ti, template = _pick(rng, CAPITAL_FOLLOW_UPS, split)
    held = ti in held_out_templates(len(CAPITAL_FOLLOW_UPS))
    for _ in range(50):
        c = rng.choice(sorted(CAPITALS))
        if c != ctx["capital"] and _item_ok(f"capital:{c}", split, held):
            break
    else:
        return None
    p.user_spread = user_spread(split, rng)
    end = p.put("user", template.format(c=c), at)
    p.put("answer", CAPITAL_REPLY.format(c=c, v=CAPITALS[c]), reaction_row(end))
    ctx["capital"] = c
    return {"skill": "capital_follow_up", "template": f"capital_follow_up:{ti}", "item": f"capital:{c}",
            "expected": CAPITALS[c], "accepted": [CAPITALS[c], *CAPITAL_OTHER_NAMES.get(CAPITALS[c], ())],
            "input_end": end}


def _is_number(x: str) -> bool:
    """A calculator result that a follow-up can take up: a whole number or a decimal one ("-12", "3.5")."""
    return x.lstrip("-").replace(".", "", 1).isdigit()


def _follow_up_arith(rng, split, p, at, ctx) -> dict | None:
    if not ctx.get("numbers"):
        return None
    x = ctx["numbers"][-1]
    if not _is_number(x) or abs(float(x)) > 10**7:
        return None
    ti, (op, template) = _pick(rng, ARITH_FOLLOW_UPS, split)
    k = rng.choice([2, 3, 4, 5, 10]) if op == "mul" else rng.randint(1, 100)
    expression = f"{x} {skills.SYMBOL[op]} {k}"
    p.user_spread = user_spread(split, rng)
    end = p.put("user", template.format(k=k), at)
    result = calculator_turn(rng, p, expression, end)
    return {"skill": "arith_follow_up", "template": f"arith_follow_up:{ti}", "item": f"follow:{expression}",
            "expected": result, "expression": expression, "input_end": end}


def _follow_up_person(rng, split, p, at, ctx) -> dict | None:
    n, told, asked = ctx.get("person") or (None, {}, None)
    held = held_out_templates(len(PERSON_FOLLOW_UPS))
    options = [(i, f, t) for i, (f, t) in enumerate(PERSON_FOLLOW_UPS)
               if f in told and f != asked and _item_ok(f"doc:{n}:{f}:{told[f]}", split, i in held)]
    options = [o for o in options if (o[0] in held) == (split == "test" and rng.random() < 0.5)] or options
    if not n or not options:
        return None
    ti, field_, template = rng.choice(options)
    p.user_spread = user_spread(split, rng)
    end = p.put("user", template.format(n=n), at)
    p.put("answer", FACTS[field_].format(n=n, v=told[field_]), reaction_row(end))
    ctx["person"] = (n, told, field_)
    return {"skill": "person_follow_up", "template": f"person_follow_up:{ti}", "item": f"doc:{n}:{field_}:{told[field_]}",
            "expected": told[field_], "input_end": end}


def _follow_up_compare(rng, split, p, at, ctx) -> dict | None:
    nums = ctx.get("numbers", [])
    if len(nums) < 2 or not all(_is_number(v) for v in nums[-2:]) or float(nums[-1]) == float(nums[-2]):
        return None
    ti, template = _pick(rng, COMPARE_FOLLOW_UPS, split)
    bigger = max(nums[-2:], key=float)
    p.user_spread = user_spread(split, rng)
    end = p.put("user", template, at)
    p.put("answer", rng.choice(COMPARE_REPLY).format(x=bigger), reaction_row(end))
    return {"skill": "compare_follow_up", "template": f"compare_follow_up:{ti}", "item": f"compare:{nums[-2]}:{nums[-1]}",
            "expected": bigger, "input_end": end}


FOLLOW_UPS = {"capital": _follow_up_capital, "arith": _follow_up_arith, "person": _follow_up_person,
              "compare": _follow_up_compare}


def _remember(ctx: dict, meta: dict) -> None:
    """What later follow-ups may refer to."""
    skill = meta["skill"]
    if skill in ("tool", "wordproblem", "arithmetic", "units", "reading", "arith_follow_up"):
        ctx.setdefault("numbers", []).append(str(meta["expected"]))
    if meta.get("item", "").startswith("capital:") and skill in ("retention", "correction", "capital_follow_up"):
        ctx["capital"] = meta["item"].split(":", 1)[1]
    if meta.get("told"):
        ctx["person"] = (meta["person"], meta["told"], meta["item"].split(":")[2])


def _inputs(p: Placer, first: int) -> list[dict]:
    return [{"stream": s.stream, "text": s.text, "row": s.start_row, "spread": s.spread}
            for i, s in enumerate(p.segments[first:], first)
            if DEFAULT_LAYOUT[s.stream].kind == "input" and i not in p.results]


def place_conversation(rng: random.Random, split: str, p: Placer) -> dict:
    lo, hi = TURNS[split]
    n_turns = rng.randint(lo, hi)
    names = sorted(TURN_WEIGHTS)
    weights = [TURN_WEIGHTS[k] for k in names]
    ctx: dict = {}
    turns: list[dict] = []
    at = 0
    # past MAX_ROWS a training session ends early (it must fit a training sequence); a test session still gets its
    # least number of exchanges
    while len(turns) < n_turns and (at <= MAX_ROWS or (split == "test" and len(turns) < lo)):
        first = len(p.segments)
        meta = None
        if turns and rng.random() < FOLLOW_UP_SHARE:
            for kind in rng.sample(sorted(FOLLOW_UPS), k=len(FOLLOW_UPS)):
                meta = FOLLOW_UPS[kind](rng, split, p, at, ctx)
                if meta is not None:
                    break
        if meta is None:
            meta = PLACERS[rng.choices(names, weights)[0]](rng, split, p, at)
        _remember(ctx, meta)
        inputs = _inputs(p, first)
        if "after_answer_tokens" in meta:  # the correction: sent once the answer has written this much
            inputs[-1]["after_answer_tokens"] = meta["after_answer_tokens"]
        turn = {k: meta[k] for k in ("skill", "template", "item", "expected") if k in meta}
        turn.update({"follow_up": meta["skill"].endswith("_follow_up"), "start_row": inputs[0]["row"], "inputs": inputs})
        for k in ("accepted", "expression", "payload"):
            if meta.get(k) is not None:
                turn[k] = meta[k]
        turns.append(turn)
        end = max(p.free.values())
        answers = [s for s in p.segments[first:] if s.stream == "answer"]
        if (split == "train" and answers and meta["skill"] in ("retention", "everyday", "tool", "wordproblem", "arithmetic",
                                                               "units")
                and rng.random() < OVERLAP_SHARE):
            at = rng.randint(answers[-1].start_row + 1, max(answers[-1].start_row + 1, end - 2))
        else:
            at = end + (rng.randint(0, 8) if rng.random() < 0.5 else rng.randint(8, 34))
    return {"skill": "conversation", "template": "conversation:" + ",".join(t["template"] for t in turns),
            "item": "|".join(t.get("item", "") for t in turns), "turns": turns,
            "expected": turns[-1]["expected"], "input_end": max(i["row"] for t in turns for i in t["inputs"])}


def packed_tokens(tl, length_of: Callable[[str], int]) -> int:
    """About how many tokens ``tl`` packs to under the invisible silence rule, a few over rather than under: every
    row up to the last holds one cell per output stream, and every input token and the prefix one more."""
    rows, _, _ = resolve_rows(tl, length_of)
    last = max(r + span(length_of(s.text), s.spread) for r, s in zip(rows, tl.segments))
    inputs = sum(length_of(s.text) for s in tl.segments if DEFAULT_LAYOUT[s.stream].kind == "input")
    prefix = length_of(tl.prefix) if tl.prefix else EMPTY_PREFIX_TOKENS
    return len(DEFAULT_LAYOUT.outputs) * last + inputs + prefix + 8


def conversation(rng: random.Random, split: str, length_of: Callable[[str], int]) -> Example:
    while True:
        p = Placer(length_of)
        meta = place_conversation(rng, split, p)
        ex = Example(skills._timeline(rng, p), meta)
        # (only training sessions can be drawn again, so the test split's draws stay as they were)
        if split != "train" or packed_tokens(ex.timeline, length_of) <= TRAIN_MAX_TOKENS:
            return ex


def held_out_template_ids() -> set[str]:
    """Template ids of follow-ups that only the test split uses."""
    lists = {"capital_follow_up": CAPITAL_FOLLOW_UPS, "arith_follow_up": ARITH_FOLLOW_UPS,
             "person_follow_up": PERSON_FOLLOW_UPS, "compare_follow_up": COMPARE_FOLLOW_UPS}
    return {f"{k}:{i}" for k, ts in lists.items() for i in held_out_templates(len(ts))}


def generate_conversations(n: int, split: str, seed: int, length_of: Callable[[str], int]) -> list[Example]:
    """``n`` conversations for ``split``, reproducible from ``seed``; test conversations are distinct."""
    rng = random.Random(f"{seed}:conversation:{split}")
    out, seen = [], set()
    while len(out) < n:
        ex = conversation(rng, split, length_of)
        case = tuple((s.stream, s.text) for s in ex.timeline.segments)
        if split == "test" and case in seen:
            continue
        seen.add(case)
        ex.timeline.id = f"conversation-{split}-{seed}-{len(out)}"
        ex.timeline.meta = ex.meta
        out.append(ex)
    return out

