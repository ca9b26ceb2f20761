"""The scaler's own `horizon_scaler_*` metrics, the per-trigger series' expiry, and the registry `/metrics` serves
(with the grpc_server_* families)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from .grpc_metrics import GrpcServerMetrics
from .instruments import Histogram
from .metadata import MODES, Trigger
from .source import Source

FORGET_AFTER = 600.0
MAX_TRIGGERS = 1024
# From a change reaching the scaler to the push leaving it: ~1 ms typically (docs/scaler.md, Benchmarks);
# the long tail is a busy event loop.
PUSH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
PUSH_REASONS = ("first", "change", "heartbeat")

# Why a call was refused; the gRPC code beside it is the one the audit trail records (audit.py `code`).
REFUSALS = {
    "metadata": "INVALID_ARGUMENT",  # malformed or unknown trigger metadata
    "tenancy": "PERMISSION_DENIED",  # --tenants: the namespace may not read the microservice
    "unknown_microservice": "NOT_FOUND",
    "unknown_queue": "NOT_FOUND",
    "unknown_metric": "NOT_FOUND",  # GetMetrics for a name GetMetricSpec never advertised
    "stale": "UNAVAILABLE",  # data older than --max-staleness
    "unavailable": "UNAVAILABLE",  # upstream unreachable, never fetched, no series, ...
    "internal": "INTERNAL",
    "unimplemented": "UNIMPLEMENTED",  # StreamMetricSpec
}

TRIGGER_LABELS = ("namespace", "scaledobject", "microservice", "metric", "queue")
TriggerKey = tuple[str, str, str, str, str]


def trigger_key(namespace: str, scaled_object: str, trigger: Trigger) -> TriggerKey:
    """The label values of a ScaledObject's trigger; `queue` is empty for the whole microservice."""
    return (namespace, scaled_object, trigger.microservice, trigger.metric, trigger.queue or "")


@dataclass(slots=True)
class TriggerState:
    """What the scaler last read and decided for one trigger of one ScaledObject, and when it was last asked."""

    value: float
    threshold: float
    activation_threshold: float
    mode: str
    asked_at: float
    longest_gap: float = 0.0
    active: bool | None = None
    replicas: int | None = None
    decided_at: float | None = None  # the book's clock at the last successful read: the status page's last decision


class TriggerBook:
    """The per-trigger state behind the `horizon_scaler_trigger_*` series. Pure bookkeeping over an injectable
    monotonic clock; no I/O.

    A trigger is created only by a successful read (so label values are ScaledObjects KEDA asks about and
    microservices that exist), refreshed by every call about it, and removed when nobody asked for
    max(forget_after, 3 × the longest gap seen between two of its calls): 10 minutes by default, which outlasts
    KEDA's 30 s pollingInterval and the HPA's 15 s sync many times over, while a ScaledObject polled every
    5 minutes keeps its series for 15. At most `max_triggers` are kept; the least recently asked goes first.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        forget_after: float = FORGET_AFTER,
        max_triggers: int = MAX_TRIGGERS,
    ) -> None:
        self.clock = clock
        self.forget_after = forget_after
        self.max_triggers = max_triggers
        self.entries: dict[TriggerKey, TriggerState] = {}  # least recently asked first
        # Grows when a trigger appears or goes, or what it read or decided changes (not at a mere repeat): the status
        # page sends an update only then.
        self.version = 0

    def _asked(self, key: TriggerKey) -> TriggerState | None:
        state = self.entries.pop(key, None)
        if state is not None:
            now = self.clock()
            state.longest_gap = max(state.longest_gap, now - state.asked_at)
            state.asked_at = now
            self.entries[key] = state  # (re)inserted last: the dict's order is the LRU order
        return state

    def touch(self, key: TriggerKey) -> None:
        """A call about the trigger that read no value (it failed): keeps its series, changes none."""
        self._asked(key)

    def record(self, key: TriggerKey, trigger: Trigger, value: float) -> TriggerState:
        """A successful read of `value`: create or refresh the trigger's state and return it."""
        state = self._asked(key)
        if state is None:
            while len(self.entries) >= self.max_triggers:
                del self.entries[next(iter(self.entries))]
            state = self.entries[key] = TriggerState(
                value, trigger.threshold, trigger.activation_threshold, trigger.mode, self.clock()
            )
            self.version += 1
        else:
            if (state.value, state.threshold, state.activation_threshold, state.mode) != (
                value, trigger.threshold, trigger.activation_threshold, trigger.mode
            ):  # fmt: skip
                self.version += 1
            state.value = value
            state.threshold, state.activation_threshold, state.mode = (
                trigger.threshold, trigger.activation_threshold, trigger.mode
            )  # fmt: skip
        state.decided_at = state.asked_at
        return state

    def expires_after(self, state: TriggerState) -> float:
        """Seconds without a call after which the trigger's series go."""
        return max(self.forget_after, 3 * state.longest_gap)

    def prune(self) -> int:
        """Drop the triggers nobody asked about for their `expires_after`; returns how many went."""
        now = self.clock()
        gone = [k for k, s in self.entries.items() if now - s.asked_at > self.expires_after(s)]
        for key in gone:
            del self.entries[key]
        if gone:
            self.version += 1
        return len(gone)


