"""``--model demo``: the shipped checkpoint understands speech, with no forced tokens.

Every test here runs the real demo weights on speech synthesized by espeak-ng: what the model
hears decides what happens; the voice is espeak-ng's plain ``en-us`` at its default rate. The
phrasings are ones the shipped weights handle (it gets others wrong: in the end-to-end benchmark's
clips "Set a timer for five minutes." often comes out as 3,000 s); how often it is right on
speech it never heard is measured by ``benchmarks/demo_accuracy.py``, not here.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from assistant.config import ListenSettings
from assistant.model.checkpoint import (
    DEMO_MODEL,
    ModelNotFoundError,
    demo_checkpoint,
    missing_files,
    resolve_checkpoint,
)
from assistant.testing.speech import synthesize, write_wav
from tests.agent.cli import ListenProcess, run_listen
from tests.agent.conftest import virtual_audio  # noqa: F401  (the fixture)
from tests.support.mqtt import MosquittoBroker
from tests.support.pulse import VirtualAudio

pytestmark = pytest.mark.timeout(300)

REPO = Path(__file__).parents[2]
ECHO_TAIL_S = ListenSettings().echo_tail_ms / 1000


def demo_tools(folder: Path) -> Path:
    """The shipped tools.yaml without installed plugins (the demo knows only the shipped
    tools); the broker comes from MQTT_HOST / MQTT_PORT as the file says."""
    from training.conversations import without_plugins

    return without_plugins(REPO / "tools.yaml", folder)


def broker_env(broker: MosquittoBroker) -> dict[str, str]:
    return {"MQTT_HOST": broker.host, "MQTT_PORT": str(broker.port)}


def _said(stdout: str) -> list[dict[str, Any]]:
    """The events of ``listen --json`` output that tell what it did (no deltas, no statuses)."""
    events = [json.loads(line) for line in stdout.splitlines()]
    return [e for e in events if e["type"] not in ("text_delta", "agent_status")]


def said(folder: Path, text: str) -> Path:
    return Path(write_wav(str(folder / (re.sub(r"\W+", "_", text).strip("_") + ".wav")),
                          synthesize(text)))  # fmt: skip


def test_the_demo_is_package_data_small_complete_and_in_both_formats() -> None:
    """Found with no network and no cache: a folder inside the installed package, every file
    transformers and mistral-common read, Mistral's files for vLLM, under 20 MB in all."""
    import assistant.model

    folder = resolve_checkpoint(DEMO_MODEL)
    assert folder == Path(assistant.model.__file__).parent / "demo"
    assert missing_files(folder) == []
    for name in ("params.json", "consolidated.safetensors", "tekken.json"):
        assert (folder / name).is_file(), name
    assert sum(p.stat().st_size for p in folder.iterdir()) < 20_000_000


def test_a_package_without_the_demo_says_so_and_how_to_get_it(tmp_path: Path) -> None:
    """A damaged install names what is missing instead of failing inside transformers."""
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(
        ModelNotFoundError, match=r"not installed.*tekken\.json.*python -m training"
    ):
        demo_checkpoint(tmp_path)


def test_the_demo_loads_as_a_voxtral_with_a_tekken_v7_tokenizer() -> None:
    """The same from_pretrained path as Voxtral-Mini: the real architecture, small."""
    from transformers import VoxtralForConditionalGeneration

    from assistant.model.loading import load_model

    loaded = load_model(DEMO_MODEL, device="cpu")
    assert isinstance(loaded.model, VoxtralForConditionalGeneration)
    assert loaded.tokenizer.instruct_tokenizer.tokenizer.version.value == "v7"
    assert loaded.report.parameter_bytes < 20_000_000


@pytest.fixture(scope="module")
def demo_worker() -> Iterator[Any]:
    from assistant.model.worker import ModelWorker

    worker = ModelWorker.load(DEMO_MODEL, device="cpu", dtype="float32")
    yield worker
    worker.close()


