"""Shared test set-up: offline hub, the Voxtral test kit's fixtures."""

import os

# Set before transformers/huggingface_hub are imported anywhere: no test may touch the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The tiny model's ops are too small to share out, and on a busy machine torch's second thread
# makes every op wait until both threads get a core: beside two busy processes the slowest tests
# ran about 3 times slower, one past the 300 s timeout. (The CLI tests pass it to children too.)
os.environ.setdefault("OMP_NUM_THREADS", "1")

pytest_plugins = ["tests.support.fixtures"]
