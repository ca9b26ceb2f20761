"""The engine: determinism, conservation, common random numbers, the threshold table of docs/scaler.md, faults,
activation from zero, and the configurations it flags."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from external_scaler.hpa import report
from simulator import hpa
from simulator.whatif.engine import PipelineResult, decide, draw_jobs, simulate
from simulator.whatif.scenario import Scenario, parse_scenario
from simulator.whatif.summary import summarize

DOCS = Path(__file__).resolve().parent.parent / "docs" / "scaler.md"

BASE: dict[str, Any] = {
    "duration": 1800,
    "seed": 3,
    "microservices": [{
        "name": "orders", "job_seconds": 1.0,
        "load": {"shape": "step", "base": 2, "peak": 20, "at": 300, "until": 1200},
        "horizon": {"min_processes": 1, "max_processes": 8, "worker_sleep": 0},
        "pod": {"cpu": 0.5, "start_seconds": 5},
        "scaling": {"min_replicas": 1, "max_replicas": 12, "threshold": 8},
    }],
    "cluster": {"node_cpu": 16, "initial_nodes": 2, "max_nodes": 4},
    "pipelines": ["seed", "pull", "push", "oracle"],
}  # fmt: skip


def scenario(**changes: Any) -> Scenario:
    doc = copy.deepcopy(BASE)
    for path, value in changes.items():
        node = doc
        keys = path.split("__")
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[keys[-1]] = value
    return parse_scenario(doc, "test")


def by_name(results: list[PipelineResult]) -> dict[str, PipelineResult]:
    return {r.name: r for r in results}


def desired_over(res: PipelineResult, name: str, start: int, end: int) -> list[int]:
    return [s.desired for s in res.services[name].samples if start <= s.t < end]


def test_jobs_are_conserved_and_every_pipeline_sees_the_same_ones():
    results = simulate(scenario())
    arrived = {r.name: r.services["orders"].arrived for r in results}
    assert len(set(arrived.values())) == 1 and arrived["seed"] > 10_000, arrived
    for r in results:
        s = r.services["orders"]
        assert s.arrived == s.done + s.running + s.queued, r.name
        assert sum(x.arrivals for x in s.samples) == s.arrived
    per_second = [tuple(x.arrivals for x in r.services["orders"].samples) for r in results]
    assert all(series == per_second[0] for series in per_second), "common random numbers: the same arrivals"


def test_the_same_scenario_and_seed_give_the_same_figures_and_another_seed_others():
    one, two = summarize(scenario(), simulate(scenario())), summarize(scenario(), simulate(scenario()))
    assert one == two
    other = summarize(scenario(seed=4), simulate(scenario(seed=4)))
    assert other["pipelines"]["pull"] != one["pipelines"]["pull"]


def parse_table() -> list[tuple[int, int, int, int]]:
    """(processes, replicas, reached, average) from docs/scaler.md's threshold table."""
    text = DOCS.read_text()
    header = re.search(r"^\| processes \|(.*)$", text, re.M)
    assert header
    columns = [int(c.split()[0]) for c in header.group(1).split("|") if c.strip()]
    cells = []
    for row in re.findall(r"^\| (\d+) \|(.*)$", text, re.M):
        processes = int(row[0])
        for replicas, cell in zip(columns, [c for c in row[1].split("|") if c.strip()], strict=True):
            reached, average = (int(x) for x in cell.strip().strip("*").split(" / "))
            cells.append((processes, replicas, reached, average))
    return cells


def test_the_engines_hpa_decisions_reproduce_the_threshold_table_in_docs():
    cells = parse_table()
    assert len(cells) == 41 * 6
    for processes, replicas, reached, average in cells:
        for mode, want in (("reached", reached), ("average", average)):
            rep = report(float(processes), 8.0, mode)
            controller = hpa.HPA(1, 100, recommendations=[])  # no stabilization memory: the arithmetic alone
            got = decide(controller, 0.0, rep.value, rep.target, "AverageValue", replicas, replicas, replicas)
            assert max(1, got.proposal) == want, (processes, replicas, mode)  # the table clamps to min 1
            # one sync without `behavior` moves at most to max(2 × current, 4)
            assert got.desired == min(want, hpa.scale_up_limit(replicas)), (processes, replicas, mode)