class ScalerMetrics:
    """Everything the scaler's /metrics shows; the servicer reports into it, the source and the open streams are
    read at scrape time. A prometheus_client collector (`registry()` builds the registry to serve)."""

    def __init__(self, book: TriggerBook | None = None) -> None:
        self.grpc = GrpcServerMetrics()
        self.triggers = book if book is not None else TriggerBook()
        self.pushes = dict.fromkeys(PUSH_REASONS, 0)
        self.push_latency = Histogram(PUSH_BUCKETS)
        self.refusals: dict[tuple[str, str, str], int] = {}
        self._source: Source | None = None
        self._open_streams: Callable[[], int] = lambda: 0

    def watch(self, source: Source, open_streams: Callable[[], int]) -> None:
        """What to read at scrape time: the source's age, freshness and changes, and the open streams."""
        self._source, self._open_streams = source, open_streams

    def registry(self) -> CollectorRegistry:
        """A private registry (never the global one) with the grpc_server_*, horizon_scaler_* and process_*
        families."""
        registry = CollectorRegistry()
        registry.register(self.grpc)
        registry.register(self)
        ProcessCollector(registry=registry)
        return registry

    # -- reported by the servicer -------------------------------------------------------------------------

    def decided_active(self, namespace: str, name: str, trigger: Trigger, value: float, active: bool) -> None:
        """IsActive / StreamIsActive read `value` and decided `active`."""
        book = self.triggers
        state = book.record(trigger_key(namespace, name, trigger), trigger, value)
        if state.active is not active:
            state.active = active
            book.version += 1

    def decided_replicas(self, namespace: str, name: str, trigger: Trigger, value: float, replicas: int) -> None:
        """GetMetrics read `value`, which asks for `replicas`."""
        book = self.triggers
        state = book.record(trigger_key(namespace, name, trigger), trigger, value)
        if state.replicas != replicas:
            state.replicas = replicas
            book.version += 1

    def asked(self, namespace: str, name: str, trigger: Trigger) -> None:
        """A call about the trigger that read nothing (its read failed, or GetMetricSpec)."""
        self.triggers.touch(trigger_key(namespace, name, trigger))

    def pushed(self, reason: str, latency: float | None = None) -> None:
        """A StreamIsActive message was written; `latency` from the change it carries, for reason `change`."""
        self.pushes[reason] += 1
        if latency is not None:
            self.push_latency.observe(latency)

    def refused(self, rpc: str, reason: str) -> None:
        """A call answered with an error status; `reason` is a key of REFUSALS."""
        key = (rpc, REFUSALS[reason], reason)
        self.refusals[key] = self.refusals.get(key, 0) + 1

    # -- collector ----------------------------------------------------------------------------------------

    def describe(self) -> Iterator[Metric]:
        return iter(())  # no collect() at registration: the families depend on what has happened

    def collect(self) -> Iterator[Metric]:
        yield from self._streams_and_pushes()
        yield from self._source_families()
        yield from self._trigger_families()

    def _streams_and_pushes(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("horizon_scaler_open_streams", "StreamIsActive streams open now.",
                                value=self._open_streams())  # fmt: skip
        pushes = CounterMetricFamily(
            "horizon_scaler_pushes",
            "StreamIsActive messages written: the first decision of a stream, a changed decision, or the heartbeat "
            "re-send of an unchanged one.",
            labels=("reason",),
        )
        for reason, count in self.pushes.items():
            pushes.add_metric([reason], count)
        yield pushes
        latency = HistogramMetricFamily(
            "horizon_scaler_push_latency_seconds",
            "Seconds from the source applying a change to the StreamIsActive message carrying the changed decision "
            "being written.",
        )
        latency.add_metric([], self.push_latency.cumulative(), self.push_latency.sum)
        yield latency
        refused = CounterMetricFamily(
            "horizon_scaler_refused_calls",
            "Calls answered with an error status, by RPC, status code (as in the audit trail) and reason.",
            labels=("rpc", "code", "reason"),
        )
        for (rpc, code, reason), count in sorted(self.refusals.items()):
            refused.add_metric([rpc, code, reason], count)
        yield refused

    def _source_families(self) -> Iterator[Metric]:
        source = self._source
        fresh = GaugeMetricFamily(
            "horizon_scaler_source_fresh",
            "1 while the source's data is fresh enough to answer from (what grpc.health.v1 reports; with several "
            "exporters, while at least one is), else 0.",
        )
        age = GaugeMetricFamily(
            "horizon_scaler_source_age_seconds",
            "Seconds since the source last heard from its upstream (the exporter's last snapshot answer, the "
            "youngest of several exporters', or Prometheus' last ready /-/ready); absent before the first.",
        )
        changes = CounterMetricFamily(
            "horizon_scaler_source_changes",
            "Updates the source applied and announced to the streams (snapshot answers, Prometheus ticks that "
            "changed what a trigger reads).",
        )
        exporter_fresh = GaugeMetricFamily(
            "horizon_scaler_exporter_fresh",
            "1 while this exporter's snapshot feed is fresh enough to answer its microservices from, else 0.",
            labels=("exporter",),
        )
        exporter_age = GaugeMetricFamily(
            "horizon_scaler_exporter_age_seconds",
            "Seconds since this exporter's last snapshot answer; absent before the first.",
            labels=("exporter",),
        )
        if source is not None:
            fresh.add_metric([], 1.0 if source.fresh else 0.0)
            seconds = source.age
            if seconds is not None:
                age.add_metric([], max(0.0, seconds))
            changes.add_metric([], source.changes.version)
            for url, is_fresh, seconds in source.upstreams():
                exporter_fresh.add_metric([url], 1.0 if is_fresh else 0.0)
                if seconds is not None:
                    exporter_age.add_metric([url], max(0.0, seconds))
        yield from (fresh, age, changes, exporter_fresh, exporter_age)

    def _trigger_families(self) -> Iterator[Metric]:
        book = self.triggers
        book.prune()

        def gauge(suffix: str, text: str, extra: tuple[str, ...] = ()) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"horizon_scaler_trigger_{suffix}", text, labels=(*TRIGGER_LABELS, *extra))

        value = gauge("value", "The trigger's raw value at its last successful read (processes, ready jobs or "
                               "wait seconds; before thresholdMode is applied).")  # fmt: skip
        threshold = gauge("threshold", "The trigger's threshold metadata.")
        activation = gauge("activation_threshold", "The trigger's activationThreshold metadata.")
        mode = gauge("mode", "The trigger's thresholdMode: 1 for the mode in force, 0 for the other.", ("mode",))
        active = gauge("active", "1 when the last IsActive/StreamIsActive decision was active, else 0.")
        replicas = gauge("replicas_wanted",
                         "Replicas the last GetMetrics value asks for: floor(value / threshold) + 1.")  # fmt: skip
        for key, state in book.entries.items():
            labels = list(key)
            value.add_metric(labels, state.value)
            threshold.add_metric(labels, state.threshold)
            activation.add_metric(labels, state.activation_threshold)
            for name in MODES:
                mode.add_metric([*labels, name], 1.0 if state.mode == name else 0.0)
            if state.active is not None:
                active.add_metric(labels, 1.0 if state.active else 0.0)
            if state.replicas is not None:
                replicas.add_metric(labels, state.replicas)
        yield GaugeMetricFamily("horizon_scaler_triggers", "ScaledObject triggers with horizon_scaler_trigger_* "
                                "series now (bounded; see docs/scaler.md).", value=len(book.entries))  # fmt: skip
        yield from (value, threshold, activation, mode, active, replicas)
