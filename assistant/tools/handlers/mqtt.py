"""``mqtt:`` — publish one message per call to the broker declared at the top of the file.

One ``MqttPublisher`` (one paho-mqtt client, its network thread, automatic reconnects) serves
every mqtt tool of a registry. It connects on first use, so a broker that is down does not stop
the assistant from starting; calls fail with a readable error until it is back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from assistant.tools.context import ToolContext
from assistant.tools.results import shorten
from assistant.tools.schema import BrokerConfig, MqttHandlerConfig
from assistant.tools.source import Environment, Location, SourceMap
from assistant.tools.templating import (
    Placeholder,
    Template,
    TemplateError,
    escape_topic_level,
    parse_structure,
    render_structure,
    structure_placeholders,
)

log = logging.getLogger("assistant.tools")

CONNECT_TIMEOUT_S = 5.0

MAX_TOPIC_BYTES = 65_535
"""MQTT's limit on a topic name (its length travels in two bytes)."""


def topic_problem(topic: str) -> str | None:
    """Why no message can be published to ``topic``, or ``None`` when one can."""
    if not topic:
        return "is empty; a message needs a topic"
    if "+" in topic or "#" in topic:
        return (
            "contains an MQTT wildcard ('+' or '#'); only subscriptions may use them, "
            "a message goes to one exact topic"
        )
    if "\x00" in topic:
        return "contains a NUL character, which MQTT forbids in topics"
    if len(topic.encode("utf-8")) > MAX_TOPIC_BYTES:
        return f"is longer than the {MAX_TOPIC_BYTES} bytes MQTT allows"
    return None


