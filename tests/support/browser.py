"""Driving the web console in headless Chromium through Selenium, with Debian's ``chromium``
and ``chromedriver`` (installed by ``scripts/test``). A missing browser or driver is an error,
never a skip. ``Console`` signs in, opens pages, waits for what a page shows, and saves a
screenshot of each page it is asked to under ``ARTIFACTS`` (ignored by git), whose paths it
prints so a CI log names them. ``forged_session`` makes a session cookie as the server would
(from the data dir's master key), with the times a test chooses: an expired session.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from keyturn.console.sessions import SESSION_KEY_INFO, Session, Sessions
from keyturn.store.sealing import open_secret_box
from tests.support.keyturn_server import KeyturnServer

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parent.parent / "browser" / "artifacts"
#: Generous: the machine is loaded; nothing here times the console.
WAIT = 30.0


def start_chromium(profile: Path) -> WebDriver:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            raise RuntimeError(f"{path} is missing: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT)
    return driver


class Console:
    """One browser on one keyturn server's console."""

    def __init__(self, server: KeyturnServer) -> None:
        self.server = server
        self.base = f"http://{server.endpoint}/console"
        self._profile = tempfile.TemporaryDirectory(prefix="keyturn-chromium-")
        self.driver = start_chromium(Path(self._profile.name))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            self._profile.cleanup()

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def sign_in(self, token: str) -> None:
        self.driver.delete_all_cookies()
        self.open("/signin")
        self.find("#token").send_keys(token)
        self.navigate_by("#signin")

    def navigate_by(self, css: str) -> None:
        """Click what ``css`` finds and wait until the next page replaced this one."""
        page = self.driver.find_element(By.TAG_NAME, "html")
        self.find(css).click()

        def replaced(_: Any) -> bool:
            # Stale, or chromedriver's "node ... does not belong to the document" (an unknown
            # error, not StaleElementReferenceException, when the old page is mid-teardown).
            try:
                page.is_enabled()
            except WebDriverException:
                return True
            return False

        WebDriverWait(self.driver, WAIT).until(replaced)

    def find(self, css: str) -> WebElement:
        found: WebElement = self.until(lambda: self.driver.find_element(By.CSS_SELECTOR, css))
        return found

    def all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def heading(self) -> str:
        return self.find("h1").text

    def until(self, probe: Callable[[], Any], timeout: float = WAIT) -> Any:
        """``probe``'s first truthy answer (exceptions count as not yet)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                found = probe()
                if found:
                    return found
            except Exception:
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"nothing came within {timeout} s on {self.driver.current_url}"
                )
            time.sleep(0.1)

    def screenshot(self, name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        print(f"screenshot: {path}")
        return path

    def cookie(self, name: str) -> str | None:
        found = self.driver.get_cookie(name)
        return None if found is None else str(found["value"])


def forged_session(server: KeyturnServer, token_id: str, *, issued: float, seen: float) -> str:
    """A session cookie value for ``token_id``, signed with the server's key, with those times."""
    box = open_secret_box(server.data_dir, None)
    sessions = Sessions(box.derive_keys(SESSION_KEY_INFO))
    nonce = sessions.new(token_id, seen).nonce
    return sessions.encode(
        Session(token_id=token_id, nonce=nonce, issued=int(issued), seen=int(seen))
    )
