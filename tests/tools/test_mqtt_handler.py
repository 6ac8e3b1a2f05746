"""The mqtt handler and the shipped home tools against a real mosquitto broker."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from assistant.events import ToolCall
from assistant.tools import ToolRegistry, load_tools
from assistant.tools.handlers.mqtt import MqttPublisher
from tests.support.mqtt import MosquittoBroker

from .conftest import WriteTools

pytestmark = pytest.mark.system  # talks to a real mosquitto broker

SHIPPED_TOOLS = Path(__file__).parents[2] / "tools.yaml"


def broker_env(broker: MosquittoBroker, **extra: str) -> dict[str, str]:
    return {"MQTT_HOST": broker.host, "MQTT_PORT": str(broker.port), **extra}


@pytest.fixture
async def home_tools(mqtt_broker: MosquittoBroker) -> AsyncIterator[ToolRegistry]:
    """The shipped tools.yaml, pointed at the test broker."""
    registry = load_tools(SHIPPED_TOOLS, environ=broker_env(mqtt_broker))
    yield registry
    await registry.aclose()


async def test_set_light_publishes_home_assistant_command(
    home_tools: ToolRegistry, mqtt_broker: MosquittoBroker
) -> None:
    """set_light(room="kitchen", state="on") sends {"state": "ON"} to the kitchen's set topic."""
    with mqtt_broker.recorder("homeassistant/#") as seen:
        result = await home_tools.execute(
            ToolCall("lightcall", "set_light", {"room": "kitchen", "state": "on"})
        )
        [message] = seen.wait_for(1)
    assert result.ok, result.content
    assert message.topic == "homeassistant/light/kitchen/set"
    assert json.loads(message.payload) == {"state": "ON"}
    assert message.qos == 1


async def test_set_light_brightness_is_a_number(
    home_tools: ToolRegistry, mqtt_broker: MosquittoBroker
) -> None:
    """An optional integer argument lands in the JSON payload as a number."""
    with mqtt_broker.recorder("homeassistant/#") as seen:
        await home_tools.execute(
            ToolCall("lightcall", "set_light", {"room": "office", "state": "on", "brightness": 90})
        )
        [message] = seen.wait_for(1)
    assert json.loads(message.payload) == {"state": "ON", "brightness": 90}


async def test_thermostat_sends_plain_temperature(
    home_tools: ToolRegistry, mqtt_broker: MosquittoBroker
) -> None:
    """set_thermostat publishes the number as text on the climate temperature topic."""
    with mqtt_broker.recorder("homeassistant/#") as seen:
        await home_tools.execute(
            ToolCall("heatcall1", "set_thermostat", {"room": "bedroom", "temperature_c": 19.5})
        )
        [message] = seen.wait_for(1)
    assert (message.topic, message.payload) == (
        "homeassistant/climate/bedroom/temperature/set",
        b"19.5",
    )


async def test_unlock_door_needs_confirmation(home_tools: ToolRegistry) -> None:
    """The door tool is marked for a spoken confirmation."""
    spec = home_tools.get("unlock_door")
    assert spec is not None and spec.confirm


async def test_several_lights_at_once(
    home_tools: ToolRegistry, mqtt_broker: MosquittoBroker
) -> None:
    """Concurrent calls share one connection and all arrive."""
    rooms = ["kitchen", "hallway", "bedroom"]
    calls = [
        ToolCall(f"light{i:04d}", "set_light", {"room": r, "state": "off"})
        for i, r in enumerate(rooms)
    ]
    with mqtt_broker.recorder("homeassistant/#") as seen:
        results = await home_tools.execute_many(calls)
        messages = seen.wait_for(3)
    assert all(r.ok for r in results)
    assert sorted(m.topic for m in messages) == sorted(
        f"homeassistant/light/{r}/set" for r in rooms
    )


async def test_topic_prefix_is_configurable(mqtt_broker: MosquittoBroker) -> None:
    """HA_MQTT_PREFIX moves the shipped tools to another topic tree."""
    registry = load_tools(SHIPPED_TOOLS, environ=broker_env(mqtt_broker, HA_MQTT_PREFIX="house"))
    with mqtt_broker.recorder("house/#") as seen:
        await registry.execute(
            ToolCall("lightcall", "set_light", {"room": "hallway", "state": "off"})
        )
        [message] = seen.wait_for(1)
    await registry.aclose()
    assert message.topic == "house/light/hallway/set"


