"""The HPA controller model against Kubernetes' own test cases (tests/golden/k8s-hpa.json: their inputs and
expected outputs, transcribed from `horizontal_test.go`, `replica_calculator_test.go` and `defaults_test.go`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from external_scaler.hpa import replica_proposal
from simulator import hpa

GOLDEN = json.loads((Path(__file__).parent / "golden" / "k8s-hpa.json").read_text())["suites"]
NOW = 10_000.0


def cases(suite: str) -> list[Any]:
    return [pytest.param(c, id=c["name"]) for c in GOLDEN[suite]]


def rules(raw: dict[str, Any] | None, *, down: bool = False) -> hpa.Rules:
    if raw is None:
        return hpa.scale_down_rules() if down else hpa.scale_up_rules()
    policies = raw.get("policies")
    return hpa.Rules(
        window=raw.get("stabilizationWindowSeconds"),
        select=raw.get("selectPolicy"),
        policies=None if policies is None else tuple(
            hpa.Policy(p["type"], p["value"], p["periodSeconds"]) for p in policies
        ),
    )  # fmt: skip


def events(raw: list[dict[str, Any]]) -> list[hpa.ScaleEvent]:
    return [hpa.ScaleEvent(NOW - e["age_seconds"], e["replicaChange"], e.get("outdated", False)) for e in raw]


def recs(raw: list[dict[str, Any]]) -> list[hpa.Recommendation]:
    return [hpa.Recommendation(NOW - r["age_seconds"], r["recommendation"]) for r in raw]


@pytest.mark.parametrize("case", cases("TestConvertDesiredReplicasWithRules"))
def test_convert_desired_replicas_with_rules(case):
    i, want = case["inputs"], case["expected"]
    got = hpa.convert_with_rules(i["currentReplicas"], i["desiredReplicas"], i["minReplicas"], i["maxReplicas"],
                                 i["scaleUpLimitFactor"])  # fmt: skip
    assert got == (want["replicas"], want["condition_reason"])


def test_production_scale_up_limit_without_behavior_is_twice_or_four():
    assert hpa.convert_with_rules(3, 1000, 1, 2000) == (6, "ScaleUpLimit")
    assert hpa.convert_with_rules(1, 1000, 1, 2000) == (4, "ScaleUpLimit")


@pytest.mark.parametrize("case", cases("TestCalculateScaleUpLimitWithScalingRules"))
def test_scale_up_limit_with_scaling_rules(case):
    i = case["inputs"]
    got = hpa.scale_up_limit_with_rules(i["currentReplicas"], events(i["scaleUpEvents"]),
                                        events(i["scaleDownEvents"]), rules(i["rules"]), NOW)  # fmt: skip
    assert got == case["expected"]["limit"]


@pytest.mark.parametrize("case", cases("TestCalculateScaleDownLimitWithBehaviors"))
def test_scale_down_limit_with_behaviors(case):
    i = case["inputs"]
    got = hpa.scale_down_limit_with_rules(i["currentReplicas"], events(i["scaleUpEvents"]),
                                          events(i["scaleDownEvents"]), rules(i["rules"]), NOW)  # fmt: skip
    assert got == case["expected"]["limit"]


@pytest.mark.parametrize("case", cases("TestNormalizeDesiredReplicas"))
def test_legacy_stabilization(case):
    i, want = case["inputs"], case["expected"]
    log = recs(i["recommendations"])
    got = hpa.stabilize(log, NOW, i["downscaleStabilisationWindowSeconds"], i["prenormalizedDesiredReplicas"])
    assert (got, len(log)) == (want["stabilizedReplicas"], want["recommendationsLogLength"])


@pytest.mark.parametrize("case", cases("TestScalingWithRules"))
def test_scaling_with_rules(case):
    i, want = case["inputs"], case["expected"]
    b = hpa.Behavior(rules(i["scaleUpRules_effective"]), rules(i["scaleDownRules_effective"], down=True))
    got = hpa.convert_with_behavior_rate(
        i["currentReplicas"], i["prenormalizedDesiredReplicas"], i["minReplicas"], i["maxReplicas"], b,
        events(i["scaleUpEvents"]), events(i["scaleDownEvents"]), NOW,
    )  # fmt: skip
    assert got == (want["replicas"], want["condition_reason"])


@pytest.mark.parametrize("case", cases("TestStoreScaleEvents"))
@pytest.mark.parametrize("direction", ["up", "down"])
def test_store_scale_events(case, direction):
    i, want = case["inputs"], case["expected"]
    prev = events(i["prevScaleEvents"])
    assert hpa.replicas_change_per_period(60, prev, NOW) == want["replicasChangeLast60s_before_store"]
    b = None
    if not i["behaviorIsNil"]:
        r = rules(i["behaviorRules"])
        b = hpa.Behavior(r, r)
    call = i[f"{direction}_call"]
    up, down = (prev, []) if direction == "up" else ([], prev)
    hpa.store_scale_event(b, up, down, call["prevReplicas"], call["newReplicas"], NOW)
    stored = up if direction == "up" else down
    assert [{"replicaChange": e.change, "outdated": e.outdated} for e in stored] == \
        want["storedEvents_after (same for up and down)"]  # fmt: skip


@pytest.mark.parametrize("case", cases("TestNormalizeDesiredReplicasWithBehavior"))
def test_stabilization_with_behaviors(case):
    i, want = case["inputs"], case["expected"]
    log = recs(i["recommendations"])
    got = hpa.stabilize_with_behaviors(log, NOW, i["currentReplicas"], i["prenormalizedDesiredReplicas"],
                                       i["scaleUpStabilizationWindowSeconds"],
                                       i["scaleDownStabilizationWindowSeconds"])  # fmt: skip
    assert got == want["stabilizedReplicas"]
    if want["recommendationsAfter_values_in_order"] is not None:  # not every upstream case checks the log
        assert [r.replicas for r in log] == want["recommendationsAfter_values_in_order"]


@pytest.mark.parametrize("case", cases("TestGenerateScaleUpRules") + cases("TestGenerateScaleDownRules"))
def test_behavior_defaults(case, request):
    i, want = case["inputs"], case["expected"]
    down = "ScaleDown" in request.node.callspec.id or "Down" in case["function"]
    given = hpa.Rules(
        window=i["stabilizationWindowSeconds"], select=i["selectPolicy"],
        policies=None if i["policies"] is None else tuple(
            hpa.Policy(p["type"], p["value"], p["periodSeconds"]) for p in i["policies"]),
    )  # fmt: skip
    got = hpa.scale_down_rules(given) if down else hpa.scale_up_rules(given)
    want_window = want["stabilizationWindowSeconds"]
    if down and want_window is None:
        want_window = hpa.DOWNSCALE_STABILIZATION  # the controller's flag fills it (maybeInitScaleDown…)
    assert got.window == want_window
    assert got.select == want["selectPolicy"]
    assert [(p.type, p.value, p.period) for p in got.policies] == [
        (p["type"], p["value"], p["periodSeconds"]) for p in want["policies"]
    ]


# Kubernetes' int64-overflow cases (values near 2^63 milli-units) are left out: a process count or queue length
# never comes near them, and Python's integers do not overflow to saturate the same way.
PER_POD = [c for c in GOLDEN["TestReplicaCalcExternalPerPodMetric"] if max(c["inputs"]["metricValues_milli"]) < 2**53]


@pytest.mark.parametrize("case", [pytest.param(c, id=c["name"]) for c in PER_POD])
def test_external_average_value_replica_calculator(case):
    i, want = case["inputs"], case["expected"]
    got = replica_proposal(sum(i["metricValues_milli"]) / 1000, i["targetAverageValue_milli"] / 1000,
                           status_replicas=i["statusReplicas"], tolerance_up=i["tolerances"]["scaleUp"],
                           tolerance_down=i["tolerances"]["scaleDown"])  # fmt: skip
    assert got == want["replicas"]


@pytest.mark.parametrize("case", cases("TestReplicaCalcExternalMetric"))
def test_external_value_replica_calculator(case):
    i, want = case["inputs"], case["expected"]
    ready = sum(bool(r) for r in i["pods"].get("ready") or [True] * i["pods"]["count"])
    tolerances = i["tolerances"]
    got = replica_proposal(sum(i["metricValues_milli"]) / 1000, i["targetValue_milli"] / 1000, metric_type="Value",
                           status_replicas=i["currentReplicas"], ready=ready,
                           tolerance_up=tolerances["scaleUp"], tolerance_down=tolerances["scaleDown"])  # fmt: skip
    assert got == want["replicas"]


EXTERNAL_RECONCILE = [
    c for c in GOLDEN["Reconcile_testCase_harness_subset"]
    if all(m["type"] == "External" for m in c["inputs"]["metrics"])
    and not c["inputs"]["feature_gates"] and c["inputs"]["behavior"] is None
]  # fmt: skip
RECONCILE = EXTERNAL_RECONCILE + [
    c for c in GOLDEN["Reconcile_testCase_harness_subset"]
    if c["name"] in ("TestZeroReplicas", "TestTooFewReplicas", "TestTooManyReplicas", "TestScaleUpRCImmediately",
                     "TestScaleDownRCImmediately", "TestStabilizeDownscale", "TestUpscaleCap", "TestMaxReplicas")
]  # fmt: skip


def test_the_reconcile_cases_cover_external_metrics():
    assert len(EXTERNAL_RECONCILE) >= 6, [c["name"] for c in EXTERNAL_RECONCILE]


def _proposal(i: dict[str, Any]) -> int | None:
    """The metric's proposal as the harness produces it; None when the metric fails."""
    if i.get("cpu"):
        cpu = i["cpu"]
        return math.ceil(cpu["usage_ratio"] * len(cpu["levels_milli"]))
    metric = i["metrics"][0]
    if metric.get("fails") or not isinstance(i["reportedLevels_milli"], list) or not i["reportedLevels_milli"]:
        return None
    usage = sum(i["reportedLevels_milli"]) / 1000
    return replica_proposal(usage, metric["target_milli"] / 1000, metric_type=metric["target"],
                            status_replicas=i["statusReplicas"], spec_replicas=i["specReplicas"],
                            ready=i["statusReplicas"])  # fmt: skip


