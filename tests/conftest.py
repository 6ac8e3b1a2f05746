"""Shared test set-up: offline hub, the Voxtral test kit's fixtures."""

import os

import pytest

# Set before transformers/huggingface_hub are imported anywhere: no test may touch the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The tiny model's ops are too small to share out, and on a busy machine torch's second thread
# makes every op wait until both threads get a core: beside two busy processes the slowest tests
# ran about 3 times slower, one past the 300 s timeout. (The CLI tests pass it to children too.)
os.environ.setdefault("OMP_NUM_THREADS", "1")

pytest_plugins = ["tests.support.fixtures"]

# Markers (pyproject.toml) by what a test uses, so that `-m "not system and not browser and not
# audio_device and not slow"` is the fast inner loop of pure logic (CONTRIBUTING.md).
_SYSTEM_FIXTURES = frozenset(
    {
        "tiny_model_dir",
        "tiny_model_factory",
        "scripted_workers",
        "scripted",
        "scripted_worker",
        "start_server",
        "server",
        "make_worker",
        "mqtt_broker",
        "http_server",
        "clips",
        "command_wav",
        "house",
        "speech",
        "speech_16k",
        "speech_24k",
        "vllm_executable",
        "vllm_model_dir",
    }
)
_AUDIO_DEVICE_FIXTURES = frozenset({"virtual_audio"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests ``system`` (real parts) and ``audio_device`` (PulseAudio) by their fixtures."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & _AUDIO_DEVICE_FIXTURES:
            item.add_marker(pytest.mark.audio_device)
        if used & (_SYSTEM_FIXTURES | _AUDIO_DEVICE_FIXTURES) or item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.system)
