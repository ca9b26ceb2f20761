"""Build Horizon's `/api/stats`, `/api/workload` and `/api/masters` payloads, quirks included, from model state.

Pure functions; `microservices` narrows a Horizon to some of its microservices (only their masters and queues),
so tests can build any realistic payload without a server. `()` gives a Horizon with no live master.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from .model import CONNECTION, FAILED_MINUTES, RECENT_MINUTES, HorizonState, Master, Supervisor


def php_round(x: float) -> int:
    """PHP's round(): halves away from zero (Python's round() goes to even)."""
    return math.floor(abs(x) + 0.5) * (1 if x >= 0 else -1)


def _wait(h: HorizonState, members: Iterable[str], processes: int) -> int:
    # WaitTimeCalculator: ready jobs × average runtime (ms) over the pool's workers, in seconds.
    ms = sum(h.queues[m].length * h.queues[m].spec.runtime * 1000.0 for m in members)
    return php_round(ms / processes / 1000.0 if processes else ms / 1000.0)


def workload_payload(h: HorizonState, microservices: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """`/api/workload`: one row per pool served by a live supervisor, sorted by name, connection stripped."""
    rows = []
    for pool, processes in sorted(h.pool_processes(microservices).items()):
        members = pool.split(",")
        row: dict[str, Any] = {
            "name": pool,
            "length": sum(h.queues[m].length for m in members),
            "wait": _wait(h, members, processes),
            "processes": processes,
            "split_queues": None,
        }
        if len(members) > 1:
            split, cumulative = {}, 0
            for m in members:  # each member's wait includes the members worked before it
                cumulative += _wait(h, [m], processes)
                split[m] = {"name": m, "length": h.queues[m].length, "wait": cumulative}
            row["split_queues"] = split
        rows.append(row)
    return rows


def stats_payload(h: HorizonState, microservices: Iterable[str] | None = None) -> dict[str, Any]:
    """`/api/stats`; `wait` is the one longest `{"redis:<queue>": s}`, or `[]` when no pool is served."""
    chosen = h.select(microservices)
    masters = [m for m in h.masters if m.microservice in chosen]
    queues = [q for q in h.queues.values() if q.microservice in chosen]
    paused = sum(m.status == "paused" for m in masters)
    status = "inactive" if not masters else "paused" if paused == len(masters) else "running"
    pools = h.pool_processes(chosen)
    waits = {pool: _wait(h, pool.split(","), n) for pool, n in pools.items()}
    longest = max(waits, key=lambda p: (waits[p], p), default=None)
    return {
        "failedJobs": php_round(sum(sum(q.failed) + q.hour_acc for q in queues)),
        "jobsPerMinute": php_round(sum(sum(q.last_minute) for q in queues)),
        "pausedMasters": paused,
        "periods": {"failedJobs": FAILED_MINUTES, "recentJobs": RECENT_MINUTES},
        "processes": sum(pools.values()),
        "queueWithMaxRuntime": max(queues, key=lambda q: (q.spec.runtime, q.spec.name)).spec.name if queues else None,
        "queueWithMaxThroughput": (
            max(queues, key=lambda q: (sum(q.last_minute), q.spec.name)).spec.name if queues else None
        ),
        "recentJobs": php_round(sum(sum(q.recent) + q.minute_acc for q in queues)),
        "status": status,
        "wait": {f"{CONNECTION}:{longest}": waits[longest]} if longest is not None else [],
    }


def _options(sup: Supervisor, master: Master) -> dict[str, Any]:
    # A live supervisor's options come from its command line, so numbers arrive as strings.
    s = sup.spec
    return {
        "balance": s.balance, "connection": CONNECTION, "queue": ",".join(s.queues), "backoff": "0", "force": False,
        "maxProcesses": str(s.max_processes), "minProcesses": str(s.min_processes), "maxTries": str(s.tries),
        "maxTime": "0", "maxJobs": "0", "memory": str(s.memory), "nice": "0", "name": sup.name,
        "workersName": "default", "sleep": "3", "timeout": str(s.timeout),
        "balanceCooldown": str(s.balance_cooldown), "balanceMaxShift": str(s.balance_max_shift),
        "parentId": str(master.pid), "rest": "0",
        "autoScalingStrategy": s.strategy if s.balance == "auto" else None,
    }  # fmt: skip


def _master(m: Master) -> dict[str, Any]:
    live = [
        {
            "name": sup.name,
            "master": m.name,
            "pid": str(sup.pid),
            "status": m.status,
            "processes": {f"{CONNECTION}:{pool}": n for pool, n in sup.pools.items()},
            "options": _options(sup, m),
        }
        for sup in sorted(m.supervisors, key=lambda s: s.name)
    ]
    running = {s["name"] for s in live}
    placeholders = [
        {
            "name": f"{m.name}:{p.key}",
            "master": m.name,
            "status": "inactive",
            "processes": [],
            "options": {"queue": ",".join(p.queues), "balance": p.balance},
        }
        for p in m.placeholders
        if f"{m.name}:{p.key}" not in running
    ]
    return {
        "name": m.name, "environment": m.environment, "pid": str(m.pid), "status": m.status,
        "supervisors": live + placeholders,
    }  # fmt: skip


def masters_payload(h: HorizonState, microservices: Iterable[str] | None = None) -> dict[str, Any] | list[Any]:
    """`/api/masters`: an object keyed by master name, sorted, or `[]` when there is no live master."""
    chosen = h.select(microservices)
    masters = sorted((m for m in h.masters if m.microservice in chosen), key=lambda m: m.name)
    return {m.name: _master(m) for m in masters} or []


def horizon_payloads(
    h: HorizonState, microservices: Iterable[str] | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any] | list[Any]]:
    """(stats, workload, masters) of one Horizon, consistent with each other."""
    chosen = h.select(microservices)
    return stats_payload(h, chosen), workload_payload(h, chosen), masters_payload(h, chosen)
