"""Configurations that cannot work, found before running: a threshold no pod count can reach, a scale-from-zero
on a metric that only exists while pods run."""

from __future__ import annotations

from external_scaler.hpa import replica_proposal, report

from ..keda import metric_quantity
from .scenario import MicroserviceSpec, PipelineSpec


def scale_up_tolerance(ms: MicroserviceSpec, default: float) -> float:
    """The HPA's scale-up tolerance for this microservice: `behavior.scale_up.tolerance`, else the controller's."""
    b = ms.scaling.behavior
    return b.up.tolerance if b is not None and b.up.tolerance is not None else default


def ceiling(ms: MicroserviceSpec, mode: str, tolerance: float) -> int | None:
    """The replica count a `processes` trigger can never scale past, or None when it can reach max_replicas.

    With R replicas the processes are at most R × max_processes (every pod at its maximum); if even that makes
    the HPA propose no more than R, the HPA stays at R whatever the load (e.g. `average` mode with threshold ≥
    max_processes: the per-pod average never exceeds the target by more than the tolerance).
    """
    s = ms.scaling
    if s.metric != "processes":
        return None
    tolerance = scale_up_tolerance(ms, tolerance)
    for replicas in range(max(1, s.min_replicas), s.max_replicas):
        best = float(replicas * ms.horizon.max_processes)
        rep = report(best, s.threshold, mode)
        proposal = replica_proposal(metric_quantity(rep.value), rep.target, metric_type=s.metric_type,
                                    status_replicas=replicas, ready=replicas, tolerance_up=tolerance,
                                    tolerance_down=tolerance)  # fmt: skip
        if proposal <= replicas:
            return replicas
    return None


def warnings(ms: MicroserviceSpec, pipe: PipelineSpec, tolerance: float) -> list[str]:
    """What is wrong with this microservice's settings under this pipeline, in words a user can act on."""
    s = ms.scaling
    mode = pipe.threshold_mode or s.threshold_mode
    out = []
    tolerance = scale_up_tolerance(ms, tolerance)
    stuck = ceiling(ms, mode, tolerance)
    if stuck is not None:
        if stuck <= max(1, s.min_replicas):
            out.append(
                f"never scales up: with {mode} mode, threshold {s.threshold:g} and max_processes "
                f"{ms.horizon.max_processes}, {stuck} replica(s) at full processes never ask for more "
                f"(HPA tolerance {tolerance:g})"
            )
        else:
            out.append(
                f"never scales past {stuck} replicas: {stuck} × max_processes {ms.horizon.max_processes} stays "
                f"within the HPA's tolerance of {mode} mode's target (set behavior.scale_up.tolerance: 0)"
            )
    if s.metric == "processes" and s.min_replicas == 0 and s.idle_replicas is None:
        out.append("never activates from zero: with no pod there are no processes (use queueLength or waitSeconds)")
    if mode == "reached" and s.metric_type == "Value":
        out.append("thresholdMode reached reports a replica count; it needs metricType AverageValue")
    return out
