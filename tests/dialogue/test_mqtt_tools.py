"""Utterance to MQTT message and back, through a real mosquitto broker and tools.yaml."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path

from assistant.conversation.dialogue import Dialogue
from assistant.events import ConfirmationRequested, ToolResult
from assistant.tools import load_tools
from tests.dialogue.house import turn

TOOLS_YAML = """
version: 1
mqtt: {{host: 127.0.0.1, port: {port}}}
plugins: none
tools:
  - name: set_light
    description: Switch a light on or off.
    parameters:
      type: object
      properties:
        room: {{type: string}}
        state: {{type: string, enum: ["on", "off"]}}
      required: [room, state]
    handler:
      mqtt: {{topic: "home/light/{{room}}/set", payload: {{state: "{{state|upper}}"}}, qos: 1}}
  - name: unlock_door
    description: Unlock a door.
    parameters:
      type: object
      properties: {{door: {{type: string}}}}
      required: [door]
    confirm: true
    handler:
      mqtt: {{topic: "home/lock/{{door}}/set", payload: "UNLOCK", qos: 1}}
"""


def write_tools(folder: Path, port: int) -> Path:
    path = folder / "tools.yaml"
    path.write_text(textwrap.dedent(TOOLS_YAML.format(port=port)), encoding="utf-8")
    return path


async def test_spoken_command_publishes_and_the_model_answers(
    scripted, speech, mqtt_broker, tmp_path: Path
) -> None:
    """Speech, set_light over MQTT (seen by a real subscriber), result back, final text."""
    worker, script = scripted
    tools = load_tools(write_tools(tmp_path, mqtt_broker.port))
    script.say(None, [{"name": "set_light", "arguments": {"room": "kitchen", "state": "on"}}])
    script.say("The kitchen light is on.")
    try:
        with mqtt_broker.recorder("home/#") as recorder:
            dialogue = Dialogue(worker, tools)
            dialogue.add_user_turn(audio=speech("turn on the kitchen light"))
            events = await turn(dialogue)
            (message,) = await asyncio.to_thread(recorder.wait_for, 1)
    finally:
        await tools.aclose()
    assert message.topic == "home/light/kitchen/set"
    assert json.loads(message.payload) == {"state": "ON"}
    (result,) = [e for e in events if isinstance(e, ToolResult)]
    assert result.ok
    assert f"[TOOL_RESULTS]{result.call_id}[TOOL_CONTENT]" in script.prompts[1]
    assert events[-1].text == "The kitchen light is on."


async def test_confirmed_unlock_publishes_only_after_yes(
    scripted, speech, mqtt_broker, tmp_path: Path
) -> None:
    """The unlock message is published after the spoken yes, never before."""
    worker, script = scripted
    tools = load_tools(write_tools(tmp_path, mqtt_broker.port))
    script.say(None, [{"name": "unlock_door", "arguments": {"door": "front"}}])
    try:
        with mqtt_broker.recorder("home/#") as recorder:
            dialogue = Dialogue(worker, tools)
            dialogue.add_user_turn(audio=speech("unlock the front door"))
            first = await turn(dialogue)
            assert any(isinstance(e, ConfirmationRequested) for e in first)
            await asyncio.sleep(0.2)
            assert recorder.messages == []
            script.hear("Yes.")
            script.say("The front door is unlocked.")
            dialogue.add_user_turn(audio=speech("yes"))
            second = await turn(dialogue)
            (message,) = await asyncio.to_thread(recorder.wait_for, 1)
    finally:
        await tools.aclose()
    assert (message.topic, message.payload) == ("home/lock/front/set", b"UNLOCK")
    assert second[-1].text == "The front door is unlocked."