@pytest.mark.parametrize(
    ("text", "calls"),
    [
        ("Turn the kitchen light on.", [("set_light", {"room": "kitchen", "state": "on"})]),
        ("Turn off the living room light.",
         [("set_light", {"room": "living_room", "state": "off"})]),
        ("Set a timer for five minutes.", [("set_timer", {"duration_s": 300})]),
        ("Cancel the timer.", [("cancel_timer", {})]),
        ("What time is it?", [("get_time", {})]),
        ("Unlock the front door.", [("unlock_door", {"door": "front"})]),
    ],
)  # fmt: skip
async def test_spoken_commands_become_the_right_tool_calls(
    demo_worker: Any, text: str, calls: list[tuple[str, dict[str, Any]]]
) -> None:
    """Name and every argument, from the audio alone."""
    from mistral_common.protocol.instruct.messages import UserMessage

    from assistant.audio.io import audio_chunk
    from assistant.model_worker import GREEDY
    from training.conversations import declared_tools

    tools = declared_tools(REPO / "tools.yaml").mistral_tools()
    message = UserMessage(content=[audio_chunk(synthesize(text))])
    done = await demo_worker.respond([message], tools=tools, params=GREEDY).done()
    got = [(c.name, dict(c.arguments)) for c in done.tool_calls]
    assert got == calls, done.text


async def test_transcription_writes_what_was_said(demo_worker: Any) -> None:
    """``[TRANSCRIBE]``: the words of the command."""
    text = "Turn off the living room light."
    transcript = await demo_worker.transcribe(synthesize(text))
    assert re.findall(r"[a-z']+", transcript.text.lower()) == re.findall(r"[a-z']+", text.lower())


async def test_something_else_gets_what_it_can_do(demo_worker: Any) -> None:
    """A request outside the shipped tools: no call, a short sentence on what it can do."""
    from mistral_common.protocol.instruct.messages import UserMessage

    from assistant.audio.io import audio_chunk
    from assistant.model_worker import GREEDY
    from training.conversations import declared_tools
    from training.grammar import CAPABILITIES

    tools = declared_tools(REPO / "tools.yaml").mistral_tools()
    message = UserMessage(content=[audio_chunk(synthesize("Play some jazz music."))])
    done = await demo_worker.respond([message], tools=tools, params=GREEDY).done()
    assert not done.tool_calls
    assert done.text.strip() == CAPABILITIES


