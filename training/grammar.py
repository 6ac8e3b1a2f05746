"""What the demo model hears and says: spoken commands for the shipped tools, and its replies.

Every utterance comes from a template (a phrasing) with slots (room, state, brightness,
temperature, duration, label, door, city). Templates are split once, by a fixed seed, into
phrasings used for training and phrasings kept for the held-out benchmark, so the benchmark
measures phrasings the model never heard. The words of held-out phrasings all occur in training
phrasings too: what is new is how they are put together.

Numbers are spoken as words ("twenty one degrees"); the transcript is the spoken text with a
capital letter and a final full stop or question mark. The replies after a tool result are
fixed sentences built from the call and the result, so a benchmark can check them exactly.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

SPLIT_SEED = 15
"""Seeds the one split of templates into training and held-out phrasings."""

HELD_OUT_FRACTION = 0.25

CAPABILITIES = (
    "I can switch lights, set thermostats, set or cancel timers, tell the time and unlock doors."
)
"""What the model says to anything that is not a command for its tools."""

# --- slot values ---------------------------------------------------------------------------

LIGHT_ROOMS: dict[str, tuple[str, ...]] = {
    "kitchen": ("kitchen",),
    "living_room": ("living room", "lounge"),
    "bedroom": ("bedroom",),
    "bathroom": ("bathroom",),
    "office": ("office", "study"),
    "hallway": ("hallway", "hall"),
}
THERMOSTAT_ROOMS = ("living_room", "bedroom", "office")
DOORS: dict[str, tuple[str, ...]] = {
    "front": ("front door",),
    "back": ("back door",),
    "garage": ("garage door", "garage"),
}
PERCENTS = (10, 20, 25, 30, 40, 50, 60, 70, 75, 80, 90, 100)
TIMER_LABELS = (
    "pasta", "eggs", "tea", "coffee", "pizza", "rice", "bread", "cake", "cookies", "soup",
    "laundry", "oven", "potatoes", "chicken", "popcorn", "bath", "nap", "break", "workout",
    "meeting", "homework", "parking",
)  # fmt: skip
REMINDER_TASKS = (
    "call mum", "call dad", "check the oven", "take my medicine", "move the car",
    "water the plants", "feed the cat", "walk the dog", "start dinner", "take out the trash",
)  # fmt: skip
CITIES: dict[str, str] = {
    "London": "Europe/London",
    "Paris": "Europe/Paris",
    "Berlin": "Europe/Berlin",
    "Tokyo": "Asia/Tokyo",
    "New York": "America/New_York",
    "Sydney": "Australia/Sydney",
    "Los Angeles": "America/Los_Angeles",
    "Dubai": "Asia/Dubai",
    "Moscow": "Europe/Moscow",
    "Chicago": "America/Chicago",
}

_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_words(n: int) -> str:
    """0..100 in words: 21 -> "twenty one"."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n == 100:
        return "one hundred"
    raise ValueError(f"no words for {n}")


def brightness_of(percent: int) -> int:
    """The 0..255 brightness for a spoken percentage (half up: 30 % -> 77)."""
    return int(percent * 255 / 100 + 0.5)


@dataclass(frozen=True)
class Call:
    """A tool call the model should make; arguments in the schema's property order."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """``{"name": ..., "arguments": {...}}``."""
        return {"name": self.name, "arguments": dict(self.arguments)}

    def key(self) -> str:
        """A canonical string: equal calls give equal keys (21 and 21.0 are equal)."""
        args = {
            k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
            for k, v in self.arguments.items()
        }
        return json.dumps({"name": self.name, "arguments": args}, sort_keys=True)


@dataclass(frozen=True)
class Utterance:
    """One thing a user says: its text and what the model should do with it."""

    text: str
    """The transcript ("Turn on the kitchen light."); also what the synthesizer reads."""
    kind: str
    """``command`` (calls a tool), ``other`` (the model says what it can do), ``yes``, ``no``."""
    template: str
    """The phrasing's id, ``intent/number``."""
    calls: tuple[Call, ...] = ()


