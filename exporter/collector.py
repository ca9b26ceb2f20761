"""The `horizon_*` metrics over the latest snapshot: one walk, two outputs, rendered once per version.

`walk(snapshot, sink)` is the single place that says which sample comes from which snapshot field. A
`HorizonCollector` feeds it into prometheus_client metric families (OpenMetrics, and anyone who registers the
collector); the text format writes the same samples straight to lines, byte-identical to prometheus_client's
`generate_latest` but without building ~2 objects per sample, which is what dominated renders of large fleets
(bench/render_metrics.py). Nothing goes stale: a microservice that leaves the snapshot leaves /metrics.

A sharded exporter serves only the targets it owns: a target handed off in a reshard stays in the snapshot, polled,
until its grace ends, but not here, where it would duplicate the new owner's series; a target gained in a reshard
appears here from its first poll on (before it, it would read as down).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from . import __version__
from .snapshot import Snapshot
from .store import SnapshotStore

HORIZON_STATUSES = ("running", "paused", "inactive")


@dataclass(frozen=True, slots=True)
class Family:
    """A metric family's name (counters without `_total`), type, help text and label names."""

    name: str
    type: str
    help: str
    labels: tuple[str, ...]


def _g(name: str, help_: str, *labels: str) -> Family:
    return Family(name, "gauge", help_, labels)


UP = _g("horizon_up", "1 when the latest poll of the microservice's Horizon succeeded, else 0.", "microservice")
PROCESSES = _g(
    "horizon_microservice_processes",
    "Horizon worker processes of the microservice, summed over its supervisors on every master "
    "(/api/masters supervisors[].processes).",
    "microservice",
)
MAX_PROCESSES = _g(
    "horizon_microservice_max_processes",
    "Sum of maxProcesses over the microservice's live supervisors on every master.",
    "microservice",
)
STALE = _g(
    "horizon_microservice_stale",
    "1 when the microservice's values are kept from an earlier poll because the latest one failed.",
    "microservice",
)
SUPERVISORS = _g("horizon_supervisors", "Supervisors of the microservice by status, over every master.",
                 "microservice", "status")  # fmt: skip
Q_LENGTH = _g("horizon_queue_length", "Ready jobs in the queue (/api/workload length).", "microservice", "queue")
Q_WAIT = _g("horizon_queue_wait_seconds", "Estimated time to clear the queue (/api/workload wait).",
            "microservice", "queue")  # fmt: skip
Q_PROCESSES = _g("horizon_queue_processes", "Worker processes serving the queue, over every master.",
                 "microservice", "queue")  # fmt: skip
DUPLICATE = _g(
    "horizon_microservice_duplicate",
    "1 when more than one target reports the microservice; only the first target in config order counts.",
    "microservice",
)
T_UP = _g("horizon_target_up", "1 when the latest poll of the Horizon target succeeded, else 0.", "target")
STATUS = _g("horizon_status", "Horizon's overall status (/api/stats status): 1 for the current one.",
            "target", "status")  # fmt: skip
JPM = _g("horizon_jobs_per_minute", "Jobs processed per minute since Horizon's last snapshot (/api/stats).", "target")
RECENT = _g("horizon_recent_jobs", "Jobs in Horizon's recent-jobs window (/api/stats recentJobs).", "target")
FAILED = _g("horizon_recent_failed_jobs", "Failed jobs in the recent-failed window (/api/stats failedJobs).", "target")
MASTERS = _g("horizon_masters", "Live master supervisors (Horizon pods) by status (/api/masters).", "target", "status")
DURATION = _g("horizon_poll_duration_seconds", "Wall time of the latest poll of the target's three endpoints.",
              "target")  # fmt: skip
LAST_OK = _g("horizon_last_success_timestamp_seconds", "Unix time of the latest successful poll.", "target")
POLLS = Family("horizon_polls", "counter", "Polls of the target since the exporter started.", ("target",))
ERRORS = Family("horizon_poll_errors", "counter", "Failed polls of the target by reason.", ("target", "reason"))
BUILD = _g("horizon_exporter_build_info", "The exporter's version; always 1.", "version")
SHARD = _g("horizon_exporter_shard", "This exporter's shard, 0 to total shards - 1 (0 when unsharded).")
TOTAL_SHARDS = _g("horizon_exporter_total_shards", "The number of shards the targets are split over (1: unsharded).")
TARGETS = _g(
    "horizon_exporter_targets",
    "Targets this exporter polls: owned (on /metrics), handed_off (given to another shard in a reshard; polled "
    "and in the snapshot until the handoff grace ends).",
    "state",
)

