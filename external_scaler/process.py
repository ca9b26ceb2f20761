"""How the process runs: its log format (`--log-format text|json`) and its event loop (uvloop when installed).

The exporter and the scaler each carry this same small module: the scaler knows the exporter only by its HTTP
contract, so neither package imports the other.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping

LOG_FORMATS = ("text", "json")
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
