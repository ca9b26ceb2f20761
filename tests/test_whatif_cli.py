"""`horizon-whatif` as a user runs it: --help, --list, every built-in scenario, the files it writes (byte for byte
the same on a second run), the self-contained report, and errors that name the key."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from simulator.fleet import whatif_microservices
from simulator.whatif.cli import builtins, main

SCRIPT = Path(sys.executable).parent / "horizon-whatif"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "whatif"
SMALL = """
duration: 600
seed: 2
microservices:
  - name: orders
    job_seconds: 1.0
    load: [[0, 2], [200, 2], [260, 16]]
    horizon: {min_processes: 1, max_processes: 8, worker_sleep: 0}
    pod: {cpu: 1.0}
    scaling: {min_replicas: 1, max_replicas: 8, threshold: 8}
cluster: {node_cpu: 2, initial_nodes: 1, max_nodes: 3, node_start_seconds: 60}
faults: [{kind: metrics_down, start: 400, end: 450}]
"""


def test_help_runs_from_the_console_script():
    out = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--out DIR" in out.stdout and "black-friday" in out.stdout


def test_list_names_every_built_in_scenario(capsys):
    assert main(["--list"]) == 0
    listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert listed == {p.stem for p in EXAMPLES.glob("*.yml")} >= {"black-friday", "step", "outage", "feedback"}


@pytest.mark.parametrize("name", sorted(builtins()))
def test_every_built_in_scenario_runs(name, tmp_path, capsys):
    assert main([name, "--out", str(tmp_path), "--no-plots"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    doc = yaml.safe_load((EXAMPLES / f"{name}.yml").read_text())
    assert summary["scenario"] == name and summary["duration_seconds"] == doc["duration"]
    for pipeline in summary["pipelines"].values():
        assert set(pipeline["microservices"]) == {m["name"] for m in doc["microservices"]}
        for fig in pipeline["microservices"].values():
            jobs = fig["jobs"]
            assert jobs["arrived"] == jobs["done"] + jobs["running_at_end"] + jobs["queued_at_end"]
    assert "pipeline" in capsys.readouterr().out


def test_black_friday_is_the_demo_fleet():
    """examples/whatif/black-friday.yml is built from simulator.fleet (the `make run` Horizons) at 3× traffic."""
    doc = yaml.safe_load((EXAMPLES / "black-friday.yml").read_text())
    fleet = {m["name"]: m for m in whatif_microservices(scale=24, factor=3)}
    assert [m["name"] for m in doc["microservices"]] == list(fleet)
    for m in doc["microservices"]:
        want = fleet[m["name"]]
        assert m["job_seconds"] == want["job_seconds"]
        assert m["horizon"] == want["horizon"] and m["initial_replicas"] == want["initial_replicas"]
        assert m["load"]["shape"] == want["load"].pop("shape")
        assert {k: m["load"][k] for k in want["load"]} == pytest.approx(want["load"], rel=1e-3)


def run(tmp_path: Path, out: str, *extra: str) -> Path:
    scenario = tmp_path / "small.yml"
    scenario.write_text(SMALL)
    assert main([str(scenario), "--out", str(tmp_path / out), "--quiet", *extra]) == 0
    return tmp_path / out


def test_outputs_are_byte_identical_for_the_same_scenario_and_seed(tmp_path, capsys):
    a, b = run(tmp_path, "a"), run(tmp_path, "b")
    files = sorted(p.name for p in a.iterdir())
    assert files == ["backlog-wait.png", "events.jsonl", "load-capacity.png", "replicas-nodes.png", "report.html",
                     "summary.json", "timeseries.csv"]  # fmt: skip
    for name in files:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    c = run(tmp_path, "c", "--set", "seed=3")
    assert (c / "summary.json").read_bytes() != (a / "summary.json").read_bytes()


def test_the_files_carry_what_the_issue_asks_for(tmp_path, capsys):
    out = run(tmp_path, "o", "--no-plots")
    summary = json.loads((out / "summary.json").read_text())
    pipelines = summary["pipelines"]
    assert set(pipelines) == {"seed", "pull", "push", "oracle"}
    fig = pipelines["pull"]["microservices"]["orders"]
    for key in ("time_to_scale_seconds", "wait_p50_seconds", "wait_p95_seconds", "wait_p99_seconds",
                "slo_attainment", "pod_minutes", "scale_ups", "scale_downs", "max_replicas"):  # fmt: skip
        assert key in fig, key
    assert pipelines["pull"]["node_minutes"] > 0
    assert set(pipelines["pull"]["jobs"]) == {"arrived", "done", "running_at_end", "queued_at_end"}
    rows = list(csv.DictReader(io.StringIO((out / "timeseries.csv").read_text())))
    assert list(rows[0])[:10] == ["t", "pipeline", "microservice", "arrivals", "backlog", "processes",
                                  "desired_replicas", "ready_replicas", "pending_pods", "nodes"]  # fmt: skip
    assert len(rows) == 600 * 4
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    hpa = [e for e in events if e["kind"] == "hpa"]
    assert hpa and {"t", "pipeline", "microservice", "value", "target", "current", "proposal", "desired"} <= set(hpa[0])
    assert {e["kind"] for e in events} >= {"hpa", "keda_poll", "scale", "node", "fault"}
    outage = [e for e in hpa if e["pipeline"] == "pull" and 411 <= e["t"] < 450]
    assert outage and all(e["value"] is None and "UNAVAILABLE" in e["error"] for e in outage)


def test_the_report_is_self_contained(tmp_path, capsys):
    out = run(tmp_path, "r")
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 3
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "nothing fetched from anywhere"
    assert "pipeline" in page and "orders" in page


def test_a_bad_scenario_exits_2_naming_the_key(tmp_path, capsys):
    bad = tmp_path / "bad.yml"
    bad.write_text(SMALL.replace("threshold: 8", "treshold: 8"))
    assert main([str(bad)]) == 2
    assert "microservices[0].scaling.treshold: unknown key" in capsys.readouterr().err
    assert main(["no-such-scenario"]) == 2
    assert "not a built-in scenario (built-in: black-friday" in capsys.readouterr().err
    assert main([str(bad.with_name("small.yml")), "--set", "nokey"]) == 2
    assert main(["step", "--load-prometheus", "http://127.0.0.1:1", "--start", "yesterday", "--end", "5"]) == 2
    assert "--start: expected an RFC 3339 time or Unix seconds, got 'yesterday'" in capsys.readouterr().err


def test_set_overrides_a_nested_key(tmp_path, capsys):
    scenario = tmp_path / "small.yml"
    scenario.write_text(SMALL)
    assert main([str(scenario), "--quiet", "--set", "pipelines=[oracle]", "--set",
                 "microservices[0].scaling.max_replicas=2"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "oracle" in out and "seed" not in out
    assert re.search(r"oracle\s+orders.*\s2\s+\+", out), out


def test_demo_is_make_runs_live_loop():
    """examples/whatif/demo.yml is the live demo (fleet, scaling, behavior) that bench/whatif_calibration.py runs."""
    from simulator.fleet import demo_microservices, demo_scaling
    from simulator.live import DEMO_CLUSTER, DEMO_NODE_START

    doc = yaml.safe_load((EXAMPLES / "demo.yml").read_text())
    fleet = {m["name"]: m for m in whatif_microservices(scale=1, factor=1)}
    specs = {m.name: m for m in demo_microservices()}
    assert [m["name"] for m in doc["microservices"]] == list(fleet) == list(specs)
    for m in doc["microservices"]:
        want = fleet[m["name"]]
        assert m["scaling"] == demo_scaling(specs[m["name"]])
        assert m["horizon"] == {**want["horizon"], "worker_sleep": 0}
        assert m["job_seconds"] == want["job_seconds"] and m["load"]["peak"] == pytest.approx(want["load"]["peak"])
    c = doc["cluster"]
    assert (c["node_cpu"], c["initial_nodes"], c["min_nodes"], c["max_nodes"]) == (
        DEMO_CLUSTER.node_cpu, DEMO_CLUSTER.initial_nodes, DEMO_CLUSTER.min_nodes, DEMO_CLUSTER.max_nodes)  # fmt: skip
    assert c["node_start_seconds"] == DEMO_NODE_START
