"""The figures of a run: time to scale, queue-wait percentiles, SLO attainment, pod- and node-minutes — pure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .checks import warnings
from .engine import PipelineResult, ServiceResult
from .scenario import Scenario


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values (None for none)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def service_figures(s: ServiceResult, slo: float) -> dict[str, Any]:
    """Per microservice. Waits count every job that started plus, as lower bounds, those still queued at the end
    (a pipeline that never serves them must not look good). SLO attainment is the share of decided jobs that
    started within `slo`: started ones, and queued ones already past it."""
    waits = sorted([*s.waits, *s.queued_waits])
    within = sum(1 for w in s.waits if w <= slo)
    missed = (len(s.waits) - within) + sum(1 for w in s.queued_waits if w > slo)
    decided = within + missed
    episodes = s.time_to_scale
    return {
        "time_to_scale_seconds": _r(episodes[0]) if episodes else None,
        "time_to_scale_mean_seconds": _r(sum(episodes) / len(episodes)) if episodes else None,
        "time_to_scale_max_seconds": _r(max(episodes)) if episodes else None,
        "scale_episodes": len(episodes),
        "passing_peaks": s.abandoned_episodes,
        "unresolved_episode_seconds": _r(s.first_episode_open),
        "wait_p50_seconds": _r(percentile(waits, 50)),
        "wait_p95_seconds": _r(percentile(waits, 95)),
        "wait_p99_seconds": _r(percentile(waits, 99)),
        "slo_attainment": _r(within / decided, 5) if decided else None,
        "pod_minutes": _r(s.pod_seconds / 60, 2),
        "scale_ups": s.scale_ups,
        "scale_downs": s.scale_downs,
        "max_replicas": s.max_replicas,
        "max_ready_replicas": s.max_ready,
        "jobs": {"arrived": s.arrived, "done": s.done, "running_at_end": s.running, "queued_at_end": s.queued},
    }


def summarize(scenario: Scenario, results: Sequence[PipelineResult]) -> dict[str, Any]:
    """summary.json's document."""
    specs = {ms.name: ms for ms in scenario.microservices}
    pipes = {p.name: p for p in scenario.pipelines}
    out: dict[str, Any] = {
        "scenario": scenario.name,
        "description": scenario.description,
        "duration_seconds": scenario.duration,
        "seed": scenario.seed,
        "slo_wait_seconds": scenario.slo_wait_seconds,
        "pipelines": {},
    }
    for res in results:
        services = {}
        totals = {"arrived": 0, "done": 0, "running_at_end": 0, "queued_at_end": 0}
        all_waits: list[float] = []
        within = decided = 0
        episodes: list[float] = []
        for name, s in res.services.items():
            episodes.extend(s.time_to_scale)
            fig = service_figures(s, scenario.slo_wait_seconds)
            fig["warnings"] = warnings(specs[name], pipes[res.name], scenario.kubernetes.tolerance)
            services[name] = fig
            for k in totals:
                totals[k] += fig["jobs"][k]
            all_waits.extend(s.waits)
            all_waits.extend(s.queued_waits)
            ok = sum(1 for w in s.waits if w <= scenario.slo_wait_seconds)
            within += ok
            decided += len(s.waits) + sum(1 for w in s.queued_waits if w > scenario.slo_wait_seconds)
        all_waits.sort()
        out["pipelines"][res.name] = {
            "kind": res.kind,
            "node_minutes": _r(res.node_seconds / 60, 2),
            "time_to_scale_mean_seconds": _r(sum(episodes) / len(episodes)) if episodes else None,
            "time_to_scale_median_seconds": _r(percentile(sorted(episodes), 50)),
            "time_to_scale_p75_seconds": _r(percentile(sorted(episodes), 75)),
            "scale_episodes": len(episodes),
            "pod_minutes": _r(sum(f["pod_minutes"] for f in services.values()), 2),
            "wait_p95_seconds": _r(percentile(all_waits, 95)),
            "slo_attainment": _r(within / decided, 5) if decided else None,
            "jobs": totals,
            "microservices": services,
        }
    return out
