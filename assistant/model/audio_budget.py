"""What audio costs in the context, known before any model work.

mistral-common pads every clip to whole 30 s windows and gives each window 375 ``[AUDIO]``
tokens, after one ``[BEGIN_AUDIO]``: the cost of a clip follows from its length alone, so it is
checked against the context before anything is decoded, encoded or prefilled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

WINDOW_S = 30.0
"""One encoder window."""
TOKENS_PER_WINDOW = 375
"""12.5 audio tokens per second."""


class AudioBudgetError(ValueError):
    """The audio does not fit the model's context; the message says how much would."""


def audio_tokens(duration_s: float) -> int:
    """Prompt tokens of one clip: 375 per started 30 s window, plus ``[BEGIN_AUDIO]``."""
    windows = max(1, math.ceil(round(duration_s, 6) / WINDOW_S))
    return windows * TOKENS_PER_WINDOW + 1


def clock(seconds: float) -> str:
    """``M:SS`` (or ``H:MM:SS``) for a duration."""
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def check_audio_budget(
    durations_s: Sequence[float],
    *,
    context_tokens: int,
    reply_tokens: int,
    other_tokens: int = 0,
) -> int:
    """The audio tokens of clips of ``durations_s``; ``AudioBudgetError`` if they do not fit.

    They fit when audio, ``other_tokens`` (text and template) and ``reply_tokens`` (kept for
    the answer) together stay within ``context_tokens``.
    """
    needed = sum(audio_tokens(d) for d in durations_s)
    available = context_tokens - reply_tokens - other_tokens
    if needed <= available:
        return needed
    windows = max(0, (available - len(durations_s)) // TOKENS_PER_WINDOW)
    total_s = sum(durations_s)
    raise AudioBudgetError(
        f"{clock(total_s)} of audio takes {needed:,} tokens ({TOKENS_PER_WINDOW} per started "
        f"{WINDOW_S:g} s), but the model's context holds {context_tokens:,} with "
        f"{reply_tokens:,} kept for the reply and {other_tokens:,} for the text: at most "
        f"{clock(windows * WINDOW_S)} of audio fits. For a longer recording, transcribe it "
        "('voxtral-assistant transcribe FILE > transcript.txt') and ask about the text "
        "('voxtral-assistant ask --text-file transcript.txt --text QUESTION')"
    )
