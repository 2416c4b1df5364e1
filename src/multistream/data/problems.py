"""Arithmetic in everyday situations, composed from parts: word problems and unit conversions.

v7 learnt word problems from 32 fixed sentences and unit conversions from four units. Off those
sentences it picked the wrong operation ("36 sweets shared among 12" became 36 * 12), the wrong
factor ("6 weeks in days" became 6 * 6) and miscopied long numbers. Here a problem is composed:

- ``arithmetic``: a situation (a frame for one operation, with a person and a kind of thing), a
  question in one of several wordings, numbers of one to four digits in either order;
- ``units``: a quantity in one unit asked in another (time, length, weight, volume, dozens), asked
  plainly, inside a small situation, as a rate over time, or as a mixed quantity (2 hours and 15
  minutes), each with the factor the calculator needs.

The last quarter of every list of frames, questions and contexts is test-only
(:func:`.skills.held_out_templates`), and one item in five (:func:`.skills.held_out_item`), so the
held-out split asks in wordings and with numbers never trained on. The calculator does the sums,
as in :mod:`.wording`.
"""

from __future__ import annotations

import random

from .skills import Placer, _item_ok, _pick, as_decimals, calculator_turn, decimal_draw, held_out_templates, user_spread
from .tables import NAMES

# -- word problems composed from a situation and a question -------------------------------------------------------------

THINGS = ["apples", "marbles", "stickers", "books", "coins", "cards", "stamps", "pencils", "eggs", "shells", "beads",
          "balloons", "cupcakes", "buttons", "crayons", "flowers", "photos", "bricks", "cookies", "tomatoes", "letters",
          "candles", "oranges", "nails", "toy cars", "postcards", "rubber ducks", "seeds", "bottles", "plates"]
CONTAINERS = [("box", "boxes"), ("bag", "bags"), ("jar", "jars"), ("basket", "baskets"), ("crate", "crates"),
              ("tin", "tins"), ("pack", "packs"), ("tray", "trays"), ("drawer", "drawers"), ("bucket", "buckets")]

