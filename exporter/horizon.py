"""Parse Laravel Horizon's `/api/stats`, `/api/workload` and `/api/masters` payloads into plain typed data.

Pure functions over decoded JSON. Lenient where Horizon itself varies (numbers as strings or floats, `[]` for empty
objects, inactive supervisors with `processes: []`, extra fields), strict where the shape is simply wrong: that
raises `SchemaError` naming the endpoint, the JSON path and what was expected. Wrong includes numbers that are not
finite (`NaN`, `Infinity`, `1e999`, `"nan"`) and strings that are not valid Unicode (a lone surrogate such as
`"\ud800"`): PHP's `json_encode` produces neither, and a kept string becomes a label value that could not be
encoded for /metrics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class SchemaError(ValueError):
    """A payload whose shape is not Horizon's: names the endpoint, the JSON path and the expectation."""

    def __init__(self, endpoint: str, path: str, expected: str, got: object) -> None:
        self.endpoint = endpoint
        self.path = path
        shown = type(got).__name__ if isinstance(got, dict | list) else repr(got)[:60]
        super().__init__(f"/api/{endpoint} {path}: expected {expected}, got {shown}")


@dataclass(frozen=True, slots=True)
class Supervisor:
    """One supervisor of one master; `processes` maps a `connection:queue` pool key to its worker count."""

    name: str
    key: str
    status: str
    processes: Mapping[str, float]
    max_processes: float | None


@dataclass(frozen=True, slots=True)
class Master:
    """One master supervisor (one Horizon pod) and its supervisors."""

    name: str
    status: str
    supervisors: tuple[Supervisor, ...]


@dataclass(frozen=True, slots=True)
class WorkloadRow:
    """One row of `/api/workload`: a pool's queue name (connection stripped) and its ready length."""

    name: str
    length: float
    wait: float
    processes: float


@dataclass(frozen=True, slots=True)
class Stats:
    """The fields of `/api/stats` the exporter uses; optional numbers are None when Horizon omits them."""

    status: str
    processes: float
    jobs_per_minute: float | None
    recent_jobs: float | None
    failed_jobs: float | None


@dataclass(frozen=True, slots=True)
class HorizonReading:
    """One consistent poll of a Horizon: the three endpoints, parsed."""

    stats: Stats
    workload: tuple[WorkloadRow, ...]
    masters: tuple[Master, ...]


def _number(value: Any, endpoint: str, path: str) -> float:
    # bool is an int subclass in Python; Horizon never sends a bool where it means a count.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SchemaError(endpoint, path, "a number", value)
    try:
        number = float(value)
    except ValueError:
        raise SchemaError(endpoint, path, "a number", value) from None
    except OverflowError:  # an integer literal beyond a float's range
        number = math.inf
    if not math.isfinite(number):
        raise SchemaError(endpoint, path, "a finite number", value)
    return number


def _text(value: str, endpoint: str, path: str) -> str:
    """`value` if it is valid Unicode; a lone surrogate (JSON `"\\ud800"`) is a schema error, never a label."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise SchemaError(endpoint, path, "a valid Unicode string", value) from None
    return value


def _status(obj: Mapping[str, Any], endpoint: str, path: str) -> str:
    status = obj.get("status")
    return _text(status, endpoint, f"{path}.status") if isinstance(status, str) else "unknown"


def _optional_number(obj: Mapping[str, Any], key: str, endpoint: str, path: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    return _number(value, endpoint, f"{path}.{key}")


def _object(value: Any, endpoint: str, path: str, *, empty_list_ok: bool = True) -> Mapping[str, Any]:
    # PHP serialises an empty associative array as `[]`, so `[]` stands for `{}` throughout Horizon's API.
    if isinstance(value, dict):
        return value
    if empty_list_ok and isinstance(value, list) and not value:
        return {}
    raise SchemaError(endpoint, path, "an object", value)


def _string(obj: Mapping[str, Any], key: str, endpoint: str, path: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise SchemaError(endpoint, f"{path}.{key}", "a string", value)
    return _text(value, endpoint, f"{path}.{key}")


def parse_stats(payload: Any) -> Stats:
    """Parse `/api/stats`."""
    obj = _object(payload, "stats", "$", empty_list_ok=False)
    return Stats(
        status=_status(obj, "stats", "$"),
        processes=_number(obj.get("processes"), "stats", "$.processes"),
        jobs_per_minute=_optional_number(obj, "jobsPerMinute", "stats", "$"),
        recent_jobs=_optional_number(obj, "recentJobs", "stats", "$"),
        failed_jobs=_optional_number(obj, "failedJobs", "stats", "$"),
    )


def parse_workload(payload: Any) -> tuple[WorkloadRow, ...]:
    """Parse `/api/workload` (an array of rows; `split_queues` and unknown fields are ignored)."""
    if not isinstance(payload, list):
        raise SchemaError("workload", "$", "an array", payload)
    rows = []
    for i, raw in enumerate(payload):
        path = f"$[{i}]"
        row = _object(raw, "workload", path, empty_list_ok=False)
        rows.append(
            WorkloadRow(
                name=_string(row, "name", "workload", path),
                length=_number(row.get("length"), "workload", f"{path}.length"),
                wait=_number(row.get("wait", 0), "workload", f"{path}.wait"),
                processes=_number(row.get("processes", 0), "workload", f"{path}.processes"),
            )
        )
    return tuple(rows)


def _supervisor_key(name: str, master: str) -> str:
    prefix = master + ":"
    if name.startswith(prefix):
        return name[len(prefix) :]
    return name.rsplit(":", 1)[-1]


def _parse_supervisor(raw: Any, master: str, path: str) -> Supervisor:
    sup = _object(raw, "masters", path, empty_list_ok=False)
    name = _string(sup, "name", "masters", path)
    pools = _object(sup.get("processes", []), "masters", f"{path}.processes")
    processes = {
        _text(str(key), "masters", f"{path}.processes[{key!r}]"): _number(
            count, "masters", f"{path}.processes[{key!r}]"
        )
        for key, count in pools.items()
    }
    options = sup.get("options")
    max_processes = None
    if isinstance(options, dict) and options.get("maxProcesses") not in (None, ""):
        max_processes = _number(options["maxProcesses"], "masters", f"{path}.options.maxProcesses")
    return Supervisor(
        name=name,
        key=_supervisor_key(name, master),
        status=_status(sup, "masters", path),
        processes=processes,
        max_processes=max_processes,
    )


def parse_masters(payload: Any) -> tuple[Master, ...]:
    """Parse `/api/masters`: an object keyed by master name, or `[]` when no master is alive."""
    masters_obj = _object(payload, "masters", "$")
    masters = []
    for key, raw in masters_obj.items():
        path = f"$[{key!r}]"
        master = _object(raw, "masters", path, empty_list_ok=False)
        name = master.get("name")
        name = _text(name, "masters", f"{path}.name") if isinstance(name, str) else _text(str(key), "masters", path)
        sups = master.get("supervisors", [])
        if not isinstance(sups, list):
            raise SchemaError("masters", f"{path}.supervisors", "an array", sups)
        masters.append(
            Master(
                name=name,
                status=_status(master, "masters", path),
                supervisors=tuple(_parse_supervisor(s, name, f"{path}.supervisors[{i}]") for i, s in enumerate(sups)),
            )
        )
    return tuple(masters)


def parse_reading(stats: Any, workload: Any, masters: Any) -> HorizonReading:
    """Parse the three decoded payloads of one poll."""
    return HorizonReading(stats=parse_stats(stats), workload=parse_workload(workload), masters=parse_masters(masters))
