"""KEDA's decisions (fallback, RequestScale, the Prometheus trigger's result handling, metric quantities) against
KEDA's own test cases (tests/golden/keda.json, transcribed from kedacore/keda v2.20.2; suites named DERIVED come
from reading the code where no KEDA test asserts the branch)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from simulator.keda import (
    Fallback,
    ScaledObject,
    ScalerError,
    metric_quantity,
    prometheus_response,
    request_scale,
    with_fallback,
)

GOLDEN = json.loads((Path(__file__).parent / "golden" / "keda.json").read_text())["suites"]
NOW = 10_000.0

FALLBACK = [
    c for suite in ("pkg/fallback/fallback_test.go :: Describe(fallback)/It",
                    "DERIVED :: fallback.GetMetricsWithFallback/doFallback (code reading)")
    for c in GOLDEN[suite]
    # Left out: status-patch and condition bookkeeping (no Kubernetes status here), scalingModifiers (no
    # formulas), and a failing GetCurrentReplicas (the model always knows the replica count).
    if c["inputs"].get("fallback", {}) is None or (
        c["inputs"].get("fallback", {}).get("behavior") != "scalingModifiers"
        and not c["inputs"].get("getCurrentReplicasError")
        and not c["inputs"].get("statusPatchFails")
        and "fallbackCondition" not in c["expected"] and "fallbackConditionIsTrue" not in c["expected"]
    )
]  # fmt: skip


def test_the_fallback_cases_are_many():
    assert len(FALLBACK) >= 15


def _failures_before(i: dict[str, Any]) -> int:
    if "failuresBefore" in i:
        return i["failuresBefore"]
    health = i.get("healthBefore") or {}
    return health.get("numberOfFailures", 0)


@pytest.mark.parametrize("case", [pytest.param(c, id=c["name"]) for c in FALLBACK])
def test_fallback(case):
    i, want = case["inputs"], case["expected"]
    raw = i.get("fallback")
    fallback = None if raw is None else Fallback(raw["failureThreshold"], raw["replicas"], raw["behavior"] or "static")
    error = i.get("scalerError")
    got = with_fallback(
        fallback, _failures_before(i), None if error else float(i.get("scalerValue", 0)), error,
        metric_type=i.get("metricType", "AverageValue"), target=float(i.get("target", 1)),
        current=i.get("currentReplicas", 1), ready=i.get("readyReplicas", i.get("currentReplicas", 1)),
    )  # fmt: skip
    assert got.error == want.get("error"), got
    if "value" in want:
        assert got.value == pytest.approx(want["value"])
    if "fallbackActive" in want:
        assert got.active == want["fallbackActive"]
    after = want.get("healthAfter", {})
    if "numberOfFailures" in after:
        assert got.failures == after["numberOfFailures"]
    if "failuresAfter" in want:
        assert got.failures == want["failuresAfter"]


REQUEST_SCALE = [
    c for suite in ("pkg/scaling/executor/scale_scaledobjects_test.go :: RequestScale",
                    "DERIVED :: executor.RequestScale (code reading)")
    for c in GOLDEN[suite]
    # Left out: the pause / force-activation annotations (not modelled) and cases that only check conditions.
    if not c["inputs"].get("annotations") and ("scaledTo" in c["expected"] or "lastActiveTimeSet" in c["expected"])
]  # fmt: skip


def test_the_request_scale_cases_are_many():
    assert len(REQUEST_SCALE) >= 20


@pytest.mark.parametrize("case", [pytest.param(c, id=c["name"]) for c in REQUEST_SCALE])
def test_request_scale(case):
    i, want = case["inputs"], case["expected"]
    raw = i.get("fallback")
    so = ScaledObject(
        min_replicas=i.get("minReplicaCount") or 0,
        max_replicas=i.get("maxReplicaCount") or 100,
        idle_replicas=i.get("idleReplicaCount"),
        cooldown_period=300.0 if i.get("cooldownPeriod") is None else i["cooldownPeriod"],
        initial_cooldown_period=i.get("initialCooldownPeriod") or 0.0,
        fallback=None if raw is None else Fallback(raw["failureThreshold"], raw["replicas"]),
    )
    last_active = NOW - i["lastActiveTimeAgoSeconds"] if "lastActiveTimeAgoSeconds" in i else None
    created = NOW - i["createdAgoSeconds"] if "createdAgoSeconds" in i else -math.inf  # "zero" timestamp: long ago
    result = request_scale(so, i["currentReplicas"], i["isActive"], bool(i.get("isError")), NOW, last_active, created)
    if "scaledTo" in want:
        assert result.scale_to == want["scaledTo"], result
    if "lastActiveTimeSet" in want:
        assert (result.last_active == NOW) == want["lastActiveTimeSet"], result
    if "activeReason" in want:
        assert result.reason == want["activeReason"]
    if want.get("readyReason") in ("TriggerError", "PartialTriggerError"):
        assert result.reason == want["readyReason"]


PROM = GOLDEN["pkg/scalers/prometheus_scaler_test.go :: TestPrometheusScalerExecutePromQuery"]


@pytest.mark.parametrize("case", [pytest.param(c, id=c["name"]) for c in PROM])
def test_prometheus_trigger_reads_results_as_keda_does(case):
    i, want = case["inputs"], case["expected"]
    body = json.loads(i["body"])
    if want["isError"]:
        with pytest.raises(ScalerError):
            prometheus_response(i["httpStatus"], body, i["ignoreNullValues"])
    else:
        assert prometheus_response(i["httpStatus"], body, i["ignoreNullValues"]) == want["value"]


def test_a_json_null_sample_reads_as_minus_one_and_reaches_the_hpa_as_zero():
    case = next(c for c in GOLDEN["DERIVED :: prometheus GetMetricsAndActivity (code reading)"]
                if c["name"] == "JSON null sample value")  # fmt: skip
    value = prometheus_response(200, json.loads(case["inputs"]["body"]), True)
    assert value == case["expected"]["executePromQuery"]
    assert metric_quantity(value) == case["expected"]["metricValue"]


MILLI = GOLDEN["pkg/scalers/scaler_test.go :: TestGenerateMetricInMili"]


@pytest.mark.parametrize("case", [pytest.param(c, id=c["name"]) for c in MILLI])
def test_metric_quantities(case):
    value = float(case["inputs"]["value"])
    got = metric_quantity(value)
    if case["expected"].get("zero"):
        assert got == 0
    else:
        assert got > 0 and got == pytest.approx(value)
