"""A user's own history as the load: a CSV, or a Prometheus range query over what the exporter recorded — tested
against Debian's real `prometheus` holding backfilled history (`promtool tsdb create-blocks-from openmetrics`)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from simulator.whatif.cli import main
from simulator.whatif.loads import LoadError, csv_load
from tests.conftest import real_prometheus, require_binary

SCENARIO = """
duration: 600
seed: 5
microservices:
  - name: orders
    job_seconds: 0.5
    load: [[0, 1]]
    horizon: {min_processes: 1, max_processes: 8, worker_sleep: 0}
    scaling: {min_replicas: 1, max_replicas: 10, threshold: 8}
  - name: payments
    job_seconds: 0.5
    load: [[0, 1]]
    horizon: {min_processes: 1, max_processes: 8, worker_sleep: 0}
    scaling: {min_replicas: 1, max_replicas: 10, threshold: 8}
pipelines: [push]
"""


def test_csv_rows_become_each_microservices_load(tmp_path):
    f = tmp_path / "history.csv"
    f.write_text("t,microservice,jobs_per_second\n"
                 "2026-11-27T10:00:00Z,orders,2\n2026-11-27T10:05:00Z,orders,10\n"
                 "2026-11-27T10:00:00Z,payments,1\n")  # fmt: skip
    load = csv_load(f, "orders", "load")
    assert load.points == ((0.0, 2.0), (300.0, 10.0))
    assert load.rate(150) == pytest.approx(6.0)
    with pytest.raises(LoadError, match=r"no rows for microservice 'shipping' \(the file has: orders, payments\)"):
        csv_load(f, "shipping", "load")
    bad = tmp_path / "bad.csv"
    bad.write_text("0,orders\n")
    with pytest.raises(LoadError, match=r"bad.csv:1: expected 3 columns"):
        csv_load(bad, "orders", "load")


def test_load_csv_replaces_every_load_in_one_command(tmp_path, capsys):
    (tmp_path / "s.yml").write_text(SCENARIO)
    (tmp_path / "h.csv").write_text("0,orders,20\n600,orders,20\n0,payments,2\n600,payments,2\n")
    assert main([str(tmp_path / "s.yml"), "--load-csv", str(tmp_path / "h.csv"), "--out", str(tmp_path / "o"),
                 "--no-plots", "--quiet"]) == 0  # fmt: skip
    figs = json.loads((tmp_path / "o" / "summary.json").read_text())["pipelines"]["push"]["microservices"]
    assert figs["orders"]["jobs"]["arrived"] == pytest.approx(20 * 600, rel=0.05)
    assert figs["payments"]["jobs"]["arrived"] == pytest.approx(2 * 600, rel=0.15)


def openmetrics(start: int, minutes: int) -> str:
    """What the exporter would have recorded: horizon_jobs_per_minute per target every 15 s, a step at half time."""
    lines = ["# HELP horizon_jobs_per_minute jobs processed per minute", "# TYPE horizon_jobs_per_minute gauge"]
    for target, quiet, busy in (("orders", 120, 1200), ("payments", 60, 300)):
        for i in range(minutes * 4 + 1):
            t = start + 15 * i
            value = quiet if i < minutes * 2 else busy
            lines.append(f'horizon_jobs_per_minute{{target="{target}"}} {value} {t}')
    return "\n".join(lines) + "\n# EOF\n"


@pytest.fixture
def backfilled(tmp_path: Path) -> tuple[Path, int]:
    promtool = require_binary("promtool")
    start = (int(time.time()) // 3600 - 48) * 3600  # two days ago, on an hour: inside the default retention
    source = tmp_path / "history.om"
    source.write_text(openmetrics(start, 10))
    data = tmp_path / "data"
    out = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    return tmp_path, start


def wait_ready(base: str, prom) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        prom.assert_alive()
        try:
            with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail("prometheus did not become ready")


async def test_last_black_friday_from_prometheus_is_one_command(backfilled, capsys):
    tmp_path, start = backfilled
    async with real_prometheus(tmp_path, {}) as prom:
        wait_ready(prom.base, prom)
        (tmp_path / "s.yml").write_text(SCENARIO)
        end = start + 600
        code = main([str(tmp_path / "s.yml"), "--load-prometheus", prom.base, "--start", str(start), "--end",
                     str(end), "--step", "15", "--out", str(tmp_path / "o"), "--no-plots", "--quiet"])  # fmt: skip
        assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["duration_seconds"] == 600
    figs = summary["pipelines"]["push"]["microservices"]
    # orders: 2 jobs/s for 300 s, then 20 jobs/s (the per-minute values / 60); payments 1 then 5
    assert figs["orders"]["jobs"]["arrived"] == pytest.approx(2 * 300 + 20 * 300, rel=0.06)
    assert figs["payments"]["jobs"]["arrived"] == pytest.approx(1 * 300 + 5 * 300, rel=0.1)
    assert figs["orders"]["max_replicas"] > 1, "the step made orders scale"


async def test_a_query_that_returns_nothing_is_an_error_naming_it(backfilled, capsys):
    tmp_path, start = backfilled
    async with real_prometheus(tmp_path, {}) as prom:
        wait_ready(prom.base, prom)
        (tmp_path / "s.yml").write_text(SCENARIO)
        code = main([str(tmp_path / "s.yml"), "--load-prometheus", prom.base, "--start", str(start), "--end",
                     str(start + 600), "--query", 'horizon_jobs_per_minute{target="nope-{microservice}"}'])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "expected exactly one series from 'horizon_jobs_per_minute{target=\"nope-orders\"}', got 0" in err


def test_csv_times_are_relative_to_the_files_first_timestamp_for_every_microservice(tmp_path):
    f = tmp_path / "history.csv"
    f.write_text("2026-11-27T10:00:00Z,orders,2\n2026-11-27T10:05:00Z,payments,4\n2026-11-27T10:15:00Z,payments,8\n")
    assert csv_load(f, "payments", "load").points == ((300.0, 4.0), (900.0, 8.0)), "aligned with orders, not shifted"
