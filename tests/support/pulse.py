"""A private PulseAudio daemon with a virtual speaker and a virtual microphone, for tests.

``VirtualAudio`` starts ``pulseaudio`` in a temporary runtime folder with a null sink (the
virtual speaker) and a remap of that sink's monitor as the default source (the virtual
microphone): whatever is played into the speaker is heard by the microphone. While it runs,
``PULSE_SERVER`` in this process's environment points at it, so child processes and PortAudio's
``pulse`` device (after ``assistant.audio.capture.rescan_devices()``) use it. Debian packages:
``pulseaudio`` and ``pulseaudio-utils``.

The daemon stops with ``stop()`` (or the ``with`` block), and also when the process that started
it dies (Linux parent-death signal), so it never outlives a test run.
"""

from __future__ import annotations

import ctypes
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.processes import Service

_PR_SET_PDEATHSIG = 1
_PROGRAMS = ("pulseaudio", "pactl", "paplay", "parec", "pacat")


class PulseAudioError(RuntimeError):
    """PulseAudio is missing, failed to start, or a pa* command failed."""


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Recording:
    """A running ``parec`` writing the virtual speaker's sound to a WAV file."""

    def __init__(self, process: subprocess.Popen[bytes], path: Path) -> None:
        self._process = process
        self.path = path

    def stop(self) -> Path:
        """End the recording (the WAV header is finalised) and return the file's path."""
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        return self.path