# (operation, situation): {n} and {m} are people, {t} a plural thing, {c}/{cs} a container, {a} and {b} the numbers;
# the expression is "{a} op {b}". A situation that asks its own question takes no question from QUESTIONS. The last
# quarter of each operation's situations is test-only.
SITUATIONS = {
    "add": [
        "{n} had {a} {t}, then found {b} more.",
        "There are {a} {t} in one {c} and {b} in another.",
        "On Monday {n} collected {a} {t}, and on Tuesday another {b}.",
        "I bought {a} {t} in the morning and {b} in the afternoon.",
        "{n} gave me {a} {t} and {m} gave me {b}.",
        "The top shelf holds {a} {t} and the bottom shelf holds {b}.",
        "We need {a} {t} for the party and {b} for the picnic.",
        "{n} owns {a} {t}. For a birthday, {n} gets {b} more.",
        "Last year the club had {a} members; this year {b} new people joined.",
        "A farm grew {a} kilos of potatoes in spring and {b} kilos in autumn.",
        "{n} walked {a} steps before lunch and {b} steps after it.",
        "The first train carried {a} passengers and the second {b}.",
    ],
    "sub": [
        "{n} had {a} {t} and gave {b} of them away.",
        "There were {a} {t} in the {c}; {n} took out {b}.",
        "A stall had {a} {t} this morning and has sold {b} so far.",
        "I started the day with {a} {t} and lost {b}.",
        "Of the {a} {t} in the {c}, {b} are broken. How many are not broken?",
        "{n} needs {a} {t} and already has {b}. How many more does {n} need?",
        "The hall has {a} seats and {b} of them are taken.",
        "A road is {a} kilometres long and we have driven {b} kilometres of it.",
        "{n} saved {a} dollars and spent {b} on a present.",
        "The tank held {a} litres and {b} litres leaked out.",
        "A puzzle has {a} pieces and {n} has placed {b}.",
        "{a} guests were invited and {b} could not come. How many guests came?",
    ],
    "mul": [
        "There are {a} {cs} with {b} {t} in each.",
        "Each {c} holds {b} {t}, and {n} fills {a} {cs}.",
        "{a} children each bring {b} {t} to school.",
        "A theatre balcony is laid out in {a} rows, {b} seats to a row.",
        "{n} reads {b} pages every day for {a} days.",
        "One {c} of {t} costs {b} dollars and {n} buys {a} {cs}.",
        "A bus drives {b} kilometres an hour for {a} hours.",
        "{n} saves {b} dollars a week for {a} weeks.",
        "The orchard has {a} trees and each tree gives {b} apples.",
        "{a} teams play in the tournament, {b} players to a team.",
        "A printer prints {b} pages a minute and runs for {a} minutes.",
        "Every one of the {a} classrooms has {b} desks.",
    ],
    "div": [
        "{a} {t} are shared equally among {b} friends.",
        "{n} puts {a} {t} into {cs}, {b} in each {c}. How many {cs} does {n} fill?",
        "{a} {t} are split into {b} equal groups.",
        "{a} dollars are divided equally between {b} people.",
        "A ribbon {a} centimetres long is cut into {b} equal pieces.",
        "{a} pupils go on a trip in full minibuses of {b} pupils each. How many minibuses are there?",
        "{n} has {a} {t} and wants to give the same number to each of {b} cousins.",
        "{a} chairs are set out in {b} equal rows.",
        "A book of {a} pages is read in {b} days, the same number of pages each day.",
        "{a} litres of juice are poured into {b} jugs, the same amount in each.",
        "{n} ran {a} kilometres in {b} equal laps.",
        "A prize of {a} dollars is shared fairly by {b} winners.",
    ],
}
# the questions each situation can end with, by operation and by what is counted ({t} is the thing); a situation whose
# numbers are not things (kilos, steps, dollars) takes the plain questions only
QUESTIONS = {
    "add": ["Add them up: what do you get?", "What is the total?", "How many are there in all?",
            "How many does that make?", "So how many in total?", "What does that add up to?",
            "Altogether, how many is it?", "What's the combined number?"],
    "sub": ["How many are left?", "How many remain?", "How many are there now?",
            "What is left over?", "How many does that leave?", "So what remains?",
            "How many are left after that?", "What's the difference?"],
    "mul": ["How many is that in total?", "What is the total?", "How many altogether?",
            "What does that come to?", "How many in all?", "Give me the grand total.",
            "What does it come to in total?", "So what is the count?"],
    "div": ["How many does each get?", "How many are in each one?", "How much is each share?",
            "What is one share?", "What is each one's share?", "How big is each part?",
            "What does each one get?", "So how many per share?"],
}


def _problem_numbers(rng: random.Random, op: str) -> tuple[int, int]:
    """(a, b) for ``op``: small and large numbers (long ones give practice in copying digits into the call)."""
    size = rng.random()
    if op == "div":
        b = rng.randint(2, 12) if size < 0.7 else rng.randint(13, 40)
        return b * rng.randint(2, 30 if size < 0.7 else 60), b
    if op == "mul":
        if size < 0.4:
            return rng.randint(2, 12), rng.randint(2, 12)
        if size < 0.8:
            return rng.randint(2, 99), rng.randint(3, 250)
        return rng.randint(11, 999), rng.randint(11, 999)
    if size < 0.4:
        a, b = rng.randint(5, 60), rng.randint(1, 40)
    elif size < 0.8:
        a, b = rng.randint(61, 999), rng.randint(2, 999)
    else:
        a, b = rng.randint(1000, 9999), rng.randint(10, 9999)
    if op == "sub" and b >= a:
        a, b = b + rng.randint(1, 50), a
    return a, b


