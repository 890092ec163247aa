"""A real headless Chromium for the tests: Debian's `chromium` driven by its `chromium-driver`
through Selenium (no browser download). Installed by .ci/system-deps.sh, like redis-server.

Under CI (CI=true) a missing browser fails the test: CI must run it, not skip it. Elsewhere the
test is skipped with the command that installs what is missing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import pytest

INSTALL_HINT = "install it: apt-get install chromium chromium-driver (CI does this in .ci/system-deps.sh)"


def _missing(what: str) -> NoReturn:
    message = f"{what} is missing, so the gallery cannot be tested in a real browser: {INSTALL_HINT}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def _find(*names: str) -> str | None:
    return next((path for name in names if (path := shutil.which(name))), None)


@contextmanager
def headless_chromium(width: int = 1280, height: int = 1000) -> Iterator[Any]:
    """A Selenium WebDriver on a fresh headless Chromium profile; quit afterwards."""
    browser = _find("chromium", "chromium-browser")
    driver_path = _find("chromedriver")
    if browser is None:
        _missing("chromium")
    if driver_path is None:
        _missing("chromedriver (Debian's chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium (the dev extra: pip install -e '.[dev]')")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container has no user namespace for the sandbox
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        "--lang=zh-CN",
    ):
        options.add_argument(argument)
    # An explicit driver path: Selenium then never tries to download one.
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()
