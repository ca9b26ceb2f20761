"""Builds deploy/monitoring/prometheusrule.yaml: the groups of rules.yml, unchanged, in a PrometheusRule object.

rules.yml stays the source of truth because promtool reads only plain rules files (and tests it as such); the
Prometheus Operator reads only the PrometheusRule. `make monitoring` (or `python deploy/monitoring/prometheusrule.py`)
rewrites it; tests/test_monitoring.py fails when the two differ by a byte.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE / "rules.yml"
OUTPUT = HERE / "prometheusrule.yaml"
HEADER = """\
# GENERATED from rules.yml by prometheusrule.py (`make monitoring`): edit rules.yml, not this file.
# If your Prometheus selects rules by label (kube-prometheus-stack: `release: <helm release>`), add it in your
# overlay, as for the ServiceMonitor (docs/deploy.md).
"""


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (expressions, descriptions) as literal blocks, as a person would write them."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def prometheus_rule(groups: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "horizon-keda",
            "labels": {"app.kubernetes.io/name": "horizon-keda", "app.kubernetes.io/instance": "horizon-keda"},
        },
        "spec": {"groups": groups},
    }


def render() -> str:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    body = yaml.dump(prometheus_rule(groups), Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)
    return HEADER + body


def main() -> None:
    OUTPUT.write_text(render())


if __name__ == "__main__":
    main()