OPERATORS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
# the training situations whose quantities need not be whole (money and lengths; not apples or pupils), by operation:
# there the numbers may have a decimal point, and a share may end in .5 or .25 (the held-out ones never have one)
FRACTIONAL = {"add": set(), "sub": {7, 8}, "mul": {6}, "div": {3, 4}}
FRACTIONAL_SHARE = 0.5


def _with_decimals(op: str, si: int, key: str, a: int, b: int, split: str) -> tuple[int | str, int | str]:
    """Some fractional training problems' numbers with a decimal point (:func:`.skills.as_decimals`), and some shares
    that leave a half or a quarter each (45 dollars between 2 people); decided by ``key``, drawing nothing."""
    if split != "train" or si not in FRACTIONAL[op]:
        return a, b
    if op != "div":
        return as_decimals(key, a, b, share=FRACTIONAL_SHARE) or (a, b)
    x = decimal_draw(key, FRACTIONAL_SHARE)
    if x is not None and b % 2 == 0:
        return a + (b // 4 if b % 4 == 0 and x < 0.5 else b // 2), b
    return a, b


def place_arithmetic(rng: random.Random, split: str, p: Placer, at: int) -> dict:
    """A word problem composed from a situation and a question; the calculator does the sum."""
    op = rng.choice(sorted(SITUATIONS))
    si, situation = _pick(rng, SITUATIONS[op], split)
    qi, question = _pick(rng, QUESTIONS[op], split) if "?" not in situation else (-1, "")
    held = si in held_out_templates(len(SITUATIONS[op])) or qi in held_out_templates(len(QUESTIONS[op]))
    while True:
        a, b = _problem_numbers(rng, op)
        key = f"tool:{op}:{a}:{b}"
        if _item_ok(key, split, held):
            break
    a, b = _with_decimals(op, si, key, a, b, split)
    n, m = rng.sample(NAMES, 2)
    c, cs = rng.choice(CONTAINERS)
    text = f"{situation} {question}".strip().format(a=a, b=b, n=n, m=m, t=rng.choice(THINGS), c=c, cs=cs)
    expression = f"{a} {OPERATORS[op]} {b}"
    p.user_spread = user_spread(split, rng)
    end = p.put("user", text, at)
    x = calculator_turn(rng, p, expression, end)
    return {"skill": "arithmetic", "template": f"arithmetic:{op}:{si}:{qi}", "item": key, "expected": x,
            "expression": expression, "input_end": end}


# -- unit conversions -----------------------------------------------------------------------------------------------

# (from, to, factor, dimension)
UNIT_PAIRS = [
    ("hours", "minutes", 60, "time"), ("minutes", "seconds", 60, "time"), ("days", "hours", 24, "time"),
    ("weeks", "days", 7, "time"), ("years", "months", 12, "time"), ("decades", "years", 10, "time"),
    ("centuries", "years", 100, "time"), ("hours", "seconds", 3600, "time"), ("years", "weeks", 52, "time"),
    ("metres", "centimetres", 100, "length"), ("kilometres", "metres", 1000, "length"),
    ("centimetres", "millimetres", 10, "length"), ("metres", "millimetres", 1000, "length"),
    ("feet", "inches", 12, "length"), ("kilograms", "grams", 1000, "weight"), ("tonnes", "kilograms", 1000, "weight"),
    ("litres", "millilitres", 1000, "volume"), ("dozen", "items", 12, "count"),
]
# plain conversions: {a} {u} -> {v}
CONVERSIONS = [
    "How many {v} are in {a} {u}?",
    "Convert {a} {u} to {v}.",
    "What is {a} {u} in {v}?",
    "{a} {u} is how many {v}?",
    "How many {v} make {a} {u}?",
    "Please turn {a} {u} into {v}.",
    "{a} {u} equals how many {v}?",
    "Change {a} {u} into {v} for me.",
    "I need {a} {u} written in {v}.",
    "How many {v} would {a} {u} be?",
    "Work out {a} {u} in {v}.",
    "What do {a} {u} come to in {v}?",
]
# a quantity inside a situation, by dimension: the first sentence names it, the second asks for the other unit
CONTEXTS = {
    "time": ["The trip takes {a} {u}.", "My course runs for {a} {u}.", "The match lasted {a} {u}.",
             "Our stay abroad is {a} {u} long.", "The bridge took {a} {u} to build.", "The festival goes on for {a} {u}."],
    "length": ["The garden path is {a} {u} long.", "We painted a fence {a} {u} long.", "The lake is {a} {u} across.",
               "A plank measures {a} {u}.", "The tunnel runs for {a} {u}.", "My scarf is {a} {u} long."],
    "weight": ["The suitcase weighs {a} {u}.", "We harvested {a} {u} of plums.", "The lorry carries {a} {u} of sand.",
               "A sack of rice weighs {a} {u}.", "The statue weighs {a} {u}.", "The parcel comes to {a} {u}."],
    "volume": ["The aquarium holds {a} {u} of water.", "We made {a} {u} of soup.", "The paint tin contains {a} {u}.",
               "The watering can takes {a} {u}.", "A barrel holds {a} {u} of rain.", "The kettle boils {a} {u}."],
    "count": ["The baker sold {a} dozen rolls today. Count the rolls.",
              "We ordered {a} dozen eggs. What number of eggs did we order?",
              "The box holds {a} dozen pencils. How many pencils are in it?",
              "The crate has {a} dozen bottles. How many bottles does it have?",
              "I bought {a} dozen roses. How many roses did I buy?", "The farm packed {a} dozen eggs. Count the eggs."],
}
"""A situation that asks its own question (the ``count`` ones) takes no question from CONTEXT_ASKS."""
CONTEXT_ASKS = ["Give the number of {v}.", "Tell me that in {v}.", "How much is that in {v}?",
                "How many {v} does that make?", "Give it in {v}.", "Say that in {v}, please.",
                "Can you put that in {v}?", "And in {v}?"]
# a rate over a span ({r} a unit, for {a} of a larger unit) and the factor between the units: r * a * factor
RATES = [
    ("A tap drips {r} times a minute. How many drips is that in {a} hours?", 60),
    ("A bird flaps its wings {r} times a second. How many flaps in {a} minutes?", 60),
    ("A factory makes {r} toys an hour. How many toys does it make in {a} days?", 24),
    ("{n} spends {r} dollars a day. How much is that over {a} weeks?", 7),
    ("A plant grows {r} millimetres a day. How many millimetres does it grow in {a} weeks?", 7),
    ("The heart beats about {r} times a minute. How many beats in {a} hours?", 60),
    ("{n} earns {r} dollars a month. How much is that in {a} years?", 12),
    ("A clock ticks {r} times a minute. How many ticks in {a} hours?", 60),
]
# mixed quantities: {a} {u} and {b} {v}, asked in {v}: expression a * factor + b
MIXED = [
    "How many {v} are in {a} {u} and {b} {v}?",
    "What is {a} {u} and {b} {v} in {v}?",
    "The concert lasted {a} {u} and {b} {v}; give that in {v} only.",
    "Turn {a} {u} and {b} {v} into {v}.",
    "{n} was away for {a} {u} and {b} {v}. For how many {v} in all?",
    "Convert {a} {u} {b} {v} to {v} only.",
]
MIXED_PAIRS = [("hours", "minutes", 60), ("minutes", "seconds", 60), ("days", "hours", 24), ("weeks", "days", 7),
               ("years", "months", 12), ("metres", "centimetres", 100), ("kilograms", "grams", 1000),
               ("kilometres", "metres", 1000)]
UNIT_ANSWERS = ["That is {x} {v}.", "It is {x} {v}.", "{x} {v}.", "The answer is {x} {v}.", "That makes {x} {v}."]


def _answers(v: str) -> list[str]:
    return [f.replace("{v}", v) for f in UNIT_ANSWERS]


def place_units(rng: random.Random, split: str, p: Placer, at: int) -> dict:
    """A unit conversion, plain, in a situation, as a rate or a mixed quantity; the calculator does the sum."""
    kind = rng.choices(["plain", "context", "rate", "mixed"], [4, 4, 1, 1])[0]
    n = rng.choice(NAMES)
    if kind == "rate":
        ti, (template, factor) = _pick(rng, RATES, split)
        held = ti in held_out_templates(len(RATES))
        while True:
            r, a = rng.randint(2, 90), rng.randint(2, 12)
            key = f"units:rate:{r}:{a}:{factor}"
            if _item_ok(key, split, held):
                break
        text, expression, v, tid = template.format(r=r, a=a, n=n), f"{r} * {a} * {factor}", "", f"rate:{ti}"
    elif kind == "mixed":
        ti, template = _pick(rng, MIXED, split)
        held = ti in held_out_templates(len(MIXED))
        u, v, factor = rng.choice(MIXED_PAIRS)
        while True:
            a, b = rng.randint(1, 12), rng.randint(1, factor - 1)
            key = f"units:mixed:{a}:{u}:{b}"
            if _item_ok(key, split, held):
                break
        text, expression, tid = template.format(a=a, b=b, u=u, v=v, n=n), f"{a} * {factor} + {b}", f"mixed:{ti}"
    else:
        u, v, factor, dim = rng.choice(UNIT_PAIRS)
        if kind == "plain" and dim != "count":  # "3 dozen" is asked about things, in a situation
            ti, template = _pick(rng, CONVERSIONS, split)
            held, tid = ti in held_out_templates(len(CONVERSIONS)), f"plain:{ti}"
        else:
            ci, context = _pick(rng, CONTEXTS[dim], split)
            ai, ask = _pick(rng, CONTEXT_ASKS, split) if "?" not in context else (-1, "")
            held = ci in held_out_templates(len(CONTEXTS[dim])) or ai in held_out_templates(len(CONTEXT_ASKS))
            template, tid = f"{context} {ask}".strip(), f"context:{dim}:{ci}:{ai}"
        while True:
            a = rng.randint(2, 20) if rng.random() < 0.6 else rng.randint(21, 500)
            key = f"units:{u}:{v}:{a}"
            if _item_ok(key, split, held):
                break
        if split == "train" and dim != "count" and decimal_draw(key) is not None:  # half a unit more: 2.5 hours, 12.5 metres
            a = f"{a}.5"
        text, expression = template.format(a=a, u=u, v=v, n=n), f"{a} * {factor}"
        v = "" if dim == "count" else v
    p.user_spread = user_spread(split, rng)
    end = p.put("user", text, at)
    x = calculator_turn(rng, p, expression, end, _answers(v) if v else None)
    return {"skill": "units", "template": f"units:{tid}", "item": key, "expected": x, "expression": expression,
            "input_end": end}


PLACERS = {"arithmetic": place_arithmetic, "units": place_units}


def held_out_template_ids() -> set[str]:
    """Template ids (as in ``meta["template"]``) that contain a test-only part."""

    def pairs(kind: str, firsts: list[str], seconds: list[str]) -> set[str]:
        ids = set()
        for i, first in enumerate(firsts):
            for j in range(len(seconds)) if "?" not in first else [-1]:
                if i in held_out_templates(len(firsts)) or j in held_out_templates(len(seconds)):
                    ids.add(f"{kind}:{i}:{j}")
        return ids

    ids = set().union(*(pairs(f"arithmetic:{op}", s, QUESTIONS[op]) for op, s in SITUATIONS.items()))
    ids |= set().union(*(pairs(f"units:context:{dim}", c, CONTEXT_ASKS) for dim, c in CONTEXTS.items()))
    ids |= {f"units:plain:{i}" for i in held_out_templates(len(CONVERSIONS))}
    ids |= {f"units:rate:{i}" for i in held_out_templates(len(RATES))}
    ids |= {f"units:mixed:{i}" for i in held_out_templates(len(MIXED))}
    return ids
