"""What an OpenAI client sees when vLLM dies: mid-stream and on the next request."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from tests.support.vllm_server import VllmServer

pytestmark = pytest.mark.slow


def test_a_killed_server_breaks_the_stream_then_refuses_connections(
    vllm_executable: Path, vllm_model_dir: Path
) -> None:
    """SIGKILL mid-stream: the stream and the next call both raise APIConnectionError."""
    with VllmServer(vllm_model_dir, vllm_executable) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        stream = client.chat.completions.create(
            model=server.model,
            messages=[{"role": "user", "content": "Talk."}],
            stream=True,
            max_tokens=3000,
            extra_body={"ignore_eos": True},
        )
        with pytest.raises(openai.APIConnectionError) as broken:
            for count, _ in enumerate(stream):
                if count == 3:
                    server.kill()
        with pytest.raises(openai.APIConnectionError) as refused:
            client.chat.completions.create(
                model=server.model, messages=[{"role": "user", "content": "Hi."}]
            )
    # The SDK says "Connection error."; the reason is in the httpx exception underneath.
    assert str(broken.value) == str(refused.value) == "Connection error."
    # (the SDK may run on httpx or its fork httpx2: compare class names)
    assert type(broken.value.__cause__).__name__ == "RemoteProtocolError"
    assert str(broken.value.__cause__) == (
        "peer closed connection without sending complete message body (incomplete chunked read)"
    )
    assert type(refused.value.__cause__).__name__ == "ConnectError"
