"""What each pipeline lets KEDA and the HPA see of a microservice: the seed chain's Prometheus samples, the
exporter's 1 s snapshot behind our scaler, or (the oracle) the truth itself."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from external_scaler.hpa import reached_replicas, report

from ..keda import ScalerError, prometheus_result
from .scenario import PipelineSpec, ScalingSpec


@dataclass(frozen=True, slots=True)
class Metric:
    """What GetMetrics / the Prometheus trigger hands KEDA: the metric value, its target, and the raw reading
    that IsActive compares with activationThreshold."""

    value: float
    target: float
    raw: float


def due(t: int, interval: int, phase: int) -> bool:
    """A periodic action with `interval` seconds and offset `phase` runs at tick `t`."""
    return (t + phase) % interval == 0


class View:
    """The base: one microservice's view in one pipeline; `observe` runs every tick, `read` when KEDA asks."""

    def __init__(self, pipe: PipelineSpec, scaling: ScalingSpec, phase: float) -> None:
        self.pipe = pipe
        self.scaling = scaling
        self.mode = pipe.threshold_mode or scaling.threshold_mode
        self.phase_unit = phase  # in [0, 1): the same for every pipeline (common random numbers)
        self._past: deque[float] = deque(maxlen=pipe.horizon_lag + 1)

    def _in_horizon(self, truth: float) -> float:
        """What Horizon's API says at this tick: the truth of `horizon_lag` seconds ago (its supervisors persist
        their state to Redis once per loop, about every second). Called every tick."""
        self._past.append(truth)
        return self._past[0]

    def observe(self, t: int, reachable: bool, truth: float) -> bool:
        """Take in the true value at tick `t` if this pipeline samples now; True when a new sample arrived."""
        raise NotImplementedError

    def raw(self, t: float) -> float:
        """The reading at `t`; raises ScalerError when there is none (stale, lost, never read)."""
        raise NotImplementedError

    def read(self, t: float) -> Metric:
        raw = self.raw(t)
        rep = report(raw, self.scaling.threshold, self.mode)
        return Metric(rep.value, rep.target, raw)


class ExporterView(View):
    """`pull` and `push`: the exporter polls Horizon every `poll_interval`; our scaler answers from its snapshot,
    UNAVAILABLE once the data is older than `max_staleness` (never a guessed value)."""

    def __init__(self, pipe: PipelineSpec, scaling: ScalingSpec, phase: float) -> None:
        super().__init__(pipe, scaling, phase)
        self.interval = max(1, round(pipe.poll_interval))
        self.offset = math.floor(phase * self.interval)
        self.value: float | None = None
        self.at = -math.inf

    def observe(self, t: int, reachable: bool, truth: float) -> bool:
        seen = self._in_horizon(truth)
        if reachable and due(t, self.interval, self.offset):
            self.value, self.at = seen, float(t)
            return True
        return False

    def raw(self, t: float) -> float:
        if self.value is None:
            raise ScalerError("UNAVAILABLE: never fetched from Horizon")
        age = t - self.at
        if age > self.pipe.max_staleness:
            raise ScalerError(f"UNAVAILABLE: data is {age:.0f}s old (max staleness {self.pipe.max_staleness:g}s)")
        return self.value


class PrometheusView(View):
    """`seed`: json_exporter fetched by Prometheus every `scrape_interval`; a failed scrape writes staleness
    markers, so the instant query returns no series, which `ignoreNullValues` (default true) reads as 0."""

    def __init__(self, pipe: PipelineSpec, scaling: ScalingSpec, phase: float) -> None:
        super().__init__(pipe, scaling, phase)
        self.interval = max(1, round(pipe.scrape_interval))
        self.offset = math.floor(phase * self.interval)
        self.sample: float | None = None
        self.at = -math.inf
        self.stale = True

    def observe(self, t: int, reachable: bool, truth: float) -> bool:
        seen = self._in_horizon(truth)
        if not due(t, self.interval, self.offset):
            return False
        if reachable:
            self.sample, self.at, self.stale = seen, float(t), False
        else:
            self.stale = True  # the scrape failed: every series of the target is marked stale
        return True

    def raw(self, t: float) -> float:
        fresh = not self.stale and self.sample is not None and t - self.at <= self.pipe.lookback_delta
        return prometheus_result([self.sample] if fresh else [], self.pipe.ignore_null_values)

    def read(self, t: float) -> Metric:
        if self.mode == "reached":
            # The query is `floor(x / threshold) + 1` against a threshold of 1: Prometheus computes it per series,
            # so no series gives no result (0 with ignoreNullValues), and KEDA's activation compares that value.
            fresh = not self.stale and self.sample is not None and t - self.at <= self.pipe.lookback_delta
            values = [float(reached_replicas(max(self.sample or 0.0, 0.0), self.scaling.threshold))] if fresh else []
            value = prometheus_result(values, self.pipe.ignore_null_values)
            return Metric(value, 1.0, value)
        raw = self.raw(t)
        return Metric(raw, self.scaling.threshold, raw)


class OracleView(View):
    """`oracle`: the true value at every instant, with no pipeline in between."""

    def __init__(self, pipe: PipelineSpec, scaling: ScalingSpec, phase: float) -> None:
        super().__init__(pipe, scaling, phase)
        self.value = 0.0

    def observe(self, t: int, reachable: bool, truth: float) -> bool:
        self.value = truth
        return True

    def raw(self, t: float) -> float:
        return self.value


def make_view(pipe: PipelineSpec, scaling: ScalingSpec, phase: float) -> View:
    if pipe.kind == "seed":
        return PrometheusView(pipe, scaling, phase)
    if pipe.kind == "oracle":
        return OracleView(pipe, scaling, phase)
    return ExporterView(pipe, scaling, phase)
