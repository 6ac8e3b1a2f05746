"""More ways to say each command: phrasings that only training and the ``devnew`` split use.

The held-out benchmark speaks a quarter of ``grammar.INTENTS``' templates that training never
used; a model trained on the other three quarters learns those word orders and little more
(on the dev split, whose phrasings are training ones, it makes far more exact calls than on the
held-out split). These templates widen what training hears without touching the held-out
phrasings: none of them is one of ``grammar.INTENTS``' templates (a test checks), and a fixed
seed keeps a quarter of them apart for the ``devnew`` split, so a recipe that uses them can be
judged on phrasings it never heard without looking at the held-out split.

Slots are those of ``grammar._fill``: ``{room}``, ``{pct}``, ``{troom}``, ``{temp}``,
``{dur}``, ``{label}``, ``{task}``, ``{city}``, ``{door}``.
"""

from __future__ import annotations

from training.grammar import split_by_seed

MORE_SPLIT_SEED = 16
"""Seeds the split of these templates into training and ``devnew`` phrasings."""

MORE: dict[str, list[str]] = {
    "light_on": [
        "^turn the light in the {room} on", "^get the {room} light on",
        "^bring the {room} lights on", "^flip on the {room} light", "^flick the {room} light on",
        "can I have the {room} light on", "I'd like the {room} light on",
        "^give me some light in the {room}", "^make the {room} bright",
        "the {room} is too dark, turn on the light", "^turn on the {room} lamp",
        "^put on the lights in the {room}", "{room} lamp on",
    ],
    "light_off": [
        "^turn the light in the {room} off", "^get the {room} light off",
        "^flip off the {room} light", "^flick the {room} light off",
        "I'd like the {room} light off", "can I have the {room} light off",
        "^turn off the {room} lamp", "^put out the lights in the {room}",
        "the {room} is empty, switch the light off", "{room} lamp off",
        "^switch off the lights in the {room}", "^make the {room} dark",
    ],
    "light_level": [
        "^bring the {room} light to {pct}", "^change the {room} light to {pct}",
        "I'd like the {room} light at {pct}", "^adjust the {room} light to {pct}",
        "^put the light in the {room} at {pct}", "^turn the {room} lamp up to {pct}",
        "^turn the {room} light down to {pct}", "^brighten the {room} light to {pct}",
        "{room} lights to {pct}",
    ],
    "thermostat": [
        "^make it {temp} in the {troom}", "I'd like the {troom} at {temp}",
        "^bring the {troom} up to {temp}", "^bring the {troom} down to {temp}",
        "^adjust the {troom} heating to {temp}", "^put the {troom} heating on {temp}",
        "{troom} temperature {temp}", "it's cold in the {troom}, set it to {temp}",
    ],
    "timer": [
        "^ring in {dur}", "^let me know when {dur} is up", "^alert me after {dur}",
        "I want a countdown of {dur}", "^run a {dur} countdown", "^time {dur} for me",
        "^give me a {dur} timer", "{dur} timer", "^start a timer of {dur}",
        "^begin a countdown of {dur}", "^set an alarm for {dur} from now",
    ],
    "timer_label": [
        "^ring in {dur} for the {label}", "^let me know in {dur} about the {label}",
        "^start counting {dur} for the {label}", "the {label} takes {dur}",
        "^run a {label} countdown of {dur}", "I want a {label} countdown of {dur}",
        "^put a {label} timer on for {dur}", "I need a {label} timer for {dur}",
        "^give me a {label} timer of {dur}", "^set {dur} for the {label}",
        "^count down {dur} for the {label}",
    ],
    "reminder": [
        "^nudge me in {dur} to {task}", "^ping me to {task} in {dur}",
        "don't let me forget to {task} in {dur}", "^make sure I {task} in {dur}",
        "I need to {task} in {dur}, remind me", "^give me a reminder to {task} in {dur}",
        "^set a reminder in {dur} to {task}", "^tell me to {task} in {dur}",
    ],
    "cancel": [
        "^scrap the timer", "^clear the timer", "^shut the timer off", "^turn the timer off",
        "^abort the timer", "^get rid of the timer", "timer off", "^end the timer",
    ],
    "cancel_label": [
        "^scrap the {label} timer", "^clear the {label} timer", "^shut the {label} timer off",
        "^get rid of the {label} timer", "{label} timer off", "^end the {label} timer",
        "^drop the {label} timer",
    ],
    "cancel_reminder": [
        "^scrap the reminder to {task}", "^clear the reminder to {task}",
        "^never mind the reminder to {task}", "^drop the reminder to {task}",
        "^forget about the reminder to {task}", "no need to remind me to {task}",
    ],
    "time": [
        "what does the clock say", "^check the time", "is it late yet", "what hour is it",
        "^read me the time", "^tell me what time it is", "have you got the time",
        "what time do we have", "^give me the time",
    ],
    "time_city": [
        "^check the time in {city}", "what does the clock say in {city}",
        "what hour is it in {city}", "^read me the time in {city}", "is it night in {city}",
        "^tell me what time it is in {city}", "time in {city}", "what time do they have in {city}",
        "^give me the time in {city}",
    ],
    "unlock": [
        "^unbolt the {door}", "^undo the lock on the {door}", "the {door} needs unlocking",
        "^take the lock off the {door}", "^pop the {door} open", "^let me in the {door}",
        "^release the {door} lock", "I need the {door} unlocked", "can you open the {door}",
    ],
}  # fmt: skip


MORE_SPLIT = split_by_seed(MORE, MORE_SPLIT_SEED, 0.25)
"""Per intent: (numbers of the training templates, numbers of the ``devnew`` ones)."""


def more_templates(intent: str, part: str) -> list[tuple[str, str]]:
    """``part`` ``train``: the three quarters training may use; ``devnew``: the rest.
    Empty for an intent with none (``other``, ``yes``, ``no``)."""
    if intent not in MORE:
        return []
    train, held = MORE_SPLIT[intent]
    numbers = train if part == "train" else held
    return [(f"{intent}/more{n:02d}", MORE[intent][n]) for n in numbers]
