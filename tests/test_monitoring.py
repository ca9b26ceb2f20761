"""deploy/monitoring: the alert rules pass promtool's checks and unit tests, every alert is tested both ways and has
a runbook entry; the generated dashboard and PrometheusRule are what their sources make; every query runs on a
real Prometheus and every metric it names is one the exporter or the scaler serves."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import json
import re
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import grpc
import pytest
import yaml

from exporter.config import Config
from external_scaler._proto import externalscaler_pb2 as pb
from tests.conftest import fixed_target, free_port, real_prometheus, require_binary, wait_for

REPO = Path(__file__).resolve().parent.parent
MONITORING = REPO / "deploy" / "monitoring"
RULES = MONITORING / "rules.yml"
RULE_TESTS = MONITORING / "tests.yml"
RUNBOOK = REPO / "docs" / "runbook.md"
SEVERITIES = {"warning", "critical"}


@functools.cache
def rule_groups() -> list[dict[str, Any]]:
    return yaml.safe_load(RULES.read_text())["groups"]


def alerts() -> dict[str, dict[str, Any]]:
    """Every alerting rule of rules.yml by name."""
    return {r["alert"]: r for g in rule_groups() for r in g["rules"] if "alert" in r}


def promtool(*args: str, cwd: Path = MONITORING) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_binary("promtool"), *args], capture_output=True, text=True, timeout=120, cwd=cwd)


# --- promtool -----------------------------------------------------------------------------------------------


def test_promtool_check_rules_is_clean():
    run = promtool("check", "rules", RULES.name)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in run.stdout
    assert "WARNING" not in run.stdout + run.stderr


def test_promtool_unit_tests_pass():
    run = promtool("test", "rules", RULE_TESTS.name)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


def test_promtool_unit_tests_catch_a_broken_rule(tmp_path):
    """The unit tests can fail: the same tests against rules whose error alert no longer ignores Canceled fail."""
    broken = RULES.read_text().replace('grpc_code!~"OK|Canceled"', 'grpc_code!="OK"')
    assert broken != RULES.read_text()
    (tmp_path / RULES.name).write_text(broken)
    (tmp_path / RULE_TESTS.name).write_text(RULE_TESTS.read_text())
    run = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert run.returncode != 0 and "HorizonScalerErrors" in run.stdout + run.stderr


# --- what each alert carries --------------------------------------------------------------------------------


def test_the_alerts_the_issue_asks_for_exist():
    assert set(alerts()) == {
        "HorizonTargetDown",  # a Horizon target down
        "HorizonMicroserviceStale",  # a microservice's data stale
        "HorizonScalerNotServing",  # the scaler's source stale / the scaler not SERVING (one replica)
        "HorizonScalerUnavailable",  # ... no replica at all
        "HorizonScalerErrors",  # scaler errors reaching KEDA
        "HorizonMicroserviceAtMaxReplicas",  # a microservice pinned at its max replicas
        "HorizonExporterShardMissing",  # issue 14: a shard missing ...
        "HorizonExporterShardCountMismatch",  # ... shards disagreeing on the number of shards ...
        "HorizonExporterShardUnreachable",  # ... and a shard a scaler cannot read
    }


@pytest.mark.parametrize("name", sorted(alerts()))
def test_alert_has_for_severity_and_annotations(name):
    rule = alerts()[name]
    assert re.fullmatch(r"\d+[smh]", rule["for"]), rule.get("for")
    assert rule["labels"]["severity"] in SEVERITIES
    assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}
    assert rule["annotations"]["runbook_url"] == f"docs/runbook.md#{name.lower()}"


def _alert_cases() -> dict[str, dict[str, int]]:
    """alert name -> {"firing": n, "silent": n}: evaluations of tests.yml expecting alerts, and expecting none."""
    cases: dict[str, dict[str, int]] = {}
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            counts = cases.setdefault(case["alertname"], {"firing": 0, "silent": 0})
            counts["firing" if case.get("exp_alerts") else "silent"] += 1
    return cases


def test_every_alert_is_tested_firing_and_not_firing():
    cases = _alert_cases()
    assert set(cases) == set(alerts())
    for name, counts in cases.items():
        assert counts["firing"] >= 1 and counts["silent"] >= 1, (name, counts)


# --- the runbook --------------------------------------------------------------------------------------------


def runbook_sections() -> dict[str, str]:
    """`## Heading` -> its text, for every section of docs/runbook.md."""
    parts = re.split(r"^## (.+)$", RUNBOOK.read_text(), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_runbook_has_one_entry_per_alert_with_meaning_checks_and_fix():
    sections = runbook_sections()
    assert set(alerts()) <= set(sections)
    assert set(sections) - set(alerts()) == {"What the alerts need"}
    for name in alerts():
        text = sections[name]
        for part in ("**Meaning.**", "**First checks.**", "**Fix.**"):
            assert part in text, f"{name}: no {part}"


def test_runbook_anchors_are_the_headings():
    """GitHub's anchor of `## HorizonTargetDown` is #horizontargetdown: what every runbook_url points at."""
    headings = set(runbook_sections())
    for name, rule in alerts().items():
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor in {h.lower() for h in headings}, name


