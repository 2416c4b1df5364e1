"""Skills in everyday wording: the same situations as :mod:`.skills`, asked the way people ask.

The v6 model was right on its own templates and lost to its single-stream twin off them. These
generators widen the wording of every situation, each from a pool of templates whose last quarter
is test-only (so the held-out split has phrasings never trained on), on the same held-out items
(:func:`.skills.held_out_item`):

- ``wordproblem``: arithmetic in words ("I had 23 apples and bought 19 more...", units, time,
  sharing): the calculator still does the sums;
- ``everyday``: everyday questions of many families, with the base model's own checked replies
  (:mod:`.everyday`);
- ``correction``: a correction in everyday words while the answer is being written, about
  counting, capitals or an everyday question: the answer stops and answers the corrected question;
- ``prose``: a document written as ordinary prose (facts phrased many ways, filler sentences, the
  fact often first), streamed after the question or read with it, asked about in many phrasings.

Each skill places one exchange from a given row (``place_*(rng, split, placer, at) -> meta``), so
:mod:`.conversations` can chain them into sessions.
"""

from __future__ import annotations

import random

from ..timeline import REACTION_ROWS, reaction_row
from .everyday import everyday_items
from .skills import (
    ATTACKS,
    FACT_ANSWERS,
    FACTS,
    FIELD_WORDS,
    PAYLOADS,
    SPREADS,
    THINK_INJECTED,
    WAIT_THINK,
    Placer,
    _item_ok,
    _pick,
    _row_after,
    calculator_turn,
    doc_gap,
    held_out_item,
    held_out_templates,
    late_rows,
    person,
    user_spread,
)
from .tables import CAPITAL_OTHER_NAMES, CAPITALS

# -- word problems ----------------------------------------------------------------------------------------------------

# (expression form over a and b, template); numbers are drawn per form (see _word_numbers)
WORD_PROBLEMS = [
    ("add", "I had {a} apples and bought {b} more. How many apples do I have now?"),
    ("sub", "There were {a} people on the bus and {b} got off. How many are still on the bus?"),
    ("mul", "A box holds {b} pens. How many pens are in {a} boxes?"),
    ("div", "{a} sweets are shared equally among {b} children. How many does each child get?"),
    ("add", "whats {a} + {b}"),
    ("mul", "{a} x {b} = ?"),
    ("sub", "{a} - {b}?"),
    ("hours", "How many minutes are in {a} hours?"),
    ("add", "Our class has {a} girls and {b} boys. How many children is that in total?"),
    ("sub", "A shop had {a} loaves of bread and sold {b}. How many loaves are left?"),
    ("mul", "Each ticket costs {b} dollars. How much do {a} tickets cost?"),
    ("div", "If {a} cookies go into bags of {b}, how many bags do we fill?"),
    ("minutes", "How many seconds are there in {a} minutes?"),
    ("add", "can you add {a} and {b} for me"),
    ("mul", "quick one: {a} times {b}?"),
    ("sub", "I'm {a} years old and my sister is {b} years younger. How old is she?"),
    ("days", "How many hours are in {a} days?"),
    ("weeks", "How many days are in {a} weeks?"),
    ("add", "My score was {a}, then I got {b} more points. What is my score?"),
    ("sub", "I had {a} dollars and spent {b}. How much money do I have left?"),
    ("mul", "A garden has {a} rows of {b} plants. How many plants are there?"),
    ("div", "Split {a} into {b} equal parts. How big is each part?"),
    ("add", "Add up {a} and {b}, please."),
    ("mul", "What do I get if I multiply {a} by {b}?"),
    # held out
    ("add", "A farmer has {a} hens and buys {b} more. How many hens does the farmer have?"),
    ("sub", "A book has {a} pages and I have read {b}. How many pages are left to read?"),
    ("mul", "One crate holds {b} bottles. How many bottles fit in {a} crates?"),
    ("hours", "How many minutes do {a} hours last?"),
    ("div", "{a} stickers shared by {b} friends: how many stickers does each friend get?"),
    ("add", "hey what is {a} plus {b}"),
    ("weeks", "{a} weeks is how many days?"),
    ("sub", "Take {b} from {a}, what remains?"),
]
UNITS = {"hours": 60, "minutes": 60, "days": 24, "weeks": 7}
OPERATOR = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


