"""The audit trail (`--audit-log PATH`, `-` for stdout): one JSON object per line for every decision change of a
ScaledObject and every call the scaler refused (field names in docs/scaler.md, "Audit trail")."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

_REMEMBERED = 10_000  # ScaledObject decisions kept to tell a change from a repeat; past it, forget and re-log


def _rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


class AuditLog:
    """Writes audit records as JSON lines; a decision is written when it differs from that ScaledObject's last."""

    def __init__(self, stream: TextIO, *, clock: Callable[[], float] = time.time, owned: bool = False) -> None:
        self._stream = stream
        self._clock = clock
        self._owned = owned
        self._last: dict[tuple[Any, ...], Any] = {}

    @classmethod
    def open(cls, path: str) -> AuditLog:
        """`-` is standard output; a path is appended to, line by line (OSError when it cannot be opened)."""
        if path == "-":
            return cls(sys.stdout)
        return cls(open(path, "a", encoding="utf-8", buffering=1), owned=True)

    def close(self) -> None:
        """Close the file (not standard output)."""
        if self._owned:
            self._stream.close()

    def _write(self, record: dict[str, Any]) -> None:
        self._stream.write(json.dumps({"time": _rfc3339(self._clock()), **record}, separators=(",", ":")) + "\n")

    def decision(self, namespace: str, name: str, trigger: Any, kind: str, value: float, decided: Any) -> None:
        """Record a decision (`kind` active: `decided` is the bool; kind scale: the replicas wanted) if it changed."""
        key = (namespace, name, trigger.metric_name, trigger.threshold, trigger.mode, trigger.activation_threshold,
               kind)  # fmt: skip
        if self._last.get(key, ...) == decided:
            return
        if len(self._last) >= _REMEMBERED:
            self._last.clear()
        self._last[key] = decided
        record: dict[str, Any] = {
            "event": "decision", "namespace": namespace, "scaled_object": name,
            "microservice": trigger.microservice, "metric": trigger.metric, "queue": trigger.queue,
            "value": value, "threshold": trigger.threshold, "mode": trigger.mode,
            "activation_threshold": trigger.activation_threshold,
        }  # fmt: skip
        if kind == "active":
            record["active"] = decided
        else:
            record["replicas"] = decided
        self._write(record)

    def refused(self, namespace: str, name: str, rpc: str, code: str, reason: str) -> None:
        """Record a call answered with an error status."""
        self._write({"event": "refused", "namespace": namespace, "scaled_object": name, "rpc": rpc, "code": code,
                     "reason": reason})  # fmt: skip
