"""Generate ``data/corpus.txt``, the project's own small training corpus.

Why it exists: the Hugging Face Hub cannot be reached from tests or ``make demo``, yet the
tokenizer for the tiny test models has to be trained on something, and the training demo
needs text on which a small Transformer's loss visibly drops. Every byte here is produced
by this script from templates and word lists written for this project; no text is copied
from anywhere, so the corpus carries no licence question.

What it contains (simple, regular English, so a tiny model can learn real structure):

* short stories from templates: characters, places, objects, actions, weather, feelings;
* arithmetic facts, in digits ("3 + 4 = 7") and in words ("three plus four is seven");
* counting and ordering facts (days, months, numbers before and after);
* lists (shopping lists, packing lists, to-do lists);
* small dialogues between two characters.

Determinism: a single ``random.Random(SEED)`` drives everything, sections come in a fixed
order, and no set or dict iteration order is relied on, so the output is byte-identical on
every run and platform (Python's Mersenne Twister and ``choice``/``shuffle`` are stable
across versions). The file is ASCII with ``\\n`` line endings, about 540 KB.

Usage::

    python data/make_corpus.py                 # rewrites data/corpus.txt
    python data/make_corpus.py --out /tmp/c.txt
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

SEED = 20240611
DEFAULT_OUT = Path(__file__).resolve().parent / "corpus.txt"

# Sizes of each section, tuned so the whole corpus lands around 540 KB.
N_STORIES = 1100
N_ARITHMETIC_BLOCKS = 260
N_LISTS = 420
N_DIALOGUES = 520
N_FACT_BLOCKS = 200

NAMES = [
    "Ada", "Ben", "Cora", "Dev", "Ella", "Finn", "Gia", "Hugo", "Iris", "Jack", "Kira", "Leo",
    "Mia", "Nico", "Olga", "Pablo", "Quinn", "Rosa", "Sam", "Tara", "Umar", "Vera", "Wes",
    "Yara", "Zane",
]
ANIMALS = ["cat", "dog", "fox", "owl", "rabbit", "duck", "horse", "goat", "mouse", "bear"]
PLACES = [
    "the park", "the market", "the library", "the beach", "the forest", "the old mill",
    "the train station", "the garden", "the school", "the bakery", "the river", "the hill",
    "the harbor", "the museum", "the farm",
]
OBJECTS = [
    "a red ball", "a blue kite", "an old map", "a small key", "a green umbrella", "a wooden box",
    "a silver coin", "a paper boat", "a yellow hat", "a glass jar", "a long rope", "a warm scarf",
    "a tiny bell", "a broken clock", "a heavy book",
]
ADJECTIVES = ["happy", "tired", "curious", "brave", "quiet", "hungry", "excited", "calm", "shy"]
WEATHER = [
    "The sun was bright", "It was raining softly", "The wind was cold", "Snow covered the ground",
    "The sky was grey", "It was a warm evening", "Fog hid the streets",
]
TIMES = ["In the morning", "At noon", "In the afternoon", "In the evening", "One day", "Later"]
ACTIONS = [
    ("found", "and showed it to"), ("lost", "and asked for help from"),
    ("painted", "and gave it to"), ("fixed", "and thanked"), ("carried", "and waved to"),
    ("bought", "and shared it with"), ("hid", "and laughed with"),
]
ENDINGS = [
    "They walked home together.", "Everyone smiled.", "It was a good day.",
    "Then it was time for dinner.", "They promised to come back tomorrow.",
    "Nobody forgot that day.", "The end.",
]
FOODS = [
    "apples", "bread", "milk", "eggs", "rice", "beans", "carrots", "cheese", "tea", "honey",
    "onions", "lemons", "pears", "butter", "soup",
]
COUNTABLE_FOODS = ["apples", "eggs", "carrots", "onions", "lemons", "pears", "rolls", "plums"]
THINGS_TO_PACK = [
    "socks", "a toothbrush", "a towel", "a map", "a torch", "a jacket", "boots", "a notebook",
    "a pencil", "water", "a hat", "gloves",
]
CHORES = [
    "water the plants", "feed the cat", "clean the kitchen", "write a letter", "read a chapter",
    "fix the bike", "call grandma", "wash the dishes", "sweep the floor", "bake a cake",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
]
COLOR_FACTS = [
    ("the sky", "blue"), ("grass", "green"), ("snow", "white"), ("coal", "black"),
    ("a lemon", "yellow"), ("a tomato", "red"), ("an orange", "orange"), ("a plum", "purple"),
]
ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
        "eighteen", "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_word(n: int) -> str:
    """Spell 0..999 in English words, so arithmetic appears both as digits and as words."""
    if n < 20:
        return ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return TENS[tens] + ("" if ones == 0 else "-" + ONES[ones])
    hundreds, rest = divmod(n, 100)
    head = ONES[hundreds] + " hundred"
    return head if rest == 0 else head + " and " + number_word(rest)


def story(rng: random.Random) -> str:
    """One short story: a few sentences that reuse the same characters, as real text does."""
    hero, friend = rng.sample(NAMES, 2)
    place, other_place = rng.sample(PLACES, 2)
    thing = rng.choice(OBJECTS)
    verb, follow = rng.choice(ACTIONS)
    pet = rng.choice(ANIMALS)
    lines = [
        f"{rng.choice(TIMES)}, {hero} went to {place}.",
        f"{rng.choice(WEATHER)}, and {hero} felt {rng.choice(ADJECTIVES)}.",
        f"At {place}, {hero} {verb} {thing} {follow} {friend}.",
    ]
    if rng.random() < 0.6:
        lines.append(f"{friend} had a {pet} that followed them to {other_place}.")
    if rng.random() < 0.5:
        count = rng.randint(2, 9)
        lines.append(
            f"On the way they saw {number_word(count)} {rng.choice(ANIMALS)}s "
            f"and counted them: {', '.join(str(i) for i in range(1, count + 1))}."
        )
    if rng.random() < 0.4:
        lines.append(f'"{thing[0].upper() + thing[1:]}!" said {friend}. "Where did you get it?"')
        lines.append(f'"At {place}," said {hero}.')
    lines.append(rng.choice(ENDINGS))
    return " ".join(lines)


def arithmetic_block(rng: random.Random) -> str:
    """A run of sums, differences and products, mixing digit and word forms."""
    out = []
    for _ in range(rng.randint(6, 12)):
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        op = rng.choice(("plus", "minus", "times"))
        if op == "minus" and b > a:
            a, b = b, a
        result = {"plus": a + b, "minus": a - b, "times": a * b}[op]
        symbol = {"plus": "+", "minus": "-", "times": "*"}[op]
        if rng.random() < 0.5:
            out.append(f"{a} {symbol} {b} = {result}")
        else:
            out.append(f"{number_word(a)} {op} {number_word(b)} is {number_word(result)}.")
    return "\n".join(out)


def list_block(rng: random.Random) -> str:
    """A titled, numbered list: the kind of structure a model learns quickly."""
    kind = rng.choice(("shopping", "packing", "todo"))
    name = rng.choice(NAMES)
    if kind == "shopping":
        items = rng.sample(FOODS, rng.randint(3, 7))
        title = f"{name}'s shopping list:"
    elif kind == "packing":
        items = rng.sample(THINGS_TO_PACK, rng.randint(3, 7))
        title = f"Things {name} packs for the trip:"
    else:
        items = rng.sample(CHORES, rng.randint(3, 6))
        title = f"{name} has to do this on {rng.choice(DAYS)}:"
    body = [f"{i}. {item}" for i, item in enumerate(items, start=1)]
    return "\n".join([title, *body])


def dialogue(rng: random.Random) -> str:
    """A short exchange between two characters, with question and answer turns."""
    a, b = rng.sample(NAMES, 2)
    place = rng.choice(PLACES)
    food = rng.choice(COUNTABLE_FOODS)
    n = rng.randint(2, 12)
    day = rng.choice(DAYS)
    turns = [
        f"{a}: Hello, {b}! Where are you going?",
        f"{b}: I am going to {place}.",
        f"{a}: Can you buy some {food} there?",
        f"{b}: Yes. How many do you need?",
        f"{a}: {number_word(n).capitalize()}, please.",
        f"{b}: {n} {food}. I will bring them on {day}.",
    ]
    if rng.random() < 0.5:
        turns.append(f"{a}: Thank you, {b}. See you on {day}!")
    return "\n".join(turns)


def fact_block(rng: random.Random) -> str:
    """Ordering and world facts: days, months, numbers before and after, colours."""
    out = []
    for _ in range(rng.randint(4, 8)):
        kind = rng.randrange(4)
        if kind == 0:
            i = rng.randrange(7)
            out.append(f"The day after {DAYS[i]} is {DAYS[(i + 1) % 7]}.")
        elif kind == 1:
            i = rng.randrange(12)
            out.append(f"{MONTHS[i]} comes before {MONTHS[(i + 1) % 12]}.")
        elif kind == 2:
            n = rng.randint(1, 998)
            out.append(f"The number after {n} is {n + 1}, which is {number_word(n + 1)}.")
        else:
            thing, colour = rng.choice(COLOR_FACTS)
            out.append(f"The colour of {thing} is {colour}.")
    return " ".join(out)


def build_corpus(seed: int = SEED) -> str:
    """Return the whole corpus as one string; sections are shuffled together by ``seed``."""
    rng = random.Random(seed)
    makers = (
        [story] * N_STORIES
        + [arithmetic_block] * N_ARITHMETIC_BLOCKS
        + [list_block] * N_LISTS
        + [dialogue] * N_DIALOGUES
        + [fact_block] * N_FACT_BLOCKS
    )
    rng.shuffle(makers)
    return "\n\n".join(make(rng) for make in makers) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output file")
    args = parser.parse_args(argv)
    # newline="" so "\n" is written as-is on every platform.
    with open(args.out, "w", encoding="ascii", newline="") as f:
        f.write(build_corpus())


if __name__ == "__main__":
    main()
