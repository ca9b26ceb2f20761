"""Write a run's results: summary.json, timeseries.csv, events.jsonl, and the summary table the CLI prints.

Byte-identical for the same scenario and seed: fixed column and key order, floats rounded at a fixed precision.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .engine import PipelineResult

COLUMNS = ("t", "pipeline", "microservice", "arrivals", "backlog", "processes", "desired_replicas",
           "ready_replicas", "pending_pods", "nodes", "oldest_wait_seconds")  # fmt: skip


def write_summary(summary: dict[str, Any], out: Path) -> Path:
    path = out / "summary.json"
    path.write_text(json.dumps(summary, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return path


def write_timeseries(results: Sequence[PipelineResult], out: Path) -> Path:
    path = out / "timeseries.csv"
    with path.open("w", newline="") as f:
        f.write(",".join(COLUMNS) + "\n")
        for res in results:
            for name, svc in res.services.items():
                prefix = f",{res.name},{name},"
                f.writelines(
                    f"{s.t}{prefix}{s.arrivals},{s.backlog},{s.processes},{s.desired},{s.ready},{s.pending},"
                    f"{s.nodes},{s.oldest_wait:.3f}\n"
                    for s in svc.samples
                )
    return path


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    return value


def write_events(results: Sequence[PipelineResult], out: Path) -> Path:
    path = out / "events.jsonl"
    with path.open("w") as f:
        for res in results:
            for event in res.events:
                f.write(json.dumps({k: _clean(v) for k, v in event.items()}, ensure_ascii=False) + "\n")
    return path


def _fmt(value: Any, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def table(summary: dict[str, Any]) -> str:
    """The summary table: one row per pipeline and microservice, then each pipeline's totals; warnings below."""
    head = ("pipeline", "microservice", "time to scale", "wait p95", "SLO", "pod·min", "max rep", "scale ±")
    rows = [head]
    notes: dict[tuple[str, str], list[str]] = {}  # (microservice, warning) → pipelines
    for name, p in summary["pipelines"].items():
        for ms, f in p["microservices"].items():
            slo = None if f["slo_attainment"] is None else f["slo_attainment"] * 100
            flag = " !" if f["warnings"] else ""
            tts = f"{_fmt(f['time_to_scale_seconds'], ' s')} / {_fmt(f['time_to_scale_mean_seconds'], ' s')}"
            rows.append((name, ms + flag, tts, _fmt(f["wait_p95_seconds"], " s", 1),
                         _fmt(slo, " %", 1), _fmt(f["pod_minutes"]), str(f["max_replicas"]),
                         f"+{f['scale_ups']}/-{f['scale_downs']}"))  # fmt: skip
            for w in f["warnings"]:
                notes.setdefault((ms, w), []).append(name)
        slo = None if p["slo_attainment"] is None else p["slo_attainment"] * 100
        tts = " / ".join(_fmt(p[f"time_to_scale_{k}_seconds"]) for k in ("median", "p75", "mean")) + " s"
        rows.append((name, f"all ({_fmt(p['node_minutes'])} node·min)", tts, _fmt(p["wait_p95_seconds"], " s", 1),
                     _fmt(slo, " %", 1), _fmt(p["pod_minutes"]), "", ""))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]  # fmt: skip
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += ["", "time to scale: first / mean episode per microservice; median / p75 / mean of every episode on the "
              "`all` rows"]  # fmt: skip
    if notes:
        lines += ["", "! configuration warnings:"]
        lines += [f"  {ms} ({', '.join(pipes)}): {w}" for (ms, w), pipes in notes.items()]
    return "\n".join(lines) + "\n"
