"""Credentials never reach the log, whatever the verbosity and wherever the client sends them."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import signal
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from assistant.cli.common import RedactSecrets

pytestmark = pytest.mark.timeout(120)


async def _serve_and_connect(model_dir: Path, verbosity: str, token: str, wrong: str) -> str:
    """Run ``voxtral-assistant VERBOSITY serve --token TOKEN``, connect every way, return stderr.

    The token travels in the Authorization header, the ``?token=`` query and the
    ``openai-insecure-api-key.`` subprotocol; one more client tries the ``wrong`` token.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXTRAL_ASSISTANT_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "assistant",
        verbosity,
        "serve",
        "--model",
        str(model_dir),
        "--device",
        "cpu",
        "--port",
        "0",
        "--token",
        token,
        env={**env, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    lines: list[bytes] = []
    try:
        port = None
        async with asyncio.timeout(60):
            while port is None:
                lines.append(await proc.stderr.readline())
                assert lines[-1], "the server exited before listening"
                match = re.search(rb"serving on http://127\.0\.0\.1:(\d+)", lines[-1])
                port = int(match.group(1)) if match else None
        url = f"ws://127.0.0.1:{port}/v1/realtime"
        for options in (
            {"uri": url, "additional_headers": {"Authorization": f"Bearer {token}"}},
            {"uri": f"{url}?token={token}"},
            {"uri": url, "subprotocols": ["realtime", f"openai-insecure-api-key.{token}"]},
        ):
            async with connect(**options) as ws:
                assert '"session.created"' in str(await ws.recv())
        with pytest.raises(InvalidStatus):
            await connect(url, additional_headers={"Authorization": f"Bearer {wrong}"})
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            _, rest = await proc.communicate()
        lines.append(rest)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return b"".join(lines).decode()


async def test_very_verbose_serve_logs_no_token(tiny_model_dir: Path) -> None:
    """With -vv, websockets' request dumps show no token, right or wrong, however it was sent."""
    token, wrong = f"SUPERSECRET-{secrets.token_hex(8)}", f"WRONGGUESS-{secrets.token_hex(8)}"
    log = await _serve_and_connect(tiny_model_dir, "-vv", token, wrong)
    assert token not in log
    assert wrong not in log
    assert "< GET /v1/realtime?token=[redacted] HTTP/1.1" in log  # the dumps are there
    assert "< Authorization: Bearer [redacted]" in log
    assert "openai-insecure-api-key.[redacted]" in log


async def test_verbose_serve_keeps_websockets_wire_dumps_off(tiny_model_dir: Path) -> None:
    """-v turns on DEBUG but keeps websockets at INFO: no request header dumps (those need -vv)."""
    token = f"SUPERSECRET-{secrets.token_hex(8)}"
    log = await _serve_and_connect(tiny_model_dir, "-v", token, "WRONGGUESS")
    assert " DEBUG asyncio: " in log
    # websockets logs the refusal at INFO; 16 words it "connection rejected", 17 "HTTP response
    # sent": either proves its INFO records get through while the header dumps stay off.
    assert re.search(
        r" INFO websockets\.server: (connection rejected|HTTP response sent) \(401 Unauthorized\)",
        log,
    )
    assert "websockets.server: < " not in log
    assert token not in log


def test_the_configured_token_is_redacted_in_messages_and_tracebacks() -> None:
    """A registered secret is replaced in the formatted message and in the exception text."""
    redact = RedactSecrets()
    redact.add("hunter2-token")
    try:
        raise ValueError("bad credential hunter2-token")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "saw %s", ("hunter2-token",), sys.exc_info()
        )
    assert redact.filter(record)
    formatted = logging.Formatter().format(record)
    assert "hunter2-token" not in formatted
    assert "saw [redacted]" in formatted
    assert "ValueError: bad credential [redacted]" in formatted


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("< Authorization: Bearer abc.def", "< Authorization: Bearer [redacted]"),
        ("{'authorization': 'Basic dXNlcg=='}", "{'authorization': 'Basic [redacted]'}"),
        ("< GET /v1/realtime?a=1&token=abc&b=2", "< GET /v1/realtime?a=1&token=[redacted]&b=2"),
        (
            "< Sec-WebSocket-Protocol: realtime, openai-insecure-api-key.abc",
            "< Sec-WebSocket-Protocol: realtime, openai-insecure-api-key.[redacted]",
        ),
    ],
    ids=["bearer-header", "header-mapping", "query", "subprotocol"],
)
def test_unknown_credentials_are_redacted_by_their_shape(line: str, expected: str) -> None:
    """A credential the server does not know (a wrong guess) is still recognised and hidden."""
    assert RedactSecrets().redact(line) == expected
