"""Fixtures for the explorer's tests: a server in this process, plain HTTP requests, and a
headless Chromium driven by selenium.

The browser is Debian's ``chromium`` with its ``chromium-driver`` (``apt-get install -y
chromium chromium-driver``), at fixed paths: selenium is given the driver's path, so its
Selenium Manager never runs and nothing downloads a browser. Where selenium or the browser is
missing, the browser tests skip and say which. Latencies the tests measure are collected in
``LATENCIES`` and printed at the end of the run (measured and recorded, never asserted: the
machine's two cores are shared).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from minicnn.explore import Explorer, make_server
from minicnn.io.weights import load

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-dev-shm-usage",
                 "--window-size=1400,1000"]
LATENCIES = []   # (what, milliseconds), printed by pytest_terminal_summary
ROOT = Path(__file__).resolve().parents[2]


def pytest_terminal_summary(terminalreporter):
    if not LATENCIES:
        return
    with open("/proc/loadavg") as f:
        load_average = " ".join(f.read().split()[:3])
    terminalreporter.section("explorer latencies (measured, not asserted)")
    for what, ms in LATENCIES:
        terminalreporter.write_line(f"{ms:8.0f} ms  {what}")
    terminalreporter.write_line(f"load average: {load_average}")


def serve(explorer):
    """A server for ``explorer`` on a free port, running in a thread -> (server, stop)."""
    server = make_server(explorer, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop():
        server.shutdown()
        server.close()
        thread.join(10)
    return server, stop


class Command:
    """``minicnn explore ARGS --port 0 --no-browser`` running in a process of its own (as a
    user runs it: every pass on its main thread); ``url`` is the address it printed."""

    def __init__(self, args, folder: Path, timeout: float = 180.0):
        self.out, self.err = folder / "stdout.txt", folder / "stderr.txt"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "minicnn", "explore", *map(str, args), "--no-browser"],
                stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                env=dict(os.environ, PYTHONPATH=str(ROOT)))
        deadline = time.monotonic() + timeout
        self.url = None
        while self.url is None:
            for line in self.out.read_text().splitlines():
                if line.startswith("minicnn explore: http"):
                    self.url = line.split()[-1]
            if self.url is None and (self.process.poll() is not None
                                     or time.monotonic() > deadline):
                self.stop()
                raise AssertionError(f"minicnn explore printed no address: "
                                     f"{self.err.read_text()}")
            time.sleep(0.05)

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; -> the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)


@pytest.fixture(scope="module")
def command(tmp_path_factory):
    """The command with no images named: the page's samples, the shipped model and every
    fetched network."""
    running = Command(["--port", "0"], tmp_path_factory.mktemp("explore-command"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def served():
    """The explorer as ``minicnn explore`` makes it with no arguments (the shipped model,
    the fetched networks, the samples), served on a free port."""
    explorer = Explorer()
    explorer.add_network(load(None), "shipped model", kind="shipped")
    explorer.add_fetched()
    explorer.add_samples()
    server, stop = serve(explorer)
    yield server
    stop()


class Answer:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)


def request(url, data=None, headers=None, method=None) -> Answer:
    """One HTTP request; an error status is an Answer too, not an exception."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return Answer(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return Answer(e.code, e.headers, e.read())


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Chromium (module-wide: starting one takes a second or two)."""
    webdriver = pytest.importorskip("selenium.webdriver",
                                    reason="selenium is not installed (the test extra has it)")
    from selenium.webdriver.chrome.service import Service
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if shutil.which(p) is None]
    if missing:
        pytest.skip(f"no browser: {', '.join(missing)} missing (apt-get install -y chromium "
                    f"chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in BROWSER_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except Exception as e:          # noqa: BLE001 - any way of failing to start means no browser
        pytest.skip(f"Chromium did not start: {str(e).splitlines()[0]}")
    driver.set_script_timeout(120)
    yield driver
    driver.quit()


def wait_for(driver, script: str, timeout: float = 120.0):
    """Poll a JavaScript expression until it is truthy; -> its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(f"return ({script});")
        if value:
            return value
        if time.monotonic() > deadline:
            state = driver.execute_script(
                "const e = window.minicnnExplorer; return e && "
                "{error: e.error, explained: e.explained, busy: e.busy, answer: e.answer};")
            raise AssertionError(f"timed out waiting for {script}; page state: {state}")
        time.sleep(0.02)
