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
from typing import Any, NamedTuple


def shown(got: object) -> str:
    """`got` as a message may show it: an object or array by its type, a number (or a string that reads as one) as
    written, any other string by its length only. The text of a string is never copied into a message: a Horizon
    (or whatever answers in its place) may echo the exporter's own credentials back, a token where a number belongs,
    and messages go to logs and the snapshot."""
    if isinstance(got, dict | list):
        return type(got).__name__
    if isinstance(got, str):
        try:
            float(got)
        except ValueError:
            return f"a string of {len(got)} character{'' if len(got) == 1 else 's'}"
    return repr(got)[:60]


class SchemaError(ValueError):
    """A payload whose shape is not Horizon's: names the endpoint, the JSON path and the expectation."""

    def __init__(self, endpoint: str, path: str, expected: str, got: object) -> None:
        self.endpoint = endpoint
        self.path = path
        super().__init__(f"/api/{endpoint} {path}: expected {expected}, got {shown(got)}")


class Supervisor(NamedTuple):
    """One supervisor of one master; `processes` maps a `connection:queue` pool key to its worker count."""

    name: str
    key: str
    status: str
    processes: Mapping[str, float]
    max_processes: float | None


class Master(NamedTuple):
    """One master supervisor (one Horizon pod) and its supervisors."""

    name: str
    status: str
    supervisors: tuple[Supervisor, ...]


class WorkloadRow(NamedTuple):
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


# NamedTuple.__new__ is a Python-level function; building hot-path records with tuple.__new__ skips that frame.
_new = tuple.__new__


class _Unusual(Exception):
    """The fast path met something it does not decide; the checked path decides (and names the JSON path)."""


def _fast_number(value: Any) -> float:
    kind = type(value)
    if kind is int or kind is float or kind is str:
        try:
            number = float(value)
        except (ValueError, OverflowError):
            raise _Unusual from None
        if number - number == 0.0:  # finite: inf - inf and nan - nan are nan
            return number
    raise _Unusual


def _fast_text(value: Any) -> str:
    if type(value) is str and value.isascii():
        return value
    raise _Unusual


def _workload_fast(payload: Any) -> tuple[WorkloadRow, ...]:
    if type(payload) is not list:
        raise _Unusual
    rows = []
    for row in payload:
        if type(row) is not dict:
            raise _Unusual
        rows.append(_new(WorkloadRow, (
            _fast_text(row.get("name")), _fast_number(row.get("length")), _fast_number(row.get("wait", 0)),
            _fast_number(row.get("processes", 0)),
        )))  # fmt: skip
    return tuple(rows)


def _masters_fast(payload: Any) -> tuple[Master, ...]:
    if type(payload) is not dict:
        if type(payload) is list and not payload:
            return ()
        raise _Unusual
    masters = []
    for key, master in payload.items():
        if type(master) is not dict:
            raise _Unusual
        name = master.get("name")
        name = _fast_text(name if type(name) is str else str(key))
        status = master.get("status")
        status = _fast_text(status) if type(status) is str else "unknown"
        sups = master.get("supervisors", [])
        if type(sups) is not list:
            raise _Unusual
        prefix = name + ":"
        parsed = []
        for sup in sups:
            if type(sup) is not dict:
                raise _Unusual
            sup_name = _fast_text(sup.get("name"))
            pools = sup.get("processes", [])
            if type(pools) is dict:
                processes = {_fast_text(k): _fast_number(v) for k, v in pools.items()}
            elif type(pools) is list and not pools:
                processes = {}
            else:
                raise _Unusual
            options = sup.get("options")
            max_processes = None
            if type(options) is dict:
                raw = options.get("maxProcesses")
                if raw is not None and raw != "":
                    max_processes = _fast_number(raw)
            sup_status = sup.get("status")
            sup_status = _fast_text(sup_status) if type(sup_status) is str else "unknown"
            key_ = sup_name[len(prefix) :] if sup_name.startswith(prefix) else sup_name.rsplit(":", 1)[-1]
            parsed.append(_new(Supervisor, (sup_name, key_, sup_status, processes, max_processes)))
        masters.append(_new(Master, (name, status, tuple(parsed))))
    return tuple(masters)


def parse_workload(payload: Any) -> tuple[WorkloadRow, ...]:
    """Parse `/api/workload` (an array of rows; `split_queues` and unknown fields are ignored)."""
    try:
        return _workload_fast(payload)
    except _Unusual:
        return parse_workload_checked(payload)


def parse_workload_checked(payload: Any) -> tuple[WorkloadRow, ...]:
    """`parse_workload` field by field, naming the JSON path of what is wrong (the fast path's authority)."""
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
    # Paths name a key by its position, never its text: an upstream echoing a credential as a key must not see it
    # copied into a message (see `shown`).
    processes = {
        _text(str(key), "masters", f"{path}.processes[#{i}]"): _number(count, "masters", f"{path}.processes[#{i}]")
        for i, (key, count) in enumerate(pools.items())
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
    try:
        return _masters_fast(payload)
    except _Unusual:
        return parse_masters_checked(payload)


def parse_masters_checked(payload: Any) -> tuple[Master, ...]:
    """`parse_masters` field by field, naming the JSON path of what is wrong (the fast path's authority)."""
    masters_obj = _object(payload, "masters", "$")
    masters = []
    for i, (key, raw) in enumerate(masters_obj.items()):
        path = f"$[#{i}]"  # by position, as above
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
