"""A conversation that never ends, for the kill -9 test: ``python -m tests.dialogue.session_child
MODEL_DIR LOG_PATH``. Prints ``turn N`` after each completed turn."""

from __future__ import annotations

import asyncio
import itertools
import sys
from pathlib import Path

from assistant.conversation.dialogue import Dialogue, DialogueSettings
from assistant.model.worker import ModelWorker
from assistant.testing.forced import ScriptedReplies
from assistant.testing.speech import synthesize
from tests.dialogue.house import House


async def converse(model_dir: Path, log_path: Path) -> None:
    holder: list[ScriptedReplies] = []
    worker = ModelWorker.load(
        model_dir, device="cpu", logits_processor_factory=lambda n: holder[0].logits_processors(n)
    )
    script = ScriptedReplies(worker.tokenizer, default_reply="OK.", default_transcript="hello")
    holder.append(script)
    house = House()
    settings = DialogueSettings(session_log_path=log_path, log_audio=True)
    dialogue = Dialogue(worker, house.tools, settings, conversation_id="conv_killed")
    clip = synthesize("turn on the light")
    for n in itertools.count(1):
        script.say(None, [{"name": "set_light", "arguments": {"room": f"room{n}", "state": "on"}}])
        script.say(f"Light {n} is on.")
        script.hear(f"turn on light {n}")
        dialogue.add_user_turn(audio=clip)
        async for _ in dialogue.respond():
            pass
        await dialogue.drain()  # the line is written once the turn's transcript is in
        print(f"turn {n}", flush=True)


if __name__ == "__main__":
    asyncio.run(converse(Path(sys.argv[1]), Path(sys.argv[2])))