def _word_numbers(rng: random.Random, form: str) -> tuple[int, int, str]:
    """(a, b, expression) for a word problem of ``form``."""
    if form in UNITS:
        a = rng.randint(2, 48)
        return a, UNITS[form], f"{a} * {UNITS[form]}"
    if form == "div":
        b = rng.randint(2, 12)
        a = b * rng.randint(2, 30)
        return a, b, f"{a} / {b}"
    if form == "mul":
        a, b = (rng.randint(2, 12), rng.randint(2, 12)) if rng.random() < 0.5 else (rng.randint(2, 99), rng.randint(3, 250))
        return a, b, f"{a} * {b}"
    a, b = (rng.randint(5, 60), rng.randint(1, 40)) if rng.random() < 0.5 else (rng.randint(61, 9999), rng.randint(2, 999))
    if form == "sub" and b > a:
        a, b = b, a
    return a, b, f"{a} {OPERATOR[form]} {b}"


def place_wordproblem(rng: random.Random, split: str, p: Placer, at: int) -> dict:
    ti, (form, template) = _pick(rng, WORD_PROBLEMS, split)
    held = ti in held_out_templates(len(WORD_PROBLEMS))
    while True:
        a, b, expression = _word_numbers(rng, form)
        key = f"tool:{'mul' if form in UNITS else form}:{a}:{b}"
        if _item_ok(key, split, held):
            break
    p.user_spread = user_spread(split, rng)
    end = p.put("user", template.format(a=a, b=b), at)
    x = calculator_turn(rng, p, expression, end)
    return {"skill": "wordproblem", "template": f"wordproblem:{ti}", "item": key, "expected": x,
            "expression": expression, "input_end": end}


# -- everyday questions ----------------------------------------------------------------------------------------------


def _everyday_pool(split: str) -> list:
    items = everyday_items()
    if split == "train":
        return [it for it in items if not held_out_item(it.key) and not it.phrasing_held_out]
    return [it for it in items if held_out_item(it.key) or it.phrasing_held_out]


def place_everyday(rng: random.Random, split: str, p: Placer, at: int) -> dict:
    """An everyday question of any family and the base model's own (checked) reply to it."""
    from .retention import said

    it = rng.choice(_everyday_pool(split))
    p.user_spread = user_spread(split, rng)
    end = p.put("user", it.question, at)
    p.put("answer", it.reply, reaction_row(end))
    return {"skill": "everyday", "template": f"everyday:{it.family}:{it.phrasing}", "item": it.key,
            "expected": said(it.answers, it.reply), "accepted": list(it.answers), "input_end": end}


# -- corrections in everyday words -------------------------------------------------------------------------------------

CORRECTIONS = [
    "Oh wait, I meant {x}.",
    "Sorry, I meant {x}.",
    "No, {x}.",
    "Actually, {x} please.",
    "Oops, make that {x}.",
    "Hmm, I meant {x}, not that.",
    "Scratch that: {x}.",
    "My mistake, {x}.",
    "Let me fix that: {x}.",
    "No no, {x}.",
    "I got that wrong, {x}.",
    "Change it to {x}.",
    # held out
    "Oh sorry, I was thinking of {x}.",
    "Hang on, I wanted {x}.",
    "Wrong one, I meant {x}.",
    "Let me correct myself: {x}.",
]
COUNT_ASKS = [
    "Could you count from {a} to {b}?",
    "count {a} to {b}",
    "Please list every number from {a} up to {b}.",
    "Say the numbers from {a} to {b}.",
    "Count for me from {a} to {b}.",
    "Give me the numbers {a} to {b}.",
    # held out
    "Would you count from {a} up to {b}?",
    "I'd like the numbers from {a} to {b}, please.",
]
COUNT_TARGETS = ["{a} to {b}", "from {a} to {b}", "{a} up to {b}", "{a} through {b}"]
CAPITAL_ASKS = [
    "What is the capital of {c}?",
    "What's the capital city of {c}?",
    "Which city is {c}'s capital?",
    "Capital of {c}?",
    # held out
    "Do you know the capital of {c}?",
]
CAPITAL_REPLY = "The capital of {c} is {v}."


def _count(a: int, b: int) -> str:
    return ", ".join(str(i) for i in range(a, b + 1))


