"""Retention: everyday questions the base model already answers right, with its own replies.

``python -m multistream.data.retention`` asks the base model every candidate question
below (greedily, as a plain chat model in its own template, with the default system
prompt) and keeps in ``retention.json`` those whose reply's first sentence holds an
accepted answer, with that sentence as the training reply. Fine-tuning on them is
self-distillation: the multi-stream model keeps what the base knew, in its manner.
``--train-capitals`` asks only the :data:`~.tables.TRAIN_CAPITALS` questions the file lacks and appends the right
ones, leaving every earlier reply (and the test split drawn from them) as it was.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .tables import CAPITAL_OTHER_NAMES, CAPITALS, TRAIN_CAPITALS

DATA = Path(__file__).with_name("retention.json")
SYSTEM = "You are a helpful assistant."
CAPITAL_PHRASINGS = ["What is the capital of {c}?", "Name the capital city of {c}.", "Which city is the capital of {c}?"]
HELD_OUT_CAPITAL_PHRASING = 2  # test-only phrasing
TEST_CAPITAL_PHRASINGS = ["What city is the capital of {c}?", "Tell me the capital of {c}."]
"""More test-only phrasings (numbered after :data:`CAPITAL_PHRASINGS`): with them the held-out retention questions
number over a hundred. Test-only items never enter the pool that the training split draws from, so adding them left
the training data, and the weights trained on it, unchanged."""
FACT_QUESTIONS = [
    ("sky", ["What color is the sky on a clear day?", "What colour is a clear sky?"], ("blue",)),
    ("grass", ["What color is grass?", "What colour is fresh grass?"], ("green",)),
    ("snow", ["What color is snow?", "What colour is fresh snow?"], ("white",)),
    ("banana", ["What color is a ripe banana?", "What colour are ripe bananas?"], ("yellow",)),
    ("coal", ["What color is coal?", "What colour is a lump of coal?"], ("black",)),
    ("blood", ["What color is blood?", "What colour is human blood?"], ("red",)),
    ("milk", ["What color is milk?", "What colour is cow's milk?"], ("white",)),
    ("lemon", ["What color is a lemon?", "What colour is a ripe lemon?"], ("yellow",)),
    ("tomato", ["What color is a ripe tomato?", "What colour are ripe tomatoes?"], ("red",)),
    ("chocolate", ["What color is chocolate?", "What colour is milk chocolate?"], ("brown",)),
    ("cow", ["What sound does a cow make?", "What does a cow say?"], ("moo",)),
    ("cat", ["What sound does a cat make?", "What does a cat say?"], ("meow", "miaow", "purr")),
    ("duck", ["What sound does a duck make?", "What does a duck say?"], ("quack",)),
    ("dog", ["What sound does a dog make?", "What does a dog say?"], ("woof", "bark")),
    ("sheep", ["What sound does a sheep make?", "What does a sheep say?"], ("baa", "bleat")),
    ("hot", ["What is the opposite of hot?", "What word means the opposite of hot?"], ("cold",)),
    ("big", ["What is the opposite of big?", "What word means the opposite of big?"], ("small", "little")),
    ("up", ["What is the opposite of up?", "What word means the opposite of up?"], ("down",)),
    ("day", ["What is the opposite of day?", "What word means the opposite of day?"], ("night",)),
    ("fast", ["What is the opposite of fast?", "What word means the opposite of fast?"], ("slow",)),
    ("happy", ["What is the opposite of happy?", "What word means the opposite of happy?"], ("sad", "unhappy")),
    ("light", ["What is the opposite of light?", "What word means the opposite of light?"], ("dark", "darkness", "heavy")),
    ("open", ["What is the opposite of open?", "What word means the opposite of open?"], ("closed", "close", "shut")),
    ("left", ["What is the opposite of left?", "What word means the opposite of left?"], ("right",)),
    ("wet", ["What is the opposite of wet?", "What word means the opposite of wet?"], ("dry",)),
    ("week", ["How many days are in a week?", "How many days does a week have?"], ("7", "seven")),
    ("year", ["How many months are in a year?", "How many months does a year have?"], ("12", "twelve")),
    ("spider", ["How many legs does a spider have?", "How many legs has a spider got?"], ("8", "eight")),
    ("hours", ["How many hours are in a day?", "How many hours does a day have?"], ("24", "twenty-four")),
    ("minutes", ["How many minutes are in an hour?", "How many minutes does an hour have?"], ("60", "sixty")),
    ("triangle", ["How many sides does a triangle have?", "How many sides has a triangle got?"], ("3", "three")),
    ("bicycle", ["How many wheels does a bicycle have?", "How many wheels has a bicycle got?"], ("2", "two")),
    (
        "jupiter",
        ["What is the largest planet in our solar system?", "Which planet is the biggest in the solar system?"],
        ("jupiter",),
    ),
    ("earth", ["Which planet do we live on?", "What is the name of the planet we live on?"], ("earth",)),
    ("sun", ["What is the star at the center of our solar system?", "Which star does the Earth orbit?"], ("sun",)),
    ("ice", ["What does water become when it freezes?", "What is frozen water called?"], ("ice",)),
    ("bees", ["Which insect makes honey?", "What insects produce honey?"], ("bee", "bees")),
    ("ocean", ["What is the largest ocean on Earth?", "Which ocean is the biggest?"], ("pacific",)),
    ("shakespeare", ["Who wrote Romeo and Juliet?", "Which playwright wrote Romeo and Juliet?"], ("shakespeare",)),
    (
        "paint",
        ["What do you get when you mix blue and yellow paint?", "Mixing blue and yellow paint gives which color?"],
        ("green",),
    ),
]
"""(item key, phrasings, accepted answers): colours, sounds, opposites, counts and well-known facts."""
TEST_FACT_PHRASINGS = {
    "sky": "Which colour is the sky when there are no clouds?",
    "grass": "Which colour is a lawn of grass?",
    "snow": "Which colour is newly fallen snow?",
    "banana": "Which colour is a banana when it is ripe?",
    "coal": "Which colour is a piece of coal?",
    "blood": "Which colour is the blood in our veins?",
    "milk": "Which colour is a glass of milk?",
    "lemon": "Which colour is the skin of a lemon?",
    "tomato": "Which colour is a tomato when it is ripe?",
    "chocolate": "Which colour is a bar of chocolate?",
    "cow": "Which sound does a cow make?",
    "cat": "Which sound does a cat make?",
    "duck": "Which sound does a duck make?",
    "dog": "Which sound does a dog make?",
    "sheep": "Which sound does a sheep make?",
    "hot": "Tell me the opposite of hot.",
    "big": "Tell me the opposite of big.",
    "up": "Tell me the opposite of up.",
    "day": "Tell me the opposite of day.",
    "fast": "Tell me the opposite of fast.",
    "happy": "Tell me the opposite of happy.",
    "light": "Tell me the opposite of light.",
    "open": "Tell me the opposite of open.",
    "left": "Tell me the opposite of left.",
    "wet": "Tell me the opposite of wet.",
    "week": "Tell me how many days there are in a week.",
    "year": "Tell me how many months there are in a year.",
    "spider": "Tell me how many legs a spider has.",
    "hours": "Tell me how many hours there are in a day.",
    "minutes": "Tell me how many minutes there are in an hour.",
    "triangle": "Tell me how many sides a triangle has.",
    "bicycle": "Tell me how many wheels a bicycle has.",
    "jupiter": "Tell me the name of the largest planet in the solar system.",
    "earth": "Tell me the name of our planet.",
    "sun": "Tell me the name of the star that the Earth goes around.",
    "ice": "Tell me what water turns into when it freezes.",
    "bees": "Tell me which insect makes honey.",
    "ocean": "Tell me the name of the largest ocean on Earth.",
    "shakespeare": "Tell me who wrote the play Romeo and Juliet.",
    "paint": "Tell me which colour you get by mixing blue and yellow paint.",
}
"""A third, test-only phrasing of each fact question (numbered 2, after its two training phrasings)."""
FACT_TRAIN_PHRASINGS = 2


@dataclass(frozen=True)
class RetentionItem:
    key: str
    phrasing: int
    question: str
    reply: str
    """The base model's own first sentence, which holds an accepted answer."""
    answers: tuple[str, ...]
    phrasing_held_out: bool
    test_only: bool = False
    """One of the test-only phrasings added after the training data was fixed (see :data:`TEST_CAPITAL_PHRASINGS`)."""
    train_only: bool = False
    """A question about a :data:`~.tables.TRAIN_CAPITALS` capital: training only, whatever its key's hash."""


