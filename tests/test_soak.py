"""The opt-in task count the soak reads (HORIZON_KEDA_DEBUG_TASKS): off by default, written when asked."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest

from exporter import process as exporter_process
from external_scaler import process as scaler_process


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
