"""A real browser: headless Chromium opens the page and talks through a fake microphone."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from assistant.testing.speech import synthesize, write_wav

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TRANSCRIPT = "What is the weather in Paris today?"
REPLY = "It is 21 degrees and clear in Paris."
LONG_REPLY = " ".join(f"Here is sentence number {n} of my answer." for n in range(1, 41))

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)),
        reason="needs chromium and chromedriver (Debian: chromium chromium-driver)",
    ),
]


def _chromium(wav: Path, profile: Path) -> Any:
    """Headless Chromium whose microphone is ``wav`` (looped)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=900,800",
        f"--user-data-dir={profile}",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _run_page(url: str, wav: Path, profile: Path, screenshot: Path) -> dict[str, str]:
    """Open the page, press Start, wait for the turn to show; return what the page shows."""
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _chromium(wav, profile)
    try:
        driver.get(url)
        driver.find_element(By.ID, "start").click()

        def shown(d: webdriver.Chrome) -> dict[str, str] | None:
            texts = {
                kind: " | ".join(e.text for e in d.find_elements(By.CSS_SELECTOR, selector))
                for kind, selector in (
                    ("user", ".turn.user"),
                    ("assistant", ".turn.assistant"),
                    ("tool", ".tool"),
                    ("errors", ".error"),
                )
            }
            done = TRANSCRIPT in texts["user"] and REPLY in texts["assistant"]
            return texts if done and "21" in texts["tool"] else None

        texts = WebDriverWait(driver, 90, poll_frequency=0.25).until(shown)
        texts["state"] = driver.find_element(By.ID, "state").text
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(screenshot))
        return texts
    finally:
        driver.quit()


async def test_page_shows_the_users_turn_the_reply_and_the_tool_call(
    server, script, speech_16k, tmp_path
) -> None:
    """Fake-microphone speech → the page shows transcript, tool call with result, and reply."""
    script.hear(TRANSCRIPT)
    script.say(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}])
    script.say(REPLY)
    # Chromium loops the file: long silence after the speech keeps it to one utterance.
    silence = np.zeros(16000 * 60, dtype=np.int16)
    wav = Path(
        write_wav(str(tmp_path / "mic.wav"), np.concatenate([silence[:8000], speech_16k, silence]))
    )
    texts = await asyncio.to_thread(
        _run_page,
        f"http://127.0.0.1:{server.port}/",
        wav,
        tmp_path / "profile",
        ARTIFACTS / "browser_page.png",
    )
    assert TRANSCRIPT in texts["user"]
    assert "get_weather" in texts["tool"] and '"Paris"' in texts["tool"]
    assert REPLY in texts["assistant"]
    assert texts["errors"] == ""
    assert (ARTIFACTS / "browser_page.png").stat().st_size > 0


def _interrupt_page(url: str, wav: Path, profile: Path, screenshot: Path) -> dict[str, Any]:
    """Open the page, press Start, wait until it has cut a spoken reply short and shown the
    answer to the interruption; return the page's audio figures and what it shows."""
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _chromium(wav, profile)
    try:
        driver.get(url)
        driver.find_element(By.ID, "start").click()

        def answered(d: webdriver.Chrome) -> dict[str, Any] | None:
            stats = d.execute_script("return window.assistantStats")
            replies = [e.text for e in d.find_elements(By.CSS_SELECTOR, ".turn.assistant")]
            done = stats["truncates"] and any("Sorry, go ahead." in r for r in replies)
            return {"stats": stats, "replies": replies} if done else None

        shown = WebDriverWait(driver, 120, poll_frequency=0.25).until(answered)
        shown["errors"] = " | ".join(
            e.text for e in driver.find_elements(By.CSS_SELECTOR, ".error")
        )
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(screenshot))
        return dict(shown)
    finally:
        driver.quit()


async def test_the_page_speaks_the_reply_and_cuts_it_short_when_the_user_speaks(
    server, script, speech_16k, tmp_path
) -> None:
    """The page asks for audio, schedules the streamed PCM16, shows the transcript; speech
    over the reply stops it and sends conversation.item.truncate with the time played, and the
    next prompt holds only the start of the reply."""
    script.hear(TRANSCRIPT)
    script.say(LONG_REPLY)
    script.hear("Stop, please.")
    script.say("Sorry, go ahead.")
    silence = np.zeros(16000 * 60, dtype=np.int16)
    # The question, a pause long enough for the spoken reply to start, then the interruption.
    mic = [silence[:8000], speech_16k, silence[: 16000 * 7], synthesize("Stop, please."), silence]
    wav = Path(write_wav(str(tmp_path / "mic.wav"), np.concatenate(mic)))
    shown = await asyncio.to_thread(
        _interrupt_page,
        f"http://127.0.0.1:{server.port}/",
        wav,
        tmp_path / "profile",
        ARTIFACTS / "browser_barge_in.png",
    )
    stats = shown["stats"]
    assert stats["audioDeltas"] > 0
    assert stats["scheduledMs"] > 2000
    (truncate,) = stats["truncates"]
    # Played from shortly after the question until the interruption was heard, about 7 s on.
    assert 300 < truncate["audio_end_ms"] < 8000
    # The page shows each sentence as it is heard: the cut reply ends with what was played.
    assert shown["replies"][0].startswith("Here is sentence number 1 of my answer.")
    assert shown["replies"][0].endswith("…") and "number 6" not in shown["replies"][0]
    assert shown["errors"] == ""
    prompt = script.prompts[-1]
    assert "Here is sentence number 1" in prompt
    # Sentences take over 2 s each: the sixth was sent (the audio runs ahead) but not played.
    assert "number 6" not in prompt
