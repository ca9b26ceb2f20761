"""Load curves (jobs per second over time) for the what-if engine: points, built-in shapes, a CSV of a user's own
history, or a Prometheus range query over what this exporter recorded."""

from __future__ import annotations

import bisect
import csv
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..load import black_friday_rate


class LoadError(ValueError):
    """A load that cannot be built; the message names the key, file or query."""


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """Jobs per second at time t: `kind` says where it came from (for the report), `points` or a shape's `params`."""

    kind: str
    points: tuple[tuple[float, float], ...] = ()
    params: tuple[tuple[str, float], ...] = ()
    source: str = ""

    def rate(self, t: float) -> float:
        if self.kind == "points":
            return _interpolate(self.points, t)
        p = dict(self.params)
        base, peak = p["base"], p["peak"]
        if self.kind == "step":
            return peak if p["at"] <= t < p["until"] else base
        if self.kind == "spike":
            rise = p["at"] <= t < p["at"] + p["duration"]
            return peak if rise else base
        if self.kind == "diurnal":
            return base + (peak - base) * (1 + math.cos(2 * math.pi * (t - p["peak_at"]) / p["period"])) / 2
        return black_friday_rate(base, peak, t, scale=p["scale"], delay=p["delay"], phase=p["phase"])

    def describe(self) -> str:
        if self.kind == "points":
            return self.source or f"{len(self.points)} points"
        return self.kind + " " + ", ".join(f"{k} {v:g}" for k, v in self.params)

    def peak(self, duration: int) -> float:
        """The highest rate over [0, duration), sampled each second."""
        return max((self.rate(s + 0.5) for s in range(duration)), default=0.0)


def _interpolate(points: Sequence[tuple[float, float]], t: float) -> float:
    if t <= points[0][0]:
        return points[0][1]
    if t >= points[-1][0]:
        return points[-1][1]
    i = bisect.bisect_right(points, (t, math.inf))
    (t0, r0), (t1, r1) = points[i - 1], points[i]
    return r0 if t1 == t0 else r0 + (r1 - r0) * (t - t0) / (t1 - t0)


SHAPES: dict[str, dict[str, float | None]] = {
    # shape → its keys and their defaults (None: required)
    "step": {"base": None, "peak": None, "at": None, "until": math.inf},
    "spike": {"base": None, "peak": None, "at": None, "duration": 60.0},
    "diurnal": {"base": None, "peak": None, "period": 86400.0, "peak_at": 50400.0},
    "black_friday": {"base": None, "peak": None, "scale": 1.0, "delay": 0.0, "phase": 0.0},
}


def _num(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise LoadError(f"{path}: expected a number, got {value!r}")
    return float(value)


def points_load(raw: Sequence[Any], path: str, source: str = "") -> LoadSpec:
    """`[[t, jobs/s], …]`, t strictly increasing, rates ≥ 0; linear between points, flat outside."""
    pts: list[tuple[float, float]] = []
    for i, item in enumerate(raw):
        if not isinstance(item, list | tuple) or len(item) != 2:
            raise LoadError(f"{path}[{i}]: expected [seconds, jobs per second], got {item!r}")
        t, r = _num(item[0], f"{path}[{i}][0]"), _num(item[1], f"{path}[{i}][1]")
        if r < 0:
            raise LoadError(f"{path}[{i}][1]: expected jobs per second ≥ 0, got {r:g}")
        if pts and t <= pts[-1][0]:
            raise LoadError(f"{path}[{i}][0]: expected a time after {pts[-1][0]:g}, got {t:g}")
        pts.append((t, r))
    if not pts:
        raise LoadError(f"{path}: expected at least one point")
    return LoadSpec("points", tuple(pts), source=source)


def parse_load(raw: Any, path: str, microservice: str, base_dir: Path) -> LoadSpec:
    """Any form `load:` takes in a scenario; raises LoadError (a ValueError) naming `path`."""
    if isinstance(raw, list):
        return points_load(raw, path)
    if not isinstance(raw, Mapping):
        raise LoadError(f"{path}: expected a list of [t, jobs/s] points or a mapping, got {type(raw).__name__}")
    raw = dict(raw)
    if "csv" in raw:
        file = raw.pop("csv")
        name = raw.pop("microservice", microservice)
        _no_more(raw, path, ("csv", "microservice"))
        return csv_load(base_dir / str(file), str(name), path)
    if "prometheus" in raw:
        query = raw.pop("prometheus")
        _no_more(raw, path, ("prometheus",))
        return prometheus_load_from(query, f"{path}.prometheus", microservice)
    shape = raw.pop("shape", None)
    if shape not in SHAPES:
        raise LoadError(f"{path}.shape: expected one of {', '.join(SHAPES)} (or csv:, prometheus:), got {shape!r}")
    params = []
    for key, default in SHAPES[shape].items():
        value = raw.pop(key, default)
        if value is None:
            raise LoadError(f"{path}.{key}: required for shape {shape}")
        params.append((key, _num(value, f"{path}.{key}") if value != math.inf else math.inf))
    _no_more(raw, path, ("shape", *SHAPES[shape]))
    p = dict(params)
    if p["base"] < 0 or p["peak"] < 0:
        raise LoadError(f"{path}: base and peak: expected jobs per second ≥ 0")
    if (shape == "black_friday" and p["scale"] <= 0) or (shape == "diurnal" and p["period"] <= 0):
        raise LoadError(f"{path}: scale and period: expected > 0")
    return LoadSpec(shape, params=tuple(params))


def _no_more(raw: Mapping[str, Any], path: str, known: Sequence[str]) -> None:
    for key in raw:
        raise LoadError(f"{path}.{key}: unknown key; expected one of {', '.join(known)}")


# -- a user's own history ----------------------------------------------------------------------------------------


def csv_load(file: Path, microservice: str, path: str) -> LoadSpec:
    """Rows `t, microservice, jobs_per_second` (a header row is optional; `t` in seconds from the start, or an
    ISO-8601 / Unix timestamp made relative to the file's first one); rows of other microservices are skipped."""
    try:
        text = file.read_text()
    except OSError as exc:
        raise LoadError(f"{path}.csv: cannot read {file}: {exc.strerror or exc}") from None
    rows: list[tuple[float, float]] = []
    seen: set[str] = set()
    first = float("inf")  # the file's first timestamp: every microservice's times are relative to the same one
    for line_no, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or row[0].lstrip().startswith("#"):
            continue
        if len(row) != 3:
            raise LoadError(f"{file}:{line_no}: expected 3 columns (t, microservice, jobs_per_second), got {len(row)}")
        t_raw, name, rate_raw = (c.strip() for c in row)
        if line_no == 1 and t_raw.lower() in ("t", "time", "timestamp"):
            continue
        seen.add(name)
        try:
            t, rate = timestamp(t_raw), float(rate_raw)
        except ValueError:
            raise LoadError(f"{file}:{line_no}: expected a time and a number, got {t_raw!r}, {rate_raw!r}") from None
        first = min(first, t)
        if name == microservice:
            rows.append((t, rate))
    if not rows:
        known = ", ".join(sorted(seen)) or "none"
        raise LoadError(f"{file}: no rows for microservice {microservice!r} (the file has: {known})")
    rows.sort()
    start = first if first > 1e8 else 0.0  # absolute timestamps become relative to the file's first one
    deduped: dict[float, float] = {}
    for t, rate in rows:
        deduped[t - start] = rate
    return points_load([list(p) for p in sorted(deduped.items())], f"{file}", source=f"{file.name}")


def timestamp(text: str) -> float:
    """Unix seconds, or an ISO-8601 / RFC 3339 time (`Z` accepted); raises ValueError."""
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True, slots=True)
class PrometheusQuery:
    """A range query giving jobs per second (or per minute with `per_minute`) of one microservice."""

    url: str
    query: str
    start: float
    end: float
    step: float = 15.0
    per_minute: bool = False
    timeout: float = 30.0


