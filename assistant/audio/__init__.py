"""Audio in: any audio to 16 kHz, the microphone, voice activity detection."""
