"""The house plan holds: layers (import-linter's contracts in pyproject.toml), torch-free lower
layers, and public faces that re-export the implementation."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"},
    )


def test_the_import_contracts_hold() -> None:
    """Every contract in pyproject.toml is kept by the package as it is."""
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("module", "line"),
    [
        ("assistant/model/prompting.py", "import assistant.conversation.history"),
        ("assistant/conversation/history.py", "import torch"),
        ("assistant/server/http_api.py", "import assistant.ws_server"),
    ],
)
def test_a_broken_rule_is_caught(tmp_path: Path, module: str, line: str) -> None:
    """An import that breaks a layer, the torch-free rule or the faces rule fails the check."""
    shutil.copytree(ROOT / "assistant", tmp_path / "assistant")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}  # deliberately against the plan\n")
    done = _lint_imports(tmp_path)
    assert done.returncode != 0
    assert "BROKEN" in done.stdout


def test_the_lower_layers_import_without_torch() -> None:
    """events, config and the conversation load without torch or transformers (fast, light)."""
    probe = (
        "import sys, assistant.events, assistant.config, assistant.conversation.dialogue, "
        "assistant.dialogue; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_faces_re_export_the_implementation() -> None:
    """The design card's paths name the very objects that live in the subpackages."""
    from assistant import dialogue, mic_capture, model_worker, vad_segmenter, ws_server
    from assistant.audio import capture, vad
    from assistant.conversation import dialogue as conversation
    from assistant.model import backend, worker
    from assistant.server import assistant_server

    assert mic_capture.MicCapture is capture.MicCapture
    assert vad_segmenter.VadSegmenter is vad.VadSegmenter
    assert model_worker.ModelWorker is worker.ModelWorker
    assert model_worker.ModelBackend is backend.ModelBackend
    assert dialogue.Dialogue is conversation.Dialogue
    assert ws_server.AssistantServer is assistant_server.AssistantServer
    for face in (dialogue, mic_capture, model_worker, vad_segmenter, ws_server):
        assert all(hasattr(face, name) for name in face.__all__)
