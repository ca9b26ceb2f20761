"""The HPA controller's decisions after the replica calculator: stabilization, scaling policies, min/max — pure.

Modelled on kubernetes' `pkg/controller/podautoscaler/horizontal.go` (reconcileAutoscaler, normalizeDesiredReplicas
with and without `behavior`, stabilizeRecommendation(WithBehaviors), convertDesiredReplicasWith(Rules|BehaviorRate),
calculateScale(Up|Down)Limit…, storeScaleEvent) and `pkg/apis/autoscaling/v2/defaults.go`. Times are seconds;
comparisons with a window's cutoff are as strict as Go's `Before`/`After` there. The replica calculator itself is
`external_scaler.hpa.replica_proposal`. tests/test_whatif_hpa.py replays Kubernetes' own test cases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

SYNC_PERIOD = 15.0  # --horizontal-pod-autoscaler-sync-period
DOWNSCALE_STABILIZATION = 300.0  # --horizontal-pod-autoscaler-downscale-stabilization
TOLERANCE = 0.1  # --horizontal-pod-autoscaler-tolerance
SCALE_UP_LIMIT_FACTOR = 2.0  # without `behavior`: at most max(2 × current, 4) per sync
SCALE_UP_LIMIT_MINIMUM = 4.0
_INT32_MAX, _INT32_MIN = 2**31 - 1, -(2**31)
SELECT_POLICIES = ("Max", "Min", "Disabled")
POLICY_TYPES = ("Pods", "Percent")


@dataclass(frozen=True, slots=True)
class Policy:
    """One HPAScalingPolicy: `Pods` or `Percent`, `value`, over `period` seconds."""

    type: str
    value: int
    period: int


@dataclass(frozen=True, slots=True)
class Rules:
    """HPAScalingRules for one direction; None fields take the defaults (`scale_up_rules`/`scale_down_rules`)."""

    window: float | None = None  # stabilizationWindowSeconds
    select: str | None = None  # selectPolicy
    policies: tuple[Policy, ...] | None = None
    tolerance: float | None = None  # KEP-4951 (beta, on by default from Kubernetes 1.35)


@dataclass(frozen=True, slots=True)
class Behavior:
    """`spec.behavior`, with every default filled in."""

    up: Rules
    down: Rules


def scale_up_rules(rules: Rules | None = None) -> Rules:
    """`GenerateHPAScaleUpRules`: window 0, selectPolicy Max, policies Pods 4 / 15 s and Percent 100 / 15 s."""
    rules = rules or Rules()
    return Rules(
        window=0.0 if rules.window is None else rules.window,
        select=rules.select or "Max",
        policies=rules.policies if rules.policies is not None else (Policy("Pods", 4, 15), Policy("Percent", 100, 15)),
        tolerance=rules.tolerance,
    )


def scale_down_rules(rules: Rules | None = None, downscale_window: float = DOWNSCALE_STABILIZATION) -> Rules:
    """`GenerateHPAScaleDownRules` + the controller's `maybeInitScaleDownStabilizationWindow`: window from the
    controller flag (300 s), selectPolicy Max, policy Percent 100 / 15 s."""
    rules = rules or Rules()
    return Rules(
        window=downscale_window if rules.window is None else rules.window,
        select=rules.select or "Max",
        policies=rules.policies if rules.policies is not None else (Policy("Percent", 100, 15),),
        tolerance=rules.tolerance,
    )


def behavior(up: Rules | None = None, down: Rules | None = None, downscale_window: float = DOWNSCALE_STABILIZATION):
    """A `spec.behavior` with the API server's defaults applied to what is not set."""
    return Behavior(scale_up_rules(up), scale_down_rules(down, downscale_window))


@dataclass(slots=True)
class Recommendation:
    t: float
    replicas: int


@dataclass(slots=True)
class ScaleEvent:
    t: float
    change: int  # absolute, non-negative
    outdated: bool = False


# -- without `behavior` (the path KEDA's HPA takes unless advanced.horizontalPodAutoscalerConfig.behavior is set) --


def stabilize(recs: list[Recommendation], now: float, window: float, desired: int) -> int:
    """`stabilizeRecommendation`: the highest recommendation inside the window (a sample exactly at the cutoff
    counts); records `desired`, reusing the slot of the last sample older than the window."""
    highest, old = desired, -1
    cutoff = now - window
    for i, rec in enumerate(recs):
        if rec.t < cutoff:
            old = i
        elif rec.replicas > highest:
            highest = rec.replicas
    if old >= 0:
        recs[old] = Recommendation(now, desired)
    else:
        recs.append(Recommendation(now, desired))
    return highest


