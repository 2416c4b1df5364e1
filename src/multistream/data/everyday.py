"""Everyday questions in many families and phrasings, answered by the base model itself.

:mod:`.retention` keeps the base model's knowledge of a few dozen facts in two phrasings each. A model
trained on those alone answered "How many legs does a cat have?" with "The answer is 10." (it took
the question for arithmetic): its everyday knowledge was tied to a handful of wordings. The families
below ask the same kinds of things (legs, sounds, colours, opposites, languages, young animals,
days, months, shapes and more) in four phrasings each; the last phrasing of every family and one
item in five (by :func:`.skills.held_out_item`) are test-only. Items that :mod:`.retention` already
asks about are left out, so no held-out retention fact is taught here in other words.

``python -m multistream.data.everyday`` asks the base model every candidate (batched, greedy, in its
own chat template) and keeps in ``everyday.json`` the replies worth learning from (:func:`keep`):
self-distillation, as for retention. For the families in :data:`TEMPLATED` the base was too often
wrong or odd, and the replies are written from the accepted answers instead.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .retention import SYSTEM, complete, first_sentence, holds

DATA = Path(__file__).with_name("everyday.json")

# (family, phrasings: the last one test-only, items: (slot value, accepted answers))
FAMILIES: list[tuple[str, list[str], list[tuple[str, tuple[str, ...]]]]] = [
    ("legs", ["How many legs does a {x} have?", "A {x} has how many legs?", "How many legs do {x}s have?",
              "Count the legs of a {x} for me."],
     [("cat", ("4", "four")), ("dog", ("4", "four")), ("horse", ("4", "four")), ("cow", ("4", "four")),
      ("chicken", ("2", "two")), ("duck", ("2", "two")), ("bird", ("2", "two")), ("ant", ("6", "six")),
      ("bee", ("6", "six")), ("fly", ("6", "six")), ("elephant", ("4", "four")), ("sheep", ("4", "four")),
      ("pig", ("4", "four")), ("lion", ("4", "four")), ("butterfly", ("6", "six")), ("goat", ("4", "four")),
      ("mouse", ("4", "four")), ("penguin", ("2", "two")), ("owl", ("2", "two")), ("beetle", ("6", "six")),
      ("tiger", ("4", "four")), ("rabbit", ("4", "four")), ("ostrich", ("2", "two")), ("giraffe", ("4", "four"))]),
    ("sound", ["What sound does a {x} make?", "What noise does a {x} make?", "Which sound do {x}s make?",
               "When a {x} makes a sound, what is it called?"],
     [("lion", ("roar",)), ("horse", ("neigh", "whinny")), ("pig", ("oink", "grunt")), ("owl", ("hoot",)),
      ("snake", ("hiss",)), ("frog", ("croak", "ribbit")), ("bee", ("buzz",)), ("mouse", ("squeak",)),
      ("donkey", ("bray", "hee-haw")), ("wolf", ("howl",)), ("chicken", ("cluck",)), ("turkey", ("gobble",)),
      ("goat", ("baa", "bleat", "maa")), ("crow", ("caw",)), ("bird", ("chirp", "tweet", "sing"))]),
    ("colour", ["What color is a {x}?", "What is the color of a {x}?", "Which colour is a {x} usually?",
                "Tell me the usual colour of a {x}."],
     [("strawberry", ("red",)), ("carrot", ("orange",)), ("cucumber", ("green",)), ("cloud", ("white", "grey", "gray")),
      ("pumpkin", ("orange",)), ("cherry", ("red",)), ("lime", ("green",)), ("fire truck", ("red",)),
      ("school bus", ("yellow",)), ("polar bear", ("white",)), ("crow", ("black",)), ("flamingo", ("pink",)),
      ("elephant", ("grey", "gray")), ("blueberry", ("blue",)), ("eggplant", ("purple",)), ("frog", ("green",)),
      ("raven", ("black",)), ("sunflower", ("yellow",)), ("ruby", ("red",)), ("emerald", ("green",)),
      ("swan", ("white",)), ("leaf", ("green",)), ("pea", ("green",)), ("sapphire", ("blue",))]),
    ("opposite", ["What is the opposite of {x}?", "What's the opposite of {x}?", "Give me the opposite of {x}.",
                  "Which word is the opposite of {x}?"],
     [("cold", ("hot", "warm")), ("small", ("big", "large")), ("down", ("up",)), ("night", ("day",)),
      ("slow", ("fast", "quick")), ("sad", ("happy",)), ("old", ("new", "young")), ("short", ("long", "tall")),
      ("empty", ("full",)), ("high", ("low",)), ("early", ("late",)), ("strong", ("weak",)), ("rich", ("poor",)),
      ("loud", ("quiet", "soft")), ("clean", ("dirty",)), ("heavy", ("light",)), ("first", ("last",)),
      ("top", ("bottom",)), ("true", ("false",)), ("good", ("bad", "evil")), ("inside", ("outside",)),
      ("push", ("pull",)), ("win", ("lose",)), ("hard", ("soft", "easy")), ("begin", ("end", "finish")),
      ("question", ("answer",)), ("north", ("south",)), ("east", ("west",)), ("young", ("old",)),
      ("thick", ("thin",))]),
    ("language", ["What language do people speak in {x}?", "Which language is spoken in {x}?",
                  "What is the main language of {x}?", "In {x}, what language do most people speak?"],
     [("France", ("French",)), ("Spain", ("Spanish",)), ("Germany", ("German",)), ("Italy", ("Italian",)),
      ("Japan", ("Japanese",)), ("Brazil", ("Portuguese",)), ("Mexico", ("Spanish",)), ("Russia", ("Russian",)),
      ("China", ("Chinese", "Mandarin")), ("Portugal", ("Portuguese",)), ("Greece", ("Greek",)),
      ("England", ("English",)), ("Argentina", ("Spanish",)), ("Poland", ("Polish",)), ("Turkey", ("Turkish",))]),
    ("young", ["What is a baby {x} called?", "What do you call a young {x}?", "A baby {x} is called what?",
               "What name is given to a young {x}?"],
     [("dog", ("puppy", "pup")), ("cat", ("kitten",)), ("cow", ("calf",)), ("sheep", ("lamb",)),
      ("horse", ("foal", "colt", "filly")), ("frog", ("tadpole",)), ("duck", ("duckling",)), ("goat", ("kid",)),
      ("bear", ("cub",)), ("lion", ("cub",)), ("pig", ("piglet",)), ("kangaroo", ("joey",)), ("swan", ("cygnet",)),
      ("deer", ("fawn",)), ("chicken", ("chick",))]),
    ("after", ["What day comes after {x}?", "Which day follows {x}?", "What is the day after {x}?",
               "If today is {x}, what day is tomorrow?"],
     [("Monday", ("Tuesday",)), ("Tuesday", ("Wednesday",)), ("Wednesday", ("Thursday",)), ("Thursday", ("Friday",)),
      ("Friday", ("Saturday",)), ("Saturday", ("Sunday",)), ("Sunday", ("Monday",))]),
    ("month", ["What month comes after {x}?", "Which month follows {x}?", "What is the month after {x}?",
               "Once {x} ends, which month begins?"],
     [("January", ("February",)), ("February", ("March",)), ("March", ("April",)), ("April", ("May",)),
      ("May", ("June",)), ("June", ("July",)), ("July", ("August",)), ("August", ("September",)),
      ("September", ("October",)), ("October", ("November",)), ("November", ("December",)),
      ("December", ("January",))]),
    ("sides", ["How many sides does a {x} have?", "A {x} has how many sides?", "How many sides are on a {x}?",
               "Count the sides of a {x}."],
     [("square", ("4", "four")), ("pentagon", ("5", "five")), ("hexagon", ("6", "six")), ("octagon", ("8", "eight")),
      ("rectangle", ("4", "four")), ("heptagon", ("7", "seven"))]),
    ("wheels", ["How many wheels does a {x} have?", "A {x} has how many wheels?", "How many wheels are on a {x}?",
                "Count the wheels of a {x}."],
     [("car", ("4", "four")), ("tricycle", ("3", "three")), ("unicycle", ("1", "one")), ("motorcycle", ("2", "two")),
      ("scooter", ("2", "two")), ("wheelbarrow", ("1", "one"))]),
    ("eat", ["What do {x} eat?", "What food do {x} eat?", "What is the main food of {x}?",
             "Tell me what {x} like to eat."],
     [("pandas", ("bamboo",)), ("rabbits", ("carrots", "carrot", "grass", "hay", "vegetables")),
      ("koalas", ("eucalyptus",)), ("cows", ("grass", "hay")), ("monkeys", ("bananas", "banana", "fruit")),
      ("bees", ("nectar", "pollen", "honey")), ("squirrels", ("nuts", "acorns")), ("mice", ("cheese", "seeds", "grain"))]),
    ("home", ["Where does a {x} live?", "What is the home of a {x} called?", "Where do {x}s live?",
              "Which place does a {x} call home?"],
     [("bee", ("hive",)), ("bird", ("nest", "tree", "trees")), ("fish", ("water", "sea", "ocean", "river")),
      ("spider", ("web",)), ("penguin", ("antarctica", "ice", "cold")), ("camel", ("desert",)),
      ("polar bear", ("arctic", "ice", "north")), ("whale", ("ocean", "sea"))]),
]
"""(family, phrasings, items): four phrasings each, the last one test-only."""

FACTS: list[tuple[str, list[str], tuple[str, ...]]] = [
    ("boil", ["At what temperature does water boil in Celsius?", "What is the boiling point of water in degrees Celsius?",
              "Water boils at how many degrees Celsius?"], ("100",)),
    ("freeze", ["At what temperature does water freeze in Celsius?", "What is the freezing point of water in Celsius?",
                "Water freezes at how many degrees Celsius?"], ("0", "zero")),
    ("honey", ["What do bees make?", "Which sweet food do bees produce?", "Bees are famous for making what?"], ("honey",)),
    ("whale", ["What is the largest animal in the world?", "Which animal is the biggest on Earth?",
               "Name the largest animal that lives on Earth."], ("blue whale", "whale")),
    ("cheetah", ["What is the fastest land animal?", "Which animal runs the fastest on land?",
                 "Name the fastest animal on land."], ("cheetah",)),
    ("giraffe", ["What is the tallest animal?", "Which animal is the tallest in the world?",
                 "Name the tallest animal on Earth."], ("giraffe",)),
    ("oxygen", ["What gas do humans need to breathe?", "Which gas do we breathe in to live?",
                "Name the gas people need to breathe."], ("oxygen",)),
    ("mars", ["Which planet is called the red planet?", "What planet is known as the Red Planet?",
              "Name the planet people call the red planet."], ("mars",)),
    ("mercury", ["Which planet is closest to the sun?", "What is the nearest planet to the sun?",
                 "Name the planet nearest to the sun."], ("mercury",)),
    ("asia", ["What is the largest continent?", "Which continent is the biggest?",
              "Name the biggest continent on Earth."], ("asia",)),
    ("davinci", ["Who painted the Mona Lisa?", "Which artist painted the Mona Lisa?",
                 "Name the painter of the Mona Lisa."], ("leonardo", "da vinci")),
    ("eiffel", ["In which city is the Eiffel Tower?", "Where is the Eiffel Tower?",
                "Name the city where the Eiffel Tower stands."], ("paris",)),
    ("pyramids", ["In which country are the pyramids of Giza?", "Where are the Great Pyramids?",
                  "Name the country of the pyramids of Giza."], ("egypt",)),
    ("butterfly", ["What does a caterpillar turn into?", "What does a caterpillar become?",
                   "A caterpillar grows into what?"], ("butterfly", "butterflies", "moth")),
    ("spring", ["What season comes after winter?", "Which season follows winter?",
                "After winter ends, which season starts?"], ("spring",)),
    ("autumn", ["What season comes after summer?", "Which season follows summer?",
                "After summer ends, which season starts?"], ("autumn", "fall")),
    ("january", ["What is the first month of the year?", "Which month starts the year?",
                 "Name the first month of the year."], ("january",)),
    ("december", ["What is the last month of the year?", "Which month ends the year?",
                  "Name the last month of the year."], ("december",)),
    ("milk", ["What do cows give us?", "Which drink do we get from cows?", "Cows are kept to give us what?"], ("milk",)),
    ("eggs", ["What do chickens lay?", "What do hens lay?", "Hens give us what to eat?"], ("eggs", "egg")),
    ("alphabet", ["How many letters are in the English alphabet?", "How many letters does the English alphabet have?",
                  "The English alphabet has how many letters?"], ("26", "twenty-six")),
    ("continents", ["How many continents are there?", "How many continents does the Earth have?",
                    "The world has how many continents?"], ("7", "seven")),
    ("seconds", ["How many seconds are in a minute?", "How many seconds does a minute have?",
                 "A minute has how many seconds?"], ("60", "sixty")),
    ("fingers", ["How many fingers are on one hand?", "How many fingers does a hand have?",
                 "One hand has how many fingers?"], ("5", "five")),
    ("leapyear", ["How many days are in a year?", "How many days does a normal year have?",
                  "A year has how many days?"], ("365",)),
    ("weeks", ["How many weeks are in a year?", "How many weeks does a year have?",
               "A year has how many weeks?"], ("52", "fifty-two")),
    ("moon", ["What goes around the Earth at night in the sky?", "What is Earth's natural satellite called?",
              "Name the Earth's natural satellite."], ("moon",)),
    ("rainbow", ["How many colors are in a rainbow?", "How many colours does a rainbow have?",
                 "A rainbow has how many colours?"], ("7", "seven")),
    ("king", ["Which animal is called the king of the jungle?", "What animal is known as the king of the jungle?",
              "Name the animal called the king of the jungle."], ("lion",)),
    ("apple", ["Which fruit keeps the doctor away?", "An apple a day keeps who away?",
               "Name the fruit in the saying about keeping the doctor away."], ("apple", "doctor")),
    ("h2o", ["What is H2O?", "What does H2O stand for?", "H2O is the formula of what?"], ("water",)),
    ("sahara", ["What is the largest hot desert in the world?", "Which desert is the biggest hot desert?",
                "Name the largest hot desert."], ("sahara",)),
    ("everest", ["What is the tallest mountain in the world?", "Which mountain is the highest on Earth?",
                 "Name the highest mountain in the world."], ("everest",)),
    ("piano", ["Which instrument has black and white keys?", "What instrument has 88 keys?",
               "Name the instrument with black and white keys."], ("piano",)),
]
"""(item key, phrasings: the last one test-only, accepted answers): single facts."""


@dataclass(frozen=True)
class EverydayItem:
    key: str
    family: str
    phrasing: int
    question: str
    reply: str
    answers: tuple[str, ...]
    phrasing_held_out: bool


def candidates() -> list[tuple[str, str, int, str, tuple[str, ...]]]:
    """(item key, family, phrasing number, question, accepted answers) for every question asked."""
    from .retention import FACT_QUESTIONS

    known = {key for key, _, _ in FACT_QUESTIONS}
    out = []
    for family, phrasings, items in FAMILIES:
        for x, answers in items:
            key = f"everyday:{family}:{x}"
            if x.lower() in known and family == "opposite":
                continue
            for i, q in enumerate(phrasings):
                out.append((key, family, i, q.format(x=x), answers))
    for key, phrasings, answers in FACTS:
        if key in known:
            continue
        for i, q in enumerate(phrasings):
            out.append((f"everyday:fact:{key}", "fact", i, q, answers))
    return out


def held_phrasing(family: str, phrasing: int) -> bool:
    n = 3 if family == "fact" else 4
    return phrasing == n - 1


def ask_base(ref: str = "default", max_new_tokens: int = 28, batch_size: int = 32) -> list[dict]:
    """Every candidate with the base model's greedy reply (batched, left-padded) and whether it is right."""
    import torch
    from tqdm.auto import tqdm

    from ..bases import load_base

    model, tok = load_base(ref)
    tok.padding_side = "left"
    end = tok.convert_tokens_to_ids("<|im_end|>")
    pad = tok.pad_token_id if tok.pad_token_id is not None else end
    cands = candidates()
    out = []
    for i in tqdm(range(0, len(cands), batch_size), desc="asking the base model"):
        batch = cands[i : i + batch_size]
        texts = [tok.apply_chat_template([{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}],
                                         tokenize=False, add_generation_prompt=True) for _, _, _, q, _ in batch]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=end, pad_token_id=pad)
        for (key, family, phrasing, question, answers), ids in zip(batch, gen[:, enc["input_ids"].shape[1] :]):
            first = first_sentence(tok.decode(ids, skip_special_tokens=True).strip())
            out.append({"key": key, "family": family, "phrasing": phrasing, "question": question,
                        "answers": list(answers), "reply": first, "ok": holds(answers, first)})
    return out


