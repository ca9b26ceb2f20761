"""Map one Horizon reading onto microservices: topology (a) one Horizon per microservice, (b) one for many.

Pure functions. A microservice's process count is the sum of its supervisors' `processes` over every master;
per-queue values join the supervisors' `connection:queue` pools with `/api/workload` rows by queue name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from .horizon import HorizonReading, Master, WorkloadRow

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
        prev = out.get(row.name)
        wait = row.wait
        if prev is None:
            out[row.name] = (row.length + 0.0, wait if wait > 0.0 else 0.0)  # as 0 + length, max(0, wait)
        else:
            out[row.name] = (prev[0] + row.length, wait if wait > prev[1] else prev[1])
    return out


def _accumulate(masters: Iterable[Master], rule: Rule, accs: dict[str, _Acc]) -> None:
    """Add the supervisors of `masters` to the per-microservice accumulators."""
    fixed = rule.microservice if isinstance(rule, Fixed) else None
    by_supervisor = fixed is not None or (isinstance(rule, Pattern) and rule.source == "supervisor")
    for master in masters:
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


def _add_workload_queues(workload: Mapping[str, tuple[float, float]], rule: Rule, accs: dict[str, _Acc]) -> None:
    """Queues only `/api/workload` lists still belong to a microservice: its fixed one, or the one they name."""
    if isinstance(rule, Fixed):
        for name in workload:
            accs[rule.microservice].queue_processes.setdefault(name, 0.0)
    elif rule.source == "queue":
        for name in workload:
            owner = _match_queue(rule.regex, name)
            if owner is not None:
                accs.setdefault(owner, _Acc()).queue_processes.setdefault(name, 0.0)


_MISSING = (None, None)


def _values(acc: _Acc, workload: Mapping[str, tuple[float, float]]) -> MicroserviceValues:
    queues = {}
    pools = acc.queue_processes
    for queue in sorted(pools) if len(pools) > 1 else pools:
        length, wait = workload.get(queue, _MISSING)
        queues[queue] = _new(QueueValues, (pools[queue], length, wait))
    seen = acc.supervisors
    supervisors = {"running": seen.get("running", 0), "paused": seen.get("paused", 0),
                   "inactive": seen.get("inactive", 0)}  # fmt: skip
    if seen.keys() - _KNOWN_STATUSES:  # a status Horizon may add one day: kept, after the three known ones
        supervisors.update((s, n) for s, n in seen.items() if s not in _KNOWN_STATUSES)
    return _new(MicroserviceValues, (acc.processes, acc.max_processes, supervisors, queues))


def map_reading(reading: HorizonReading, rule: Rule) -> dict[str, MicroserviceValues]:
    """Split one reading into per-microservice values by `rule`; what matches nothing makes no microservice."""
    accs: dict[str, _Acc] = {}
    if isinstance(rule, Fixed):
        accs[rule.microservice] = _Acc()
    _accumulate(reading.masters, rule, accs)
    workload = _workload_by_queue(reading.workload)
    _add_workload_queues(workload, rule, accs)
    return {name: _values(acc, workload) for name, acc in accs.items()}


# What one master contributes to one microservice, kept compact (one per master and microservice):
# (processes, max_processes, ((status, supervisors), ...), ((queue, processes), ...)).
_Part = tuple[float, float, tuple[tuple[str, int], ...], tuple[tuple[str, float], ...]]


def _parts(master: Master, rule: Rule) -> dict[str, _Part]:
    accs: dict[str, _Acc] = {}
    _accumulate((master,), rule, accs)
    return {
        ms: (a.processes, a.max_processes, tuple(a.supervisors.items()), tuple(a.queue_processes.items()))
        for ms, a in accs.items()
    }


def _merge(into: _Acc, part: _Part) -> None:
    into.processes += part[0]
    into.max_processes += part[1]
    supervisors, pools = into.supervisors, into.queue_processes
    for status, n in part[2]:
        supervisors[status] = supervisors.get(status, 0) + n
    for queue, n in part[3]:
        pools[queue] = pools.get(queue, 0.0) + n


class Mapper:
    """`map_reading` for one target, poll after poll, redoing only the microservices a change touched.

    A Horizon serving many microservices (topology (b)) changes a few of them per poll. Per master the mapper keeps
    what it contributed to each microservice; a master equal to last poll's contributes the same, so only the
    microservices of masters that changed, appeared or left, and of queues whose `/api/workload` row changed, are
    rebuilt; the others keep their `MicroserviceValues` object. Equal to `map_reading` of the same reading (a
    property test holds them so).
    """

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self._reset()

    def _reset(self) -> None:
        self._masters: dict[str, tuple[Master, dict[str, _Part]]] = {}
        self._workload: dict[str, tuple[float, float]] = {}
        self._result: dict[str, MicroserviceValues] = {}
        self._sources: dict[str, tuple[str, ...]] = {}  # microservice -> masters contributing to it
        self._by_queue: dict[str, tuple[str, ...]] = {}  # queue -> microservices serving it, once per master
        self._listed: dict[str, set[str]] = {}  # microservice -> its queues /api/workload lists (queue rule)
        self._masters_seen: tuple[Master, ...] | None = None  # the parsed bodies of last poll
        self._rows_seen: tuple[WorkloadRow, ...] | None = None

    def map(self, reading: HorizonReading) -> dict[str, MicroserviceValues]:
        """The reading's microservices; an unchanged microservice keeps last poll's values object."""
        try:
            return self._map(reading)
        except BaseException:
            self._reset()  # half-updated indexes would count a master twice next time: start again instead
            raise

    def _map(self, reading: HorizonReading) -> dict[str, MicroserviceValues]:
        rule = self.rule
        names = [m.name for m in reading.masters]
        if isinstance(rule, Fixed) or len(set(names)) != len(names):
            self._reset()  # nothing to gain (one microservice), or master names that are not keys
            return map_reading(reading, rule)
        dirty: set[str] = set()
        if reading.masters is self._masters_seen:  # the same parsed body as last poll: nothing to compare
            masters = self._masters
        else:
            masters = self._remap_masters(reading.masters, dirty)
        if reading.workload is not self._rows_seen:
            workload = _workload_by_queue(reading.workload)
            if workload != self._workload:
                for queue in workload.keys() | self._workload.keys():
                    if workload.get(queue) != self._workload.get(queue):
                        dirty.update(self._queue_changed(queue, queue in workload))
                self._workload = workload
        self._masters_seen, self._rows_seen = reading.masters, reading.workload
        workload = self._workload
        if not dirty:
            return self._result
        result = dict(self._result)
        # Masters' order first (as map_reading), then microservices only /api/workload names, then the leavers.
        ordered = [ms for ms in self._sources if ms in dirty]
        ordered += sorted(dirty.difference(ordered))
        for ms in ordered:
            sources, listed = self._sources.get(ms), self._listed.get(ms)
            if not sources and not listed:
                result.pop(ms, None)
                continue
            acc = _Acc()
            for source in sources or ():
                part = masters[source][1].get(ms)
                if part is not None:
                    _merge(acc, part)
            for queue in listed or ():
                acc.queue_processes.setdefault(queue, 0.0)
            result[ms] = _values(acc, workload)
        self._result = result
        return result

    def _remap_masters(
        self, readings: tuple[Master, ...], dirty: set[str]
    ) -> dict[str, tuple[Master, dict[str, _Part]]]:
        rule = self.rule
        masters: dict[str, tuple[Master, dict[str, _Part]]] = {}
        for master in readings:
            old = self._masters.get(master.name)
            if old is not None and old[0] == master:
                masters[master.name] = old
                continue
            part = _parts(master, rule)
            masters[master.name] = (master, part)
            dirty.update(part)
            if old is not None:
                dirty.update(old[1])
                self._unlink(master.name, old[1])
            self._link(master.name, part)
        for name in self._masters.keys() - masters.keys():
            dirty.update(self._masters[name][1])
            self._unlink(name, self._masters[name][1])
        self._masters = masters
        return masters

    def _queue_changed(self, queue: str, listed: bool) -> Iterable[str]:
        """The microservices a changed `/api/workload` row concerns (and, for the queue rule, who lists it)."""
        rule = self.rule
        assert isinstance(rule, Pattern)
        if rule.source != "queue":
            return set(self._by_queue.get(queue, ()))
        owner = _match_queue(rule.regex, queue)
        if owner is None:
            return ()
        queues = self._listed.setdefault(owner, set())
        if listed:
            queues.add(queue)
        else:
            queues.discard(queue)
            if not queues:
                del self._listed[owner]
        return (owner,)

    def _link(self, master: str, part: Mapping[str, _Part]) -> None:
        sources, by_queue = self._sources, self._by_queue
        for ms, contribution in part.items():
            sources[ms] = (*sources.get(ms, ()), master)
            for queue, _ in contribution[3]:
                by_queue[queue] = (*by_queue.get(queue, ()), ms)

    def _unlink(self, master: str, part: Mapping[str, _Part]) -> None:
        sources, by_queue = self._sources, self._by_queue
        for ms, contribution in part.items():
            left = _without(sources.get(ms, ()), master)
            if left:
                sources[ms] = left
            else:
                sources.pop(ms, None)
            for queue, _ in contribution[3]:
                owners = _without(by_queue.get(queue, ()), ms)
                if owners:
                    by_queue[queue] = owners
                else:
                    by_queue.pop(queue, None)


def _without(items: tuple[str, ...], item: str) -> tuple[str, ...]:
    """`items` less one occurrence of `item`."""
    if item not in items:
        return items
    i = items.index(item)
    return items[:i] + items[i + 1 :]