# --- templates -----------------------------------------------------------------------------
# "^" marks an imperative phrasing that polite openings ("could you ...") may precede.

LIGHT_ON = [
    "^turn on the {room} light", "^turn the {room} light on", "^switch on the {room} light",
    "^switch the {room} lights on", "lights on in the {room}", "{room} lights on",
    "^put the {room} light on", "^turn on the lights in the {room}", "^light up the {room}",
    "^switch on the lamp in the {room}", "I need the {room} light on",
    "^turn the lights on in the {room}", "^switch the light in the {room} on",
    "I want the {room} lights on", "{room} light on", "it's dark in the {room}, turn the light on",
]  # fmt: skip
LIGHT_OFF = [
    "^turn off the {room} light",
    "^turn the {room} light off",
    "^switch off the {room} light",
    "^switch the {room} lights off",
    "lights off in the {room}",
    "{room} lights off",
    "^kill the lights in the {room}",
    "^shut off the {room} light",
    "^turn off the lights in the {room}",
    "^switch off the lamp in the {room}",
    "I want the {room} light off",
    "{room} light off",
    "^turn the lights off in the {room}",
    "^put the {room} light out",
    "^switch the light in the {room} off",
    "nobody is in the {room}, turn the light off",
]
LIGHT_LEVEL = [
    "^set the {room} light to {pct}",
    "^dim the {room} light to {pct}",
    "^turn the {room} lights to {pct}",
    "{room} light at {pct}",
    "^set the lights in the {room} to {pct}",
    "^turn on the {room} light at {pct}",
    "^put the {room} lights at {pct}",
    "^dim the lights in the {room} to {pct}",
    "I want the {room} light at {pct}",
    "^switch on the {room} light at {pct}",
    "^make the {room} light {pct}",
    "^set the {room} lamp to {pct}",
]
THERMOSTAT = [
    "^set the {troom} thermostat to {temp}",
    "^set the temperature in the {troom} to {temp}",
    "^heat the {troom} to {temp}",
    "^make the {troom} {temp}",
    "^change the {troom} temperature to {temp}",
    "I want the {troom} at {temp}",
    "^turn the heating in the {troom} to {temp}",
    "{troom} thermostat to {temp}",
    "^put the {troom} thermostat on {temp}",
    "^set the {troom} to {temp}",
    "^warm the {troom} up to {temp}",
    "^cool the {troom} down to {temp}",
    "the {troom} should be {temp}",
    "^set the heating in the {troom} to {temp}",
]
TIMER = [
    "^set a timer for {dur}", "^start a timer for {dur}", "timer for {dur}", "^set a {dur} timer",
    "^start a {dur} timer", "^remind me in {dur}", "^wake me up in {dur}", "^alert me in {dur}",
    "^give me a timer for {dur}", "^count down {dur}", "^put a timer on for {dur}",
    "I need a timer for {dur}",
]  # fmt: skip
TIMER_LABEL = [
    "^set a {label} timer for {dur}", "^set a timer for {dur} for the {label}",
    "^start a {dur} {label} timer", "{label} timer for {dur}", "^time the {label} for {dur}",
    "^remind me about the {label} in {dur}", "^set a timer called {label} for {dur}",
    "^put a timer on the {label} for {dur}", "^start a {label} timer for {dur}",
    "^set a {dur} timer for the {label}", "the {label} needs {dur}, set a timer",
    "^start the {label} timer for {dur}",
]  # fmt: skip
REMINDER = [
    "^remind me to {task} in {dur}", "in {dur} remind me to {task}",
    "^set a reminder to {task} in {dur}", "^remind me in {dur} to {task}",
    "I have to {task} in {dur}", "^set a timer to {task} in {dur}",
]  # fmt: skip
CANCEL = [
    "^cancel the timer",
    "^stop the timer",
    "^cancel my timer",
    "^turn off the timer",
    "^kill the timer",
    "never mind the timer",
    "^delete the timer",
    "I don't need the timer anymore",
    "^stop my timer",
    "^forget the timer",
]
CANCEL_LABEL = [
    "^cancel the {label} timer",
    "^stop the {label} timer",
    "I don't need the {label} timer anymore",
    "^cancel the timer for the {label}",
    "^delete the {label} timer",
    "never mind the {label} timer",
    "^forget the {label} timer",
    "^turn off the {label} timer",
    "^stop the timer for the {label}",
    "^kill the {label} timer",
]
CANCEL_REMINDER = [
    "^cancel the reminder to {task}", "don't remind me to {task}", "^delete the reminder to {task}",
    "I don't need the reminder to {task} anymore", "^stop the reminder to {task}",
]  # fmt: skip
TIME = [
    "what time is it", "what's the time", "^tell me the time", "what time is it right now",
    "do you know what time it is", "can you tell me the time", "what's the current time",
    "what time is it now", "how late is it", "I need to know the time", "time please",
    "what's the time now",
]  # fmt: skip
TIME_CITY = [
    "what's the time in {city}", "what time is it in {city}", "^tell me the time in {city}",
    "what time is it now in {city}", "how late is it in {city}", "do you know the time in {city}",
    "what's the current time in {city}", "can you tell me the time in {city}",
]  # fmt: skip
UNLOCK = [
    "^unlock the {door}",
    "^open the {door}",
    "^unlock the {door} for me",
    "^let me in through the {door}",
    "I want to get in through the {door}, unlock it",
    "^open up the {door}",
    "{door} unlock",
    "^unlock the {door} please",
    "I'm at the {door}, let me in",
    "^get the {door} open",
]

