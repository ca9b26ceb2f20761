"""The scaler's status page in a real headless browser: Debian's chromium through its chromedriver, driven by
selenium. The real simulator (in this process), exporter and scaler (processes) run on loopback; KEDA-shaped gRPC
calls give some microservices thresholds and decisions. The page shows the simulator's microservices; a value the
simulator changes, then a decision, change on the page without a reload; the console stays free of errors; the
page fits a phone. Screenshots go to the test's tmp dir; `STATUS_PAGE_SCREENSHOT=docs/status-page.png` (or
`make status-page-screenshot`) also writes the README's, after letting the sparklines fill for a minute."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp import web

from external_scaler._proto import externalscaler_pb2 as pb
from external_scaler._proto import externalscaler_pb2_grpc as pb_grpc
from simulator.cli import targets_text
from simulator.fleet import default_fleet
from simulator.server import Simulator, create_app
from tests.conftest import free_port, require_binary

MICROSERVICES = {"orders", "payments", "shipping", "notifications", "inventory", "reports"}
# What the test's "KEDA" asks: a threshold per ScaledObject; inventory and reports stay unasked (default 8).
THRESHOLDS = {"orders": 4, "payments": 2, "shipping": 3, "notifications": 5}
SCREENSHOT_ENV = "STATUS_PAGE_SCREENSHOT"


def _selenium() -> Any:
    try:
        from selenium import webdriver
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("selenium is not installed; it is in the test extra of pyproject.toml")
        pytest.skip("selenium is not installed (pip install -e '.[test]')")
    return webdriver


class SimulatorThread:
    """The Horizon simulator's aiohttp app on its own event loop in a thread, on 127.0.0.1:<free>; `call` runs a
    function on that loop (the simulator's state belongs to it) and returns its result."""

    def __init__(self, speed: float, start_at: float) -> None:
        self.sim = Simulator(default_fleet(0), speed=speed, start_at=start_at)
        self.loop = asyncio.new_event_loop()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self._runner = web.AppRunner(create_app(self.sim), access_log=None)
        self._thread = threading.Thread(target=self.loop.run_forever, name="simulator", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._run(self._start())

    async def _start(self) -> None:
        await self._runner.setup()
        await web.SockSite(self._runner, self.sock).start()

    def _run(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout=30)

    def call(self, fn: Callable[[], Any]) -> Any:
        async def run() -> Any:
            return fn()

        return self._run(run())

    def stop(self) -> None:
        self._run(self._runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()
        self.sock.close()


def _wait(what: str, predicate: Callable[[], Any], timeout: float, procs: list[subprocess.Popen[bytes]]) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        assert all(p.poll() is None for p in procs), f"a process exited while waiting for {what}"
        try:
            result = predicate()
        except (OSError, grpc.RpcError):
            result = None
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _streamed(url: str) -> set[str]:
    """The microservices in the first event of the page's /events stream."""
    with urllib.request.urlopen(url + "events", timeout=10) as events:
        for line in iter(events.readline, b""):
            if line.startswith(b"data: "):
                return {m["name"] for m in json.loads(line[len(b"data: ") :])["microservices"]}
    raise OSError("the stream ended before its first event")


class Keda:
    """KEDA's calls for one trigger per microservice, through the real generated client."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.stub = pb_grpc.ExternalScalerStub(self.channel)

    def ask(self, microservice: str, threshold: float) -> bool:
        ref = pb.ScaledObjectRef(name=microservice, namespace="shop", scalerMetadata={
            "scalerAddress": "horizon-scaler.horizon-keda:6000", "microservice": microservice,
            "threshold": str(threshold),
        })  # fmt: skip
        spec = self.stub.GetMetricSpec(ref, timeout=5).metricSpecs[0]
        active = self.stub.IsActive(ref, timeout=5).result
        self.stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref, metricName=spec.metricName), timeout=5)
        return active

    def close(self) -> None:
        self.channel.close()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[SimulatorThread, Keda, str, list[subprocess.Popen[bytes]]]]:
    """Simulator, exporter and scaler on loopback; yields the simulator, a KEDA client, the page URL, the procs."""
    regenerating = bool(os.environ.get(SCREENSHOT_ENV))
    simulator = SimulatorThread(speed=5.0 if regenerating else 3.0, start_at=40.0)
    simulator.start()
    exporter_port, grpc_port, web_port = free_port(), free_port(), free_port()
    page = f"http://127.0.0.1:{web_port}/"
    config = tmp_path / "exporter.yml"
    config.write_text(targets_text(simulator.url))
    procs: list[subprocess.Popen[bytes]] = []
    keda = None
    try:
        with (tmp_path / "exporter.log").open("wb") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "exporter", "--config", str(config), "--listen", f"127.0.0.1:{exporter_port}",
                 "--status-page-url", page],
                stdout=log, stderr=subprocess.STDOUT,
            ))  # fmt: skip
        with (tmp_path / "scaler.log").open("wb") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "external_scaler", "--listen", f"127.0.0.1:{grpc_port}",
                 "--exporter", f"http://127.0.0.1:{exporter_port}", "--metrics-listen", f"127.0.0.1:{web_port}"],
                stdout=log, stderr=subprocess.STDOUT,
            ))  # fmt: skip
        _wait("the six microservices on /events", lambda: MICROSERVICES.issubset(_streamed(page)), 60, procs)
        keda = Keda(f"127.0.0.1:{grpc_port}")
        for microservice, threshold in THRESHOLDS.items():
            _wait(f"KEDA's calls about {microservice}", lambda m=microservice, t=threshold: keda.ask(m, t) or True, 30,
                  procs)  # fmt: skip
        yield simulator, keda, page, procs
    finally:
        if keda is not None:
            keda.close()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        simulator.stop()


@pytest.fixture
def driver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Headless Debian chromium through Debian's chromedriver; selenium is never left to find or fetch either.
    (Requested before `stack`: a machine without them skips, or fails under CI, before anything starts.)"""
    webdriver = _selenium()
    from selenium.webdriver.chrome.service import Service

    binary = require_binary("chromium", "chromium")
    driver_path = require_binary("chromedriver", "chromium-driver")
    monkeypatch.setenv("SE_OFFLINE", "true")  # selenium-manager, should anything reach it, downloads nothing
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}", "--no-first-run", "--disable-extensions",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-pings",
        "--disable-domain-reliability", "--disable-client-side-phishing-detection", "--disable-default-apps",
        # Loopback goes direct; anything else would go to a proxy that is not there: the page must need nothing more.
        "--proxy-server=http://127.0.0.1:9",
    ):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=driver_path, log_output=str(tmp_path / "chromedriver.log"))
    chrome = webdriver.Chrome(service=service, options=options)
    try:
        yield chrome
    finally:
        chrome.quit()