def scale_up_limit(current: int, factor: float = SCALE_UP_LIMIT_FACTOR, minimum: float = SCALE_UP_LIMIT_MINIMUM):
    """`calculateScaleUpLimit`: max(factor × current, minimum), truncated to an integer."""
    return int(max(factor * current, minimum))


def convert_with_rules(
    current: int, desired: int, min_replicas: int, max_replicas: int, factor: float = SCALE_UP_LIMIT_FACTOR
) -> tuple[int, str]:
    """`convertDesiredReplicasWithRules`: min first, then the lower of max and the scale-up limit."""
    limit = scale_up_limit(current, factor)
    allowed, why = (limit, "ScaleUpLimit") if max_replicas > limit else (max_replicas, "TooManyReplicas")
    if desired < min_replicas:
        return min_replicas, "TooFewReplicas"
    if desired > allowed:
        return allowed, why
    return desired, "DesiredWithinRange"


# -- with `behavior` --------------------------------------------------------------------------------------------


def stabilize_with_behaviors(
    recs: list[Recommendation], now: float, current: int, desired: int, up_window: float, down_window: float
) -> int:
    """`stabilizeRecommendationWithBehaviors`: scale up no further than the lowest recommendation of the up window,
    down no further than the highest of the down window (samples strictly after each cutoff); records `desired`,
    reusing the slot of the last sample older than both windows."""
    up = down = desired
    up_cut, down_cut = now - up_window, now - down_window
    old = -1
    for i, rec in enumerate(recs):
        if rec.t > up_cut:
            up = min(rec.replicas, up)
        if rec.t > down_cut:
            down = max(rec.replicas, down)
        if rec.t < up_cut and rec.t < down_cut:
            old = i
    recommendation = current
    if recommendation < up:
        recommendation = up
    if recommendation > down:
        recommendation = down
    if old >= 0:
        recs[old] = Recommendation(now, desired)
    else:
        recs.append(Recommendation(now, desired))
    return recommendation


def replicas_change_per_period(period: float, events: list[ScaleEvent], now: float) -> int:
    """`getReplicasChangePerPeriod`: replicas changed by events strictly inside the last `period` seconds."""
    cutoff = now - period
    return sum(e.change for e in events if e.t > cutoff)


def period_start(
    current: int, policy: Policy, up_events: list[ScaleEvent], down_events: list[ScaleEvent], now: float
) -> int:
    """Replicas at the start of the policy's period: current − added + removed within it."""
    return (
        current
        - replicas_change_per_period(policy.period, up_events, now)
        + replicas_change_per_period(policy.period, down_events, now)
    )


def scale_up_limit_with_rules(
    current: int, up_events: list[ScaleEvent], down_events: list[ScaleEvent], rules: Rules, now: float
) -> int:
    """`calculateScaleUpLimitWithScalingRules`: per policy, from the replicas at the period's start, Pods adds
    `value`, Percent multiplies by 1 + value/100 rounding up; selectPolicy Max takes the most, Min the least."""
    if rules.select == "Disabled":
        return current
    pick, result = (min, _INT32_MAX) if rules.select == "Min" else (max, _INT32_MIN)
    proposed = 0
    for p in rules.policies or ():
        start = period_start(current, p, up_events, down_events, now)
        if p.type == "Pods":
            proposed = start + p.value
        elif p.type == "Percent":
            proposed = math.ceil(start * (1 + p.value / 100))
        result = pick(result, proposed)
    return result


def scale_down_limit_with_rules(
    current: int, up_events: list[ScaleEvent], down_events: list[ScaleEvent], rules: Rules, now: float
) -> int:
    """`calculateScaleDownLimitWithBehaviors`: Pods subtracts `value`, Percent multiplies by 1 − value/100
    truncating; selectPolicy Max (the default) takes the lowest count, Min the highest."""
    if rules.select == "Disabled":
        return current
    pick, result = (max, _INT32_MIN) if rules.select == "Min" else (min, _INT32_MAX)
    proposed = 0
    for p in rules.policies or ():
        start = period_start(current, p, up_events, down_events, now)
        if p.type == "Pods":
            proposed = start - p.value
        elif p.type == "Percent":
            proposed = int(start * (1 - p.value / 100))
        result = pick(result, proposed)
    return result


def convert_with_behavior_rate(
    current: int, desired: int, min_replicas: int, max_replicas: int, b: Behavior,
    up_events: list[ScaleEvent], down_events: list[ScaleEvent], now: float,
) -> tuple[int, str]:  # fmt: skip
    """`convertDesiredReplicasWithBehaviorRate`: going up, no more than the policies and maxReplicas allow; going
    down, no fewer than the policies and minReplicas allow; an unchanged count is not clamped at all."""
    if desired > current:
        limit = max(scale_up_limit_with_rules(current, up_events, down_events, b.up, now), current)
        allowed, why = (limit, "ScaleUpLimit") if max_replicas > limit else (max_replicas, "TooManyReplicas")
        if desired > allowed:
            return allowed, why
    elif desired < current:
        limit = min(scale_down_limit_with_rules(current, up_events, down_events, b.down, now), current)
        allowed, why = (limit, "ScaleDownLimit") if min_replicas < limit else (min_replicas, "TooFewReplicas")
        if desired < allowed:
            return allowed, why
    return desired, "DesiredWithinRange"