def _free_text_tools(write_tools: WriteTools, broker_block: str = "") -> Path:
    return write_tools(
        f"""
        version: 1
        plugins: none
        mqtt:
          host: ${{MQTT_HOST}}
          port: ${{MQTT_PORT}}
          {broker_block}
        tools:
          - name: say
            description: Put a text on a display.
            parameters:
              type: object
              properties: {{screen: {{type: string}}, text: {{type: string}}}}
            handler:
              mqtt:
                topic: "displays/{{screen}}/text"
                payload: {{text: "{{text}}", source: voice}}
                retain: true
        """
    )


async def test_topic_injection_stays_in_one_level(
    write_tools: WriteTools, mqtt_broker: MosquittoBroker
) -> None:
    """'/', '+' and '#' cannot reach another topic; quotes stay inside the JSON string."""
    registry = load_tools(_free_text_tools(write_tools), environ=broker_env(mqtt_broker))
    text = '", "admin": true, "x": "'
    with mqtt_broker.recorder("#") as seen:
        await registry.execute(
            ToolCall("saycall01", "say", {"screen": "hall/../+/#", "text": text})
        )
        [message] = seen.wait_for(1)
    await registry.aclose()
    assert message.topic == "displays/hall%2F..%2F%2B%2F%23/text"
    assert json.loads(message.payload) == {"text": text, "source": "voice"}


async def test_a_nul_in_an_argument_stays_inside_its_level(
    write_tools: WriteTools, mqtt_broker: MosquittoBroker
) -> None:
    """A NUL character, forbidden in topics, is escaped like '/', '+' and '#'."""
    registry = load_tools(_free_text_tools(write_tools), environ=broker_env(mqtt_broker))
    with mqtt_broker.recorder("#") as seen:
        result = await registry.execute(
            ToolCall("saycall01", "say", {"screen": "hall\x00x", "text": "hi"})
        )
        [message] = seen.wait_for(1)
    await registry.aclose()
    assert result.ok, result.content
    assert message.topic == "displays/hall%00x/text"


@pytest.mark.parametrize(
    ("screen", "error"),
    [
        ("", "an empty value cannot fill an MQTT topic level"),
        ("a" * 70_000, "is longer than the 65535 bytes MQTT allows"),
    ],
    ids=["empty", "too-long"],
)
async def test_an_argument_that_breaks_the_topic_is_an_error_result(
    write_tools: WriteTools, mqtt_broker: MosquittoBroker, screen: str, error: str
) -> None:
    """Nothing is published for it, the error is readable, and the next call goes through."""
    registry = load_tools(_free_text_tools(write_tools), environ=broker_env(mqtt_broker))
    with mqtt_broker.recorder("#") as seen:
        broken = await registry.execute(
            ToolCall("saycall01", "say", {"screen": screen, "text": "hi"})
        )
        fine = await registry.execute(
            ToolCall("saycall02", "say", {"screen": "hall", "text": "hi"})
        )
        seen.wait_for(1)
        await asyncio.sleep(0.2)
        topics = [m.topic for m in seen.messages]
    await registry.aclose()
    assert not broken.ok
    assert error in json.loads(broken.content)["error"]
    assert len(broken.content) < 600
    assert fine.ok, fine.content
    assert topics == ["displays/hall/text"]


async def test_retained_message_reaches_a_late_subscriber(
    write_tools: WriteTools, mqtt_broker: MosquittoBroker
) -> None:
    """retain: true leaves the message on the broker for whoever subscribes later."""
    registry = load_tools(_free_text_tools(write_tools), environ=broker_env(mqtt_broker))
    result = await registry.execute(ToolCall("saycall01", "say", {"screen": "hall", "text": "hi"}))
    await registry.aclose()
    assert result.ok
    with mqtt_broker.recorder("displays/#") as seen:
        [message] = seen.wait_for(1)
    assert message.retain and message.topic == "displays/hall/text"


