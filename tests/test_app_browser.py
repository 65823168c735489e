"""The review app in a real browser (headless Chromium via Selenium) on the embedded model.

`longdoc app` is started as a user starts it; the page is driven as a person would: two
questions in a row, a summary and a verdict. Two questions in a row failed before the model
server was forked from a process-long thread: Streamlit ends its script thread after every
run, and PR_SET_PDEATHSIG killed the server with it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from longdoc.pipeline.backends import free_port
from tests.conftest import SAMPLES

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.real_model
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
RUN_TIMEOUT_S = 600


@pytest.fixture
def app_url(tmp_path: Path) -> Iterator[str]:
    """`longdoc app` on a free loopback port with the embedded backend, stopped after."""
    port = free_port()
    env = {**os.environ, "LONGDOC_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "longdoc", "app", "--port", str(port), "--no-browser",
         str(SAMPLES / "kennedy-1962-state-of-the-union.pdf")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail("the review app did not come up")
        yield url
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=60)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.fail("Chromium and ChromeDriver are needed (scripts/setup_browser.sh)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1400,1800",
                 f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def _body(driver: object) -> str:
    return driver.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]


def _click(driver: object, text: str) -> None:
    """Click the button (or radio option) whose label is ``text``; a re-render between
    finding and clicking it (a stale element) means trying again."""
    xpath = f"//button[normalize-space(.)='{text}'] | //label[normalize-space(.)='{text}']"

    def clicked(d: object) -> bool:
        d.find_element(By.XPATH, xpath).click()  # type: ignore[attr-defined]
        return True

    WebDriverWait(driver, 60, ignored_exceptions=(NoSuchElementException,
                                                  StaleElementReferenceException)).until(clicked)


def _run_and_wait(driver: object) -> str:
    """Press Run; the page text once the run has finished."""
    _click(driver, "Run")
    WebDriverWait(driver, 60).until(lambda d: "Running" in _body(d))
    WebDriverWait(driver, RUN_TIMEOUT_S, poll_frequency=1).until(
        lambda d: "Done:" in _body(d) and "Running" not in _body(d))
    return _body(driver)


def _ask(driver: object, question: str) -> str:
    box = WebDriverWait(driver, 60).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "textarea[aria-label='Question']"))
    box.clear()
    box.send_keys(question)
    box.send_keys("\t")  # commit the text (Streamlit reads it on blur)
    time.sleep(1)
    return _run_and_wait(driver)


def test_two_questions_a_summary_and_a_verdict_in_one_session(app_url: str, browser: object,
                                                             tmp_path: Path) -> None:
    browser.get(app_url)  # type: ignore[attr-defined]
    first = _ask(browser, "How far did the number of major surplus labor areas decline?")
    assert "Done: 1 answered, 0 failed" in first, first
    assert "101" in first and "60" in first

    second = _ask(browser, "By how much has nonagricultural employment increased?")
    assert "Done: 1 answered, 0 failed" in second, second
    # whole words: the answer may quote the document ("able-bodied men")
    assert not re.search(r"\b(?:cannot reach|died|error)\b", second, re.I), second

    browser.find_element(  # type: ignore[attr-defined]
        By.XPATH, "//div[@role='radiogroup'][@aria-label='Verdict on the answer']"
                  "//label[normalize-space(.)='correct']").click()
    _click(browser, "Record verdict")
    WebDriverWait(browser, 60).until(lambda d: "Verdict recorded" in _body(d))

    _click(browser, "Summarize")
    time.sleep(2)
    summary = _run_and_wait(browser)
    assert "Done: 1 answered, 0 failed" in summary, summary

    shot = tmp_path / "review-app.png"
    assert browser.save_screenshot(str(shot))  # type: ignore[attr-defined]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    artifacts = os.environ.get("TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / shot.name)