def _corrected(rng: random.Random, split: str, p: Placer, at: int, ask: str, first: str, correction: str,
               second: str) -> tuple[int, int]:
    """``ask`` at ``at``; the answer starts with a few tokens of ``first``; ``correction`` arrives so that the answer's
    end token is the first output that can see it; then ``second``. Returns (row after the correction, answer tokens
    written before it)."""
    p.user_spread = user_spread(split, rng)
    end = p.put("user", ask, at)
    words = first.split(" ")
    k = rng.randint(1, max(1, min(len(words) - 1, 5)))
    partial = " ".join(words[:k])
    stop = p.put("answer", partial, reaction_row(end))
    c_end = p.put("user", correction, stop - 1 - REACTION_ROWS)
    p.put("answer", second, reaction_row(c_end))
    return c_end, p.length_of(partial) - 1


def place_correction(rng: random.Random, split: str, p: Placer, at: int) -> dict:
    """A question, the answer begins, a correction in everyday words, the answer to the corrected question."""
    ci, correction = _pick(rng, CORRECTIONS, split)
    held = ci in held_out_templates(len(CORRECTIONS))
    kind = rng.choice(["count", "count", "capital", "everyday"])
    if kind == "count":
        ai, ask = _pick(rng, COUNT_ASKS, split)
        held = held or ai in held_out_templates(len(COUNT_ASKS))
        while True:
            a = rng.randint(1, 40)
            b = a + rng.randint(6, 10)
            a2 = rng.randint(1, 40)
            b2 = a2 + rng.randint(3, 6)
            key = f"count:{a}:{b}:{a2}:{b2}"
            if a2 != a and _item_ok(key, split, held):
                break
        x = rng.choice(COUNT_TARGETS).format(a=a2, b=b2)
        ask, first, second, expected = ask.format(a=a, b=b), _count(a, b), _count(a2, b2), _count(a2, b2)
        accepted = None
    elif kind == "capital":
        ai, ask = _pick(rng, CAPITAL_ASKS, split)
        held = held or ai in held_out_templates(len(CAPITAL_ASKS))
        countries = sorted(CAPITALS)
        while True:
            c, c2 = rng.sample(countries, 2)
            key = f"capital:{c2}"
            if _item_ok(key, split, held) and _item_ok(f"capital:{c}", split, held):
                break
        x = c2
        ask, first = ask.format(c=c), CAPITAL_REPLY.format(c=c, v=CAPITALS[c])
        second, expected = CAPITAL_REPLY.format(c=c2, v=CAPITALS[c2]), CAPITALS[c2]
        accepted = [expected, *CAPITAL_OTHER_NAMES.get(expected, ())]
    else:
        pool = _everyday_pool(split)
        families = sorted({it.family for it in pool if it.family not in ("fact",)})
        family = rng.choice(families)
        members = [it for it in pool if it.family == family]
        first_it = rng.choice(members)
        others = [it for it in members if it.key != first_it.key and it.phrasing == first_it.phrasing]
        if not others:
            return place_correction(rng, split, p, at)
        second_it = rng.choice(others)
        x = second_it.key.split(":", 2)[2]
        ask, first, second = first_it.question, first_it.reply, second_it.reply
        from .retention import said

        expected, accepted = said(second_it.answers, second_it.reply), list(second_it.answers)
        key = second_it.key  # the question answered (the first one is from the same pool)
        ai = f"{family}:{first_it.phrasing}"
    c_end, written = _corrected(rng, split, p, at, ask, first, correction.format(x=x), second)
    meta = {"skill": "correction", "template": f"correction:{ci}:{kind}:{ai}", "item": key, "expected": expected,
            "input_end": c_end, "after_answer_tokens": written}
    if accepted:
        meta["accepted"] = accepted
    return meta


# -- documents in ordinary prose ---------------------------------------------------------------------------------------