class VirtualAudio(Service):
    """A private PulseAudio server: ``sink_name`` is the speaker, ``source_name`` the microphone.

    ``room_sink_name``: the microphone hears a second null sink of that name instead of the
    speaker, so that a test decides what reaches it (``tests.support.echo_rig``).
    """

    def __init__(
        self,
        *,
        sink_name: str = "virt_spk",
        source_name: str = "virt_mic",
        room_sink_name: str | None = None,
    ) -> None:
        self.sink_name = sink_name
        self.source_name = source_name
        self.room_sink_name = room_sink_name
        self._dir: Path | None = None
        self._daemon: subprocess.Popen[bytes] | None = None
        self._saved_server: str | None = None
        self._exported = False
        self._silence: list[subprocess.Popen[bytes]] = []

    @property
    def server(self) -> str:
        """The server address clients use (``PULSE_SERVER``)."""
        if self._dir is None:
            raise PulseAudioError("the virtual audio server is not running")
        return f"unix:{self._dir / 'native'}"

    @property
    def env(self) -> dict[str, str]:
        """An environment for child processes that talk to this server."""
        return {**os.environ, "PULSE_SERVER": self.server}

    def start(self) -> VirtualAudio:
        """Start the daemon, create the devices, make them the defaults."""
        missing = [p for p in _PROGRAMS if shutil.which(p) is None]
        if missing:
            raise PulseAudioError(
                f"{', '.join(missing)} not found: apt-get install pulseaudio pulseaudio-utils"
            )
        self._dir = Path(tempfile.mkdtemp(prefix="virtual-audio-"))
        log = (self._dir / "pulseaudio.log").open("wb")
        daemon_env = {**os.environ, "XDG_RUNTIME_DIR": str(self._dir), "HOME": str(self._dir)}
        daemon_env.pop("PULSE_SERVER", None)
        command = [
            "pulseaudio",
            "--daemonize=no",
            "-n",
            "--exit-idle-time=-1",
            "--use-pid-file=no",
            "--log-target=stderr",
            f"--load=module-native-protocol-unix auth-anonymous=1 socket={self._dir / 'native'}",
            f"--load=module-null-sink sink_name={self.sink_name}",
        ]
        heard = self.sink_name
        if self.room_sink_name is not None:
            command.append(f"--load=module-null-sink sink_name={self.room_sink_name}")
            heard = self.room_sink_name
        command.append(
            f"--load=module-remap-source source_name={self.source_name} master={heard}.monitor"
        )
        with log:
            self._daemon = subprocess.Popen(
                command,
                env=daemon_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                # The signal fires when the starting thread ends: start from the main thread.
                preexec_fn=_die_with_parent,
            )
        try:
            self._wait_until_ready(self._daemon, self._dir / "pulseaudio.log")
            self.pactl("set-default-sink", self.sink_name)
            self.pactl("set-default-source", self.source_name)
            self._keep_running()
            self._wait_for_sound(timeout_s=15.0)
        except BaseException:
            self.stop()
            raise
        self._saved_server = os.environ.get("PULSE_SERVER")
        os.environ["PULSE_SERVER"] = self.server
        self._exported = True
        return self

    def _wait_until_ready(
        self, daemon: subprocess.Popen[bytes], log: Path, timeout_s: float = 15.0
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if daemon.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise PulseAudioError(f"pulseaudio exited at start-up:\n{tail}")
            probe = subprocess.run(
                ["pactl", "info"], env=self.env, capture_output=True, check=False, timeout=10
            )
            if probe.returncode == 0:
                return
            time.sleep(0.05)
        raise PulseAudioError(f"pulseaudio did not answer within {timeout_s} s")

    def _keep_running(self) -> None:
        # An idle null sink renders nothing, so its monitor (and the microphone) would deliver
        # no audio at all between sounds; a real microphone always delivers. Play silence.
        sinks = [self.sink_name, *([self.room_sink_name] if self.room_sink_name else [])]
        for sink in sinks:
            self._silence.append(self._play_silence(sink))

    def _play_silence(self, sink: str) -> subprocess.Popen[bytes]:
        with open("/dev/zero", "rb") as zeros:
            return subprocess.Popen(
                [
                    "pacat",
                    "--playback",
                    "-d",
                    sink,
                    "--raw",
                    "--format=s16le",
                    "--rate=16000",
                    "--latency-msec=50",
                    "--channels=1",
                    "--client-name=virtual-audio-silence",
                ],
                env=self.env,
                stdin=zeros,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )

    def _wait_for_sound(self, timeout_s: float) -> None:
        # The first seconds after start-up the microphone delivers nothing; return once it does.
        probe = subprocess.Popen(
            ["parec", "-d", self.source_name, "--raw", "--latency-msec=20"],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert probe.stdout is not None  # stdout=PIPE
            ready, _, _ = select.select([probe.stdout], [], [], timeout_s)
            if not ready or not os.read(probe.stdout.fileno(), 1):
                raise PulseAudioError(f"the virtual microphone stayed silent for {timeout_s} s")
        finally:
            probe.kill()
            probe.wait()

    def pactl(self, *args: str) -> str:
        """Run ``pactl`` against this server and return its output."""
        done = subprocess.run(
            ["pactl", *args], env=self.env, capture_output=True, text=True, check=False, timeout=30
        )
        if done.returncode != 0:
            raise PulseAudioError(f"pactl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def play(self, wav: str | Path, sink: str | None = None) -> None:
        """Play a sound file into the virtual speaker (or ``sink``); return when played."""
        done = subprocess.run(
            ["paplay", "-d", sink or self.sink_name, str(wav)],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if done.returncode != 0:
            raise PulseAudioError(f"paplay {wav} failed: {done.stderr.strip()}")

    def record(self, wav: str | Path, sample_rate_hz: int = 16_000) -> Recording:
        """Start recording the virtual speaker (its monitor) into a mono PCM16 WAV file."""
        path = Path(wav)
        process = subprocess.Popen(
            [
                "parec",
                "-d",
                f"{self.sink_name}.monitor",
                "--file-format=wav",
                "--format=s16le",
                f"--rate={sample_rate_hz}",
                "--channels=1",
                str(path),
            ],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        return Recording(process, path)

    def stop(self) -> None:
        """Stop the daemon, restore ``PULSE_SERVER``, remove the runtime folder."""
        for silence in self._silence:
            silence.kill()
            silence.wait()
        self._silence = []
        if self._daemon is not None:
            if self._daemon.poll() is None:
                self._daemon.terminate()
                try:
                    self._daemon.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._daemon.kill()
                    self._daemon.wait()
            self._daemon = None
        if self._exported:
            self._exported = False
            if self._saved_server is None:
                os.environ.pop("PULSE_SERVER", None)
            else:
                os.environ["PULSE_SERVER"] = self._saved_server
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
