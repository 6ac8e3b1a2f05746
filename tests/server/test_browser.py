"""A real browser: headless Chromium opens the page and talks through a fake microphone."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import numpy as np
import pytest

from assistant.testing.speech import write_wav

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TRANSCRIPT = "What is the weather in Paris today?"
REPLY = "It is 21 degrees and clear in Paris."

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)),
        reason="needs chromium and chromedriver (Debian: chromium chromium-driver)",
    ),
]


def _run_page(url: str, wav: Path, profile: Path, screenshot: Path) -> dict[str, str]:
    """Open the page, press Start, wait for the turn to show; return what the page shows."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

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
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
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