FAMILIES = (UP, PROCESSES, MAX_PROCESSES, STALE, SUPERVISORS, Q_LENGTH, Q_WAIT, Q_PROCESSES, DUPLICATE,
            T_UP, STATUS, JPM, RECENT, FAILED, MASTERS, DURATION, LAST_OK, POLLS, ERRORS, BUILD,
            SHARD, TOTAL_SHARDS, TARGETS)  # fmt: skip


class Sink(Protocol):
    """Receives every sample of a walk."""

    def add(self, family: Family, labels: Sequence[str], value: float) -> None: ...


def walk(snap: Snapshot, sink: Sink) -> None:
    """Emit every `horizon_*` sample of `snap` into `sink` (families in any order; the sink groups them)."""
    add = sink.add
    # Not on /metrics: targets handed off in a reshard, and targets gained in one until their first poll.
    hidden = {n for n, t in snap.targets.items() if t.handed_off or (t.gained and t.attempts == 0)}
    for name, entry in snap.microservices.items():
        if hidden and entry.target in hidden:
            continue
        add(UP, (name,), 1.0 if entry.up else 0.0)
        values = entry.values
        if values is None:
            continue  # never seen healthy, or expired: no process count at all, never a silent zero
        add(PROCESSES, (name,), values.processes)
        add(MAX_PROCESSES, (name,), values.max_processes)
        add(STALE, (name,), 1.0 if entry.stale else 0.0)
        for status, count in values.supervisors.items():
            add(SUPERVISORS, (name, status), float(count))
        for queue, qv in values.queues.items():
            add(Q_PROCESSES, (name, queue), qv.processes)
            if qv.length is not None:
                add(Q_LENGTH, (name, queue), qv.length)
            if qv.wait_seconds is not None:
                add(Q_WAIT, (name, queue), qv.wait_seconds)
    for name in snap.duplicate_microservices:
        add(DUPLICATE, (name,), 1.0)
    handed_off = 0
    for name, t in snap.targets.items():
        if name in hidden:
            handed_off += t.handed_off
            continue
        add(T_UP, (name,), 1.0 if t.up else 0.0)
        add(POLLS, (name,), float(t.attempts))
        for reason, count in t.errors_total.items():
            add(ERRORS, (name, reason), float(count))
        if t.duration_seconds is not None:
            add(DURATION, (name,), t.duration_seconds)
        if t.last_success_at is not None:
            add(LAST_OK, (name,), t.last_success_at)
        for status, count in t.masters.items():
            add(MASTERS, (name, status), float(count))
        stats = t.stats
        if stats is None:
            continue
        for status in HORIZON_STATUSES:
            add(STATUS, (name, status), 1.0 if stats.status == status else 0.0)
        if stats.jobs_per_minute is not None:
            add(JPM, (name,), stats.jobs_per_minute)
        if stats.recent_jobs is not None:
            add(RECENT, (name,), stats.recent_jobs)
        if stats.failed_jobs is not None:
            add(FAILED, (name,), stats.failed_jobs)
    add(BUILD, (__version__,), 1.0)
    add(SHARD, (), float(snap.shard))
    add(TOTAL_SHARDS, (), float(snap.total_shards))
    add(TARGETS, ("owned",), float(len(snap.targets) - handed_off))
    add(TARGETS, ("handed_off",), float(handed_off))


class _FamilySink:
    def __init__(self) -> None:
        self.families: dict[Family, Metric] = {}
        for f in FAMILIES:
            cls = CounterMetricFamily if f.type == "counter" else GaugeMetricFamily
            self.families[f] = cls(f.name, f.help, labels=list(f.labels))

    def add(self, family: Family, labels: Sequence[str], value: float) -> None:
        self.families[family].add_metric(list(labels), value)