BAD_PLURALS = re.compile(r"\b(fish|mouse|sheep|fly|butterfly|ostrich|goose|deer)s\b", re.I)
COLOUR_WORDS = ("red", "blue", "green", "yellow", "orange", "purple", "pink", "black", "white", "brown", "grey", "gray")


def keep(r: dict) -> bool:
    """A reply worth learning from: right, a whole short sentence, no hedge that takes it back, no second number or
    colour beside the accepted one (a reply that names two is not a clear answer), asked in good English."""
    reply, answers = r["reply"], [a.lower() for a in r["answers"]]
    if not (r["ok"] and complete(reply)) or len(reply.split()) > 16 or BAD_PLURALS.search(r["question"]):
        return False
    if re.search(r"\b(actually|but|however|often referred)\b", reply, re.I):
        return False
    if any(a.isdigit() for a in answers) and set(re.findall(r"\d+", reply)) - set(answers):
        return False
    words = set(re.findall(r"[a-z]+", reply.lower()))
    if r["family"] == "colour" and (words & set(COLOUR_WORDS)) - set(answers):
        return False
    return True


def write(records: list[dict], path: Path = DATA) -> int:
    """Keep the replies worth learning from (:func:`keep`); returns how many."""
    keep_ = [r for r in records if keep(r)]
    fields = ("key", "family", "phrasing", "question", "answers", "reply")
    path.write_text("".join(json.dumps({k: r[k] for k in fields}, ensure_ascii=False) + "\n" for r in keep_),
                    encoding="utf-8")
    return len(keep_)


