"""Horizon payloads in the exact shapes of ../shared/reference/horizon-and-json-exporter.md (B1a-B1c)."""

from __future__ import annotations

import copy
from typing import Any

STATS: dict[str, Any] = {
    "failedJobs": 3,
    "jobsPerMinute": 128,
    "pausedMasters": 0,
    "periods": {"failedJobs": 10080, "recentJobs": 60},
    "processes": 9,
    "queueWithMaxRuntime": "reports",
    "queueWithMaxThroughput": "default",
    "recentJobs": 7421,
    "status": "running",
    "wait": {"redis:default": 12},
}

WORKLOAD: list[dict[str, Any]] = [
    {"name": "default", "length": 42, "wait": 12, "processes": 6, "split_queues": None},
    {"name": "emails", "length": 0, "wait": 0, "processes": 1, "split_queues": None},
    {
        "name": "high,low",
        "length": 7,
        "wait": 5,
        "processes": 2,
        "split_queues": {
            "high": {"name": "high", "length": 5, "wait": 3},
            "low": {"name": "low", "length": 2, "wait": 5},
        },
    },
]

_MASTER = "orders-horizon-7d9f8-x2kqz-Ab3d"


def _options(name: str, queue: str, balance: Any, max_p: str, strategy: Any) -> dict[str, Any]:
    return {
        "balance": balance, "connection": "redis", "queue": queue, "backoff": "0", "force": False,
        "maxProcesses": max_p, "minProcesses": "1", "maxTries": "3", "maxTime": "0", "maxJobs": "0",
        "memory": "128", "nice": "0", "name": name, "workersName": "default", "sleep": "3", "timeout": "60",
        "balanceCooldown": "3", "balanceMaxShift": "1", "parentId": "1", "rest": "0",
        "autoScalingStrategy": strategy,
    }  # fmt: skip


MASTERS: dict[str, Any] = {
    _MASTER: {
        "name": _MASTER,
        "environment": "production",
        "pid": "1",
        "status": "running",
        "supervisors": [
            {
                "name": f"{_MASTER}:supervisor-1",
                "master": _MASTER,
                "pid": "27",
                "status": "running",
                "processes": {"redis:default": 6, "redis:emails": 1},
                "options": _options(f"{_MASTER}:supervisor-1", "default,emails", "auto", "10", "time"),
            },
            {
                "name": f"{_MASTER}:supervisor-priority",
                "master": _MASTER,
                "pid": "31",
                "status": "running",
                "processes": {"redis:high,low": 2},
                "options": _options(f"{_MASTER}:supervisor-priority", "high,low", "", "4", None),
            },
            {
                "name": f"{_MASTER}:supervisor-reports",
                "master": _MASTER,
                "status": "inactive",
                "processes": [],
                "options": {"queue": "reports", "balance": "simple"},
            },
        ],
    }
}


def topology_a() -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """One Horizon of one microservice (stats, workload, masters) — fresh copies."""
    return copy.deepcopy(STATS), copy.deepcopy(WORKLOAD), copy.deepcopy(MASTERS)


def core_masters(counts: dict[str, list[int]]) -> dict[str, Any]:
    """Topology (b): one shared Horizon; `counts[ms][i]` = processes of `<ms>-worker` on master i.

    Each microservice's supervisor serves `redis:<ms>-jobs`; master 0 also runs an unrelated `scheduler`.
    """
    n = max(len(v) for v in counts.values())
    masters: dict[str, Any] = {}
    for i in range(n):
        mname = f"core-horizon-5f6c-{i}-Zx{i}q"
        sups: list[dict[str, Any]] = []
        for ms, per_master in counts.items():
            if i >= len(per_master):
                continue
            name = f"{mname}:{ms}-worker"
            sups.append({
                "name": name, "master": mname, "pid": str(100 + len(sups)), "status": "running",
                "processes": {f"redis:{ms}-jobs": per_master[i]},
                "options": _options(name, f"{ms}-jobs", "auto", "12", "time"),
            })  # fmt: skip
        if i == 0:
            sups.append({
                "name": f"{mname}:scheduler", "master": mname, "pid": "99", "status": "running",
                "processes": {"redis:cron": 1}, "options": _options(f"{mname}:scheduler", "cron", "off", "1", None),
            })  # fmt: skip
        masters[mname] = {
            "name": mname, "environment": "production", "pid": "1", "status": "running", "supervisors": sups,
        }  # fmt: skip
    return masters


def core_workload(counts: dict[str, list[int]], lengths: dict[str, int]) -> list[dict[str, Any]]:
    """`/api/workload` rows matching `core_masters(counts)`."""
    rows = [
        {"name": f"{ms}-jobs", "length": lengths.get(ms, 0), "wait": lengths.get(ms, 0) // 2,
         "processes": sum(c), "split_queues": None}
        for ms, c in counts.items()
    ]  # fmt: skip
    rows.append({"name": "cron", "length": 0, "wait": 0, "processes": 1, "split_queues": None})
    return sorted(rows, key=lambda r: r["name"])


def core_stats(counts: dict[str, list[int]]) -> dict[str, Any]:
    """`/api/stats` matching `core_masters(counts)`."""
    stats = copy.deepcopy(STATS)
    stats["processes"] = sum(sum(c) for c in counts.values()) + 1
    return stats