def _longest_period(rules: Rules) -> float:
    return max((p.period for p in rules.policies or ()), default=0)


def store_scale_event(
    b: Behavior | None, up_events: list[ScaleEvent], down_events: list[ScaleEvent], previous: int, new: int,
    now: float,
) -> None:  # fmt: skip
    """`storeScaleEvent`: only with `behavior`; events older than the direction's longest policy period are marked
    outdated, and the last outdated slot is reused for the new event."""
    if b is None:
        return
    if new > previous:
        events, rules, change = up_events, b.up, new - previous
    else:
        events, rules, change = down_events, b.down, previous - new
    cutoff = now - _longest_period(rules)
    slot = -1
    for i, e in enumerate(events):
        if e.t < cutoff:
            e.outdated = True
        if e.outdated:
            slot = i
    if slot >= 0:
        events[slot] = ScaleEvent(now, change)
    else:
        events.append(ScaleEvent(now, change))


@dataclass(frozen=True, slots=True)
class Decision:
    """One reconcile: the proposal (replica calculator, None if the metric failed), the stabilized
    recommendation, and the desired count after policies and min/max; `rescale` when it differs from current."""

    current: int
    proposal: int | None
    stabilized: int | None
    desired: int
    rescale: bool
    reason: str


@dataclass
class HPA:
    """One HorizontalPodAutoscaler's controller-side memory and its reconcile step."""

    min_replicas: int
    max_replicas: int
    behavior: Behavior | None = None
    tolerance: float = TOLERANCE
    downscale_window: float = DOWNSCALE_STABILIZATION
    scale_up_limit_factor: float = SCALE_UP_LIMIT_FACTOR
    recommendations: list[Recommendation] | None = None
    up_events: list[ScaleEvent] = field(default_factory=list)
    down_events: list[ScaleEvent] = field(default_factory=list)

    def tolerances(self) -> tuple[float, float]:
        """(scale-up, scale-down) tolerance: `behavior.scaleUp/scaleDown.tolerance` where set, else the flag."""
        up = down = self.tolerance
        if self.behavior is not None:
            if self.behavior.up.tolerance is not None:
                up = self.behavior.up.tolerance
            if self.behavior.down.tolerance is not None:
                down = self.behavior.down.tolerance
        return up, down

    def reconcile(self, now: float, current: int, proposal: int | None) -> Decision:
        """`reconcileAutoscaler` with spec.replicas = `current` and the metric's `proposal` (None: the metric
        could not be read, so nothing changes and nothing is recorded)."""
        if self.recommendations is None:
            self.recommendations = [Recommendation(now, current)]  # recordInitialRecommendation
        if current == 0:
            return Decision(current, proposal, None, 0, False, "ScalingDisabled")
        if current > self.max_replicas:
            return self._apply(now, current, proposal, None, self.max_replicas, "TooManyReplicas")
        if current < self.min_replicas:
            return self._apply(now, current, proposal, None, self.min_replicas, "TooFewReplicas")
        if proposal is None:
            return Decision(current, None, None, current, False, "FailedGetExternalMetric")
        desired = max(0, proposal)
        if self.behavior is None:
            stabilized = stabilize(self.recommendations, now, self.downscale_window, desired)
            final, why = convert_with_rules(current, stabilized, self.min_replicas, self.max_replicas,
                                            self.scale_up_limit_factor)  # fmt: skip
        else:
            b = self.behavior
            stabilized = self._stabilize(now, current, desired)
            final, why = convert_with_behavior_rate(
                current, stabilized, self.min_replicas, self.max_replicas, b, self.up_events, self.down_events, now
            )
        return self._apply(now, current, proposal, stabilized, final, why)

    def _stabilize(self, now: float, current: int, desired: int) -> int:
        b = self.behavior
        assert b is not None and self.recommendations is not None
        return stabilize_with_behaviors(self.recommendations, now, current, desired, b.up.window or 0.0,
                                        b.down.window or 0.0)  # fmt: skip

    def _apply(self, now: float, current: int, proposal: int | None, stabilized: int | None, desired: int, why: str):
        rescale = desired != current
        if rescale:
            store_scale_event(self.behavior, self.up_events, self.down_events, current, desired, now)
        return Decision(current, proposal, stabilized, desired, rescale, why)
