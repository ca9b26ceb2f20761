"""The soak (bench/soak.py) for 60 s: the running exporter and scaler stay flat and make no unexpected error, and
the opt-in task count it reads (HORIZON_KEDA_DEBUG_TASKS) is off by default."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from exporter import process as exporter_process
from external_scaler import process as scaler_process

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load_soak() -> ModuleType:  # bench/ is scripts, not a package: load soak.py (and the fleet.py it imports) by path
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("soak", BENCH / "soak.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["soak"] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.timeout(240)
def test_a_minute_of_soak_stays_flat_with_no_unexpected_error(tmp_path):
    soak = _load_soak()
    lines: list[str] = []
    report = soak.run_soak(soak.Settings(
        seconds=60, interval=10, warmup=20, reload_every=20, logdir=tmp_path, out=lines.append,
        rss_growth=0.25, fds_slack=10, tasks_slack=20, threads_slack=4,
    ))  # fmt: skip
    summary = "\n".join(lines + report.verdict)
    assert report.unexpected == [], summary
    for who in ("exporter", "scaler"):
        growth = report.growth[who]
        assert growth["rss"] < 0.25, summary
        assert growth["fds"] <= 10 and growth["threads"] <= 4 and growth["tasks"] <= 20, summary
    assert report.ok, summary
    # It did what it says: streams answered, reloads applied, Horizons failed and the exporter saw it.
    counts = report.counts
    assert counts["streams answered"] > 500 and counts["/probe requests"] >= 50, summary
    assert counts["reloads verified"] == 2, summary
    assert counts["faults started"] > 5 and report.expected["poll_failure"] > 0, summary


@pytest.mark.parametrize("process", [exporter_process, scaler_process], ids=["exporter", "scaler"])
async def test_the_task_count_is_written_only_when_asked(process, tmp_path):
    assert process.start_task_report({}) is None
    path = tmp_path / "tasks.json"
    task = process.start_task_report({process.DEBUG_TASKS_ENV: str(path)}, interval=0.01)
    assert task is not None
    try:
        for _ in range(500):
            await asyncio.sleep(0.01)
            if path.exists():
                break
        doc = json.loads(path.read_text())
        assert doc["tasks"] >= 2  # this test and the reporter itself
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_both_programs_carry_the_same_process_module():
    assert Path(exporter_process.__file__).read_text() == Path(scaler_process.__file__).read_text()