OTHER = [
    "what's the weather like {when}",
    "will it rain {when}",
    "is it going to snow {when}",
    "how hot will it be {when}",
    "^play some {genre}",
    "^play {genre} music",
    "^turn up the music",
    "^skip this song",
    "^pause the music",
    "what song is this",
    "^tell me a joke",
    "^tell me a story",
    "^sing me a song",
    "how are you",
    "what's your name",
    "who made you",
    "good morning",
    "hello there",
    "^call {person}",
    "^send a message to {person}",
    "^text {person} that I'm late",
    "^add {item} to the shopping list",
    "what's on my calendar {when}",
    "^book a table for two",
    "^order a pizza",
    "how do you make pancakes",
    "^turn on the tv",
    "^turn off the radio",
    "^open the window in the {room}",
    "^close the blinds in the {room}",
    "^lock the {door}",
    "^close the garage door",
    "^start the vacuum",
    "^turn on the fan in the {room}",
    "is the {room} light on",
    "how warm is it in the {troom}",
    "what's the temperature outside",
    "what is {n} plus {m}",
    "how far away is the moon",
    "who wrote hamlet",
    "what's the capital of france",
    "^set an alarm for {n} o'clock",
    "^make me a coffee",
    "^read me the news",
    "who won the game {when}",
    "^find my phone",
    "^water the plants",
    "^feed the cat",
    "is the front door locked",
    "^turn the oven on",
    "I'm bored",
    "what can you do",
    "^clean the {room}",
    "^order more {item}",
    "how tall is mount everest",
    "^book a taxi to the station",
    "^translate hello into spanish",
    "^open the fridge",
]
OTHER_SLOTS: dict[str, tuple[str, ...]] = {
    "when": ("today", "tomorrow", "this weekend", "tonight", "on monday", "last night"),
    "genre": ("jazz", "rock", "classical", "pop", "country"),
    "person": ("mum", "dad", "my sister", "john", "the office", "my boss"),
    "item": ("milk", "eggs", "bread", "coffee", "apples", "rice"),
}

YES = [
    "yes", "yes please", "yeah", "yep", "sure", "okay", "yes do it", "go ahead", "do it",
    "confirm", "correct", "yes go ahead", "sure go ahead", "yup", "affirmative", "please do",
    "yeah do it", "okay go ahead", "yes confirm", "yes that's correct", "sure do it", "yeah sure",
]  # fmt: skip
NO = [
    "no", "nope", "no thanks", "no thank you", "cancel", "don't", "no don't", "stop",
    "not now", "wait", "no cancel that", "don't do it", "no leave it locked", "no stop",
    "cancel that", "no wait", "don't unlock it", "no not now", "nope cancel",
]  # fmt: skip