@pytest.mark.system
def test_listen_on_a_recording_turns_the_kitchen_light_on_over_mqtt(
    mqtt_broker: MosquittoBroker, tmp_path: Path
) -> None:
    """``listen --model demo --input cmd.wav``: a real mosquitto receives the publish on the
    light's topic with its payload, and the reply confirms it."""
    command = said(tmp_path, "Turn the kitchen light on.")
    with mqtt_broker.recorder("homeassistant/#") as recorder:
        done = run_listen(
            "--model", "demo", "--input", command, "--fast", "--json", "--no-speak",
            "--tools", demo_tools(tmp_path), env=broker_env(mqtt_broker), timeout_s=240,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        try:
            (message,) = recorder.wait_for(1)
        except TimeoutError as exc:
            raise AssertionError(f"no publish; the agent said {_said(done.stdout)}") from exc
    assert message.topic == "homeassistant/light/kitchen/set"
    assert json.loads(message.payload) == {"state": "ON"}
    events = [json.loads(line) for line in done.stdout.splitlines()]
    (turn,) = [e for e in events if e["type"] == "turn_done"]
    assert turn["text"] == "The kitchen light is on."


@pytest.mark.system
@pytest.mark.audio_device
def test_spoken_into_the_microphone_the_door_opens_only_after_the_spoken_yes(
    virtual_audio: VirtualAudio,  # noqa: F811
    mqtt_broker: MosquittoBroker,
    tmp_path: Path,
) -> None:
    """On virtual sound devices: "unlock the front door" is heard, the assistant asks, nothing
    is published; "yes" unlocks it; the spoken confirmation is heard on the speaker."""
    unlock = said(tmp_path, "Unlock the front door.")
    yes = said(tmp_path, "Yes.")
    with mqtt_broker.recorder("homeassistant/#") as recorder:
        listen = ListenProcess(
            "--model", "demo", "--tools", demo_tools(tmp_path), "--echo-cancellation", "off",
            env={"PULSE_SERVER": virtual_audio.server, **broker_env(mqtt_broker)},
        )  # fmt: skip
        try:
            listen.wait_for(lambda e: e.get("state") == "listening", timeout_s=120)
            virtual_audio.play(unlock)
            asked = listen.wait_for(lambda e: e["type"] == "confirmation_requested", timeout_s=120)
            # The asking turn ends with its own turn_done (the question): the answer's comes later.
            question = listen.wait_for(
                lambda e: e["type"] == "turn_done" and e["at_s"] >= asked["at_s"], timeout_s=120
            )
            assert question["text"].endswith("Say yes or no.")
            # The question is spoken (the microphone is muted meanwhile: half duplex).
            spoken = listen.wait_for(
                lambda e: e["type"] == "spoken_sentence" and e["text"] == "Say yes or no."
            )
            listen.wait_for(lambda e: e.get("state") == "listening" and e["at_s"] >= spoken["at_s"])
            time.sleep(ECHO_TAIL_S + 0.5)  # the microphone stays shut this long after speaking
            assert recorder.messages == []
            recording = virtual_audio.record(tmp_path / "speaker.wav")
            virtual_audio.play(yes)
            try:
                (message,) = recorder.wait_for(1, timeout_s=120)
            except TimeoutError as exc:
                raise AssertionError(f"no unlock; the agent said {listen.events}") from exc
            turn = listen.wait_for(
                lambda e: e["type"] == "turn_done" and e["at_s"] > question["at_s"], timeout_s=120
            )
            listen.wait_for(lambda e: e["type"] == "spoken_sentence" and e["at_s"] >= turn["at_s"])
            recorded = recording.stop()
            assert listen.interrupt() == 0
        finally:
            listen.kill()
    assert (message.topic, message.payload) == ("homeassistant/lock/front/set", b"UNLOCK")
    assert turn["text"] == "The front door is unlocked."
    from tests.agent.sound import read_pcm, sounding_s

    assert sounding_s(*read_pcm(recorded)) > 1.0  # "yes" (~0.4 s) and the spoken reply


@pytest.fixture
async def demo_server(mqtt_broker: MosquittoBroker, tmp_path: Path) -> Any:
    from assistant.config import ServerSettings
    from assistant.model.worker import ModelWorker
    from assistant.server.assistant_server import AssistantServer
    from assistant.tools import load_tools
    from tests.support.realtime_sdk import TOKEN

    tools = load_tools(demo_tools(tmp_path), environ=broker_env(mqtt_broker))
    worker = await asyncio.to_thread(ModelWorker.load, DEMO_MODEL, device="cpu")
    server = AssistantServer(
        worker, settings=ServerSettings(port=0, token=TOKEN, shutdown_grace_s=2.0), tools=tools
    )
    await server.start()
    try:
        yield server
    finally:
        await server.shutdown()
        await tools.aclose()
        worker.close()


@pytest.mark.system
async def test_post_respond_with_a_wav_runs_the_tool(
    demo_server: Any, mqtt_broker: MosquittoBroker, tmp_path: Path
) -> None:
    """``POST /v1/respond`` with a spoken command: the light's message is published and the
    answer confirms it."""
    from tests.server.wire import http
    from tests.support.realtime_sdk import TOKEN

    body = said(tmp_path, "Switch off the hallway light.").read_bytes()
    with mqtt_broker.recorder("homeassistant/#") as recorder:
        reply = await http(
            "POST", f"http://127.0.0.1:{demo_server.port}/v1/respond", content=body,
            headers={"Content-Type": "audio/wav", "Authorization": f"Bearer {TOKEN}"},
        )  # fmt: skip
        (message,) = await asyncio.to_thread(recorder.wait_for, 1)
    assert reply.status_code == 200, reply.content
    assert message.topic == "homeassistant/light/hallway/set"
    assert json.loads(message.payload) == {"state": "OFF"}
    answer = json.loads(reply.content)
    assert [c["name"] for c in answer["tool_calls"]] == ["set_light"]
    assert answer["text"] == "The hallway light is off."


@pytest.mark.system
async def test_the_openai_sdk_realtime_client_gets_the_function_call(
    demo_server: Any, mqtt_broker: MosquittoBroker
) -> None:
    """The official SDK streams 24 kHz speech; server VAD ends the turn, the server's
    set_light runs (published) and the client sees the call and the confirmation."""
    import base64

    import soxr

    from tests.support.realtime_sdk import events_until, sdk_client

    speech = np.asarray(
        soxr.resample(synthesize("Turn the office light on."), 16000, 24000), dtype=np.int16
    )
    audio = np.concatenate([speech, np.zeros(24000 * 2, dtype=np.int16)])
    with mqtt_broker.recorder("homeassistant/#") as recorder:
        async with sdk_client(demo_server).realtime.connect(model="voxtral") as conn:
            for start in range(0, len(audio), 2400):
                chunk = audio[start : start + 2400].astype("<i2").tobytes()
                await conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
            events = await events_until(conn, "response.done", timeout_s=120)
        (message,) = await asyncio.to_thread(recorder.wait_for, 1)
    call = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert (call.name, json.loads(call.arguments)) == (
        "set_light",
        {"room": "office", "state": "on"},
    )
    assert message.topic == "homeassistant/light/office/set"
    text = next(e for e in events if e.type == "response.output_text.done").text
    assert text == "The office light is on."


def test_a_run_can_start_from_the_shipped_weights() -> None:
    """``init``: a freshly built model of the shipped spec takes the shipped weights exactly;
    a model of another spec is refused with a clear error."""
    import torch
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer
    from transformers import VoxtralForConditionalGeneration

    from assistant.model.checkpoint import demo_checkpoint
    from training.model import DemoSpec, build_model, load_weights

    shipped = Path(demo_checkpoint())
    vocab = MistralTokenizer.from_file(str(shipped / "tekken.json")).instruct_tokenizer.tokenizer
    model = build_model(vocab.n_words, DemoSpec(), seed=1)
    load_weights(model, shipped)
    expected = VoxtralForConditionalGeneration.from_pretrained(shipped).state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())
    other = build_model(vocab.n_words, DemoSpec(text_layers=3), seed=1)
    with pytest.raises(ValueError, match="does not fit"):
        load_weights(other, shipped)


def test_a_run_from_a_checkpoint_with_no_stage_1_keeps_its_encoder(tmp_path: Path) -> None:
    """``init`` with ``hear.steps=0``: stage 1 is skipped (no data is read), the run's model is
    the checkpoint's and its tokenizer the checkpoint's."""
    import argparse

    import torch
    from transformers import VoxtralForConditionalGeneration

    from assistant.model.checkpoint import demo_checkpoint
    from training.__main__ import step_hear

    shipped = Path(demo_checkpoint())
    args = argparse.Namespace(
        run=tmp_path, data=tmp_path / "no-data", init=str(shipped), spec={},
        hear={"steps": 0}, seed=0, train_parts=["train"],
    )  # fmt: skip
    model = step_hear(args)
    expected = VoxtralForConditionalGeneration.from_pretrained(shipped).state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in model.state_dict().items())
    assert (tmp_path / "tekken.json").read_bytes() == (shipped / "tekken.json").read_bytes()
    assert not list(tmp_path.glob("hear*"))