class HorizonCollector(Collector):
    """prometheus_client view of `walk(store.current)`, or of one given snapshot."""

    def __init__(self, store: SnapshotStore | None = None, snapshot: Snapshot | None = None) -> None:
        self._store = store
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        sink = _FamilySink()
        snap = self._snapshot
        if snap is None:
            assert self._store is not None
            snap = self._store.current
        walk(snap, sink)
        yield from sink.families.values()


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


class _TextSink:
    """Writes samples as Prometheus text lines, exactly as `generate_latest` would."""

    def __init__(self) -> None:
        self.lines: dict[Family, list[str]] = {f: [] for f in FAMILIES}
        # generate_latest sorts label names within a sample; precompute each family's order.
        self._order = {f: sorted(range(len(f.labels)), key=lambda i, f=f: f.labels[i]) for f in FAMILIES}
        self._names = {f: f.name + "_total" if f.type == "counter" else f.name for f in FAMILIES}

    def add(self, family: Family, labels: Sequence[str], value: float) -> None:
        names = family.labels
        if not names:
            self.lines[family].append(f"{self._names[family]} {floatToGoString(value)}\n")
            return
        pairs = ",".join(f'{names[i]}="{_escape(labels[i])}"' for i in self._order[family])
        self.lines[family].append(f"{self._names[family]}{{{pairs}}} {floatToGoString(value)}\n")

    def text(self) -> str:
        out: list[str] = []
        for f in FAMILIES:
            name = self._names[f]
            help_ = f.help.replace("\\", "\\\\").replace("\n", "\\n")
            out.append(f"# HELP {name} {help_}\n# TYPE {name} {f.type}\n")
            out.extend(self.lines[f])
        return "".join(out)


def render_text(snap: Snapshot) -> bytes:
    """The `horizon_*` families of `snap` in the Prometheus text format."""
    sink = _TextSink()
    walk(snap, sink)
    return sink.text().encode()


class _Both:
    def __init__(self, *collectors: Collector) -> None:
        self._collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for c in self._collectors:
            yield from c.collect()


class MetricsRenderer:
    """Serves /metrics bodies: rendered at most once per version and format, off the event loop.

    `extra` holds the exporter's other collectors (config reload state, anything a caller registers); the
    `horizon_*` families come from the snapshot store and are not registered there.
    """

    def __init__(self, store: SnapshotStore, extra: CollectorRegistry, version: Callable[[], Hashable]) -> None:
        self._store = store
        self._extra = extra
        self._version = version
        self._cache: dict[str, tuple[Hashable, bytes]] = {}
        self._inflight: dict[tuple[Hashable, str], asyncio.Future[bytes]] = {}
        self.renders = 0

    def render_sync(self, accept: str | None) -> tuple[bytes, str]:
        """Render now, on the calling thread (the cached body when the version has not moved)."""
        encoder, content_type = choose_encoder(accept or "")
        version = self._version()
        cached = self._cache.get(content_type)
        if cached is not None and cached[0] == version:
            return cached[1], content_type
        body = self._build(encoder, self._store.current)
        self._cache[content_type] = (version, body)
        return body, content_type

    def _build(self, encoder: Callable[[object], bytes], snap: Snapshot) -> bytes:
        self.renders += 1
        if encoder is generate_latest:  # the classic text format with legacy names: write it directly
            return render_text(snap) + generate_latest(self._extra)
        return encoder(_Both(HorizonCollector(snapshot=snap), self._extra))

    async def render(self, accept: str | None) -> tuple[bytes, str]:
        """Like `render_sync`, but a large render runs in a worker thread and concurrent scrapes share it."""
        encoder, content_type = choose_encoder(accept or "")
        version = self._version()
        cached = self._cache.get(content_type)
        if cached is not None and cached[0] == version:
            return cached[1], content_type
        key = (version, content_type)
        future = self._inflight.get(key)
        if future is None:
            loop = asyncio.get_running_loop()
            # Taken here, on the event loop (the store builds snapshots lazily and is not thread-safe); the
            # snapshot itself is immutable, so the worker thread may read it while polls go on.
            snap = self._store.current
            future = loop.run_in_executor(None, self._build, encoder, snap)
            self._inflight[key] = future
            try:
                body = await future
            finally:
                del self._inflight[key]
            self._cache[content_type] = (version, body)
            return body, content_type
        return await asyncio.shield(future), content_type
