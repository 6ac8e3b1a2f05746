"""Test-only infrastructure: a private PulseAudio, a mosquitto broker, pytest fixtures."""