async def test_password_from_environment(write_tools: WriteTools) -> None:
    """username + password_env log in to a broker that refuses anonymous clients."""
    with MosquittoBroker(users={"assistant": "pa55word-xyz"}) as broker:
        path = _free_text_tools(
            write_tools, "username: assistant\n          password_env: MQTT_PASSWORD"
        )
        registry = load_tools(path, environ=broker_env(broker, MQTT_PASSWORD="pa55word-xyz"))
        with broker.recorder("#", username="assistant", password="pa55word-xyz") as seen:
            result = await registry.execute(
                ToolCall("saycall01", "say", {"screen": "hall", "text": "hi"})
            )
            seen.wait_for(1)
        await registry.aclose()
    assert result.ok, result.content


async def test_wrong_password_is_a_readable_error(write_tools: WriteTools) -> None:
    """A refused login becomes an error result without the password in it."""
    with MosquittoBroker(users={"assistant": "right-password"}) as broker:
        path = _free_text_tools(
            write_tools, "username: assistant\n          password_env: MQTT_PASSWORD"
        )
        registry = load_tools(path, environ=broker_env(broker, MQTT_PASSWORD="wrong-password"))
        result = await registry.execute(ToolCall("saycall01", "say", {"screen": "a", "text": "b"}))
        await registry.aclose()
    assert not result.ok
    assert "refused the connection" in result.content
    assert "wrong-password" not in result.content


async def test_broker_down_is_a_readable_error_then_recovers(write_tools: WriteTools) -> None:
    """With no broker the call fails readably; once one listens, the next call succeeds."""
    broker = MosquittoBroker()
    broker.start()
    environ = broker_env(broker)
    broker.stop()
    registry = load_tools(_free_text_tools(write_tools), environ=environ)
    down = await registry.execute(ToolCall("saycall01", "say", {"screen": "a", "text": "b"}))
    assert not down.ok
    assert f"cannot reach the MQTT broker at 127.0.0.1:{environ['MQTT_PORT']}" in down.content
    with MosquittoBroker(port=int(environ["MQTT_PORT"])):
        up = await registry.execute(ToolCall("saycall02", "say", {"screen": "a", "text": "b"}))
    await registry.aclose()
    assert up.ok, up.content


def test_acknowledgements_racing_new_publishes_never_deadlock(
    mqtt_broker: MosquittoBroker,
) -> None:
    """Waves of concurrent QoS 1 publishes all complete while acks arrive for earlier ones."""
    outcome: list[BaseException | None] = []

    async def flood() -> None:
        publisher = MqttPublisher(mqtt_broker.host, mqtt_broker.port)
        try:
            for _ in range(20):
                await asyncio.gather(
                    *(publisher.publish(f"flood/{i}", b"x", 1, False) for i in range(50))
                )
        finally:
            await publisher.aclose()

    def run() -> None:
        try:
            asyncio.run(flood())
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    # Its own thread and loop: a deadlock must fail this test, not hang the test run.
    worker = threading.Thread(target=run, name="mqtt-flood", daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "publishing deadlocked"
    assert outcome == [None]


async def test_a_call_while_the_broker_is_lost_is_never_sent_later(
    write_tools: WriteTools,
) -> None:
    """A call that failed because the broker went away is not delivered when it comes back."""
    broker = MosquittoBroker().start()
    port = broker.port
    registry = load_tools(SHIPPED_TOOLS, environ=broker_env(broker))
    first = await registry.execute(
        ToolCall("lightcall", "set_light", {"room": "office", "state": "on"})
    )
    broker.stop()
    await asyncio.sleep(0.5)  # the client notices the closed connection
    lost = await registry.execute(
        ToolCall("lostcall1", "set_light", {"room": "kitchen", "state": "on"})
    )
    with MosquittoBroker(port=port) as back, back.recorder("homeassistant/#") as seen:
        for attempt in range(100):
            later = await registry.execute(
                ToolCall(
                    f"latecall{attempt % 10}", "set_light", {"room": "hallway", "state": "off"}
                )
            )
            if later.ok:
                break
            await asyncio.sleep(0.1)
        seen.wait_for(1)
        await asyncio.sleep(0.3)
        topics = [m.topic for m in seen.messages]
    await registry.aclose()
    assert first.ok and later.ok, later.content
    assert not lost.ok
    assert "MQTT broker" in lost.content
    assert topics == ["homeassistant/light/hallway/set"]