class MqttPublisher:
    """A connection to one broker, shared by every mqtt tool of a registry."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        ca_file: str | None = None,
        client_id: str | None = None,
        keepalive_s: int = 60,
    ) -> None:
        self.host = host
        self.port = port
        self._username = username
        self._password = password
        self._tls = tls
        self._ca_file = ca_file
        self._client_id = client_id or f"voxtral-assistant-{uuid.uuid4().hex[:8]}"
        self._keepalive_s = keepalive_s
        self._client: mqtt.Client | None = None
        self._connect_lock = asyncio.Lock()
        self._connected: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # mid -> the future of the publish() awaiting it. Only the event loop touches this:
        # paho calls on_publish while holding its own message lock, so taking a lock of ours
        # there while publish() holds it and waits for paho's would deadlock.
        self._pending: dict[int, asyncio.Future[None]] = {}

    @classmethod
    def from_config(
        cls, config: BrokerConfig, env: Environment, source: SourceMap
    ) -> MqttPublisher:
        """Resolve ``${VAR}`` in host, port and username, and the password variable."""
        loc: Location = ("mqtt",)
        host = env.expand(config.host, source, (*loc, "host"), secret=False)
        port_text = env.expand(str(config.port), source, (*loc, "port"), secret=False)
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise source.error((*loc, "port"), f"mqtt.port must be a TCP port, not {port_text!r}")
        password = None
        if config.password_env:
            password = env.lookup(config.password_env, None, source, (*loc, "password_env"))
            env.secrets.add(password)
        username = (
            env.expand(config.username, source, (*loc, "username"), secret=False)
            if config.username
            else None
        )
        return cls(
            host,
            int(port_text),
            username=username,
            password=password,
            tls=config.tls,
            ca_file=config.ca_file,
            client_id=config.client_id,
            keepalive_s=config.keepalive_s,
        )

    async def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        """Publish and wait for the broker's acknowledgement (QoS 1/2) or the socket write (0)."""
        client = await self._ensure_connected()
        if not client.is_connected():
            # paho would queue a QoS 1/2 message and send it after reconnecting: the user would
            # be told the call failed and the light would switch minutes later anyway.
            raise ConnectionError(
                f"lost the connection to the MQTT broker at {self.host}:{self.port}; "
                "reconnecting, nothing was sent"
            )
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConnectionError(
                f"cannot publish to the MQTT broker at {self.host}:{self.port}: "
                f"{mqtt.error_string(info.rc)}"
            )
        # Registered before the next await: the acknowledgement reaches the loop only after.
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[info.mid] = done
        try:
            await done
        finally:
            self._pending.pop(info.mid, None)

    async def _ensure_connected(self) -> mqtt.Client:
        async with self._connect_lock:
            if self._client is not None:
                return self._client
            loop = asyncio.get_running_loop()
            self._loop = loop
            self._connected = loop.create_future()
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=self._client_id, protocol=mqtt.MQTTv311
            )
            client.connect_timeout = CONNECT_TIMEOUT_S
            if self._username is not None:
                client.username_pw_set(self._username, self._password)
            if self._tls:
                client.tls_set(ca_certs=self._ca_file)
            client.on_connect = self._on_connect
            client.on_publish = self._on_publish
            client.on_disconnect = self._on_disconnect
            try:
                await asyncio.to_thread(client.connect, self.host, self.port, self._keepalive_s)
            except (OSError, ValueError) as exc:
                raise ConnectionError(
                    f"cannot reach the MQTT broker at {self.host}:{self.port}: "
                    f"{type(exc).__name__}: {exc}"
                ) from None
            client.loop_start()
            try:
                await asyncio.wait_for(self._connected, CONNECT_TIMEOUT_S)
            except BaseException as exc:
                client.disconnect()
                await asyncio.to_thread(client.loop_stop)
                if isinstance(exc, asyncio.TimeoutError):
                    raise ConnectionError(
                        f"the MQTT broker at {self.host}:{self.port} did not answer the connect"
                    ) from None
                raise
            self._client = client
            log.info("connected to the MQTT broker at %s:%d", self.host, self.port)
            return client

    # paho callbacks run on its network thread: hop to the event loop.

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        future, loop = self._connected, self._loop
        if future is None or loop is None:
            return
        if reason.is_failure:
            error = ConnectionRefusedError(
                f"the MQTT broker at {self.host}:{self.port} refused the connection: {reason}"
            )
            loop.call_soon_threadsafe(_settle, future, error)
        else:
            loop.call_soon_threadsafe(_settle, future, None)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._acknowledged, mid)
        except RuntimeError:
            return  # the loop is closed: nobody waits any more

    def _acknowledged(self, mid: int) -> None:
        future = self._pending.get(mid)
        if future is not None:
            _settle(future, None)

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            log.warning(
                "lost the MQTT broker at %s:%d (%s); reconnecting", self.host, self.port, reason
            )

    async def aclose(self) -> None:
        """Disconnect and stop the network thread (idempotent)."""
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class MqttHandler:
    """Publishes the configured topic and payload with the call's arguments filled in."""

    def __init__(
        self, publisher: MqttPublisher, topic: Template, payload: Any, qos: int, retain: bool
    ) -> None:
        self.publisher = publisher
        self.topic = topic
        """Each argument fills one topic level, escaped (see ``escape_topic_level``)."""
        self.payload = payload
        self.qos = qos
        self.retain = retain

    @classmethod
    def from_config(
        cls,
        config: MqttHandlerConfig,
        publisher: MqttPublisher,
        env: Environment,
        source: SourceMap,
        loc: Location,
    ) -> MqttHandler:
        """Parse the topic and payload templates."""
        topic = Template.parse(config.topic, env, source, (*loc, "topic"), secret=False)
        payload = parse_structure(config.payload, env, source, (*loc, "payload"))
        return cls(publisher, topic, payload, config.qos, config.retain)

    def placeholders(self) -> list[tuple[Placeholder, Location]]:
        """Every argument the templates use, with where it sits."""
        found: list[tuple[Placeholder, Location]] = [
            (p, ("topic",)) for p in self.topic.placeholders
        ]
        found += [(p, ("payload",)) for p in structure_placeholders(self.payload)]
        return found

    def topic_problem(self) -> str | None:
        """Why the topic template can never be published to (checked at load), or ``None``.

        Arguments are escaped and never empty, so only the literal text can make a topic empty
        or a wildcard: the template is checked with every argument standing in as ``x``.
        """
        return topic_problem(self.topic.render({p.name: "x" for p in self.topic.placeholders}))

    def render(self, arguments: dict[str, Any]) -> tuple[str, bytes]:
        """The topic and payload bytes for ``arguments``; ``TemplateError`` if unpublishable."""
        topic = self.topic.render(arguments, escape_topic_level)
        problem = topic_problem(topic)
        if problem is not None:
            raise TemplateError(f"the MQTT topic {shorten(topic, 200)!r} {problem}")
        if isinstance(self.payload, Template):
            payload = self.payload.render(arguments)
        elif isinstance(self.payload, (dict, list)):
            payload = json.dumps(render_structure(self.payload, arguments), ensure_ascii=False)
        else:
            payload = json.dumps(self.payload)
        return topic, payload.encode("utf-8")

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> Any:
        """Publish; the result tells the model what was sent where."""
        topic, payload = self.render(arguments)
        await self.publisher.publish(topic, payload, self.qos, self.retain)
        return {"published": True, "topic": topic, "payload": payload.decode("utf-8")}

    async def aclose(self) -> None:
        """Close the shared connection (safe to call from every handler)."""
        await self.publisher.aclose()