def test_runbook_table_lists_every_alert_with_its_severity_and_for():
    rows = re.findall(r"^\| `(\w+)` \| (\w+) \| (\w+) \|", RUNBOOK.read_text(), re.M)
    assert rows == [(name, r["labels"]["severity"], r["for"]) for name, r in alerts().items()]


# --- generated files ----------------------------------------------------------------------------------------


def load_generator(name: str) -> ModuleType:
    """deploy/monitoring/<name>.py as a module (deploy/ is no package)."""
    spec = importlib.util.spec_from_file_location(f"monitoring_{name}", MONITORING / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("generator", "output"), [("dashboard", "dashboard.json"),
                                                   ("prometheusrule", "prometheusrule.yaml")])  # fmt: skip
def test_regenerating_changes_nothing(generator, output):
    """`make monitoring` would write exactly the committed file: edit dashboard.py or rules.yml, then run it."""
    assert load_generator(generator).render() == (MONITORING / output).read_text(), "run `make monitoring`"


def test_prometheusrule_embeds_exactly_the_tested_rules():
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["spec"]["groups"] == rule_groups()


def test_prometheusrule_generator_would_catch_a_drift(tmp_path, monkeypatch):
    """The equality above can fail: a rules.yml changed after generating gives another PrometheusRule."""
    module = load_generator("prometheusrule")
    changed = tmp_path / "rules.yml"
    changed.write_text(RULES.read_text().replace("for: 5m", "for: 6m", 1))
    monkeypatch.setattr(module, "RULES", changed)
    assert module.render() != (MONITORING / "prometheusrule.yaml").read_text()


