"""The model layer: checkpoints, prompts, the one model thread; it imports nothing above it."""
