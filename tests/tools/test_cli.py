"""`voxtral-assistant tools check` and `tools call`."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.cli import main

from .conftest import WriteTools

SHIPPED_TOOLS = Path(__file__).parents[2] / "tools.yaml"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """main() installs a log handler on the (captured) stderr; put the old ones back after."""
    root = logging.getLogger()
    ours = logging.getLogger("assistant")
    saved = (list(root.handlers), root.level, ours.level)
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    ours.setLevel(saved[2])


def test_check_lists_the_shipped_tools(capsys: pytest.CaptureFixture[str]) -> None:
    """tools check validates the shipped file and lists every tool with its kind."""
    assert main(["tools", "check", str(SHIPPED_TOOLS)]) == 0
    out = capsys.readouterr().out
    assert "all valid" in out
    listed = {
        line.split()[0]: line.split()[1] for line in out.splitlines()[1:] if "  from " not in line
    }
    assert {name: listed[name] for name in ("get_time", "set_timer", "set_light")} == {
        "get_time": "python",
        "set_timer": "python",
        "set_light": "mqtt",
    }
    assert "Unlock a door of the house. [confirm]" in out


def test_check_reports_a_broken_file(
    write_tools: WriteTools, capsys: pytest.CaptureFixture[str]
) -> None:
    """A broken file exits 2 with the file, line and reason."""
    path = write_tools("version: 1\ntools:\n  - nme: x\n")
    assert main(["tools", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:3: tools[0].nme: unknown key 'nme'" in err


def test_call_runs_one_tool(capsys: pytest.CaptureFixture[str]) -> None:
    """tools call prints the result JSON and exits 0."""
    code = main(["tools", "call", "get_time", '{"timezone": "UTC"}', "--tools", str(SHIPPED_TOOLS)])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["timezone"] == "UTC"


def test_call_failure_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    """A failing call prints the error result and exits 1."""
    args = ["tools", "call", "set_light", '{"room": "attic"}', "--tools", str(SHIPPED_TOOLS)]
    assert main(args) == 1
    assert "invalid arguments" in capsys.readouterr().out


def test_call_rejects_bad_json(capsys: pytest.CaptureFixture[str]) -> None:
    """Arguments that are not a JSON object are refused before loading anything."""
    assert main(["tools", "call", "get_time", "{room: kitchen}"]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_call_unknown_tool(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown tool name lists the available ones."""
    assert main(["tools", "call", "fly", "--tools", str(SHIPPED_TOOLS)]) == 2
    assert "no tool named 'fly'; available: get_time" in capsys.readouterr().err