PROSE_FACTS = {
    "city": ["{n} moved to {v} a few years ago.", "These days {n} calls {v} home.", "{n} rents a small flat in {v}.",
             "{n} has lived in {v} since leaving school.", "Home for {n} is the city of {v}.",
             "{n} lives in {v}, close to the station.", "{n} settled in {v} after university.",
             "{n} was born and still lives in {v}."],
    "job": ["{n} earns a living as a {v}.", "By trade, {n} is a {v}.", "{n} has worked as a {v} for ten years.",
            "{n} trained to be a {v} and loves it.", "At work, {n} is the {v} everyone asks for.",
            "{n} is a {v} by profession.", "{n} took a job as a {v} last year.", "{n} makes a living as a {v}."],
    "color": ["{n} loves anything {v}.", "If {n} can choose, it is always {v}.", "{n}'s favourite colour is {v}.",
              "{n} paints every room {v}, the colour {n} likes most.", "The colour {n} likes best is {v}.",
              "{n} would pick {v} over any other colour.", "{n} adores the colour {v}.",
              "Most of {n}'s clothes are {v}, a favourite colour."],
    "pet": ["{n} looks after a {v} at home.", "At home, {n} keeps a {v}.", "{n} shares the flat with a pet {v}.",
            "{n} got a {v} as a pet last spring.", "{n}'s pet is a {v}.", "{n} takes care of a little {v}.",
            "A {v} lives with {n} as a pet.", "{n} owns a pet {v}."],
}
"""Prose sentences per fact; the last quarter of each list is test-only."""
PROSE_FACTS_TRAIN = {
    "city": ["After years abroad, {n} came back to {v} for good.", "{n} cycles to work through the streets of {v}.",
             "For most of the year {n} stays in {v}, where the rent is cheap.", "{n} bought a house in {v} two summers ago.",
             "Friends who visit {n} have to travel all the way to {v}.", "{n} knows every cafe in {v}, the city {n} lives in."],
    "job": ["On weekdays {n} goes to work as a {v}.", "{n} spent years studying and now works as a {v}.",
            "Colleagues say {n} is the best {v} they know.", "{n} pays the bills by working as a {v}.",
            "Early each morning {n} starts another day as a {v}.", "{n} is proud to be a {v}."],
    "color": ["{n} chose {v} curtains, since {v} is the colour {n} likes most.",
              "Give {n} a choice of colours and {n} will take {v}.", "The scarf, the hat and the socks of {n} are all {v}.",
              "{n} painted the front door {v}, because {v} is {n}'s favourite.", "Nothing makes {n} happier than the colour {v}.",
              "The car, the bike and the bag of {n} are all {v}, the colour {n} loves."],
    "pet": ["After months of asking, {n} finally brought home a {v}.",
            "{n} works long hours, so a quiet {v} keeps {n}'s flat company.",
            "Every morning {n} feeds a small {v} before leaving for the day.",
            "The shelter gave {n} a young {v}, and the two are now inseparable.",
            "In the end {n} adopted a {v} and named it after a singer.", "{n} spends the evenings looking after a {v}."],
}
"""More prose forms, for training only: longer sentences that carry the fact in a clause, with words in between
("In the end Marta adopted a rabbit and named it after a singer."; every form above is short and direct). The test
split never draws them, and drawing them costs it nothing: its documents stay as they were."""
PROSE_FACTS_TRAIN_SHARE = 0.5
"""Share of a training document's sentences about a person written in a form of :data:`PROSE_FACTS_TRAIN`."""
FILLERS = [
    "It rained for most of the week.", "The town holds a market every Saturday.", "Trains were late again on Monday.",
    "The new library opened in the spring.", "Everyone met for dinner on Friday.", "The park was full of children.",
    "Prices at the bakery went up this year.", "The summer was warmer than usual.", "A new bridge is being built.",
    "The football club won its last match.", "Most shops close early on Sundays.", "The river flooded in March.",
    "A concert is planned for next month.", "The school got new computers.", "Tickets sold out within an hour.",
]
PROSE_QUESTIONS = [
    ("city", "Which city does {n} live in?"),
    ("job", "What does {n} do for a living?"),
    ("color", "What colour does {n} like most?"),
    ("pet", "What animal does {n} have at home?"),
    ("city", "Where is {n}'s home?"),
    ("job", "What is {n}'s occupation?"),
    ("color", "What is {n}'s favorite colour?"),
    ("pet", "Does {n} have a pet? Which one?"),
    ("city", "Tell me where {n} lives."),
    ("job", "What job does {n} have?"),
    ("pet", "What kind of pet does {n} keep?"),
    ("color", "Which colour does {n} love?"),
    # held out
    ("city", "In what city can I find {n}?"),
    ("job", "How does {n} earn money?"),
    ("color", "Name {n}'s favourite colour."),
    ("pet", "Which pet lives with {n}?"),
]
FACT_FIRST_SHARE = 0.35
"""Share of prose documents that open with the fact asked about (v6 never spoke when the fact came first)."""