def test_metrics_down_makes_the_seed_chain_scale_a_busy_service_down_and_ours_hold():
    s = scenario(faults=[{"kind": "metrics_down", "start": 600, "end": 1100}])
    r = by_name(simulate(s))
    before = desired_over(r["pull"], "orders", 590, 600)[-1]
    assert before >= 3, "busy before the outage"
    assert min(desired_over(r["seed"], "orders", 600, 1100)) == 1, "ignoreNullValues: 0 → scaled to min"
    assert min(desired_over(r["pull"], "orders", 600, 1100)) >= before - 1, "UNAVAILABLE: the HPA holds"
    hpa_errors = [e for e in r["pull"].events if e["kind"] == "hpa" and e["error"] and 600 <= e["t"] < 1100]
    assert hpa_errors and all("UNAVAILABLE" in e["error"] for e in hpa_errors)
    strict = by_name(simulate(scenario(faults=[{"kind": "metrics_down", "start": 600, "end": 1100}],
                                       pipelines={"seed": {"ignore_null_values": False}})))  # fmt: skip
    assert min(desired_over(strict["seed"], "orders", 600, 1100)) >= before - 1, "ignoreNullValues false holds too"


def test_fallback_replicas_apply_after_the_failure_threshold():
    s = scenario(faults=[{"kind": "metrics_down", "start": 600, "end": 1100}], pipelines=["pull"],
                 microservices__0__scaling={"min_replicas": 1, "max_replicas": 12, "threshold": 8,
                                            "fallback": {"failure_threshold": 2, "replicas": 9}})  # fmt: skip
    pull = simulate(s)[0]
    window = desired_over(pull, "orders", 600, 1100)
    assert 9 in window and window[0] != 9
    first_fallback = next(e for e in pull.events if e["kind"] == "hpa" and e.get("fallback"))
    assert 600 + 10 < first_fallback["t"] < 600 + 10 + 3 * 15 + 30, "after max_staleness and the 3rd failure"


def test_horizon_down_for_one_microservice_leaves_the_others_alone():
    doc_ms = copy.deepcopy(BASE["microservices"][0]) | {"name": "payments"}
    s = scenario(microservices=[BASE["microservices"][0], doc_ms], pipelines=["seed"],
                 faults=[{"kind": "horizon_down", "microservice": "orders", "start": 600, "end": 1100}])  # fmt: skip
    seed = simulate(s)[0]
    assert min(desired_over(seed, "orders", 650, 1100)) == 1
    assert min(desired_over(seed, "payments", 650, 1100)) >= 3


def test_push_activates_from_zero_sooner_than_the_polling_interval():
    s = scenario(microservices__0__scaling={"min_replicas": 0, "max_replicas": 12, "metric": "queueLength",
                                            "threshold": 20, "threshold_mode": "average"},
                 microservices__0__load={"shape": "step", "base": 0, "peak": 5, "at": 600, "until": 900},
                 microservices__0__initial_replicas=0, pipelines=["pull", "push", "oracle"])  # fmt: skip
    summary = summarize(s, simulate(s))["pipelines"]
    tts = {name: summary[name]["microservices"]["orders"]["time_to_scale_seconds"] for name in summary}
    assert tts["push"] is not None and tts["pull"] is not None
    assert tts["push"] < 8, tts
    assert tts["pull"] > tts["push"] + 2, tts
    assert tts["oracle"] <= tts["push"], tts


