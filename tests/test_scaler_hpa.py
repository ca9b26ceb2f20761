"""The HPA replica formula, and the proof that `reached` scales exactly when processes ≥ threshold × replicas."""

from __future__ import annotations

from pathlib import Path

import pytest

from external_scaler.hpa import desired_replicas, legacy_int, reached_replicas, report, threshold_table

DOC = Path(__file__).resolve().parent.parent / "docs" / "scaler.md"


@pytest.mark.parametrize(
    ("usage", "current", "expected"),
    # reference §3 worked examples: AverageValue, target 8.
    [(8, 1, 1), (9, 1, 2), (17, 2, 2), (18, 2, 3), (0, 3, 1), (40, 1, 5)],
)
def test_average_value_formula_matches_the_reference_examples(usage: float, current: int, expected: int):
    assert desired_replicas(usage, 8, current) == expected


def test_a_target_of_seven_scales_eight_processes_on_one_replica():
    assert desired_replicas(8, 7, 1) == 2


def test_value_formula_uses_ready_pods_and_tolerance():
    assert desired_replicas(8.5, 8, 2, metric_type="Value") == 2  # ratio 1.06: inside tolerance
    assert desired_replicas(12, 8, 2, metric_type="Value") == 3  # ceil(1.5 × 2)
    assert desired_replicas(12, 8, 4, metric_type="Value", ready=2) == 3
    assert desired_replicas(12, 8, 0, metric_type="Value", ready=0, min_replicas=0) == 2  # ceil(ratio)


def test_result_is_clamped_to_min_and_max():
    assert desired_replicas(0, 8, 3, min_replicas=2) == 2
    assert desired_replicas(800, 8, 1, max_replicas=10) == 10


def test_unknown_metric_type_is_refused():
    with pytest.raises(ValueError, match="metric_type"):
        desired_replicas(1, 1, 1, metric_type="Utilization")


@pytest.mark.parametrize("processes", range(41))
@pytest.mark.parametrize("replicas", range(1, 7))
def test_reached_mode_scales_up_exactly_when_processes_reach_threshold_times_replicas(processes: int, replicas: int):
    rep = report(float(processes), 8.0, "reached")
    desired = desired_replicas(rep.value, rep.target, replicas)
    assert desired == processes // 8 + 1
    assert (desired > replicas) == (processes >= 8 * replicas)


@pytest.mark.parametrize(("processes", "replicas"), [(8, 1), (16, 2), (17, 2), (24, 3), (26, 3)])
def test_average_mode_does_not_scale_at_the_reached_point(processes: int, replicas: int):
    rep = report(float(processes), 8.0, "average")
    assert desired_replicas(rep.value, rep.target, replicas) == replicas


def test_reached_replicas_is_robust_to_binary_fractions():
    assert reached_replicas(0.3, 0.1) == 4
    assert reached_replicas(7.999, 8) == 1


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (0.4, 0), (0.5, 1), (2.5, 3), (9, 9), (12.49, 12)])
def test_legacy_int_rounds_to_nearest_with_halves_up(value: float, expected: int):
    assert legacy_int(value) == expected


def test_docs_carry_the_current_threshold_table():
    assert threshold_table() in DOC.read_text(), "docs/scaler.md: paste external_scaler.hpa.threshold_table()"
