"""Driving the page in a real browser: the app served on a free 127.0.0.1 port, headless Debian Chromium
through Selenium (a browser download by Selenium Manager needs the internet). Used by tests/test_app.py and
bench/app.py."""

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@contextlib.contextmanager
def serve_app(log: Path, *args: str) -> Iterator[str]:
    """`python -m lm_music.app ARGS` on a free port; yields its URL once it answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "lm_music.app", f"port={port}", *args],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(480):
            if server.poll() is not None:
                raise RuntimeError(f"the app exited: {log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(0.25)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@contextlib.contextmanager
def chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,2000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(browser, css: str, seconds: float = 180, check=lambda element: True):
    """The first element matching `css` for which `check` holds, polled every 50 ms."""
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = [e for e in browser.find_elements(By.CSS_SELECTOR, css) if check(e)]
        if found:
            return found[0]
        time.sleep(0.05)
    body = browser.find_element(By.TAG_NAME, "body").text[:2000]
    raise AssertionError(f"{css} did not appear in {seconds} s; the page says: {body}")


def type_into(browser, elem_id: str, value, enter: bool = False) -> None:
    """Replace the text of the input of the component with `elem_id`."""
    from selenium.webdriver.common.keys import Keys

    field = wait_for(browser, f"#{elem_id} input, #{elem_id} textarea")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.DELETE)
    field.send_keys(str(value) + (Keys.ENTER if enter else ""))


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()
