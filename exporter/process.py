"""How the process runs: its log format (`--log-format text|json`), its event loop (uvloop when installed) and,
for debugging only, a count of its asyncio tasks written to a file (`HORIZON_KEDA_DEBUG_TASKS`).

The exporter and the scaler each carry this same small module: the scaler knows the exporter only by its HTTP
contract, so neither package imports the other.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Mapping

LOG_FORMATS = ("text", "json")
DEBUG_TASKS_ENV = "HORIZON_KEDA_DEBUG_TASKS"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    """A log record as `{"time", "level", "logger", "message"[, "exception"]}`; time is UTC RFC 3339 with ms."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(level: str, fmt: str) -> None:
    """The root logger at `level` (debug … error), writing `fmt` (text or json) to standard error."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])  # no-op when a handler is set (tests)


def new_event_loop(env: Mapping[str, str]) -> asyncio.AbstractEventLoop:
    """uvloop's event loop when it is installed (it cuts the polling's CPU; see README), unless
    HORIZON_KEDA_EVENT_LOOP=asyncio asks for the standard one."""
    if env.get("HORIZON_KEDA_EVENT_LOOP", "uvloop") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def start_task_report(env: Mapping[str, str], interval: float = 1.0) -> asyncio.Task[None] | None:
    """With HORIZON_KEDA_DEBUG_TASKS=PATH (off by default; bench/soak.py uses it): every `interval` seconds, write
    `{"tasks": <asyncio tasks not done>, "time": <Unix time>}` to PATH. /proc shows memory, fds and threads but
    not tasks, and a task leak is the one a soak of an asyncio server most needs to see. Call on the running loop."""
    path = env.get(DEBUG_TASKS_ENV)
    if not path:
        return None
    return asyncio.get_running_loop().create_task(_report_tasks(path, interval), name="debug-tasks")


async def _report_tasks(path: str, interval: float) -> None:
    while True:
        try:  # a few bytes to a local file: not worth a thread
            _write_whole(path, json.dumps({"tasks": len(asyncio.all_tasks()), "time": time.time()}) + "\n")
        except OSError as exc:
            logging.getLogger("horizon_keda").warning("%s: cannot write %s (%s); no task counts", DEBUG_TASKS_ENV,
                                                      path, exc.strerror)  # fmt: skip
            return
        await asyncio.sleep(interval)


def _write_whole(path: str, text: str) -> None:
    """Write `text` to `path` so that a reader never sees half of it."""
    partial = f"{path}.partial"
    with open(partial, "w") as fh:
        fh.write(text)
    os.replace(partial, path)
