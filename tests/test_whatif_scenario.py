"""Scenario files: the issue's example reads as written; every mistake is refused with the key's path."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from simulator.whatif.dist import Dist
from simulator.whatif.scenario import ScenarioError, parse_scenario

EXAMPLE = """
duration: 7200            # simulated seconds
seed: 1
slo_wait_seconds: 60      # a job waiting at most this long counts as within the SLO
microservices:
  - name: orders
    job_seconds: 2.0                       # mean run time of a job
    load: [[0, 0.5], [1800, 0.5], [2400, 12], [5400, 12], [6000, 0.5]]  # (t s, jobs/s), linear between
    horizon: {min_processes: 1, max_processes: 8}
    pod: {cpu: 0.5, start_seconds: 5}
    scaling: {min_replicas: 1, max_replicas: 20, threshold: 8, threshold_mode: reached}
cluster: {node_cpu: 4, initial_nodes: 2, max_nodes: 50, node_start_seconds: 120}
pipelines: [seed, pull, push, oracle]      # or a mapping of pipeline → parameter overrides
faults: [{kind: metrics_down, start: 3000, end: 3900}]
"""


def parse(text: str):
    return parse_scenario(yaml.safe_load(text), "test", Path("."))


def test_the_issue_example_reads_as_written():
    s = parse(EXAMPLE)
    ms = s.microservices[0]
    assert (s.duration, s.seed, s.slo_wait_seconds) == (7200, 1, 60.0)
    assert ms.job == Dist("exponential", 2.0)
    assert ms.load.rate(0) == 0.5 and ms.load.rate(2100) == pytest.approx(6.25) and ms.load.rate(9999) == 0.5
    assert (ms.horizon.min_processes, ms.horizon.max_processes, ms.pod.cpu, ms.pod.start) == (
        1,
        8,
        0.5,
        Dist("fixed", 5),
    )
    assert (ms.scaling.max_replicas, ms.scaling.threshold, ms.scaling.threshold_mode) == (20, 8.0, "reached")
    assert s.cluster.node_start == Dist("fixed", 120.0) and s.cluster.max_nodes == 50
    assert [p.name for p in s.pipelines] == ["seed", "pull", "push", "oracle"]
    assert s.pipelines[0].scrape_interval == 60 and s.pipelines[0].ignore_null_values is True
    assert [(f.kind, f.start, f.end) for f in s.faults] == [("metrics_down", 3000, 3900)]


def replace_line(old: str, new: str) -> str:
    assert old in EXAMPLE
    return EXAMPLE.replace(old, new)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("threshold: 8,", "treshold: 8,", r"microservices\[0\]\.scaling\.treshold: unknown key; expected one of"),
        (
            "threshold_mode: reached",
            "threshold_mode: reach",
            r"scaling\.threshold_mode: expected one of reached, average",
        ),
        ("max_replicas: 20", "max_replicas: 0", r"scaling\.max_replicas: expected a whole number ≥ 1"),
        ("min_replicas: 1", "min_replicas: 30", r"scaling\.min_replicas: expected ≤ max_replicas \(20\)"),
        ("[2400, 12]", "[1000, 12]", r"microservices\[0\]\.load\[2\]\[0\]: expected a time after 1800"),
        ("[0, 0.5]", "[0, -1]", r"load\[0\]\[1\]: expected jobs per second ≥ 0"),
        ("max_processes: 8", "max_processes: 0", r"horizon\.max_processes: expected a whole number ≥ 1"),
        ("start: 3000, end: 3900", "start: 3000, end: 3000", r"faults\[0\]\.end: expected > start"),
        ("kind: metrics_down", "kind: exporter_down", r"faults\[0\]\.kind: expected one of metrics_down, horizon_down"),
        ("[seed, pull, push, oracle]", "[seed, pulll]", r"pipelines\[1\]: expected one of seed, pull, push, oracle"),
        ("node_cpu: 4", "node_cpu: 0", r"cluster\.node_cpu: expected a number > 0"),
        (
            "node_start_seconds: 120",
            "node_start_seconds: {dist: weibull}",
            r"node_start_seconds\.dist: expected one of",
        ),
        (
            "job_seconds: 2.0",
            "job_seconds: {dist: lognormal, mean: 2, cv: 0}",
            r"job_seconds\.cv: expected a number > 0",
        ),
        ("duration: 7200", "duration: 7200.5", r"duration: expected a whole number"),
        ("seed: 1", "seed: 1\nextra: true", r"^extra: unknown key"),
    ],
)
def test_mistakes_name_the_key_and_what_was_expected(old: str, new: str, message: str):
    with pytest.raises(ScenarioError, match=message):
        parse(replace_line(old, new))


def test_horizon_down_must_name_a_microservice_of_the_scenario():
    with pytest.raises(ScenarioError, match=r"faults\[0\]\.microservice: expected one of orders, got 'payments'"):
        parse(replace_line("kind: metrics_down,", "kind: horizon_down, microservice: payments,"))


def test_pipelines_as_a_mapping_take_overrides_and_named_variants():
    variants = (
        "pipelines: {seed: {}, seed-15s: {kind: seed, scrape_interval: 15, ignore_null_values: false},"
        " push: {polling_interval: 5, threshold_mode: average}}"
    )
    s = parse(replace_line("pipelines: [seed, pull, push, oracle]", variants))
    seed15 = s.pipelines[1]
    assert (seed15.name, seed15.kind, seed15.scrape_interval, seed15.ignore_null_values) == (
        "seed-15s",
        "seed",
        15,
        False,
    )
    assert (s.pipelines[2].polling_interval, s.pipelines[2].threshold_mode) == (5, "average")
    with pytest.raises(ScenarioError, match=r"pipelines\.fast: expected a pipeline kind"):
        parse(replace_line("pipelines: [seed, pull, push, oracle]", "pipelines: {fast: {}}"))
    with pytest.raises(ScenarioError, match=r"pipelines\.seed\.scrape_intervall: unknown key"):
        parse(replace_line("pipelines: [seed, pull, push, oracle]", "pipelines: {seed: {scrape_intervall: 5}}"))


def test_defaults_apply_to_every_microservice_and_merge_section_by_section():
    s = parse(EXAMPLE.replace("microservices:", "defaults: {scaling: {max_replicas: 40, threshold: 6}}\nmicroservices:")
              .replace("scaling: {min_replicas: 1, max_replicas: 20, threshold: 8, threshold_mode: reached}",
                       "scaling: {threshold_mode: average}"))  # fmt: skip
    sc = s.microservices[0].scaling
    assert (sc.max_replicas, sc.threshold, sc.threshold_mode) == (40, 6.0, "average")


def test_behavior_fallback_and_distributions():
    s = parse(replace_line(
        "scaling: {min_replicas: 1, max_replicas: 20, threshold: 8, threshold_mode: reached}",
        "scaling: {fallback: {failure_threshold: 3, replicas: 6}, behavior: {scale_up: {stabilization_window_seconds: "
        "60, policies: [{type: Pods, value: 2, period_seconds: 30}], tolerance: 0}}}",
    ).replace("node_start_seconds: 120", "node_start_seconds: {dist: lognormal, mean: 35, cv: 0.3}"))  # fmt: skip
    sc = s.microservices[0].scaling
    assert (sc.fallback.failure_threshold, sc.fallback.replicas, sc.fallback.behavior) == (3, 6, "static")
    up, down = sc.behavior.up, sc.behavior.down
    assert (up.window, up.select, [(p.type, p.value, p.period) for p in up.policies], up.tolerance) == (
        60, "Max", [("Pods", 2, 30)], 0.0)  # fmt: skip
    assert down.window == 300 and [(p.type, p.value) for p in down.policies] == [("Percent", 100)]
    assert s.cluster.node_start == Dist("lognormal", 35.0, 0.3)


def test_built_in_shapes():
    s = parse(replace_line("load: [[0, 0.5], [1800, 0.5], [2400, 12], [5400, 12], [6000, 0.5]]",
                           "load: {shape: step, base: 1, peak: 9, at: 100, until: 200}"))  # fmt: skip
    load = s.microservices[0].load
    assert [load.rate(t) for t in (99, 100, 199, 200)] == [1, 9, 9, 1]
    diurnal = parse(replace_line("load: [[0, 0.5], [1800, 0.5], [2400, 12], [5400, 12], [6000, 0.5]]",
                                 "load: {shape: diurnal, base: 2, peak: 10, period: 100, peak_at: 25}"))  # fmt: skip
    d = diurnal.microservices[0].load
    assert d.rate(25) == pytest.approx(10) and d.rate(75) == pytest.approx(2)
    with pytest.raises(ScenarioError, match=r"load\.at: required for shape spike"):
        parse(replace_line("load: [[0, 0.5], [1800, 0.5], [2400, 12], [5400, 12], [6000, 0.5]]",
                           "load: {shape: spike, base: 1, peak: 9}"))  # fmt: skip
    assert not math.isnan(load.peak(300))


def test_provisioner_defaults_follow_the_provisioner():
    karpenter = parse(replace_line("node_start_seconds: 120", "provisioner: karpenter")).cluster
    assert (karpenter.scale_down_unneeded, karpenter.scale_down_utilization, karpenter.node_start.kind) == (
        15.0, 1.0, "lognormal")  # fmt: skip
    ca = parse(replace_line("node_start_seconds: 120", "provisioner: cluster-autoscaler")).cluster
    assert (ca.scale_down_unneeded, ca.scale_down_utilization, ca.scale_down_delay_after_add) == (600.0, 0.5, 600.0)


def test_fallback_and_policies_require_their_numbers_and_null_overrides_follow_the_microservice():
    with pytest.raises(ScenarioError, match=r"scaling\.fallback\.replicas: required"):
        parse(replace_line("threshold_mode: reached}", "threshold_mode: reached, fallback: {failure_threshold: 3}}"))
    with pytest.raises(ScenarioError, match=r"policies\[0\]\.period_seconds: required"):
        policy = "behavior: {scale_up: {policies: [{type: Pods, value: 2}]}}"
        parse(replace_line("threshold_mode: reached}", f"threshold_mode: reached, {policy}}}"))
    s = parse(replace_line("pipelines: [seed, pull, push, oracle]", "pipelines: {push: {polling_interval: null}}"))
    assert s.pipelines[0].polling_interval is None