def prometheus_load_from(raw: Any, path: str, microservice: str) -> LoadSpec:
    if not isinstance(raw, Mapping):
        raise LoadError(f"{path}: expected {{url, query, start, end, step}}, got {raw!r}")
    raw = dict(raw)
    try:
        q = PrometheusQuery(
            url=str(raw.pop("url")), query=str(raw.pop("query")).replace("{microservice}", microservice),
            start=timestamp(str(raw.pop("start"))), end=timestamp(str(raw.pop("end"))),
            step=float(raw.pop("step", 15.0)), per_minute=bool(raw.pop("per_minute", False)),
        )  # fmt: skip
    except KeyError as exc:
        raise LoadError(f"{path}.{exc.args[0]}: required") from None
    except ValueError as exc:
        raise LoadError(f"{path}: {exc}") from None
    _no_more(raw, path, ("url", "query", "start", "end", "step", "per_minute"))
    return prometheus_load(q, path)


def prometheus_load(q: PrometheusQuery, path: str = "load.prometheus") -> LoadSpec:
    """Run the range query (`/api/v1/query_range`); exactly one series must come back. Missing steps (a gap in
    the recording) are bridged linearly; the times become seconds from `start`."""
    if q.end <= q.start or q.step <= 0:
        raise LoadError(f"{path}: expected start < end and step > 0")
    params = urllib.parse.urlencode({"query": q.query, "start": f"{q.start:.3f}", "end": f"{q.end:.3f}",
                                     "step": f"{q.step:g}"})  # fmt: skip
    url = f"{q.url.rstrip('/')}/api/v1/query_range?{params}"
    try:
        with urllib.request.urlopen(url, timeout=q.timeout) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        raise LoadError(f"{path}: Prometheus answered {exc.code} for {q.query!r}: {detail}") from None
    except (OSError, ValueError) as exc:
        raise LoadError(f"{path}: cannot query Prometheus at {q.url}: {exc}") from None
    result = (body.get("data") or {}).get("result") if isinstance(body, dict) else None
    if not isinstance(result, list) or len(result) != 1:
        n = len(result) if isinstance(result, list) else "no"
        raise LoadError(f"{path}: expected exactly one series from {q.query!r}, got {n} (aggregate with sum())")
    scale = 1 / 60 if q.per_minute else 1.0
    points = []
    for ts, value in result[0].get("values", []):
        rate = float(value)
        if math.isfinite(rate):
            points.append([float(ts) - q.start, max(0.0, rate * scale)])
    if not points:
        raise LoadError(f"{path}: the series of {q.query!r} has no finite sample between start and end")
    return points_load(points, path, source=f"prometheus {q.query}")
