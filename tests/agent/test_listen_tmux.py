"""``listen`` in a real terminal (tmux): the live status line, the conversation, and Ctrl-C."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from assistant.testing.speech import synthesize, write_wav
from tests.agent.cli import LISTEN, listen_env
from tests.agent.conftest import COMMAND_TEXT, ScriptWriter

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (apt: tmux)")

CTRL_C_EXIT_S = 2.0
"""The issue's promise: Ctrl-C ends the agent within two seconds."""


class Terminal:
    """A private tmux server with one 120x30 window running a command; everything the command
    writes to the terminal is also kept, raw, in ``raw`` (a failure shows whether a missing
    line was never written or was written and then drawn over)."""

    def __init__(self, command: str, raw: Path) -> None:
        self.socket = f"agent-test-{uuid.uuid4().hex[:8]}"
        self.raw = raw
        self.tmux("new-session", "-d", "-x", "120", "-y", "30", command)
        self.tmux("pipe-pane", "-o", f"cat >> {shlex.quote(str(raw))}")

    def tmux(self, *args: str) -> str:
        """Run a tmux command against this server."""
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        return done.stdout

    def screen(self) -> str:
        """What the window shows now."""
        return self.tmux("capture-pane", "-p")

    def wait_for(
        self, *texts: str, check: Callable[[str], bool] = bool, timeout_s: float = 60
    ) -> str:
        """Wait until every text is on the screen at once (and ``check`` holds); return it.

        Waiting for the whole condition, not asserting on one capture, lets a capture taken
        in the middle of a redraw pass by.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            screen = self.screen()
            if all(text in screen for text in texts) and check(screen):
                return screen
            if time.monotonic() > deadline:
                missing = [text for text in texts if text not in screen]
                written = (
                    self.raw.read_bytes().decode(errors="replace") if self.raw.exists() else ""
                )
                raise AssertionError(
                    f"after {timeout_s} s, missing {missing} (check {check(screen)}):\n{screen}\n"
                    f"written to the terminal: {[text in written for text in missing]}; "
                    f"the last of it: {written[-3000:]!r}"
                )
            time.sleep(0.1)

    def close(self) -> None:
        """Stop the tmux server and everything in it."""
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, check=False)


@pytest.fixture
def long_command_wav(tmp_path: Path) -> Path:
    """The spoken command followed by a minute of silence: the agent keeps listening."""
    pcm = np.concatenate([np.zeros(8000, np.int16), synthesize(COMMAND_TEXT)])
    pcm = np.concatenate([pcm, np.zeros(16000 * 60, np.int16)])
    return Path(write_wav(str(tmp_path / "command-then-silence.wav"), pcm))


@pytest.fixture
def terminal_listen(
    tmp_path: Path,
    tiny_model_dir: Path,
    long_command_wav: Path,
    tools_file: Path,
    forced_replies: ScriptWriter,
) -> Iterator[tuple[Terminal, Path]]:
    """``listen`` on the terminal of a tmux window; its exit status lands in a file."""
    status_file = tmp_path / "exit-status"
    env = " ".join(
        f"{name}={shlex.quote(value)}"
        for name, value in listen_env().items()
        if name in {"HF_HUB_OFFLINE", "OMP_NUM_THREADS", "PATH", "HOME", "PULSE_SERVER"}
    )
    args = [
        *LISTEN, "--model", str(tiny_model_dir), "--input", str(long_command_wav), "--no-speak",
        "--tools", str(tools_file), "--forced-replies", str(forced_replies()),
    ]  # fmt: skip
    # The shell traps Ctrl-C (its child gets the default handling) so that it lives on to
    # record the exit status, then keeps the window open for a last look at the screen.
    command = (
        f"trap true INT; env -i TERM=xterm-256color {env} {shlex.join(args)}; "
        f"echo $? > {status_file}; sleep 60"
    )
    terminal = Terminal(f"sh -c {shlex.quote(command)}", tmp_path / "terminal.raw")
    try:
        yield terminal, status_file
    finally:
        terminal.close()


def _status_line_listening(screen: str) -> bool:
    """The live status line (the last line written) says the agent listens."""
    lines = screen.rstrip().splitlines()
    return bool(lines) and "Ctrl-C to quit" in lines[-1] and "listening" in lines[-1]


def _answered_and_listening(terminal: Terminal) -> str:
    """Wait until the turn is on the screen and the agent listens again; return the screen."""
    return terminal.wait_for(
        "you: What time is it?",
        '→ tool get_time({"timezone": "UTC"})',
        "assistant: It is ten past ten. Anything else?",
        "first word",
        check=_status_line_listening,
    )


def test_the_terminal_shows_the_status_line_and_the_conversation(
    terminal_listen: tuple[Terminal, Path],
) -> None:
    """The live view shows the status line, what the user said, the tool call and the reply."""
    terminal, _ = terminal_listen
    screen = _answered_and_listening(terminal)
    assert screen.rstrip().splitlines()[-1].split()[1:2] == ["listening"]


def test_ctrl_c_exits_with_status_0_within_two_seconds(
    terminal_listen: tuple[Terminal, Path],
) -> None:
    """Ctrl-C while listening ends the agent cleanly (status 0) within two seconds."""
    terminal, status_file = terminal_listen
    _answered_and_listening(terminal)
    pressed = time.monotonic()
    terminal.tmux("send-keys", "C-c")
    while not (status_file.exists() and status_file.read_text().strip()):
        assert time.monotonic() - pressed < 10, terminal.screen()
        time.sleep(0.02)
    exit_s = time.monotonic() - pressed
    assert status_file.read_text().strip() == "0"
    assert exit_s < CTRL_C_EXIT_S
    assert "Traceback" not in terminal.screen()