INTENTS: dict[str, list[str]] = {
    "light_on": LIGHT_ON,
    "light_off": LIGHT_OFF,
    "light_level": LIGHT_LEVEL,
    "thermostat": THERMOSTAT,
    "timer": TIMER,
    "timer_label": TIMER_LABEL,
    "reminder": REMINDER,
    "cancel": CANCEL,
    "cancel_label": CANCEL_LABEL,
    "cancel_reminder": CANCEL_REMINDER,
    "time": TIME,
    "time_city": TIME_CITY,
    "unlock": UNLOCK,
    "other": OTHER,
    "yes": YES,
    "no": NO,
}

POLITE_OPENINGS = ("please ", "could you ", "can you ", "would you ", "hey, ", "okay, ")
CLOSINGS = (" please", " thanks", " thank you", " now", " right now", " for me")
_QUESTION_WORDS = frozenset(
    [
        "what",
        "what's",
        "can",
        "could",
        "would",
        "do",
        "does",
        "how",
        "who",
        "will",
        "is",
        "are",
        "when",
        "where",
        "why",
    ]
)


def split_by_seed(
    table: dict[str, list[str]], seed: int, fraction: float
) -> dict[str, tuple[list[int], list[int]]]:
    """Per intent: (numbers of the templates kept, numbers of the ``fraction`` set aside, at
    least two), drawn from ``seed`` alone."""
    rng = random.Random(seed)
    split = {}
    for intent, templates in table.items():
        order = list(range(len(templates)))
        rng.shuffle(order)
        held = max(2, round(len(templates) * fraction))
        split[intent] = (sorted(order[held:]), sorted(order[:held]))
    return split


TEMPLATE_SPLIT = split_by_seed(INTENTS, SPLIT_SEED, HELD_OUT_FRACTION)
"""Per intent: (training template numbers, held-out template numbers)."""


def templates(intent: str, part: str) -> list[tuple[str, str]]:
    """``(template id, template)`` of one intent in a phrasing set: ``train`` or ``heldout``
    (the one split of ``INTENTS``); ``more`` (``train`` and the training part of
    ``more_phrasings``); ``devnew`` (the part of ``more_phrasings`` kept from training, and
    ``train`` for an intent it has none for)."""
    from training.more_phrasings import more_templates

    if part == "more":
        return templates(intent, "train") + more_templates(intent, "train")
    if part == "devnew":
        return more_templates(intent, "devnew") or templates(intent, "train")
    if part not in ("train", "heldout"):
        raise ValueError(f"no phrasing set {part!r}")
    train, held = TEMPLATE_SPLIT[intent]
    numbers = train if part == "train" else held
    return [(f"{intent}/{n:02d}", INTENTS[intent][n]) for n in numbers]


# --- slot fillers ------------------------------------------------------------------------


def _temperature(rng: random.Random) -> tuple[str, float | int]:
    if rng.random() < 0.25:
        whole = rng.randint(15, 25)
        words = number_words(whole)
        spoken = rng.choice([f"{words} and a half degrees", f"{words} point five degrees"])
        return spoken, whole + 0.5
    value = rng.randint(5, 30)
    words = number_words(value)
    spoken = rng.choice([f"{words} degrees", f"{words} degrees", words, f"{words} degrees celsius"])
    return spoken, value


_DURATIONS: list[tuple[str, int]] = (
    [(f"{number_words(n)} seconds", n) for n in (5, 10, 15, 20, 30, 40, 45, 50, 90)]
    + [("one minute", 60), ("a minute", 60)]
    + [(f"{number_words(n)} minutes", 60 * n)
       for n in (2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 20, 25, 30, 35, 40, 45, 50, 55, 90)]
    + [("one hour", 3600), ("an hour", 3600)]
    + [(f"{number_words(n)} hours", 3600 * n) for n in (2, 3, 4, 5, 6, 8, 10, 12)]
    + [("half an hour", 1800), ("an hour and a half", 5400), ("a minute and a half", 90),
       ("a quarter of an hour", 900), ("two and a half minutes", 150),
       ("one and a half hours", 5400)]
)  # fmt: skip


