"""What ``describe`` answers: the server's programs (speech-to-text, conversation, speech)."""

from __future__ import annotations

from collections.abc import Sequence

from wyoming.info import (
    AsrModel,
    AsrProgram,
    Attribution,
    HandleModel,
    HandleProgram,
    Info,
    TtsProgram,
    TtsVoice,
)

from assistant import __version__

PROJECT = Attribution(name="voxtral-assistant", url="https://huggingface.co/mistralai")
MISTRAL = Attribution(name="Mistral AI", url="https://huggingface.co/mistralai")
ESPEAK = Attribution(name="eSpeak NG", url="https://github.com/espeak-ng/espeak-ng")


def voice_language(voice: str) -> str:
    """The language code of an espeak-ng voice name: ``en-us`` -> ``en``, ``fr`` -> ``fr``."""
    return voice.split("-", 1)[0].split("+", 1)[0].lower()


def server_info(
    *,
    model_name: str,
    languages: Sequence[str],
    voices: Sequence[str],
    detects_end_of_speech: bool,
    has_tools: bool,
) -> Info:
    """The ``info`` event's content.

    ``requires_external_vad`` is false exactly when the server finds the end of a command
    itself; ``supports_home_control`` when it has tools to act with. Transcripts and conversation
    replies come whole (no streaming events); speech is streamed sentence by sentence.
    """
    return Info(
        asr=[
            AsrProgram(
                name="voxtral-transcribe",
                description="Voxtral's transcription mode",
                attribution=MISTRAL,
                installed=True,
                version=__version__,
                models=[
                    AsrModel(
                        name=model_name,
                        description=model_name,
                        attribution=MISTRAL,
                        installed=True,
                        version=None,
                        languages=list(languages),
                    )
                ],
                supports_transcript_streaming=False,
                requires_external_vad=not detects_end_of_speech,
            )
        ],
        handle=[
            HandleProgram(
                name="voxtral-assistant",
                description="Voxtral with the tools of tools.yaml",
                attribution=PROJECT,
                installed=True,
                version=__version__,
                models=[
                    HandleModel(
                        name=model_name,
                        description=model_name,
                        attribution=MISTRAL,
                        installed=True,
                        version=None,
                        languages=list(languages),
                    )
                ],
                supports_handled_streaming=False,
                supports_home_control=has_tools,
            )
        ],
        tts=[
            TtsProgram(
                name="espeak-ng",
                description="eSpeak NG speech synthesis",
                attribution=ESPEAK,
                installed=True,
                version=__version__,
                voices=[
                    TtsVoice(
                        name=voice,
                        description=f"espeak-ng {voice}",
                        attribution=ESPEAK,
                        installed=True,
                        version=None,
                        languages=[voice_language(voice)],
                    )
                    for voice in voices
                ],
                supports_synthesize_streaming=True,
            )
        ],
    )
