"""A real MQTT broker for tests: mosquitto on a free 127.0.0.1 port, and a recording subscriber.

``MosquittoBroker`` writes a config (loopback listener, no persistence, optional users with
passwords), starts Debian's ``mosquitto`` and stops it on exit. ``MqttRecorder`` subscribes
with paho-mqtt and collects what arrives, so a test can assert on what a real client saw.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.processes import Service, free_port

START_TIMEOUT_S = 10.0
_PORT_ATTEMPTS = 5


class BrokerError(RuntimeError):
    """mosquitto is missing or did not start; the message includes its log."""


class MosquittoBroker(Service):
    """mosquitto listening on ``127.0.0.1:port``; use as a context manager."""

    host = "127.0.0.1"

    def __init__(self, users: dict[str, str] | None = None, port: int | None = None) -> None:
        """``users`` (name to password) turns off anonymous access; ``port`` fixes the port."""
        self.users = dict(users or {})
        self.port = port or 0
        self._fixed_port = port is not None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> MosquittoBroker:
        """Start the broker and wait until it accepts connections."""
        binary = shutil.which("mosquitto") or shutil.which("/usr/sbin/mosquitto")
        if binary is None:
            raise BrokerError("mosquitto is not installed: apt-get install mosquitto")
        self._dir = tempfile.TemporaryDirectory(prefix="mosquitto-")
        folder = Path(self._dir.name)
        for _ in range(_PORT_ATTEMPTS):
            if not self._fixed_port:
                self.port = free_port()
            config = self._write_config(folder)
            log_path = folder / "mosquitto.log"
            with log_path.open("wb") as log:
                self._process = subprocess.Popen(
                    [binary, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
                )
            if self._wait_ready():
                return self
            self._terminate()
            in_use = "Address already in use" in log_path.read_text(errors="replace")
            if self._fixed_port or not in_use:
                break
        log_text = (folder / "mosquitto.log").read_text(errors="replace")
        self.stop()
        raise BrokerError(f"mosquitto did not start:\n{log_text}")

    def _write_config(self, folder: Path) -> Path:
        lines = [
            f"listener {self.port} {self.host}",
            "persistence false",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            f"user {getpass.getuser()}",
        ]
        if self.users:
            password_file = folder / "passwords"
            password_file.write_text("")
            for name, password in self.users.items():
                subprocess.run(
                    ["mosquitto_passwd", "-b", str(password_file), name, password],
                    check=True,
                    capture_output=True,
                )
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        config = folder / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n")
        return config

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.02)
        return False

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop(self) -> None:
        """Stop the broker and remove its files."""
        self._terminate()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def recorder(
        self, topic: str = "#", *, username: str | None = None, password: str | None = None
    ) -> MqttRecorder:
        """A subscriber to ``topic`` on this broker (use as a context manager)."""
        return MqttRecorder(self.host, self.port, topic, username=username, password=password)


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One message a ``MqttRecorder`` saw."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


class MqttRecorder:
    """Subscribes on entry (waiting for the broker's SUBACK) and records every message."""

    def __init__(
        self,
        host: str,
        port: int,
        topic: str = "#",
        *,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.topic = topic
        self.messages: list[ReceivedMessage] = []
        self._changed = threading.Condition()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.on_connect = lambda c, *_: c.subscribe(topic, qos=2)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        self._address = (host, port)

    def _on_message(self, client: object, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._changed:
            self.messages.append(
                ReceivedMessage(message.topic, bytes(message.payload), message.qos, message.retain)
            )
            self._changed.notify_all()

    def wait_for(self, count: int = 1, timeout_s: float = 5.0) -> list[ReceivedMessage]:
        """Block until ``count`` messages arrived; ``TimeoutError`` names what did arrive."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.messages) >= count, timeout_s):
                raise TimeoutError(
                    f"expected {count} message(s) on {self.topic!r} within {timeout_s} s, "
                    f"got {self.messages!r}"
                )
            return list(self.messages)

    def __enter__(self) -> MqttRecorder:
        self._client.connect(*self._address)
        self._client.loop_start()
        if not self._subscribed.wait(START_TIMEOUT_S):
            self.__exit__(None, None, None)
            raise BrokerError(f"could not subscribe to {self.topic!r} on {self._address}")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._client.disconnect()
        self._client.loop_stop()