def _percent(rng: random.Random) -> tuple[str, int]:
    roll = rng.random()
    if roll < 0.1:
        return "half brightness", 128
    if roll < 0.2:
        return "full brightness", 255
    p = rng.choice(PERCENTS)
    return f"{number_words(p)} percent", brightness_of(p)


def _fill(intent: str, template: str, rng: random.Random) -> tuple[str, tuple[Call, ...]]:
    """The template with its slots filled, and the calls it means."""
    slots: dict[str, str] = {}
    calls: tuple[Call, ...] = ()
    if intent.startswith("light"):
        room = rng.choice(list(LIGHT_ROOMS))
        slots["room"] = rng.choice(LIGHT_ROOMS[room])
        args: dict[str, Any] = {"room": room, "state": "off" if intent == "light_off" else "on"}
        if intent == "light_level":
            slots["pct"], args["brightness"] = _percent(rng)
        calls = (Call("set_light", args),)
    elif intent == "thermostat":
        room = rng.choice(THERMOSTAT_ROOMS)
        slots["troom"] = rng.choice(LIGHT_ROOMS[room])
        slots["temp"], value = _temperature(rng)
        calls = (Call("set_thermostat", {"room": room, "temperature_c": value}),)
    elif intent in ("timer", "timer_label", "reminder"):
        slots["dur"], seconds = rng.choice(_DURATIONS)
        args = {"duration_s": seconds}
        if intent == "timer_label":
            slots["label"] = args["label"] = rng.choice(TIMER_LABELS)
        elif intent == "reminder":
            slots["task"] = args["label"] = rng.choice(REMINDER_TASKS)
        calls = (Call("set_timer", args),)
    elif intent.startswith("cancel"):
        args = {}
        if intent == "cancel_label":
            slots["label"] = args["label"] = rng.choice(TIMER_LABELS)
        elif intent == "cancel_reminder":
            slots["task"] = args["label"] = rng.choice(REMINDER_TASKS)
        calls = (Call("cancel_timer", args),)
    elif intent == "time":
        calls = (Call("get_time", {}),)
    elif intent == "time_city":
        city = rng.choice(list(CITIES))
        slots["city"] = city
        calls = (Call("get_time", {"timezone": CITIES[city]}),)
    elif intent == "unlock":
        door = rng.choice(list(DOORS))
        slots["door"] = rng.choice(DOORS[door])
        calls = (Call("unlock_door", {"door": door}),)
    elif intent == "other":
        for name, values in OTHER_SLOTS.items():
            slots[name] = rng.choice(values)
        slots["room"] = rng.choice([v for vs in LIGHT_ROOMS.values() for v in vs])
        slots["troom"] = rng.choice([LIGHT_ROOMS[r][0] for r in THERMOSTAT_ROOMS])
        slots["door"] = rng.choice([v[0] for v in DOORS.values()])
        slots["n"] = number_words(rng.randint(2, 12))
        slots["m"] = number_words(rng.randint(2, 12))
    return template.format(**slots), calls


def _dress(core: str, rng: random.Random, polite: float = 0.35, closing: float = 0.2) -> str:
    """Optional polite opening and closing, then capital letter and final punctuation."""
    imperative = core.startswith("^")
    text = core.lstrip("^")
    if imperative and rng.random() < polite:
        opening = rng.choice(POLITE_OPENINGS)
        text = opening + text
    if rng.random() < closing and not text.endswith(("please", "for me")):
        text += rng.choice(CLOSINGS)
    first = re.split(r"[ ,]", text, maxsplit=1)[0]
    mark = "?" if first in _QUESTION_WORDS else "."
    return text[0].upper() + text[1:] + mark