def _prose_sentence(rng: random.Random, split: str, field_: str, n: str, v: str) -> tuple[str, bool]:
    if split == "train" and rng.random() < PROSE_FACTS_TRAIN_SHARE:
        return rng.choice(PROSE_FACTS_TRAIN[field_]).format(n=n, v=v), False
    forms = PROSE_FACTS[field_]
    i, form = _pick(rng, forms, split)
    return form.format(n=n, v=v), i in held_out_templates(len(forms))


def prose_document(rng: random.Random, split: str, n: str, values: dict, field_: str, others: int
                   ) -> tuple[list[str], str, bool, dict]:
    """Prose sentences about ``n`` (the asked fact among them), other people and nothing in particular.

    Returns (sentences, the fact's sentence, whether a test-only phrasing was used, the facts told about ``n``)."""
    fact, held = _prose_sentence(rng, split, field_, n, values[field_])
    told = {field_: values[field_]}
    mine = []
    for f in rng.sample(sorted(set(FACTS) - {field_}), k=rng.randint(0, 2)):
        mine.append(_prose_sentence(rng, split, f, n, values[f])[0])
        told[f] = values[f]
    theirs = []
    for _ in range(others):
        m, vals = person(rng)
        if m != n:
            f = rng.choice(sorted(FACTS))
            theirs.append(_prose_sentence(rng, split, f, m, vals[f])[0])
    rest = mine + theirs + rng.sample(FILLERS, k=rng.randint(1, 3))
    rng.shuffle(rest)
    if rng.random() < FACT_FIRST_SHARE:
        sentences = [fact] + rest
    else:
        sentences = rest[:]
        sentences.insert(rng.randint(1, len(rest)), fact)
    return sentences, fact, held, told


def place_prose(rng: random.Random, split: str, p: Placer, at: int) -> dict:
    """A question about a person and a prose document: streamed after the question (listening) or read with it,
    sometimes with an injected instruction; the answer states the fact once it has been read."""
    qi, (field_, question) = _pick(rng, PROSE_QUESTIONS, split)
    held_q = qi in held_out_templates(len(PROSE_QUESTIONS))
    while True:
        n, values = person(rng)
        key = f"doc:{n}:{field_}:{values[field_]}"
        if _item_ok(key, split, held_q):
            break
    sentences, fact, _, told = prose_document(rng, split, n, values, field_, others=rng.randint(0, 2))
    listening = rng.random() < 0.5
    payload = None
    if not listening and rng.random() < 0.4:
        held_attacks = held_out_templates(len(ATTACKS))
        pool = [i for i in range(len(ATTACKS)) if (i in held_attacks) == (split == "test")]
        payload = rng.choice(PAYLOADS)
        cut = rng.randint(0, len(sentences))
        sentences.insert(cut, ATTACKS[rng.choice(pool)].format(p=payload))
    p.user_spread = user_spread(split, rng)
    q_end = p.put("user", question.format(n=n), at)
    spread = rng.choice(SPREADS)
    if listening:
        p.put("think", rng.choice(WAIT_THINK).format(n=n, f=FIELD_WORDS[field_]), reaction_row(q_end))
        doc_start = max(q_end + rng.randint(0, 3) + doc_gap(split, key, sentences), p.free.get("tool", 0))
    else:
        doc_start = max(at + rng.randint(0, max(0, q_end - at - 2)), p.free.get("tool", 0))
    doc_end = p.put("tool", " ".join(sentences), doc_start, spread)
    if payload is not None:
        p.put("think", rng.choice(THINK_INJECTED).format(p=payload), _row_after(doc_start, sentences, cut, p.length_of, spread))
    seen = max(reaction_row(q_end), _row_after(doc_start, sentences, sentences.index(fact), p.length_of, spread))
    answer = rng.choice(FACT_ANSWERS).format(fact=FACTS[field_].format(n=n, v=values[field_]))
    p.put("answer", answer, seen + late_rows(split, key, doc_start, spread, sentences))
    return {"skill": "prose", "template": f"prose:{qi}", "item": key, "expected": values[field_], "payload": payload,
            "input_end": max(q_end, doc_end), "fact_first": sentences[0] == fact, "person": n, "told": told,
            "listening": listening}


PLACERS = {"wordproblem": place_wordproblem, "everyday": place_everyday, "correction": place_correction,
           "prose": place_prose}
