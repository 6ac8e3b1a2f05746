"""Running ``voxtral-assistant listen`` as a separate process, as a user would."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

LISTEN = [sys.executable, "-m", "assistant", "listen"]


def listen_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a ``listen`` process: offline, one torch thread."""
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONFAULTHANDLER": "1",  # SIGABRT on a stuck process prints every thread's stack
        **(extra or {}),
    }


def run_listen(
    *args: str | Path, env: Mapping[str, str] | None = None, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``listen`` with ``args`` to the end; stdout and stderr are captured."""
    return subprocess.run(
        [*LISTEN, *map(str, args)],
        env=listen_env(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


class ListenProcess:
    """``listen --json`` running in the background; its events are collected as they come."""

    def __init__(self, *args: str | Path, env: Mapping[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [*LISTEN, "--json", *map(str, args)],
            env=listen_env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: list[dict[str, Any]] = []
        self.stderr = ""
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read_events, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_events(self) -> None:
        assert self.process.stdout is not None  # stdout=PIPE
        for line in self.process.stdout:
            with self._changed:
                self.events.append(json.loads(line))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None  # stderr=PIPE
        for line in self.process.stderr:  # line by line: a failure message shows it so far
            self.stderr += line

    def summary(self) -> str:
        """The events so far, one word each with its time; runs of deltas counted, not listed."""
        words: list[str] = []
        run = 0
        for event in self.events:
            if event["type"] == "text_delta":
                run += 1
                continue
            if run:
                words.append(f"text_delta x{run}")
                run = 0
            word = event["type"]
            if "state" in event:
                word += f"={event['state']}"
            if event.get("interrupted"):
                word += "(interrupted)"
            if "at_s" in event:
                word += f"@{float(event['at_s']):.2f}"
            words.append(word)
        if run:
            words.append(f"text_delta x{run}")
        return ", ".join(words)

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 60
    ) -> dict[str, Any]:
        """The first event (already seen or still to come) for which ``predicate`` holds."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0 or self.process.poll() is not None:
                    raise AssertionError(
                        f"no such event within {timeout_s} s; exit {self.process.poll()}; "
                        f"events: {self.summary()}; stderr: {self.stderr[-2000:]}"
                    )
                self._changed.wait(min(remaining_s, 0.2))

    def interrupt(self, timeout_s: float = 20) -> int:
        """Press Ctrl-C (SIGINT) and return the exit status. ``timeout_s`` allows for a stuck
        sound server: closing the microphone and the speaker may take 5 s each before the
        agent leaves them behind (``assistant.audio.closing``); it usually takes 0.2 s."""
        self.process.send_signal(signal.SIGINT)
        try:
            status = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGABRT)  # the fault handler dumps every thread
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
            for reader in self._readers:
                reader.join(timeout=5)
            raise AssertionError(
                f"no exit within {timeout_s} s of SIGINT; events "
                f"{[e['type'] for e in self.events][-30:]}; stderr: {self.stderr[-12000:]}"
            ) from None
        for reader in self._readers:
            reader.join(timeout=5)
        return status

    def kill(self) -> None:
        """Make sure the process is gone (test clean-up)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