TEMPLATED = {
    "legs": "A {x} has {w} legs.",
    "wheels": "A {x} has {w} wheels.",
    "sides": "A {x} has {w} sides.",
    "after": "The day after {x} is {a}.",
    "month": "The month after {x} is {a}.",
    "young": "A baby {x} is called a {a}.",
    "language": "People in {x} speak {a}.",
}
"""Families whose replies are written from their answers: the base model's own were often wrong or odd there ("The
answer to this classic question is 4.", "Penguins have two flippers on their flippers.")."""


def templated_reply(family: str, x: str, answers: tuple[str, ...]) -> str:
    return written_reply(TEMPLATED[family], x, answers).replace("one wheels", "one wheel")


def written_reply(template: str, x: str, answers: tuple[str, ...]) -> str:
    """``template`` filled with the item ``x`` (``{X}`` capitalised), its first answer ``{a}`` and its first answer in
    words ``{w}`` ("four" rather than "4")."""
    words = [a for a in answers if not a.isdigit()]
    return template.format(x=x, X=x[:1].upper() + x[1:], a=answers[0], w=words[0] if words else answers[0])


SCENES: dict[str, tuple[str, list[str]]] = {
    "legs": ("A {x} has {w} legs.", [
        "There is a {x} in the picture book. How many legs does the artist give it?",
        "If I watched a {x} walk by, how many legs would I count?",
        "Think of a healthy {x}: on how many legs does it stand?",
        "I'm making a toy {x} out of clay. How many legs must I roll?",
        "Quick animal quiz: the number of legs of a {x}?",
        "Suppose a {x} stepped in paint. How many legs would leave marks?",
        "A {x} walks across the field. It moves on how many legs?",
        "My little sister asks how many legs a {x} has. What do I tell her?"]),
    "colour": ("A {x} is usually {a}.", [
        "I want to paint a {x}. Which colour paint should I buy?",
        "Picture a {x} in your head. What colour is it?",
        "In a colouring book there is a {x}. Which pencil colour suits it best?",
        "My son asks what colour a {x} is. What should I answer?",
        "Quick quiz: the colour of a {x}?",
        "Someone describes a {x} to a friend. Which colour do they name?",
        "For a poster of a {x}, which colour should I use most?",
        "Imagine holding a {x}. Which colour would you see?"]),
    "sound": ("A {x} says {a}.", [
        "In a children's song, what noise does the {x} make?",
        "I can hear a {x} outside the window. What sound is it making?",
        "Copy the {x}: what sound do you make?",
        "A toddler points at a {x}. Which sound should I make for it?",
        "Quick quiz: the sound of a {x}?",
        "What would I hear if a {x} were calling nearby?",
        "Which word spells the sound of a {x}?",
        "At the farm show a {x} calls out. What does it say?"]),
    "opposite": ("The opposite of {x} is {a}.", [
        "Complete the pair of opposites: {x} and what?",
        "A word that means the reverse of {x}, please.",
        "{x} is one half of a pair of opposites. Name the other half.",
        "Which word is the reverse of {x}?",
        "Quick word game: the opposite of {x}?",
        "If something is the very opposite of {x}, how would you describe it?",
        "Give the antonym of {x}.",
        "In a list of opposites, what goes next to {x}?"]),
    "after": ("The day after {x} is {a}.", [
        "The party is the day after {x}. On which day is it?",
        "My shift ends on {x} and I am free the next day. Which day is that?",
        "{x} is nearly over. Which day starts at midnight?",
        "We arrive on {x} and the tour begins the following day. Which day does it begin?",
        "Quick calendar quiz: the day following {x}?",
        "The shop is closed on {x} and opens again the day after. When does it open?",
        "Count one day on from {x}. Where do you land?",
        "It is {x} evening. What will tomorrow be?"]),
    "month": ("The month after {x} is {a}.", [
        "My birthday is the month after {x}. Which month is it in?",
        "The course starts in {x} and the exam is one month later. In which month is the exam?",
        "{x} is ending. Which month begins next?",
        "We move house in the month that follows {x}. Which month is that?",
        "Quick calendar quiz: the month following {x}?",
        "The bill comes in {x} and is paid one month later. When is it paid?",
        "Count one month on from {x}. Which month is it?",
        "The garden fair is one month after {x}. Name the month."]),
    "young": ("A baby {x} is called a {a}.", [
        "Our {x} has a newborn. What word do we use for it?",
        "A farmer shows me a newborn {x}. What name does such a baby have?",
        "In a story, a mother {x} looks after her baby. What is the baby called?",
        "A young {x} has its own name. What is it?",
        "Quick quiz: the name for a baby {x}?",
        "What word do people use for a newborn {x}?",
        "A {x} gave birth this morning. What is the young one called?",
        "My book shows a {x} with its baby. What do you call the baby?"]),
    "language": ("People in {x} speak {a}.", [
        "I am travelling to {x}. Which language will I hear most?",
        "A friend grew up in {x}. Which language did she speak at school?",
        "To read newspapers in {x}, which language do I need?",
        "Which language should I learn before moving to {x}?",
        "Quick quiz: the language of {x}?",
        "Most people in {x} talk to each other in which language?",
        "The signs in {x} are written in which language?",
        "Before my trip to {x}, which language phrasebook should I pack?"]),
    "eat": ("{X} mostly eat {a}.", [
        "At the zoo, the keepers feed the {x}. What food do they bring?",
        "I am writing about {x}. What is their favourite food?",
        "What should you give {x} if you look after them?",
        "Which food do {x} need most?",
        "Quick quiz: what do {x} eat?",
        "Which food would you put out for {x}?",
        "{x} are hungry. What will they look for?",
        "What fills the bellies of {x} in the wild?"]),
}
"""Everyday questions set in a small scene ("I want to paint a pumpkin..."), eight for each of these families, with
replies written from the accepted answers (one plain form per family): the v7 model, trained on the bare phrasings
above, answered such questions with fragments of other skills ("The document says:", "I will use the calculator
for that."). The last quarter of each family's scenes is test-only."""
SCENE_PHRASING = 10
"""Phrasing numbers of scenes start here (the plain phrasings are 0-3)."""


