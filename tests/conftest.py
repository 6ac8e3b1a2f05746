"""Shared test set-up: offline hub, the Voxtral test kit's fixtures."""

import os

# Set before transformers/huggingface_hub are imported anywhere: no test may touch the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytest_plugins = ["tests.support.fixtures"]
