"""The snapshot as the JSON document of `/api/v1/snapshot` (contract in docs/snapshot-api.md)."""

from __future__ import annotations

from typing import Any

from .snapshot import Snapshot, TargetState


def _target(t: TargetState) -> dict[str, Any]:
    stats = t.stats
    return {
        "url": t.url,
        "up": t.up,
        "last_attempt_at": t.last_attempt_at,
        "last_success_at": t.last_success_at,
        "duration_seconds": t.duration_seconds,
        "error": None if t.error is None else {"reason": t.error.reason, "message": t.error.message},
        "errors_total": dict(t.errors_total),
        "status": stats.status if stats else None,
        "jobs_per_minute": stats.jobs_per_minute if stats else None,
        "recent_jobs": stats.recent_jobs if stats else None,
        "failed_jobs": stats.failed_jobs if stats else None,
        "masters": dict(t.masters),
    }


def snapshot_document(snap: Snapshot, poll_interval: float, stale_after: float) -> dict[str, Any]:
    """Plain JSON-ready dict of a snapshot."""
    microservices: dict[str, Any] = {}
    for name, e in snap.microservices.items():
        v = e.values
        microservices[name] = {
            "target": e.target,
            "up": e.up,
            "stale": e.stale,
            "fetched_at": e.fetched_at,
            "processes": v.processes if v else None,
            "max_processes": v.max_processes if v else None,
            "supervisors": dict(v.supervisors) if v else {},
            "queues": {
                q: {"length": qv.length, "wait_seconds": qv.wait_seconds, "processes": qv.processes}
                for q, qv in v.queues.items()
            }
            if v
            else {},
        }
    return {
        "version": snap.version,
        "generated_at": snap.generated_at,
        "ready": snap.ready,
        "poll_interval_seconds": poll_interval,
        "stale_after_seconds": stale_after,
        "targets": {name: _target(t) for name, t in snap.targets.items()},
        "microservices": microservices,
    }
