"""Map one Horizon reading onto microservices: topology (a) one Horizon per microservice, (b) one for many.

Pure functions. A microservice's process count is the sum of its supervisors' `processes` over every master;
per-queue values join the supervisors' `connection:queue` pools with `/api/workload` rows by queue name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from .horizon import HorizonReading, WorkloadRow

SUPERVISOR_STATUSES = ("running", "paused", "inactive")
_KNOWN_STATUSES = frozenset(SUPERVISOR_STATUSES)
_new = tuple.__new__  # builds the NamedTuples below without NamedTuple.__new__'s Python-level frame


class QueueValues(NamedTuple):
    """Per-queue values of one microservice; length/wait are None when `/api/workload` has no row for it."""

    processes: float
    length: float | None
    wait_seconds: float | None


class MicroserviceValues(NamedTuple):
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


_MEMO: dict[tuple[re.Pattern[str], str], str | None] = {}
_MEMO_LIMIT = 200_000


def _match(regex: re.Pattern[str], text: str) -> str | None:
    # The same supervisor keys and queue names come back at every poll: remember what each one names.
    key = (regex, text)
    try:
        return _MEMO[key]
    except KeyError:
        pass
    m = regex.search(text)
    name = (m.group("microservice") or None) if m is not None else None
    if len(_MEMO) >= _MEMO_LIMIT:
        _MEMO.clear()
    _MEMO[key] = name
    return name


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
    fixed = rule.microservice if isinstance(rule, Fixed) else None
    by_supervisor = fixed is not None or (isinstance(rule, Pattern) and rule.source == "supervisor")
    for master in reading.masters:
        for sup in master.supervisors:
            if by_supervisor:  # every pool of the supervisor belongs to its owner
                sup_owner = fixed if fixed is not None else _match(rule.regex, sup.key)  # type: ignore[union-attr]
                owners: dict[str, str | None] | None = None
            else:
                owners = {key: _match_queue(rule.regex, _queue_of(key)) for key in sup.processes}  # type: ignore[union-attr]
                sup_owner = next((o for o in owners.values() if o), None)
            if sup_owner is not None:
                acc = accs.get(sup_owner) or accs.setdefault(sup_owner, _Acc())
                acc.supervisors[sup.status] = acc.supervisors.get(sup.status, 0) + 1
                if sup.status != "inactive" and sup.max_processes is not None:
                    acc.max_processes += sup.max_processes
            elif owners is None:
                continue
            for key, count in sup.processes.items():
                if owners is not None:
                    owner = owners.get(key)
                    if owner is None:
                        continue
                    acc = accs.get(owner) or accs.setdefault(owner, _Acc())
                acc.processes += count
                queue = _queue_of(key)
                pools = acc.queue_processes
                pools[queue] = pools.get(queue, 0.0) + count

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
    missing = (None, None)
    for name, acc in accs.items():
        queues = {}
        pools = acc.queue_processes
        for queue in sorted(pools) if len(pools) > 1 else pools:
            length, wait = workload.get(queue, missing)
            queues[queue] = _new(QueueValues, (pools[queue], length, wait))
        seen = acc.supervisors
        supervisors = {"running": seen.get("running", 0), "paused": seen.get("paused", 0),
                       "inactive": seen.get("inactive", 0)}  # fmt: skip
        if seen.keys() - _KNOWN_STATUSES:  # a status Horizon may add one day: kept, after the three known ones
            supervisors.update((s, n) for s, n in seen.items() if s not in _KNOWN_STATUSES)
        result[name] = _new(MicroserviceValues, (acc.processes, acc.max_processes, supervisors, queues))
    return result
