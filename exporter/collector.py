"""Prometheus collector over the latest snapshot, and a renderer that renders once per snapshot version.

Families are built from the snapshot at collect time, so nothing goes stale: a microservice that disappears from
the snapshot disappears from /metrics. Metric names and meanings are listed in README ("Metrics").
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from . import __version__
from .snapshot import SnapshotStore

HORIZON_STATUSES = ("running", "paused", "inactive")


class HorizonCollector(Collector):
    """Builds every `horizon_*` family from `store.current`."""

    def __init__(self, store: SnapshotStore) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        snap = self._store.current
        g = GaugeMetricFamily
        up = g("horizon_up", "1 when the latest poll of the microservice's Horizon succeeded, else 0.",
               labels=["microservice"])  # fmt: skip
        processes = g(
            "horizon_microservice_processes",
            "Horizon worker processes of the microservice, summed over its supervisors on every master "
            "(/api/masters supervisors[].processes).",
            labels=["microservice"],
        )
        max_processes = g(
            "horizon_microservice_max_processes",
            "Sum of maxProcesses over the microservice's live supervisors on every master.",
            labels=["microservice"],
        )
        stale = g(
            "horizon_microservice_stale",
            "1 when the microservice's values are kept from an earlier poll because the latest one failed.",
            labels=["microservice"],
        )
        supervisors = g("horizon_supervisors", "Supervisors of the microservice by status, over every master.",
                        labels=["microservice", "status"])  # fmt: skip
        q_length = g("horizon_queue_length", "Ready jobs in the queue (/api/workload length).",
                     labels=["microservice", "queue"])  # fmt: skip
        q_wait = g("horizon_queue_wait_seconds", "Estimated time to clear the queue (/api/workload wait).",
                   labels=["microservice", "queue"])  # fmt: skip
        q_proc = g("horizon_queue_processes", "Worker processes serving the queue, over every master.",
                   labels=["microservice", "queue"])  # fmt: skip
        duplicate = g(
            "horizon_microservice_duplicate",
            "1 when more than one target reports the microservice; only the first target in config order counts.",
            labels=["microservice"],
        )
        for name, entry in snap.microservices.items():
            up.add_metric([name], 1.0 if entry.up else 0.0)
            values = entry.values
            if values is None:
                continue
            processes.add_metric([name], values.processes)
            max_processes.add_metric([name], values.max_processes)
            stale.add_metric([name], 1.0 if entry.stale else 0.0)
            for status, count in values.supervisors.items():
                supervisors.add_metric([name, status], float(count))
            for queue, qv in values.queues.items():
                q_proc.add_metric([name, queue], qv.processes)
                if qv.length is not None:
                    q_length.add_metric([name, queue], qv.length)
                if qv.wait_seconds is not None:
                    q_wait.add_metric([name, queue], qv.wait_seconds)
        for name in snap.duplicate_microservices:
            duplicate.add_metric([name], 1.0)
        yield from (up, processes, max_processes, stale, supervisors, q_length, q_wait, q_proc, duplicate)
        yield from self._target_families(snap)

    def _target_families(self, snap) -> Iterator[Metric]:
        g = GaugeMetricFamily
        t_up = g("horizon_target_up", "1 when the latest poll of the Horizon target succeeded, else 0.",
                 labels=["target"])  # fmt: skip
        status = g("horizon_status", "Horizon's overall status (/api/stats status): 1 for the current one.",
                   labels=["target", "status"])  # fmt: skip
        jpm = g("horizon_jobs_per_minute", "Jobs processed per minute since Horizon's last snapshot (/api/stats).",
                labels=["target"])  # fmt: skip
        recent = g("horizon_recent_jobs", "Jobs in Horizon's recent-jobs window (/api/stats recentJobs).",
                   labels=["target"])  # fmt: skip
        failed = g("horizon_recent_failed_jobs", "Failed jobs in the recent-failed window (/api/stats failedJobs).",
                   labels=["target"])  # fmt: skip
        masters = g("horizon_masters", "Live master supervisors (Horizon pods) by status (/api/masters).",
                    labels=["target", "status"])  # fmt: skip
        duration = g("horizon_scrape_duration_seconds", "Wall time of the latest poll of the target's three endpoints.",
                     labels=["target"])  # fmt: skip
        last_ok = g("horizon_last_success_timestamp_seconds", "Unix time of the latest successful poll.",
                    labels=["target"])  # fmt: skip
        polls = CounterMetricFamily("horizon_polls", "Polls of the target since the exporter started.",
                                    labels=["target"])  # fmt: skip
        errors = CounterMetricFamily(
            "horizon_scrape_errors", "Failed polls of the target by reason.", labels=["target", "reason"]
        )
        for name, t in snap.targets.items():
            t_up.add_metric([name], 1.0 if t.up else 0.0)
            polls.add_metric([name], float(t.attempts))
            for reason, count in t.errors_total.items():
                errors.add_metric([name, reason], float(count))
            if t.duration_seconds is not None:
                duration.add_metric([name], t.duration_seconds)
            if t.last_success_at is not None:
                last_ok.add_metric([name], t.last_success_at)
            for st, count in t.masters.items():
                masters.add_metric([name, st], float(count))
            stats = t.stats
            if stats is None:
                continue
            for st in HORIZON_STATUSES:
                status.add_metric([name, st], 1.0 if stats.status == st else 0.0)
            if stats.jobs_per_minute is not None:
                jpm.add_metric([name], stats.jobs_per_minute)
            if stats.recent_jobs is not None:
                recent.add_metric([name], stats.recent_jobs)
            if stats.failed_jobs is not None:
                failed.add_metric([name], stats.failed_jobs)
        info = g("horizon_exporter_build_info", "The exporter's version; always 1.", labels=["version"])
        info.add_metric([__version__], 1.0)
        yield from (t_up, status, jpm, recent, failed, masters, duration, last_ok, polls, errors, info)


class MetricsRenderer:
    """Renders the registry at most once per version (the snapshot's, and the config's) and exposition format."""

    def __init__(self, registry: CollectorRegistry, version: Callable[[], Hashable]) -> None:
        self._registry = registry
        self._version = version
        self._cache: dict[str, tuple[Hashable, bytes]] = {}
        self.renders = 0

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition body and its content type for an `Accept` header."""
        encoder, content_type = choose_encoder(accept or "")
        version = self._version()
        cached = self._cache.get(content_type)
        if cached is not None and cached[0] == version:
            return cached[1], content_type
        body = encoder(self._registry)
        self.renders += 1
        self._cache[content_type] = (version, body)
        return body, content_type
