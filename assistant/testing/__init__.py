"""Offline Voxtral test kit: a synthetic Tekken tokenizer, a tiny random model, forced replies.

Import the submodules directly (``assistant.testing.tiny_model`` etc.); this package does not
import torch or transformers on its own.
"""
