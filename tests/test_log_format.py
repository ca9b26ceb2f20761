"""`--log-format json`: both console scripts write one JSON object per log line; `text` stays the default."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.cli import build_parser, main, resolve_config
from exporter.process import JsonFormatter
from tests.conftest import free_port

BIN = Path(sys.executable).parent


def test_a_record_becomes_one_json_object():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("horizon_keda", logging.ERROR, __file__, 1, "target %s: %s", ("orders", "x"),
                                   sys.exc_info())  # fmt: skip
    line = JsonFormatter().format(record)
    assert "\n" not in line.split('"exception"')[0]
    doc = json.loads(line)
    assert doc["level"] == "error" and doc["logger"] == "horizon_keda" and doc["message"] == "target orders: x"
    assert doc["time"].endswith("Z") and "ValueError: boom" in doc["exception"]


def test_the_exporter_takes_the_flag_and_its_variable(capsys):
    args = build_parser().parse_args(["--target", "a=http://a", "--log-format", "json"])
    resolve_config(args, {})
    assert args.log_format == "json"
    args = build_parser().parse_args(["--target", "a=http://a"])
    resolve_config(args, {"HORIZON_EXPORTER_LOG_FORMAT": "JSON"})
    assert args.log_format == "json"
    assert main(["--target", "a=http://a"], env={"HORIZON_EXPORTER_LOG_FORMAT": "yaml"}) == 2
    assert "HORIZON_EXPORTER_LOG_FORMAT" in capsys.readouterr().err


def test_the_running_exporter_logs_json_lines():
    port = free_port()
    proc = subprocess.Popen([str(BIN / "horizon-exporter"), "--target", "orders=http://127.0.0.1:9/horizon",
                             "--listen", f"127.0.0.1:{port}", "--log-format", "json"],
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        line = proc.stderr.readline()  # type: ignore[union-attr]
    finally:
        proc.terminate()
        proc.communicate(timeout=10)  # drains and closes the pipe
    doc = json.loads(line)
    assert doc["logger"].startswith("horizon_keda") and doc["level"] in ("info", "warning")


def test_the_scaler_logs_json_lines_and_refuses_a_bad_format():
    proc = subprocess.run([str(BIN / "horizon-scaler"), "--listen", "127.0.0.1:0", "--log-format", "json",
                           "--audit-log", "/nonexistent-dir/audit.jsonl"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2
    docs = [json.loads(line) for line in proc.stderr.splitlines()]
    assert any("--audit-log: cannot open" in d["message"] and d["level"] == "error" for d in docs)
    with pytest.raises(SystemExit) as exc:
        from external_scaler.cli import parse_args

        parse_args(["--log-format", "xml"], {})
    assert exc.value.code == 2
