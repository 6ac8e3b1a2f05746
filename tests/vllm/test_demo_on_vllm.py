"""The shipped demo model served by a real vLLM: the package folder holds Mistral's format."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mistral_common.protocol.instruct.messages import UserMessage

from assistant.audio.io import audio_chunk
from assistant.model.backend import GREEDY
from assistant.model.checkpoint import demo_checkpoint
from assistant.model.remote import RemoteWorker
from assistant.testing.speech import synthesize
from tests.support.vllm_server import VllmServer
from tests.vllm.conftest import remote_settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REPO = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def demo_vllm(vllm_executable: Path) -> Iterator[VllmServer]:
    """vLLM serving the package's demo folder as it is (no conversion)."""
    with VllmServer(demo_checkpoint(), vllm_executable) as server:
        yield server


async def test_vllm_serves_the_demo_and_hears_the_command(demo_vllm: VllmServer) -> None:
    """``serve --backend vllm --model demo``'s path: speech in, the exact call out, with no
    forced tokens."""
    from training.conversations import declared_tools

    tools = declared_tools(REPO / "tools.yaml").mistral_tools()
    worker = RemoteWorker.connect(remote_settings(demo_checkpoint(), demo_vllm.base_url))
    try:
        message = UserMessage(content=[audio_chunk(synthesize("Turn the kitchen light on."))])
        done = await worker.respond([message], tools=tools, params=GREEDY).done()
    finally:
        worker.close()
    got = [(c.name, dict(c.arguments)) for c in done.tool_calls]
    assert got == [("set_light", {"room": "kitchen", "state": "on"})], done.text
