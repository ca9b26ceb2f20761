"""Map one Horizon reading onto microservices: topology (a) one Horizon per microservice, (b) one for many.

Pure functions. A microservice's process count is the sum of its supervisors' `processes` over every master;
per-queue values join the supervisors' `connection:queue` pools with `/api/workload` rows by queue name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .horizon import HorizonReading, WorkloadRow

SUPERVISOR_STATUSES = ("running", "paused", "inactive")


@dataclass(frozen=True, slots=True)
class QueueValues:
    """Per-queue values of one microservice; length/wait are None when `/api/workload` has no row for it."""

    processes: float
    length: float | None
    wait_seconds: float | None


@dataclass(frozen=True, slots=True)
class MicroserviceValues:
    """What one poll says about one microservice."""

    processes: float
    max_processes: float
    supervisors: Mapping[str, int]
    queues: Mapping[str, QueueValues]


@dataclass(frozen=True, slots=True)
class Fixed:
    """Topology (a): everything this Horizon reports belongs to one named microservice."""

    microservice: str


@dataclass(frozen=True, slots=True)
class Pattern:
    """Topology (b): microservices named by a regex group `microservice` over supervisor keys or queue names."""

    source: str  # "supervisor" or "queue"
    regex: re.Pattern[str]


Rule = Fixed | Pattern


@dataclass(slots=True)
class _Acc:
    processes: float = 0.0
    max_processes: float = 0.0
    supervisors: dict[str, int] = field(default_factory=dict)
    queue_processes: dict[str, float] = field(default_factory=dict)


def _queue_of(pool_key: str) -> str:
    # Pool keys are "<connection>:<queue>"; the workload endpoint strips the connection the same way.
    return pool_key.split(":", 1)[1] if ":" in pool_key else pool_key


def _match(regex: re.Pattern[str], text: str) -> str | None:
    m = regex.search(text)
    if m is None:
        return None
    name = m.group("microservice")
    return name or None


def _match_queue(regex: re.Pattern[str], queue: str) -> str | None:
    # A balance=off pool serves a comma-joined list; Horizon works it in listed order, so the first member
    # that names a microservice decides.
    for member in queue.split(","):
        name = _match(regex, member)
        if name is not None:
            return name
    return None


def _workload_by_queue(rows: Iterable[WorkloadRow]) -> dict[str, tuple[float, float]]:
    # The same queue name on two connections gives two rows; one series per queue name sums the lengths
    # and keeps the longest wait.
    out: dict[str, tuple[float, float]] = {}
    for row in rows:
        length, wait = out.get(row.name, (0.0, 0.0))
        out[row.name] = (length + row.length, max(wait, row.wait))
    return out


def map_reading(reading: HorizonReading, rule: Rule) -> dict[str, MicroserviceValues]:
    """Split one reading into per-microservice values by `rule`; what matches nothing makes no microservice."""
    accs: dict[str, _Acc] = {}
    if isinstance(rule, Fixed):
        accs[rule.microservice] = _Acc()
    for master in reading.masters:
        for sup in master.supervisors:
            if isinstance(rule, Fixed):
                owners = {key: rule.microservice for key in sup.processes}
                sup_owner: str | None = rule.microservice
            elif rule.source == "supervisor":
                sup_owner = _match(rule.regex, sup.key)
                owners = {key: sup_owner for key in sup.processes} if sup_owner else {}
            else:
                owners = {key: _match_queue(rule.regex, _queue_of(key)) for key in sup.processes}
                sup_owner = next((o for o in owners.values() if o), None)
            if sup_owner is not None:
                acc = accs.setdefault(sup_owner, _Acc())
                acc.supervisors[sup.status] = acc.supervisors.get(sup.status, 0) + 1
                if sup.status != "inactive" and sup.max_processes is not None:
                    acc.max_processes += sup.max_processes
            for key, count in sup.processes.items():
                owner = owners.get(key)
                if owner is None:
                    continue
                acc = accs.setdefault(owner, _Acc())
                acc.processes += count
                queue = _queue_of(key)
                acc.queue_processes[queue] = acc.queue_processes.get(queue, 0.0) + count

    workload = _workload_by_queue(reading.workload)
    if isinstance(rule, Fixed):
        for name in workload:
            accs[rule.microservice].queue_processes.setdefault(name, 0.0)
    elif rule.source == "queue":
        for name in workload:
            owner = _match_queue(rule.regex, name)
            if owner is not None:
                accs.setdefault(owner, _Acc()).queue_processes.setdefault(name, 0.0)

    result = {}
    for name, acc in accs.items():
        queues = {}
        for queue, processes in sorted(acc.queue_processes.items()):
            length, wait = workload.get(queue, (None, None))
            queues[queue] = QueueValues(processes=processes, length=length, wait_seconds=wait)
        result[name] = MicroserviceValues(
            processes=acc.processes,
            max_processes=acc.max_processes,
            supervisors={s: acc.supervisors.get(s, 0) for s in SUPERVISOR_STATUSES}
            | {s: n for s, n in acc.supervisors.items() if s not in SUPERVISOR_STATUSES},
            queues=queues,
        )
    return result
