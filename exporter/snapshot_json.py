"""The snapshot as the JSON documents of `/api/v1/snapshot`: the full one and the delta (docs/snapshot-api.md)."""

from __future__ import annotations

from typing import Any

from .snapshot import MicroserviceEntry, Snapshot, TargetState
from .store import Changes


def _target(t: TargetState) -> dict[str, Any]:
    stats = t.stats
    doc: dict[str, Any] = {
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
    if t.handed_off:  # only then: an unsharded exporter's documents are as they were
        doc["handed_off"] = True
    return doc


def _microservice(e: MicroserviceEntry) -> dict[str, Any]:
    v = e.values
    doc: dict[str, Any] = {
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
    if e.handed_off:
        doc["handed_off"] = True
    return doc


def _head(snap: Snapshot, kind: str, instance: str, poll_interval: float, stale_after: float) -> dict[str, Any]:
    return {
        "kind": kind,
        "instance": instance,
        "version": snap.version,
        "revision": snap.revision,
        "generated_at": snap.generated_at,
        "ready": snap.ready,
        "poll_interval_seconds": poll_interval,
        "stale_after_seconds": stale_after,
        "shard": snap.shard,
        "total_shards": snap.total_shards,
    }


def snapshot_document(snap: Snapshot, poll_interval: float, stale_after: float, instance: str = "") -> dict[str, Any]:
    """The full document: every target and every microservice."""
    return {
        **_head(snap, "full", instance, poll_interval, stale_after),
        "targets": {name: _target(t) for name, t in snap.targets.items()},
        "microservices": {name: _microservice(e) for name, e in snap.microservices.items()},
    }


def delta_document(
    snap: Snapshot, since: int, changes: Changes, poll_interval: float, stale_after: float, instance: str
) -> dict[str, Any]:
    """What changed after revision `since`: changed targets and microservices whole, removed ones by name.

    A target whose only change is its poll times comes as `fresh: {name: [last_attempt_at, last_success_at,
    duration_seconds]}`. A microservice whose values did not change is not sent even when its target's health or
    freshness did: the client derives its `up`, `stale` and `fetched_at` from the target (docs/snapshot-api.md).
    """
    targets: dict[str, Any] = {}
    removed_targets: list[str] = []
    for name in sorted(changes.targets):
        t = snap.targets.get(name)
        if t is None:
            removed_targets.append(name)
        else:
            targets[name] = _target(t)
    fresh = {}
    for name in sorted(changes.fresh):
        t = snap.targets.get(name)
        if t is not None:
            fresh[name] = [t.last_attempt_at, t.last_success_at, t.duration_seconds]
    microservices: dict[str, Any] = {}
    removed: list[str] = []
    for name in sorted(changes.microservices):
        e = snap.entry(name)
        if e is None:
            removed.append(name)
        else:
            microservices[name] = _microservice(e)
    return {
        **_head(snap, "delta", instance, poll_interval, stale_after),
        "since": since,
        "targets": targets,
        "fresh": fresh,
        "removed_targets": removed_targets,
        "microservices": microservices,
        "removed_microservices": removed,
    }
