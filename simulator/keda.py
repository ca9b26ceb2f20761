"""KEDA's scaling decisions around the HPA, as pure functions: fallback, RequestScale, the Prometheus trigger's
result handling, and metric quantities.

Modelled on kedacore/keda v2.20.2 (`pkg/fallback/fallback.go`, `pkg/scaling/executor/scale_scaledobjects.go`,
`pkg/scaling/scale_handler.go`, `pkg/scalers/prometheus_scaler.go`, `pkg/scalers/scaler.go`); docs/whatif.md lists
the facts and tests/test_whatif_keda.py replays KEDA's own test cases.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_POLLING_INTERVAL = 30.0
DEFAULT_COOLDOWN = 300.0
FALLBACK_BEHAVIORS = ("static", "currentReplicas", "currentReplicasIfHigher", "currentReplicasIfLower")


class ScalerError(Exception):
    """A failed read of the trigger (an RPC status, an empty Prometheus result with ignoreNullValues false …)."""


@dataclass(frozen=True, slots=True)
class Fallback:
    """`spec.fallback`: after more than `failure_threshold` consecutive failures KEDA serves `replicas`."""

    failure_threshold: int
    replicas: int
    behavior: str = "static"


@dataclass(frozen=True, slots=True)
class ScaledObject:
    """The ScaledObject fields the executor reads."""

    min_replicas: int = 0
    max_replicas: int = 100
    idle_replicas: int | None = None
    cooldown_period: float = DEFAULT_COOLDOWN
    initial_cooldown_period: float = 0.0
    fallback: Fallback | None = None

    @property
    def hpa_min_replicas(self) -> int:
        """The HPA KEDA creates has minReplicas = minReplicaCount when > 0, else 1 (controllers/keda/hpa.go)."""
        return self.min_replicas if self.min_replicas > 0 else 1


@dataclass(frozen=True, slots=True)
class FallbackResult:
    """What `GetMetricsWithFallback` hands on: a value (the scaler's or the synthetic one) or the error."""

    value: float | None
    active: bool  # the synthetic fallback metric is being served
    error: str | None
    failures: int  # the per-metric consecutive failure count afterwards


def fallback_replicas(fallback: Fallback, current: int) -> int:
    """Replicas a fallback asks for: `static` its own count, the others compare with the current spec.replicas."""
    if fallback.behavior == "currentReplicas":
        return current
    if fallback.behavior == "currentReplicasIfHigher":
        return max(current, fallback.replicas)
    if fallback.behavior == "currentReplicasIfLower":
        return min(current, fallback.replicas)
    return fallback.replicas


def with_fallback(
    fallback: Fallback | None,
    failures: int,
    value: float | None,
    error: str | None,
    *,
    metric_type: str,
    target: float,
    current: int,
    ready: int,
) -> FallbackResult:
    """`GetMetricsWithFallback` for one metric. Both KEDA's polling loop and every HPA metrics request go through
    it, so both count failures. A success resets the count (when a fallback is configured); the (N+1)-th
    consecutive failure with `failureThreshold: N` serves the synthetic metric: target × replicas for
    AverageValue, target × replicas / ready for Value (an error when no pod is ready), truncated to milli-units.
    """
    if error is None:
        return FallbackResult(value, False, None, 0 if fallback is not None else failures)
    if fallback is None or fallback.failure_threshold < 0 or fallback.replicas < 0:
        return FallbackResult(None, False, error, failures)
    failures += 1
    if failures <= fallback.failure_threshold:
        return FallbackResult(None, False, error, failures)
    replicas = float(fallback_replicas(fallback, current))
    if metric_type == "Value":
        if ready <= 0:
            return FallbackResult(None, False, "error performing fallback", failures)
        replicas /= ready
    return FallbackResult(math.trunc(target * 1000 * replicas) / 1000, True, None, failures)


@dataclass(frozen=True, slots=True)
class ScaleResult:
    """What one `RequestScale` does: a new replica count (None: unchanged), the LastActiveTime afterwards, and the
    Active condition's reason."""

    scale_to: int | None
    last_active: float | None
    reason: str


def request_scale(
    so: ScaledObject, current: int, active: bool, error: bool, now: float, last_active: float | None,
    created_at: float = 0.0,
) -> ScaleResult:  # fmt: skip
    """The executor's `RequestScale` for a ScaledObject, branch for branch.

    Active: from 0 (or below min with an idle count) to max(minReplicaCount, 1); with an error and replicas > 0,
    LastActiveTime is not refreshed; otherwise it is, and the HPA owns 1 ↔ N. Inactive: with an error and a
    fallback of non-zero replicas, nothing; with an error and no fallback, nothing; above idle/zero with min 0,
    to idle/min/0 once LastActiveTime + cooldownPeriod < now (strictly); below min without idle, to min at once.
    """
    min_r = so.min_replicas
    if active:
        if (so.idle_replicas is not None and current < min_r) or current == 0:
            return ScaleResult(min_r if min_r > 0 else 1, now, "ScalerActive")
        if error:
            return ScaleResult(None, last_active, "PartialTriggerError")
        return ScaleResult(None, now, "ScalerActive")
    if error and so.fallback is not None and so.fallback.replicas != 0:
        return ScaleResult(None, last_active, "ScalerNotActive")
    if error and so.fallback is None:
        return ScaleResult(None, last_active, "TriggerError")
    if (so.idle_replicas is not None and current > so.idle_replicas) or (current > 0 and min_r == 0):
        if last_active is None:
            due = created_at + so.initial_cooldown_period < now
        else:
            due = last_active + so.cooldown_period < now
        if not due:
            return ScaleResult(None, last_active, "ScalerCooldown")
        to = so.idle_replicas if so.idle_replicas is not None else min_r
        return ScaleResult(to, last_active, "ScalerNotActive")
    if so.idle_replicas is None and current < min_r:
        return ScaleResult(min_r, last_active, "ScalerNotActive")
    return ScaleResult(None, last_active, "ScalerNotActive")


def prometheus_response(status: int, body: Mapping[str, Any], ignore_null_values: bool = True) -> float:
    """`ExecutePromQuery`: the Prometheus trigger's reading of an instant query's answer.

    A non-2xx status is an error. No series → 0 with `ignoreNullValues` (the default), else an error ("target may
    be lost"); more than one series → always an error; an empty value pair → like no series; a pair without the
    value → an error; NaN/±Inf → 0 or an error, as with no series. Raises ScalerError.
    """
    if not 200 <= status <= 299:
        raise ScalerError(f"prometheus query api returned error. status: {status}")
    result = (body.get("data") or {}).get("result") or []
    if not result:
        if ignore_null_values:
            return 0.0
        raise ScalerError("prometheus metrics 'prometheus' target may be lost, the result is empty")
    if len(result) > 1:
        raise ScalerError("prometheus query returned multiple elements")
    pair = result[0].get("value") or []
    if not pair:
        if ignore_null_values:
            return 0.0
        raise ScalerError("prometheus metrics 'prometheus' target may be lost, the value list is empty")
    if len(pair) < 2:
        raise ScalerError("prometheus query didn't return enough values")
    if pair[1] is None:
        return -1.0  # KEDA's quirk: a JSON null sample reads as -1 without an error
    try:
        value = float(pair[1])
    except (TypeError, ValueError):
        raise ScalerError(f"prometheus query returned a value that is not a number: {pair[1]!r}") from None
    if math.isnan(value) or math.isinf(value):
        if ignore_null_values:
            return 0.0
        raise ScalerError(f"prometheus query returns {value}")
    return value


def prometheus_result(values: Sequence[float], ignore_null_values: bool = True) -> float:
    """`prometheus_response` for an instant query that returned `values` (one per series), at time 0."""
    body = {"data": {"result": [{"value": [0, repr(v)]} for v in values]}}
    return prometheus_response(200, body, ignore_null_values)


def metric_quantity(value: float) -> float:
    """The quantity KEDA hands the HPA for a scaler's value: NaN, ±Inf and negatives are 0; else `%.3f`."""
    if math.isnan(value) or math.isinf(value) or value < 0:
        return 0.0
    return float(f"{value:.3f}")