def _cards(driver: Any) -> set[str]:
    """The microservices the page has a card for."""
    return set(
        driver.execute_script("return [...document.querySelectorAll('#list > li')].map(e => e.dataset.microservice)")
    )


def _card_text(driver: Any, microservice: str, part: str) -> str:
    return driver.execute_script(
        "const c = [...document.querySelectorAll('#list > li')].find(e => e.dataset.microservice === arguments[0]);"
        "return c ? c.querySelector(arguments[1]).textContent : null;",
        microservice, part,
    )  # fmt: skip


def _until(driver: Any, what: str, predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda _: predicate(), message=what)


def _errors(driver: Any) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR") or "Security" in e["message"]]


def test_the_page_follows_the_simulator_live_without_a_reload(driver, stack, tmp_path: Path):
    simulator, keda, page, procs = stack
    driver.get(page)
    _until(driver, "the simulator's microservices on the page", lambda: MICROSERVICES.issubset(_cards(driver)))
    assert _cards(driver) == MICROSERVICES
    assert _card_text(driver, "orders", ".threshold") == "4"
    assert _card_text(driver, "orders", ".threshold-from") == "threshold"
    assert _card_text(driver, "inventory", ".threshold") == "8"  # no ScaledObject asks: KEDA's default, said so
    assert _card_text(driver, "inventory", ".threshold-from") == "default"
    assert _card_text(driver, "orders", ".replicas").isdigit()
    assert _card_text(driver, "inventory", ".activity") == "not asked"
    _until(driver, "the connection pill saying live", lambda: driver.find_element("id", "conn").text == "live")
    driver.execute_script("window.__sameDocument = 'before the simulator changed anything';")

    settle = float(os.environ.get("STATUS_PAGE_SETTLE", "60")) if os.environ.get(SCREENSHOT_ENV) else 0.0
    deadline = time.monotonic() + settle  # regenerating the README's picture: let the sparklines fill
    while time.monotonic() < deadline:
        for microservice, threshold in THRESHOLDS.items():
            keda.ask(microservice, threshold)
        time.sleep(5)

    before = _card_text(driver, "payments", ".processes")
    assert before not in ("0", "—"), f"payments shows {before!r} before the change; the test needs a number > 0"
    assert _card_text(driver, "payments", ".activity") == "active"
    # The simulator changes it: every payments pod gone from Horizon's API (masters []), so 0 processes.
    simulator.call(lambda: simulator.sim.faults.__setitem__("payments", "down"))
    _until(driver, "payments at 0 processes", lambda: _card_text(driver, "payments", ".processes") == "0")
    # Its Horizon failing (503): the values are kept, marked stale.
    simulator.call(lambda: simulator.sim.faults.__setitem__("shipping", "maintenance"))
    _until(driver, "shipping marked stale", lambda: _card_text(driver, "shipping", ".health") == "stale")
    # KEDA asks again: the decision changes on the page too.
    assert keda.ask("payments", THRESHOLDS["payments"]) is False
    _until(driver, "payments inactive", lambda: _card_text(driver, "payments", ".activity") == "inactive")
    _until(driver, "payments wanting 1 replica", lambda: _card_text(driver, "payments", ".replicas") == "1")

    assert driver.execute_script("return window.__sameDocument") == "before the simulator changed anything"
    assert driver.execute_script("return performance.getEntriesByType('navigation').length") == 1
    assert _cards(driver) == MICROSERVICES
    assert _errors(driver) == []

    shot = tmp_path / "status-page.png"  # the page's content, without the empty window below it
    assert driver.find_element("tag name", "body").screenshot(str(shot)) and shot.stat().st_size > 10_000
    wanted = os.environ.get(SCREENSHOT_ENV)
    if wanted:
        shutil.copyfile(shot, wanted)

    # A phone: 390 × 844 CSS pixels, the page's viewport meta in force, no sideways scrolling.
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})  # fmt: skip
    _until(driver, "the phone layout", lambda: driver.execute_script("return innerWidth") == 390)
    width, scroll = driver.execute_script("return [innerWidth, document.documentElement.scrollWidth]")
    assert scroll <= width, f"{scroll} px of content in a {width} px wide phone screen"
    size = driver.execute_script("return parseFloat(getComputedStyle(document.querySelector('.name')).fontSize)")
    assert size >= 14, "microservice names too small to read on a phone"
    assert driver.save_screenshot(str(tmp_path / "status-page-phone.png"))
    assert _errors(driver) == []
    assert all(p.poll() is None for p in procs)
