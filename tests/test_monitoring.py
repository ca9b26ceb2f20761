"""deploy/monitoring: the alert rules pass promtool's checks and unit tests, every alert is tested both ways and has
a runbook entry."""

from __future__ import annotations

import functools
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require_binary

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