def sample(intent: str, part: str, rng: random.Random) -> Utterance:
    """One random utterance of ``intent`` from the ``part`` phrasings."""
    template_id, template = rng.choice(templates(intent, part))
    core, calls = _fill(intent, template, rng)
    kind = intent if intent in ("yes", "no") else ("other" if intent == "other" else "command")
    text = core[0].upper() + core[1:] + "." if kind in ("yes", "no") else _dress(core, rng)
    return Utterance(text=text, kind=kind, template=template_id, calls=calls)


COMMAND_INTENTS = [i for i in INTENTS if i not in ("other", "yes", "no")]

INTENT_WEIGHTS: dict[str, float] = {
    "light_on": 1.2, "light_off": 1.2, "light_level": 1.2, "thermostat": 1.6, "timer": 1.0,
    "timer_label": 1.4, "reminder": 0.8, "cancel": 0.5, "cancel_label": 0.8,
    "cancel_reminder": 0.4, "time": 0.6, "time_city": 0.8, "unlock": 1.0, "other": 1.6,
    "yes": 0.7, "no": 0.7,
}  # fmt: skip
"""How often each intent is drawn (intents with more slot values get more)."""


def utterances(part: str, count: int, seed: int) -> Iterator[Utterance]:
    """``count`` random utterances of ``part`` phrasings, intents drawn by ``INTENT_WEIGHTS``."""
    rng = random.Random(seed)
    names = list(INTENT_WEIGHTS)
    weights = [INTENT_WEIGHTS[n] for n in names]
    for _ in range(count):
        yield sample(rng.choices(names, weights)[0], part, rng)


# --- replies ------------------------------------------------------------------------------


def spoken_room(room: str) -> str:
    """``living_room`` -> ``living room``."""
    return room.replace("_", " ")


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def reply_after(call: Call, result: str) -> str:
    """What the model says once ``call`` returned ``result`` (the JSON the model reads)."""
    try:
        content = json.loads(result)
    except json.JSONDecodeError:
        content = {}
    if not isinstance(content, dict):
        content = {}
    args = call.arguments
    error = content.get("error")
    if error is not None:
        if error == "cancelled" and call.name == "unlock_door":
            return f"Okay, the {args.get('door', 'front')} door stays locked."
        if call.name == "cancel_timer" and str(error).startswith("LookupError"):
            label = args.get("label", "timer")
            what = "timer" if label == "timer" else f"{label} timer"
            return f"There is no {what} running."
        return "Sorry, that did not work."
    if call.name == "set_light":
        room = spoken_room(str(args.get("room", "")))
        if args.get("state") == "on" and "brightness" in args:
            return f"The {room} light is on at brightness {_number(args['brightness'])}."
        return f"The {room} light is {args.get('state', 'on')}."
    if call.name == "set_thermostat":
        room = spoken_room(str(args.get("room", "")))
        return f"The {room} thermostat is set to {_number(args.get('temperature_c'))} degrees."
    if call.name == "set_timer":
        label = args.get("label", "timer")
        what = "timer" if label == "timer" else f"{label} timer"
        fires = str(content.get("fires_at", ""))[:5]
        return f"The {what} is set for {fires}."
    if call.name == "cancel_timer":
        label = args.get("label", "timer")
        what = "timer" if label == "timer" else f"{label} timer"
        return f"The {what} is cancelled."
    if call.name == "get_time":
        return f"It is {content.get('time', '')}."
    if call.name == "unlock_door":
        return f"The {args.get('door', 'front')} door is unlocked."
    return "Done."


def all_texts() -> Iterator[str]:
    """Every fixed sentence and slot word the model says or hears (for the tokenizer)."""
    yield CAPABILITIES
    for intent in INTENTS:
        for template in INTENTS[intent]:
            yield template.lstrip("^")
    for values in (*LIGHT_ROOMS.values(), *DOORS.values(), *OTHER_SLOTS.values()):
        yield from values
    yield from TIMER_LABELS
    yield from REMINDER_TASKS
    yield from CITIES
    yield from CITIES.values()
    yield from (d for d, _ in _DURATIONS)
