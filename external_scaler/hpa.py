"""The HPA's replica formula for external metrics, and how a threshold maps onto what the scaler reports to KEDA."""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_TOLERANCE = 0.1
# Guards floor(value / threshold) against binary fractions: 0.3 / 0.1 is 2.9999999999999996.
_EPSILON = 1e-9


def milli(value: float) -> int:
    """A metric value as the milli-quantity the HPA computes with (KEDA sends `%.3f`)."""
    return round(value * 1000)


def replica_proposal(
    usage: float,
    target: float,
    *,
    metric_type: str = "AverageValue",
    status_replicas: int,
    spec_replicas: int | None = None,
    ready: int | None = None,
    tolerance_up: float = DEFAULT_TOLERANCE,
    tolerance_down: float = DEFAULT_TOLERANCE,
) -> int:
    """The replica calculator's answer for one external metric, before any stabilization, policy or clamp.

    kubernetes' `replica_calculator.go`, in milli-units: AverageValue (`GetExternalPerPodMetricReplicas`) takes
    ratio = usage / (target × status.replicas) and, outside the tolerance, ceil(usage / target); Value
    (`GetExternalMetricReplicas`) takes ratio = usage / target and, with spec.replicas ≠ 0 and outside the
    tolerance, ceil(ratio × ready pods), with spec.replicas = 0 ceil(ratio). Inside the tolerance — the ratio
    within [1 − tolerance_down, 1 + tolerance_up] — the current count stays.
    """
    used, per = milli(usage), milli(target)
    if per <= 0:
        raise ValueError(f"target: expected a value > 0, got {target!r}")

    def within(ratio: float) -> bool:
        return 1.0 - tolerance_down <= ratio <= 1.0 + tolerance_up

    if metric_type == "AverageValue":
        ratio = used / (per * status_replicas) if status_replicas else (math.inf if used else math.nan)
        return status_replicas if within(ratio) else math.ceil(used / per)
    if metric_type == "Value":
        current = status_replicas if spec_replicas is None else spec_replicas
        ratio = used / per
        if current == 0:
            return math.ceil(ratio)
        if within(ratio):
            return current
        return math.ceil(ratio * (current if ready is None else ready))
    raise ValueError(f"metric_type: expected AverageValue or Value, got {metric_type!r}")


def desired_replicas(
    usage: float,
    target: float,
    current: int,
    *,
    metric_type: str = "AverageValue",
    ready: int | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    min_replicas: int = 1,
    max_replicas: int = 100,
) -> int:
    """Replicas the HPA asks for with `current` replicas (spec and status alike), clamped to [min, max]: the
    replica calculator's `replica_proposal` with one tolerance for both directions."""
    wanted = replica_proposal(
        usage, target, metric_type=metric_type, status_replicas=current, ready=ready,
        tolerance_up=tolerance, tolerance_down=tolerance,
    )  # fmt: skip
    return max(min_replicas, min(max_replicas, wanted))


@dataclass(frozen=True, slots=True)
class Report:
    """What the scaler sends KEDA for one reading: the metric value and the target it is compared against."""

    value: float
    target: float


def reached_replicas(value: float, threshold: float) -> int:
    """Replicas needed when every `threshold` reached adds one: 0–7 → 1, 8–15 → 2, 16–23 → 3 for threshold 8."""
    return math.floor(value / threshold + _EPSILON) + 1


def report(value: float, threshold: float, mode: str) -> Report:
    """Map a raw reading onto KEDA's value/target pair for an AverageValue trigger.

    `average` reports the raw value against the threshold: the HPA scales when the per-replica average exceeds
    the threshold by more than its tolerance (8 processes on 1 replica stays at 1). `reached` reports the replica
    count the "reaches the threshold" rule wants against a target of 1, so the HPA lands on exactly that count:
    with R replicas it scales up exactly when value ≥ threshold × R (the tolerance cannot hide a change of one
    replica while R ≤ 9, since |1 − D/R| ≥ 1/R > 0.1).
    """
    if mode == "average":
        return Report(value=value, target=threshold)
    if mode == "reached":
        return Report(value=float(reached_replicas(value, threshold)), target=1.0)
    raise ValueError(f"mode: expected reached or average, got {mode!r}")


def legacy_int(value: float) -> int:
    """The int64 twin of a float for KEDA < 2.17, which reads only the int fields: nearest integer, halves up."""
    return math.floor(value + 0.5)


def threshold_table(threshold: float = 8.0, processes: range = range(41), replicas: range = range(1, 7)) -> str:
    """Markdown table of the HPA's answer per (processes, current replicas): `reached` / `average` mode.

    docs/scaler.md embeds this table; tests/test_scaler_hpa.py fails when the two drift apart.
    """

    def cell(p: int, r: int) -> str:
        answers = []
        for mode in ("reached", "average"):
            rep = report(float(p), threshold, mode)
            answers.append(desired_replicas(rep.value, rep.target, r))
        text = f"{answers[0]} / {answers[1]}"
        return f"**{text}**" if answers[0] > r else text

    head = "| processes | " + " | ".join(f"{r} replica{'s' if r > 1 else ''}" for r in replicas) + " |"
    rule = "|---:|" + "---:|" * len(replicas)
    rows = [f"| {p} | " + " | ".join(cell(p, r) for r in replicas) + " |" for p in processes]
    return "\n".join([head, rule, *rows])
