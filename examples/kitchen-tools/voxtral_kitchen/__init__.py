"""Kitchen helpers for voxtral-assistant (an example plugin package)."""