def _articles(text: str) -> str:
    """"a elephant" -> "an elephant" (the scenes put animals of either kind into one sentence)."""
    return re.sub(r"\b([Aa]) (?=[aeiouAEIOU])", r"\1n ", text)


def _scene_items() -> list[EverydayItem]:
    from .skills import held_out_templates

    members = {family: items for family, _, items in FAMILIES}
    out = []
    for family, (reply, scenes) in SCENES.items():
        held = held_out_templates(len(scenes))
        for x, answers in members[family]:
            text = _articles(written_reply(reply, x, answers))
            for i, scene in enumerate(scenes):
                q = _articles(scene.format(x=x))
                if BAD_PLURALS.search(q):
                    continue
                out.append(EverydayItem(f"everyday:{family}:{x}", family, SCENE_PHRASING + i, q[:1].upper() + q[1:],
                                        text, answers, i in held))
    return out


@lru_cache(maxsize=1)
def everyday_items() -> list[EverydayItem]:
    """The base model's kept replies (``everyday.json``) and, for :data:`TEMPLATED` families, written ones."""
    items = []
    for line in DATA.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        if r["family"] in TEMPLATED:
            continue
        items.append(EverydayItem(r["key"], r["family"], r["phrasing"], r["question"], r["reply"], tuple(r["answers"]),
                                  held_phrasing(r["family"], r["phrasing"])))
    for family, phrasings, members in FAMILIES:
        if family not in TEMPLATED:
            continue
        for x, answers in members:
            for i, q in enumerate(phrasings):
                if BAD_PLURALS.search(q.format(x=x)):
                    continue
                items.append(EverydayItem(f"everyday:{family}:{x}", family, i, q.format(x=x),
                                          templated_reply(family, x, answers), answers, held_phrasing(family, i)))
    return items + _scene_items()


if __name__ == "__main__":
    from ..runtime import configure

    configure()  # a process of its own: set up as the command line's (offline hub, quiet peft)
    records = ask_base()
    print(f"{write(records)} of {len(records)} candidate questions answered right by the base model -> {DATA}")