@pytest.mark.parametrize("case", [pytest.param(c, id=c["name"]) for c in RECONCILE])
def test_reconcile(case):
    i, want = case["inputs"], case["expected"]
    behavior = None
    if i["behavior"] is not None:
        b = i["behavior"]
        behavior = hpa.Behavior(rules(b.get("scaleUp")), rules(b.get("scaleDown"), down=True))
    controller = hpa.HPA(i["minReplicas"], i["maxReplicas"], behavior, i["controller"]["tolerance"],
                         i["controller"]["downscaleStabilisationWindowSeconds"],
                         scale_up_limit_factor=i["controller"]["scaleUpLimitFactor"])  # fmt: skip
    if isinstance(i["recommendations"], list):
        controller.recommendations = recs(i["recommendations"])
    elif i["recommendations"] == "empty non-nil list":
        controller.recommendations = []  # Go's empty slice: no initial recommendation is recorded
    decision = controller.reconcile(NOW, i["specReplicas"], _proposal(i))
    assert decision.desired == want["desiredReplicas"], decision


@pytest.mark.parametrize("case", cases("Derived_edge_cases_NOT_upstream_tests"))
def test_edges_at_exact_cutoffs(case):
    i, want, f = case["inputs"], case["expected"], case["function"]
    if f == "getReplicasChangePerPeriod":
        assert hpa.replicas_change_per_period(i["periodSeconds"], events(i["events"]), NOW) == want["sum"]
    elif f == "markScaleEventsOutdated":
        evs = events(i["events"])
        r = hpa.Rules(0, "Max", (hpa.Policy("Pods", 1, i["longestPolicyPeriod"]),))
        hpa.store_scale_event(hpa.Behavior(r, r), evs, [], 1, 2, NOW)
        assert [e.outdated for e in evs[:2]] == want["outdated"] or [e.change for e in evs] != [5, 3]
    elif f == "stabilizeRecommendation":
        log = recs(i["recommendations"])
        assert hpa.stabilize(log, NOW, i["windowSeconds"], i["prenormalizedDesiredReplicas"]) == \
            want["stabilizedReplicas"]  # fmt: skip
        assert len(log) == want["logLength"]
    elif f == "stabilizeRecommendationWithBehaviors":
        log = recs(i["recommendations"])
        got = hpa.stabilize_with_behaviors(log, NOW, i["currentReplicas"], i["prenormalizedDesiredReplicas"],
                                           i["upWindowSeconds"], i["downWindowSeconds"])  # fmt: skip
        assert got == want["stabilizedReplicas"]
        assert [r.replicas for r in log] == want["recommendationsAfter_values_in_order"]
    elif f.startswith("calculateScale"):
        up = hpa.Rules(0, "Max", (hpa.Policy(i["upPolicy"]["type"], i["upPolicy"]["value"],
                                             i["upPolicy"]["periodSeconds"]),))  # fmt: skip
        down = hpa.Rules(0, "Max", (hpa.Policy(i["downPolicy"]["type"], i["downPolicy"]["value"],
                                               i["downPolicy"]["periodSeconds"]),))  # fmt: skip
        assert hpa.scale_up_limit_with_rules(i["currentReplicas"], [], [], up, NOW) == want["upLimit"]
        assert hpa.scale_down_limit_with_rules(i["currentReplicas"], [], [], down, NOW) == want["downLimit"]
    elif f == "convertDesiredReplicasWithBehaviorRate":
        b = hpa.behavior(hpa.Rules(select=i["scaleUp"]["selectPolicy"]))
        got = hpa.convert_with_behavior_rate(i["currentReplicas"], i["desiredReplicas"], i["minReplicas"],
                                             i["maxReplicas"], b, [], [], NOW)  # fmt: skip
        assert got == (want["replicas"], want["condition_reason"])
    elif f == "GetExternalMetricReplicas":
        ready = sum(bool(r) for r in i["pods"].get("ready") or [])
        got = replica_proposal(sum(i["metricValues_milli"]) / 1000, i["targetValue_milli"] / 1000,
                               metric_type="Value", status_replicas=i["currentReplicas"], ready=ready)  # fmt: skip
        assert got == want["replicas"]
    elif f == "GetExternalPerPodMetricReplicas":
        got = replica_proposal(sum(i["metricValues_milli"]) / 1000, i["targetAverageValue_milli"] / 1000,
                               status_replicas=i["statusReplicas"])  # fmt: skip
        assert got == want["replicas"]
    else:
        pytest.fail(f"no check for {f}")