def candidates() -> list[tuple[str, int, str, tuple[str, ...]]]:
    out = []
    for c, cap in CAPITALS.items():
        for i, q in enumerate(CAPITAL_PHRASINGS + TEST_CAPITAL_PHRASINGS):
            out.append((f"capital:{c}", i, q.format(c=c), (cap, *CAPITAL_OTHER_NAMES.get(cap, ()))))
    for k, (c, cap) in enumerate(TRAIN_CAPITALS.items()):  # one training phrasing each, in turn: capitals stay
        i = k % HELD_OUT_CAPITAL_PHRASING                   # about two thirds of what retention trains
        out.append((f"capital:{c}", i, CAPITAL_PHRASINGS[i].format(c=c), (cap,)))
    for key, phrasings, answers in FACT_QUESTIONS:
        for i, q in enumerate([*phrasings, TEST_FACT_PHRASINGS[key]]):
            out.append((f"fact:{key}", i, q, answers))
    return out


def first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]


def holds(answers: tuple[str, ...], text: str) -> bool:
    """Whether ``text`` names one of ``answers`` as a whole word (case-insensitive)."""
    return any(re.search(rf"(?<![\w]){re.escape(a.lower())}(?![\w])", text.lower()) for a in answers)


def ask_base(ref: str = "default", max_new_tokens: int = 28, skip: set[tuple[str, int]] = frozenset()) -> list[dict]:
    """Every candidate (less the ``(key, phrasing)`` pairs in ``skip``) with the base model's greedy reply and whether
    its first sentence is right."""
    import torch
    from tqdm.auto import tqdm

    from ..bases import load_base

    model, tok = load_base(ref)
    end = tok.convert_tokens_to_ids("<|im_end|>")
    out = []
    todo = [c for c in candidates() if (c[0], c[1]) not in skip]
    for key, phrasing, question, answers in tqdm(todo, desc="asking the base model"):
        msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
        enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=end, pad_token_id=end)
        reply = tok.decode(gen[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip()
        first = first_sentence(reply)
        out.append(
            {
                "key": key,
                "phrasing": phrasing,
                "question": question,
                "answers": list(answers),
                "reply": first,
                "ok": holds(answers, first),
            }
        )
    return out


def complete(reply: str) -> bool:
    """A whole sentence (not cut by the token budget) of at most 20 words."""
    return reply.endswith((".", "!", "?")) and len(reply.split()) <= 20


def said(answers: tuple[str, ...], reply: str) -> str:
    """The accepted answer as ``reply`` spells it."""
    for a in answers:
        m = re.search(rf"(?<![\w]){re.escape(a.lower())}(?![\w])", reply.lower())
        if m:
            return reply[m.start() : m.end()]
    raise ValueError(f"no accepted answer in {reply!r}")


def write(records: list[dict], path: Path = DATA, append: bool = False) -> int:
    """Keep the right, complete replies (``append``: after the file's own); returns how many."""
    keep = [r for r in records if r["ok"] and complete(r["reply"])]
    kept = [{k: r[k] for k in ("key", "phrasing", "question", "answers", "reply")} for r in keep]
    before = path.read_text(encoding="utf-8") if append else ""
    path.write_text(before + "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept), encoding="utf-8")
    return len(kept)


@lru_cache(maxsize=1)
def retention_items() -> list[RetentionItem]:
    items = []
    for line in DATA.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        capital = r["key"].startswith("capital:")
        added = r["phrasing"] >= (len(CAPITAL_PHRASINGS) if capital else FACT_TRAIN_PHRASINGS)
        held = added or (capital and r["phrasing"] == HELD_OUT_CAPITAL_PHRASING)
        train_only = capital and r["key"].split(":", 1)[1] in TRAIN_CAPITALS
        items.append(RetentionItem(r["key"], r["phrasing"], r["question"], r["reply"], tuple(r["answers"]), held, added,
                                   train_only))
    return items


if __name__ == "__main__":
    from ..runtime import configure

    configure()  # a process of its own: set up as the command line's (offline hub, quiet peft)
    if "--train-capitals" in sys.argv[1:]:  # ask only the training-only capitals the file lacks; keep what it has
        have = {(it.key, it.phrasing) for it in retention_items()}
        have |= {(k, i) for k, i, _, _ in candidates() if k.split(":", 1)[1] not in TRAIN_CAPITALS}
        records = ask_base(skip=have)
        print(f"{write(records, append=True)} of {len(records)} new candidate questions answered right -> {DATA}")
    else:
        records = ask_base()
        print(f"{write(records)} of {len(records)} candidate questions answered right by the base model -> {DATA}")
