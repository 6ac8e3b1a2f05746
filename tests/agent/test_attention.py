"""``Attention``: after the wake word, one request and follow-ups within the window."""

from __future__ import annotations

import pytest

from assistant.desktop.attention import Attention


def test_asleep_until_the_wake_word() -> None:
    """Nothing is taken before the wake word."""
    assert not Attention(5000).awake(0, busy=False)


def test_the_wake_word_opens_a_window_for_the_request() -> None:
    """After the wake word, requests are taken for follow_up_ms, then it sleeps."""
    attention = Attention(5000)
    attention.wake(1000)
    assert attention.awake(5999, busy=False)
    assert not attention.awake(6000, busy=False)


def test_busy_keeps_it_awake_and_the_window_restarts_after() -> None:
    """While hearing, thinking or speaking it stays awake; the follow-up window starts after."""
    attention = Attention(5000)
    attention.wake(0)
    assert attention.awake(20_000, busy=True)
    assert attention.awake(24_999, busy=False)
    assert not attention.awake(25_000, busy=False)


def test_once_asleep_it_needs_the_wake_word_again() -> None:
    """Being busy later (an announcement) does not wake it."""
    attention = Attention(1000)
    attention.wake(0)
    assert not attention.awake(2000, busy=False)
    assert not attention.awake(3000, busy=True)


def test_the_window_must_be_positive() -> None:
    """A zero window is refused."""
    with pytest.raises(ValueError, match="positive"):
        Attention(0)