@functools.cache
def dashboard() -> dict[str, Any]:
    return json.loads((MONITORING / "dashboard.json").read_text())


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every panel query."""
    return [(p["title"], t["expr"]) for p in panels() for t in p["targets"]]


def test_dashboard_has_a_fixed_uid_and_a_datasource_variable():
    board = dashboard()
    assert board["uid"] == "horizon-keda"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
    assert variables["microservice"]["datasource"]["uid"] == "${datasource}"


def test_dashboard_panels_have_unique_ids_and_ref_ids_and_fit_the_grid():
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids)) and all(i > 0 for i in ids)
    for panel in panels():
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)) and all(refs), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]


def test_dashboard_shows_what_the_issue_asks_for():
    titles = {p["title"] for p in panels()}
    assert titles >= {
        "Processes vs threshold: $microservice",  # per microservice: a panel repeated for each
        "Replicas: wanted, current, max",
        "Horizon targets up",  # exporter target health
        "Poll errors",
        "RPC rate",
        "RPC errors",
        "RPC latency (unary)",
        "Push latency",
        "Source age",
    }
    (repeated,) = [p for p in panels() if p.get("repeat")]
    assert repeated["repeat"] == "microservice"


# --- metric names -------------------------------------------------------------------------------------------

# kube-state-metrics' HPA series (its docs/metrics/workload/horizontalpodautoscaler-metrics.md, names since 2.0):
# the only metrics used that horizon-keda does not serve itself; docs/runbook.md states the dependency.
KUBE_STATE_METRICS = {
    "kube_horizontalpodautoscaler_spec_max_replicas",
    "kube_horizontalpodautoscaler_status_current_replicas",
}
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def metric_names(promql: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers left once strings, label matchers, grouping
    lists and ranges are cut out, other than function names and keywords."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', promql)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    names = re.findall(r"(?<![\w:$.])([A-Za-z_:][\w:]*)\b(?!\s*\()", text)
    return {n for n in names if n not in PROMQL_WORDS}


def test_metric_names_finds_selectors_and_skips_functions_labels_and_keywords():
    promql = ('histogram_quantile(0.99, sum by (le, grpc_method) (rate(grpc_server_handling_seconds_bucket'
              '{job="x", grpc_code!~"OK|Canceled"}[$__rate_interval]))) > on (namespace) group_left () up '
              'and time() - horizon_last_success_timestamp_seconds offset 5m or vector(1)')  # fmt: skip
    assert metric_names(promql) == {
        "grpc_server_handling_seconds_bucket",
        "up",
        "horizon_last_success_timestamp_seconds",
    }


def used_metric_names() -> dict[str, set[str]]:
    """Metric name -> where it is used (a panel title or an alert), over the dashboard and the rules."""
    used: dict[str, set[str]] = {}
    for where, promql in [*dashboard_queries(), *((name, r["expr"]) for name, r in alerts().items())]:
        for name in metric_names(promql):
            used.setdefault(name, set()).add(where)
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            (name,) = re.findall(r"label_values\((\w+),", variable["query"])
            used.setdefault(name, set()).add(f"${variable['name']}")
    return used


def served_names(text: str) -> set[str]:
    """Every sample name a /metrics page can carry, from its families (also those without samples yet)."""
    from prometheus_client.parser import text_string_to_metric_families

    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(family.type, ("",))
        names |= {family.name + s for s in suffixes} | {s.name for s in family.samples}
    return names


@dataclass
class Stack:
    """A running exporter (one good Horizon target, one failing) and a scaler following it with /metrics on,
    after the calls KEDA makes: a stream, IsActive, GetMetricSpec and GetMetrics, and one refused call."""

    exporter: str  # host:port
    scaler_metrics: str  # host:port


@contextlib.asynccontextmanager
async def running_stack(horizon: Any, make_exporter: Any) -> AsyncIterator[Stack]:
    from external_scaler.snapshot_source import SnapshotSource
    from tests.scaler_fixtures import ref, scaler_with_metrics, wait_until

    _, url = horizon
    gone = f"http://127.0.0.1:{free_port()}/horizon"
    config = Config(targets=(fixed_target("orders", url), fixed_target("billing", gone)), poll_interval=0.2)
    client = await make_exporter(config)
    await wait_for(client, lambda s: s.targets["orders"].up and s.targets["billing"].attempts > 0)
    source = SnapshotSource(f"http://127.0.0.1:{client.port}", 10.0, backoff_max=0.2)
    async with scaler_with_metrics(source) as (scaler, metrics_url):
        await wait_until(lambda: source.fresh)
        stream = scaler.stub.StreamIsActive(ref(microservice="orders"))
        await stream.read()
        assert (await scaler.stub.IsActive(ref(microservice="orders"))).result is True
        spec = await scaler.stub.GetMetricSpec(ref(microservice="orders"))
        request = pb.GetMetricsRequest(scaledObjectRef=ref(microservice="orders"),
                                       metricName=spec.metricSpecs[0].metricName)  # fmt: skip
        await scaler.stub.GetMetrics(request)
        with pytest.raises(grpc.aio.AioRpcError):
            await scaler.stub.IsActive(ref(name="typo-so", microservice="ordres"))
        try:
            yield Stack(f"127.0.0.1:{client.port}", urlsplit(metrics_url).netloc)
        finally:
            stream.cancel()


async def test_every_metric_used_is_served_by_the_exporter_or_the_scaler(horizon, make_exporter):
    async with running_stack(horizon, make_exporter) as stack, aiohttp.ClientSession() as session:
        served: set[str] = {"up"}  # Prometheus' own, per target
        for address in (stack.exporter, stack.scaler_metrics):
            async with session.get(f"http://{address}/metrics") as resp:
                served |= served_names(await resp.text())
    unknown = {name: where for name, where in used_metric_names().items() if name not in served}
    assert unknown.keys() == KUBE_STATE_METRICS, unknown  # and those two are used, by the at-max alert at least


def test_the_scaler_job_is_the_one_the_servicemonitor_sets():
    monitor = yaml.safe_load((REPO / "deploy" / "components" / "servicemonitor" / "servicemonitor.yaml").read_text())
    (scaler,) = [e for e in monitor["spec"]["endpoints"] if e["port"] == "scaler-metrics"]
    (job,) = [r["replacement"] for r in scaler["relabelings"] if r["targetLabel"] == "job"]
    selectors = re.findall(r'job="([^"]+)"', json.dumps(dashboard()) + RULES.read_text())
    assert selectors and set(selectors) == {job}


# --- against a real Prometheus ------------------------------------------------------------------------------

# Grafana's variables, as a panel of the repeated microservice sees them.
VARIABLES = {"$__rate_interval": "1m", "$microservice": "orders"}


async def instant(session: aiohttp.ClientSession, base: str, promql: str) -> dict[str, Any]:
    async with session.get(f"{base}/api/v1/query", params={"query": promql}) as resp:
        return await resp.json()


async def test_every_query_runs_on_a_real_prometheus_scraping_exporter_and_scaler(horizon, make_exporter, tmp_path):
    """Each dashboard query (variables filled in) and each alert expression parses and runs on Debian's Prometheus
    scraping the exporter and the scaler under the deployed job names; every panel query that does not depend on
    kube-state-metrics returns series."""
    require_binary("prometheus")
    async with running_stack(horizon, make_exporter) as stack:
        jobs = {"horizon-keda": [stack.exporter], "horizon-keda-scaler": [stack.scaler_metrics]}
        async with real_prometheus(tmp_path, jobs) as prom, aiohttp.ClientSession() as session:
            enough = 'count_over_time(up{job="horizon-keda-scaler"}[1m]) >= 4'  # rate() needs two samples
            async with asyncio.timeout(60):
                while True:
                    await asyncio.sleep(0.5)
                    try:
                        if (await instant(session, prom.base, enough))["data"]["result"]:
                            break
                    except aiohttp.ClientConnectionError:
                        prom.assert_alive()
            empty = []
            for where, promql in [*dashboard_queries(), *((name, r["expr"]) for name, r in alerts().items())]:
                for variable, value in VARIABLES.items():
                    promql = promql.replace(variable, value)
                answer = await instant(session, prom.base, promql)
                assert answer["status"] == "success", (where, promql, answer)
                needs_data = where not in alerts() and not metric_names(promql) & KUBE_STATE_METRICS
                if needs_data and not answer["data"]["result"]:
                    empty.append((where, promql))
            assert empty == []


def test_readme_lists_exactly_the_alerts_of_the_rules():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("\n## Observability\n", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^  \| `(Horizon\w+)` \|", section, re.M))
    rules = yaml.safe_load((Path(__file__).resolve().parent.parent / "deploy" / "monitoring" / "rules.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert listed == alerts
