"""Headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by selenium, for the page tests.

Started with the flags that let it run as root in a container and keep it off the network of its own accord
(no background networking, component updates, sync or first-run pages), a fresh profile each time, and the
performance log on, so that a test can list every request the page made (`requested_urls`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
INSTALL_HINT = "apt-get install chromium chromium-driver  (.ci/run does this on a fresh machine)"
ARTIFACTS = Path(os.environ.get("CLF_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / ".test-artifacts"))
"""Where page tests save their screenshots (CLF_TEST_ARTIFACTS, else .test-artifacts/ in the checkout)."""


def browser_available() -> bool:
    """Whether Chromium and its driver are installed."""
    return Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()


@contextmanager
def chromium(width: int = 1400, height: int = 1800) -> Iterator[object]:
    """A headless Chromium WebDriver for the duration of the block."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="clf-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
        "--disable-default-apps", "--disable-extensions", f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
    ):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def requested_urls(driver: object) -> list[str]:
    """Every URL the page asked the network for so far (from the DevTools performance log)."""
    urls = []
    for entry in driver.get_log("performance"):  # type: ignore[attr-defined]
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def screenshot(driver: object, name: str) -> Path:
    """Saves the whole page as ``<ARTIFACTS>/<name>.png`` and returns the path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))  # type: ignore[attr-defined]
    return path
