"""`make run`'s program: simulator, exporter and scaler start on loopback, and every command it prints works."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from simulator.demo import EXPORTER, SCALER, SCALER_WEB, SIMULATOR

ROOT = Path(__file__).resolve().parents[1]


def _busy(host: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def test_demo_serves_what_it_prints(tmp_path):
    busy = [f"{h}:{p}" for h, p in (SIMULATOR, EXPORTER, SCALER, SCALER_WEB) if _busy(h, p)]
    if busy:
        if os.environ.get("CI") == "true":
            pytest.fail(f"ports of `make run` are taken under CI: {busy}")
        pytest.skip(f"a `make run` seems to be running here (ports {busy} taken)")
    log = tmp_path / "make-run.log"
    with log.open("w") as sink:  # a little faster than `make run`, from just before the sale's peak
        proc = subprocess.Popen([sys.executable, "-m", "simulator.demo", "--speed", "3", "--start-at", "40"], cwd=ROOT,
                                stdout=sink, stderr=sink)  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while "Config used:" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        text = log.read_text()
        assert "Config used:" in text, text[-3000:]
        metrics_cmd = re.search(r"curl -s (\S+/metrics)", text)
        probe_cmd = re.search(r"curl -s '(\S+/probe\?\S+)'", text)
        assert metrics_cmd and probe_cmd, text
        want = {"orders", "payments", "shipping", "notifications"}
        deadline = time.monotonic() + 20  # a first poll that failed (a slow start on a loaded machine) is retried
        while True:
            families = {f.name: f for f in text_string_to_metric_families(_get("http://" + metrics_cmd.group(1)))}
            processes = {s.labels["microservice"] for s in families["horizon_microservice_processes"].samples}
            if want <= processes or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        up = {s.labels["microservice"]: s.value for s in families["horizon_up"].samples}
        assert want <= processes, (up, log.read_text()[-3000:])
        probed = {f.name: f for f in text_string_to_metric_families(_get("http://" + probe_cmd.group(1)))}
        assert probed["probe_success"].samples[0].value == 1
        assert probed["horizon_microservice_processes"].samples[0].labels == {"microservice": "orders"}
        assert _busy(*SCALER), "the scaler is not listening"
        page_url = re.search(r"status page +(http://\S+/)", text)
        assert page_url, text
        with urllib.request.urlopen(page_url.group(1), timeout=10) as resp:
            assert "script-src 'sha256-" in resp.headers["Content-Security-Policy"] and b"EventSource" in resp.read()
        assert f'href="{page_url.group(1)}"' in _get(f"http://localhost:{EXPORTER[1]}/"), "the landing page links it"
        with urllib.request.urlopen(page_url.group(1) + "events", timeout=10) as events:
            lines = iter(events.readline, b"")
            state = next(json.loads(line[len(b"data: ") :]) for line in lines if line.startswith(b"data: "))
        assert want <= {m["name"] for m in state["microservices"]}
        live_cmd = re.search(r"curl -s (\S+/-/live)", text)
        assert live_cmd, text
        # The simulated KEDA + HPA asks the real scaler and multiplies the busy microservices' pods (masters).
        start = json.loads(_get(live_cmd.group(1)))["microservices"]
        deadline = time.monotonic() + 60
        grown: dict[str, int] = {}
        while time.monotonic() < deadline and not grown:
            time.sleep(1)
            now = json.loads(_get(live_cmd.group(1)))["microservices"]
            grown = {ms: s["ready"] for ms, s in now.items() if s["ready"] > start[ms]["ready"]}
        assert grown, f"no microservice scaled up: {now}"
        ms, ready = next(iter(grown.items()))
        assert now[ms]["last_hpa"]["value"] is not None and now[ms]["stream"] == "active"
        seen = 0
        deadline = time.monotonic() + 15
        while seen < ready and time.monotonic() < deadline:  # the exporter's next poll shows the new master
            snapshot = json.loads(_get(f"http://localhost:{EXPORTER[1]}/api/v1/snapshot"))
            seen = snapshot["targets"][snapshot["microservices"][ms]["target"]]["masters"]["running"]
            time.sleep(0.5)
        assert seen >= ready, f"the exporter sees {seen} masters of {ms}, the loop made {ready} ready"
        assert "HPA scales" in log.read_text(), "the loop logs its decisions"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    time.sleep(0.5)
    assert not any(_busy(h, p) for h, p in (SIMULATOR, EXPORTER, SCALER, SCALER_WEB)), "a child outlived `make run`"