def test_a_threshold_no_pod_can_reach_is_flagged_and_never_scales():
    scaling = {"min_replicas": 1, "max_replicas": 12, "threshold": 8, "threshold_mode": "average"}
    s = scenario(pipelines=["pull"], microservices__0__scaling=scaling)
    summary = summarize(s, simulate(s))
    fig = summary["pipelines"]["pull"]["microservices"]["orders"]
    assert fig["max_replicas"] == 1 and fig["time_to_scale_seconds"] is None
    assert any(w.startswith("never scales up") for w in fig["warnings"]), fig["warnings"]


def test_processes_with_min_replicas_zero_is_flagged():
    s = scenario(pipelines=["pull"], microservices__0__initial_replicas=0,
                 microservices__0__scaling={"min_replicas": 0, "max_replicas": 12, "threshold": 8})  # fmt: skip
    fig = summarize(s, simulate(s))["pipelines"]["pull"]["microservices"]["orders"]
    assert fig["max_replicas"] == 0
    assert any("never activates from zero" in w for w in fig["warnings"])


def test_idle_workers_that_sleep_keep_processes_at_max_and_scaling_runs_away():
    """The feedback loop: Laravel's 3 s sleep leaves jobs ready, Horizon's balancing sees them, processes stay at
    maxProcesses, and the processes trigger keeps adding pods the load does not need."""
    sleepy = scenario(pipelines=["push"], microservices__0__horizon={"min_processes": 1, "max_processes": 8,
                                                                     "worker_sleep": 3})  # fmt: skip
    blocking = scenario(pipelines=["push"])
    ran_away = simulate(sleepy)[0].services["orders"]
    steady = simulate(blocking)[0].services["orders"]
    assert ran_away.max_replicas >= 10 and steady.max_replicas <= 6, (ran_away.max_replicas, steady.max_replicas)


def test_a_full_cluster_leaves_pods_pending_until_a_node_is_ready():
    s = scenario(pipelines=["oracle"], cluster={"node_cpu": 2, "initial_nodes": 1, "max_nodes": 6,
                                                "node_start_seconds": 120})  # fmt: skip
    oracle = simulate(s)[0]
    samples = oracle.services["orders"].samples
    assert max(x.pending for x in samples) >= 1
    nodes = [e for e in oracle.events if e["kind"] == "node"]
    requested = next(e for e in nodes if e["action"] == "requested")
    ready = next(e for e in nodes if e["action"] == "ready")
    assert ready["t"] - requested["t"] == pytest.approx(120)


def test_draw_jobs_follows_the_load_curve():
    s = scenario()
    jobs = draw_jobs(s)["orders"]
    quiet = sum(1 for a in jobs.arrivals if a < 300) / 300
    busy = sum(1 for a in jobs.arrivals if 300 <= a < 1200) / 900
    assert quiet == pytest.approx(2, rel=0.15) and busy == pytest.approx(20, rel=0.05)
    assert sum(jobs.durations) / len(jobs.durations) == pytest.approx(1.0, rel=0.05)


def test_the_oracles_fast_stabilization_decides_exactly_as_the_controllers(monkeypatch):
    import simulator.whatif.engine as engine

    s = scenario(pipelines=["oracle"])
    jobs = draw_jobs(s)
    fast = simulate(s, jobs)[0]
    monkeypatch.setattr(engine, "OracleHPA", hpa.HPA)
    plain = simulate(s, jobs)[0]
    assert [(x.desired, x.ready) for x in fast.services["orders"].samples] == [
        (x.desired, x.ready) for x in plain.services["orders"].samples
    ]


def test_pods_ready_at_the_same_instant_close_one_episode_not_several():
    scaling = {"min_replicas": 1, "max_replicas": 12, "metric": "queueLength", "threshold": 5,
               "threshold_mode": "average"}  # fmt: skip
    s = scenario(pipelines=["oracle", "push"], microservices__0__scaling=scaling)
    for result in simulate(s):
        svc = result.services["orders"]
        assert max(x.desired for x in svc.samples) >= 4, "several pods were asked for at once"
        assert svc.time_to_scale and min(svc.time_to_scale) > 0, (result.name, svc.time_to_scale)
