"""deploy/: every overlay renders, validates against the Kubernetes and CRD schemas, and its parts agree.

Offline: `kubectl kustomize` renders, `kubernetes-validate` holds the built-in kinds' schemas, tests/schemas/ the
CRDs' (KEDA, Prometheus Operator), `promtool` parses the Prometheus example's query and a real Prometheus runs it.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import functools
import json
import re
import shutil
import ssl
import subprocess
import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import bcrypt
import jsonschema
import kubernetes_validate
import pytest
import yaml
from aiohttp import web

from exporter.app import create_app
from exporter.cli import build_parser as exporter_parser
from exporter.cli import resolve_config
from exporter.config import Config, parse_config, validate
from exporter.webconfig import WebConfig, parse_web_config
from exporter.webguard import UNAUTHENTICATED_PATHS, WebGuard
from exporter.yamlreader import ConfigError
from external_scaler import cli as scaler_cli
from external_scaler.cli import parse_args
from external_scaler.fanin import FanInSource
from tests.certs import CA
from tests.conftest import fixed_target, real_prometheus, require_binary, wait_for

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
OVERLAYS = sorted(p.name for p in (DEPLOY / "overlays").iterdir() if (p / "kustomization.yaml").is_file())
EXAMPLES = sorted((DEPLOY / "examples").glob("*.yaml"))
# Kubernetes schemas bundled by kubernetes-validate; 1.32 is a version every supported KEDA (2.18+) runs on.
K8S_VERSION = "1.32"
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh-scaledobject-v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda.sh-triggerauthentication-v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com-servicemonitor-v1.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "monitoring.coreos.com-podmonitor-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com-prometheusrule-v1.json",
}
APP = "horizon-keda"
HARDENED = "mtls"  # the overlay with every protection on
SHARDED = "sharded"  # exporter shards in a StatefulSet, scalers in a Deployment of their own (docs/scale-out.md)
# The overlays whose pod is the exporter with the scaler as its sidecar, reading it over loopback.
SIDECAR_OVERLAYS = [o for o in OVERLAYS if o != SHARDED]
WORKLOADS = ("Deployment", "StatefulSet")
SCALER_JOB = "horizon-keda-scaler"  # the scaler's scrape job name, which deploy/monitoring's rules select


# --- loading -----------------------------------------------------------------------------------------------


@functools.cache
def _render(kubectl: str, overlay: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "overlays" / overlay)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, f"kubectl kustomize deploy/overlays/{overlay}:\n{out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def render(overlay: str) -> tuple[dict[str, Any], ...]:
    """The overlay's objects as `kubectl apply -k` would send them."""
    return _render(require_binary("kubectl"), overlay)


@functools.cache
def _example_docs() -> tuple[tuple[str, dict[str, Any]], ...]:
    return tuple((p.name, d) for p in EXAMPLES for d in yaml.safe_load_all(p.read_text()) if d)


def examples(kind: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(file name, object) of every example, optionally of one kind."""
    return [(name, d) for name, d in _example_docs() if kind is None or d["kind"] == kind]


def one(objects: tuple[dict[str, Any], ...], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def exporter_endpoint(objs: list[dict]) -> dict:
    """The ServiceMonitor's endpoint for the exporter (port `metrics`; the scaler's `scaler-metrics` is the other)."""
    (endpoint,) = [e for e in one(objs, "ServiceMonitor")["spec"]["endpoints"] if e.get("port") == "metrics"]
    return endpoint


def exporter_config(objects: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    """The exporter's ConfigMap (horizon-keda-config-<hash>; deploy/monitoring adds the dashboard's)."""
    (found,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith(f"{APP}-config")]
    return found


def components(overlay: str) -> list[str]:
    """The components an overlay lists, by their path under deploy/ (e.g. "components/servicemonitor")."""
    here = DEPLOY / "overlays" / overlay
    listed = yaml.safe_load((here / "kustomization.yaml").read_text()).get("components", [])
    return [str((here / c).resolve().relative_to(DEPLOY)) for c in listed]


def workloads(objects: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """The Deployments and StatefulSets: one Deployment for the sidecar overlays, two workloads when sharded."""
    return [o for o in objects if o["kind"] in WORKLOADS]


def containers(objects: tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    """Every container of every workload by name (`exporter`, `scaler`), wherever it runs."""
    found: dict[str, dict[str, Any]] = {}
    for workload in workloads(objects):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            assert container["name"] not in found, f"two containers named {container['name']}"
            found[container["name"]] = container
    return found


def container_ports(objects: tuple[dict[str, Any], ...]) -> dict[str, int]:
    """Named container ports of the pod: name -> number."""
    return {p["name"]: p["containerPort"] for c in containers(objects).values() for p in c.get("ports", [])}


def resolve_port(port: int | str, named: dict[str, int]) -> int:
    """A port given by number or by container port name, as a number (KeyError for an unknown name)."""
    return port if isinstance(port, int) else named[port]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def flag(args: list[str], name: str) -> str:
    """The value of `--name=value` or `--name value` in a container's args."""
    for i, arg in enumerate(args):
        if arg == name:
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{name} not in {args}")


def has_flag(args: list[str], name: str) -> bool:
    return any(a == name or a.startswith(name + "=") for a in args)


def pod_specs(objects: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    return [w["spec"]["template"]["spec"] for w in workloads(objects)]


def pod_spec(objects: tuple[dict[str, Any], ...], container: str | None = None) -> dict[str, Any]:
    """The pod spec of the workload running `container`; without one, of the only workload."""
    (found,) = [p for p in pod_specs(objects) if container is None or container in {c["name"] for c in p["containers"]}]
    return found


def workload_of(objects: tuple[dict[str, Any], ...], container: str) -> dict[str, Any]:
    (found,) = [
        w for w in workloads(objects) if container in {c["name"] for c in w["spec"]["template"]["spec"]["containers"]}
    ]
    return found


def pod_labels(objects: tuple[dict[str, Any], ...], container: str) -> dict[str, str]:
    """The pod template labels of the workload running `container`."""
    return workload_of(objects, container)["spec"]["template"]["metadata"]["labels"]


def mounted(objects: tuple[dict[str, Any], ...], container: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    """The volume a container sees at `path`, and the key of its Secret or ConfigMap that the file holds."""
    volumes = {v["name"]: v for v in pod_spec(objects, container["name"])["volumes"]}
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix):
            volume, relative = volumes[mount["name"]], path[len(prefix) :]
            source = volume.get("secret") or volume.get("configMap") or {}
            items = {i["path"]: i["key"] for i in source.get("items", [])}
            if items:
                assert relative in items, f"{container['name']}: {path} is not among the items of {mount['name']}"
                return volume, items[relative]
            return volume, relative
    raise AssertionError(f"{container['name']}: nothing mounted at {path}")


def example_secret(name: str) -> dict[str, Any]:
    (secret,) = [s for _, s in examples("Secret") if s["metadata"]["name"] == name]
    return secret


def web_config(objects: tuple[dict[str, Any], ...]) -> WebConfig | None:
    """The exporter's --web-config-file as deployed: the example Secret's file, through the exporter's parser."""
    exporter = containers(objects)["exporter"]
    if not has_flag(exporter["args"], "--web-config-file"):
        return None
    volume, key = mounted(objects, exporter, flag(exporter["args"], "--web-config-file"))
    text = example_secret(volume["secret"]["secretName"])["stringData"][key]
    return parse_web_config(yaml.safe_load(text), key)


# --- schemas -----------------------------------------------------------------------------------------------


def strict(schema: Any) -> Any:
    """The schema with unknown fields rejected, as the API server's strict field validation does: every object
    that declares `properties` (and neither additionalProperties nor preserve-unknown-fields) gets
    additionalProperties: false, so a misspelt field fails here instead of being dropped in the cluster."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    return schema


@functools.cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    schema = strict(json.loads((SCHEMAS / CRD_SCHEMAS[api_version, kind]).read_text()))
    return jsonschema.Draft7Validator(schema)


def crd_errors(obj: dict[str, Any]) -> list[str]:
    validator = crd_validator(obj["apiVersion"], obj["kind"])
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]


def is_custom(obj: dict[str, Any]) -> bool:
    return (obj["apiVersion"], obj["kind"]) in CRD_SCHEMAS


# --- rendering and schemas ---------------------------------------------------------------------------------


def test_overlays_exist():
    assert set(OVERLAYS) >= {"with-servicemonitor", "without-servicemonitor", HARDENED, SHARDED}


@pytest.mark.parametrize("overlay", SIDECAR_OVERLAYS)
def test_overlay_renders_the_expected_objects(overlay):
    kinds = sorted(o["kind"] for o in render(overlay))
    base = ["ConfigMap", "Deployment", "Namespace", "NetworkPolicy", "PodDisruptionBudget", "Service",
            "ServiceAccount"]  # fmt: skip
    operator = ["ServiceMonitor"] if "components/servicemonitor" in components(overlay) else []
    monitoring = ["ConfigMap", "PrometheusRule"] if "monitoring" in components(overlay) else []
    assert kinds == sorted(base + operator + monitoring)
    assert {o["metadata"].get("namespace") for o in render(overlay) if o["kind"] != "Namespace"} == {APP}


# docs/scale-out.md's table of the sharded overlay's objects: the base's Deployment, Service, NetworkPolicy and
# PodDisruptionBudget are deleted, two workloads with their own take their place.
SHARDED_OBJECTS = {
    ("Namespace", APP), ("ServiceAccount", APP), ("ConfigMap", f"{APP}-config"), ("ConfigMap", f"{APP}-dashboard"),
    ("StatefulSet", f"{APP}-exporter"), ("Service", f"{APP}-exporter"), ("NetworkPolicy", f"{APP}-exporter"),
    ("PodDisruptionBudget", f"{APP}-exporter"), ("PodMonitor", f"{APP}-exporter"),
    ("Deployment", f"{APP}-scaler"), ("Service", f"{APP}-scaler"), ("NetworkPolicy", f"{APP}-scaler"),
    ("PodDisruptionBudget", f"{APP}-scaler"), ("PodMonitor", f"{APP}-scaler"),
    ("PrometheusRule", APP),
}  # fmt: skip


def test_the_sharded_overlay_renders_exactly_its_objects():
    objs = render(SHARDED)
    names = [(o["kind"], re.sub(r"-[a-z0-9]{10}$", "", o["metadata"]["name"]) if o["kind"] == "ConfigMap"
              else o["metadata"]["name"]) for o in objs]  # fmt: skip
    assert len(names) == len(set(names)) and set(names) == SHARDED_OBJECTS
    assert {o["metadata"].get("namespace") for o in objs if o["kind"] != "Namespace"} == {APP}
    # The base's ConfigMap keeps its content hash, and the shards mount it by that name.
    volumes = {v["name"]: v for v in pod_spec(objs, "exporter")["volumes"]}
    assert volumes["config"]["configMap"]["name"] == exporter_config(objs)["metadata"]["name"] != f"{APP}-config"


def test_the_sharded_workloads_run_the_base_image():
    """The base's `images` covers only the base's objects; the overlay sets the same tag for its own."""
    base = {c["image"] for c in containers(render("with-servicemonitor")).values()}
    assert len(base) == 1
    assert {c["image"] for c in containers(render(SHARDED)).values()} == base


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_builtin_objects_validate_against_kubernetes_schemas(overlay):
    for obj in render(overlay):
        if not is_custom(obj):
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_prometheus_operator_overlays_add_dashboard_and_alerts():
    """deploy/monitoring reads what components/servicemonitor (or the sharded overlay's PodMonitors) scrapes -- it
    adds no scrape target of its own -- so an overlay has both or neither; the Prometheus Operator overlays have
    both."""
    for overlay in OVERLAYS:
        kinds = {o["kind"] for o in render(overlay)}
        scraped = "components/servicemonitor" in components(overlay) or "PodMonitor" in kinds
        assert scraped == ("monitoring" in components(overlay)), overlay
        assert scraped == ("PrometheusRule" in kinds), overlay
    for overlay in ("with-servicemonitor", HARDENED, SHARDED):
        assert "monitoring" in components(overlay), overlay


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_objects_validate_against_their_crds(overlay):
    """ServiceMonitor and PrometheusRule against the Prometheus Operator's schemas."""
    for obj in render(overlay):
        if is_custom(obj):
            assert crd_errors(obj) == [], obj["kind"]


def test_strict_crd_validation_rejects_a_misspelt_rule_field():
    rule = copy.deepcopy(one(render("with-servicemonitor"), "PrometheusRule"))
    rule["spec"]["groups"][0]["rules"][0]["severity"] = "warning"  # belongs under labels
    assert any("severity" in e for e in crd_errors(rule))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_against_its_schema(path):
    for obj in yaml.safe_load_all(path.read_text()):
        if is_custom(obj):
            assert crd_errors(obj) == [], f"{path.name}: {obj['kind']} {obj['metadata']['name']}"
        else:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_strict_crd_validation_rejects_a_misspelt_field():
    _, so = examples("ScaledObject")[0]
    bad = copy.deepcopy(so)
    bad["spec"]["maxReplicas"] = bad["spec"].pop("maxReplicaCount")
    assert any("maxReplicas" in e for e in crd_errors(bad))


def test_examples_cover_both_paths_and_mtls():
    triggers = {t["type"] for _, so in examples("ScaledObject") for t in so["spec"]["triggers"]}
    assert triggers == {"external-push", "prometheus"}
    assert examples("TriggerAuthentication")


@pytest.mark.parametrize("name_so", examples("ScaledObject"), ids=lambda x: x[0])
def test_scaledobject_replica_bounds_hold(name_so):
    """The CRD's CEL rule (not checked by a JSON Schema validator) and the webhook's idle < min."""
    spec = name_so[1]["spec"]
    min_count, max_count = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
    assert min_count <= max_count
    if "idleReplicaCount" in spec:
        assert spec["idleReplicaCount"] < min_count
    fallback = spec.get("fallback")
    if fallback:
        assert min_count <= fallback["replicas"] <= max_count


@pytest.mark.parametrize("name_so", examples("ScaledObject"), ids=lambda x: x[0])
def test_scaledobject_trigger_metadata_values_are_strings(name_so):
    for trigger in name_so[1]["spec"]["triggers"]:
        for key, value in trigger["metadata"].items():
            assert isinstance(value, str), f"{trigger['type']}.metadata.{key} = {value!r}: KEDA wants a string"


def test_scaledobjects_have_a_fallback():
    for name, so in examples("ScaledObject"):
        assert so["spec"].get("fallback"), name


def test_prometheus_example_does_not_read_a_lost_series_as_zero():
    (trigger,) = [t for _, so in examples("ScaledObject") for t in so["spec"]["triggers"] if t["type"] == "prometheus"]
    meta = trigger["metadata"]
    assert meta["ignoreNullValues"] == "false"
    assert meta["threshold"] == "8"
    assert 'horizon_microservice_processes{microservice="orders"}' in meta["query"]


def test_push_example_thresholds_at_eight():
    (trigger,) = [
        t for name, so in examples("ScaledObject") if name == "scaledobject-external-push.yaml"
        for t in so["spec"]["triggers"]
    ]  # fmt: skip
    assert trigger["type"] == "external-push"
    assert trigger["metadata"]["microservice"] == "orders"
    assert trigger["metadata"]["threshold"] == "8"


# --- cross-checks: the parts agree -------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", SIDECAR_OVERLAYS)
def test_service_ports_reach_the_containers(overlay):
    objs = render(overlay)
    named = container_ports(objs)
    assert named == {"metrics": 9108, "grpc": 6000, "scaler-metrics": 9109}
    pod_labels = one(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    service = one(objs, "Service")
    assert selects(service["spec"]["selector"], pod_labels)
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert set(ports) == set(named)
    for name, port in ports.items():
        # Headless: clients dial pod IPs, so the Service port must be the container port itself.
        assert resolve_port(port["targetPort"], named) == port["port"] == named[name]
    assert service["spec"]["clusterIP"] == "None"


def test_the_servicemonitor_overlays():
    assert [o for o in OVERLAYS if "components/servicemonitor" in components(o)] == [HARDENED, "with-servicemonitor"]


@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if "components/servicemonitor" in components(o)])
def test_servicemonitor_scrapes_the_metrics_port(overlay):
    objs = render(overlay)
    monitor, service = one(objs, "ServiceMonitor"), one(objs, "Service")
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    endpoints = {e["port"]: e for e in monitor["spec"]["endpoints"]}
    assert set(endpoints) <= {p["name"] for p in service["spec"]["ports"]}
    # The exporter's and the scaler's /metrics, each once.
    assert {name: container_ports(objs)[name] for name in endpoints} == {"metrics": 9108, "scaler-metrics": 9109}
    assert {e["path"] for e in endpoints.values()} == {"/metrics"}
    annotations = one(objs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "false"  # no second scrape by an annotation-driven job
    assert annotations["prometheus.io/path"] == endpoints["metrics"]["path"]
    # The scaler's job name (what deploy/monitoring selects) and its own `namespace` label (the ScaledObject's).
    scaler = endpoints["scaler-metrics"]
    assert scaler["honorLabels"] is True
    assert scaler["relabelings"] == [{"action": "replace", "targetLabel": "job", "replacement": SCALER_JOB}]


@pytest.mark.parametrize("overlay", SIDECAR_OVERLAYS)
def test_prometheus_annotations_point_at_the_metrics_port(overlay):
    objs = render(overlay)
    annotations = one(objs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == container_ports(objs)["metrics"]
    assert annotations["prometheus.io/path"] == "/metrics"
    if overlay == "without-servicemonitor":
        assert annotations["prometheus.io/scrape"] == "true"


@pytest.mark.parametrize("overlay", SIDECAR_OVERLAYS)
def test_networkpolicy_admits_exactly_prometheus_and_keda(overlay):
    objs = render(overlay)
    named = container_ports(objs)
    policy = one(objs, "NetworkPolicy")["spec"]
    pod_labels = one(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert selects(policy["podSelector"]["matchLabels"], pod_labels)
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    admitted: dict[int, list[tuple[str, dict[str, str]]]] = {}
    for rule in policy["ingress"]:
        (peer,) = rule["from"]
        namespace = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        pods = peer["podSelector"]["matchLabels"]
        assert not set(pods.items()) & set(pod_labels.items()), "our own labels leaked into a peer selector"
        for port in rule["ports"]:
            admitted.setdefault(resolve_port(port["port"], named), []).append((namespace, pods))
    assert admitted == {
        named["metrics"]: [("monitoring", {"app.kubernetes.io/name": "prometheus"})],
        named["scaler-metrics"]: [("monitoring", {"app.kubernetes.io/name": "prometheus"})],
        named["grpc"]: [("keda", {"app": "keda-operator"})],
    }
    egress_ports = [(p["protocol"], p["port"]) for rule in policy["egress"] for p in rule["ports"]]
    assert ("UDP", 53) in egress_ports and ("TCP", 53) in egress_ports
    assert all(rule.get("to") for rule in policy["egress"]), "an egress rule without `to` allows everywhere"


def policy_for(objects: tuple[dict[str, Any], ...], container: str) -> dict[str, Any]:
    """The one NetworkPolicy that selects the pods running `container`."""
    labels = pod_labels(objects, container)
    (found,) = [
        o for o in objects if o["kind"] == "NetworkPolicy" and selects(o["spec"]["podSelector"]["matchLabels"], labels)
    ]
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_egress_reaches_the_configured_horizons(overlay):
    objs = render(overlay)
    config = yaml.safe_load(exporter_config(objs)["data"]["config.yml"])
    allowed = {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for rule in policy_for(objs, "exporter")["spec"]["egress"] for peer in rule["to"] if "namespaceSelector" in peer
    }  # fmt: skip
    for target in config["targets"]:
        host = urlsplit(target["url"]).hostname
        namespace = host.split(".")[1]  # <service>.<namespace>.svc...
        assert namespace in allowed, f"{target['url']}: egress to namespace {namespace} is not allowed"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pdb_covers_the_pods(overlay):
    """Every workload has two replicas or more and exactly one PodDisruptionBudget, which leaves one standing."""
    objs = render(overlay)
    pdbs = [o["spec"] for o in objs if o["kind"] == "PodDisruptionBudget"]
    assert len(pdbs) == len(workloads(objs))
    for workload in workloads(objs):
        spec = workload["spec"]
        (pdb,) = [p for p in pdbs if selects(p["selector"]["matchLabels"], spec["template"]["metadata"]["labels"])]
        assert spec["replicas"] >= 2 and pdb["maxUnavailable"] < spec["replicas"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_use_the_exporter_and_scaler_health_endpoints(overlay):
    objs = render(overlay)
    named = container_ports(objs)
    exporter, scaler = containers(objs)["exporter"], containers(objs)["scaler"]
    assert exporter["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert exporter["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe"):
        assert resolve_port(exporter[probe]["httpGet"]["port"], named) == named["metrics"]
        handler = scaler[probe].get("grpc") or scaler[probe]["tcpSocket"]
        assert resolve_port(handler["port"], named) == named["grpc"]
        # The kubelet's gRPC probe cannot do TLS: with TLS on, only a TCP check works.
        tls = any(a.startswith("--tls-cert") for a in scaler["args"])
        assert ("grpc" in scaler[probe]) is not tls


@pytest.mark.parametrize("overlay", SIDECAR_OVERLAYS)
def test_sidecar_reads_the_exporter_on_loopback_and_listens_on_the_grpc_port(overlay):
    objs = render(overlay)
    named = container_ports(objs)
    exporter, scaler = containers(objs)["exporter"], containers(objs)["scaler"]
    assert scaler["image"] == exporter["image"]
    assert scaler["command"] == ["horizon-scaler"] and "command" not in exporter
    upstream = urlsplit(flag(scaler["args"], "--exporter"))
    assert upstream.hostname in ("127.0.0.1", "localhost") and upstream.port == named["metrics"]
    assert int(flag(scaler["args"], "--listen").rsplit(":", 1)[1]) == named["grpc"]
    config = yaml.safe_load(exporter_config(objs)["data"]["config.yml"])
    assert int(config["listen"].rsplit(":", 1)[1]) == named["metrics"]


# Every file flag of the two containers: the Secret it must come from and the keys it may read.
FILE_FLAGS = {
    ("scaler", "--tls-cert"): ("horizon-keda-scaler-tls", {"tls.crt"}),
    ("scaler", "--tls-key"): ("horizon-keda-scaler-tls", {"tls.key"}),
    ("scaler", "--tls-client-ca"): ("horizon-keda-scaler-tls", {"ca.crt"}),
    ("exporter", "--web-config-file"): ("horizon-keda-exporter-web-config", {"web-config.yml"}),
    ("scaler", "--exporter-ca"): ("horizon-keda-exporter-tls", {"ca.crt"}),
    ("scaler", "--exporter-password-file"): ("horizon-keda-exporter-scaler", {"password"}),
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_scaler_serves_its_metrics_on_the_scaler_metrics_port(overlay):
    """The container's args go through the scaler's own flag parser; --metrics-listen is the named port (the mTLS
    component rewrites the args, so every overlay is checked)."""
    objs = render(overlay)
    args = parse_args(containers(objs)["scaler"]["args"], {})
    assert args.metrics_listen == ("0.0.0.0", container_ports(objs)["scaler-metrics"])
    assert args.listen.endswith(f":{container_ports(objs)['grpc']}")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_mounted_files_are_where_the_flags_and_config_look(overlay):
    objs = render(overlay)
    configmap = exporter_config(objs)
    config = yaml.safe_load(configmap["data"]["config.yml"])
    exporter = containers(objs)["exporter"]
    volume, key = mounted(objs, exporter, flag(exporter["args"], "--config"))
    assert volume["configMap"]["name"] == configmap["metadata"]["name"] and key in configmap["data"]
    for target in config["targets"]:
        volume, key = mounted(objs, exporter, target["bearer_token_file"])
        assert volume["secret"]["secretName"] == "horizon-credentials" and key == "token"
    for (name, option), (secret, keys) in FILE_FLAGS.items():
        container = containers(objs)[name]
        if has_flag(container["args"], option):
            volume, key = mounted(objs, container, flag(container["args"], option))
            assert volume["secret"]["secretName"] == secret and key in keys, (name, option)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_mount_lies_inside_another(overlay):
    """The kubelet would have to create the inner mount point inside a read-only volume (/etc/horizon-keda is
    the config's), which fails at container start, not at apply."""
    for container in containers(render(overlay)).values():
        paths = [m["mountPath"].rstrip("/") + "/" for m in container.get("volumeMounts", [])]
        assert len(set(paths)) == len(paths), container["name"]
        assert not [(a, b) for a in paths for b in paths if a != b and a.startswith(b)], container["name"]


def monitor_endpoints(objects: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """Every scrape endpoint of the ServiceMonitors and PodMonitors."""
    return [e for o in objects if o["kind"] in ("ServiceMonitor", "PodMonitor")
            for e in o["spec"].get("endpoints", []) + o["spec"].get("podMetricsEndpoints", [])]  # fmt: skip


def secret_refs(objects: tuple[dict[str, Any], ...]) -> dict[str, set[str]]:
    """Secret name -> the keys read from it, for every Secret the objects name (a whole-Secret volume: no keys)."""
    refs: dict[str, set[str]] = {}
    for volume in (v for pod in pod_specs(objects) for v in pod.get("volumes", [])):
        if "secret" in volume:
            keys = {i["key"] for i in volume["secret"].get("items", [])}
            refs.setdefault(volume["secret"]["secretName"], set()).update(keys)
    for endpoint in monitor_endpoints(objects):
        tls = endpoint.get("tlsConfig", {})
        selectors = [tls.get("ca", {}).get("secret"), tls.get("cert", {}).get("secret"), tls.get("keySecret"),
                     *endpoint.get("basicAuth", {}).values(), endpoint.get("bearerTokenSecret"),
                     endpoint.get("authorization", {}).get("credentials")]  # fmt: skip
        for selector in filter(None, selectors):
            refs.setdefault(selector["name"], set()).add(selector["key"])
    for container in containers(objects).values():
        for env in container.get("env", []):
            selector = env.get("valueFrom", {}).get("secretKeyRef")
            if selector:
                refs.setdefault(selector["name"], set()).add(selector["key"])
    return refs


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_volume_and_secret_the_pod_needs_exists_or_has_an_example(overlay):
    """A mount names a volume of the pod and every volume is mounted; every Secret the overlay names (volumes,
    the ServiceMonitor) has an example in deploy/examples/ with the keys read from it, in the overlay's namespace."""
    objs = render(overlay)
    for pod in pod_specs(objs):
        volumes = {v["name"] for v in pod.get("volumes", [])}
        mounts = {m["name"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
        assert mounts == volumes
    shapes = {s["metadata"]["name"]: set(s.get("stringData", {})) | set(s.get("data", {}))
              for _, s in examples("Secret") if s["metadata"]["namespace"] == APP}  # fmt: skip
    refs = secret_refs(objs)
    assert refs, "the base mounts horizon-credentials"
    for name, keys in refs.items():
        assert name in shapes, f"{overlay} reads the Secret {name}, which no example in deploy/examples/ shows"
        assert keys <= shapes[name], f"{overlay} reads {sorted(keys - shapes[name])} of {name}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_configmap_is_a_valid_exporter_config(overlay):
    text = exporter_config(render(overlay))["data"]["config.yml"]
    config = validate(parse_config(yaml.safe_load(text), "config.yml", env={}))
    assert [t.name for t in config.targets] == ["orders", "payments"]


def scaler_overlays(address: str) -> list[str]:
    """The overlays whose scalers an example's scalerAddress names: `dns:///` is the sharded install's."""
    return [SHARDED] if address.startswith("dns:///") else SIDECAR_OVERLAYS


@pytest.mark.parametrize("name_so", examples("ScaledObject"), ids=lambda x: x[0])
def test_scaler_address_resolves_to_the_grpc_port_of_the_service(name_so):
    name, so = name_so
    for trigger in so["spec"]["triggers"]:
        if not trigger["type"].startswith("external"):
            continue
        address = trigger["metadata"]["scalerAddress"]
        host, port = address.removeprefix("dns:///").rsplit(":", 1)
        service_name, namespace, *rest = host.split(".")
        assert rest in (["svc", "cluster", "local"], ["svc"], []), f"{name}: {host}"
        for overlay in scaler_overlays(address):
            objs = render(overlay)
            (service,) = [o for o in objs if o["kind"] == "Service" and o["metadata"]["name"] == service_name]
            assert service["metadata"]["namespace"] == namespace
            # Headless, so KEDA's resolver finds every scaler pod and round-robins over them.
            assert service["spec"]["clusterIP"] == "None"
            assert selects(service["spec"]["selector"], pod_labels(objs, "scaler"))
            assert int(port) == {p["name"]: p["port"] for p in service["spec"]["ports"]}["grpc"]
            policy = policy_for(objs, "scaler")["spec"]
            keda_ports = [
                p["port"] for rule in policy["ingress"] for peer in rule["from"]
                if peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == "keda"
                for p in rule["ports"]
            ]  # fmt: skip
            assert int(port) in keda_ports


def test_authentication_refs_name_an_example_triggerauthentication():
    auths = {(a["metadata"]["namespace"], a["metadata"]["name"]): a for _, a in examples("TriggerAuthentication")}
    referenced = set()
    for name, so in examples("ScaledObject"):
        for trigger in so["spec"]["triggers"]:
            ref = trigger.get("authenticationRef")
            if ref:
                assert ref.get("kind", "TriggerAuthentication") == "TriggerAuthentication"
                key = (so["metadata"]["namespace"], ref["name"])
                assert key in auths, f"{name}: no TriggerAuthentication {key}"
                referenced.add(key)
    assert referenced == set(auths)
    for auth in auths.values():
        params = {r["parameter"] for r in auth["spec"]["secretTargetRef"]}
        assert params == {"caCert", "tlsClientCert", "tlsClientKey"}  # KEDA's mTLS params, PEM content


# --- security posture --------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_meets_the_restricted_pod_security_standard(overlay):
    objs = render(overlay)
    assert workloads(objs)
    for pod in pod_specs(objs):
        assert_restricted(objs, pod)
    labels = one(objs, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def assert_restricted(objs: tuple[dict[str, Any], ...], pod: dict[str, Any]) -> None:
    dockerfile_user = re.search(r"^USER\s+(\d+):(\d+)\s*$", (REPO / "Dockerfile").read_text(), re.M)
    assert dockerfile_user, "the Dockerfile's USER must be numeric"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == int(dockerfile_user[1])
    assert pod["securityContext"]["runAsGroup"] == int(dockerfile_user[2])
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == one(objs, "ServiceAccount")["metadata"]["name"]
    assert one(objs, "ServiceAccount")["automountServiceAccountToken"] is False
    assert not {"hostNetwork", "hostPID", "hostIPC"} & set(pod)
    for container in pod["containers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False, container["name"]
        assert sc["readOnlyRootFilesystem"] is True, container["name"]
        assert sc["capabilities"] == {"drop": ["ALL"]}, container["name"]
        assert all(m.get("readOnly") for m in container.get("volumeMounts", [])), container["name"]
    # Secret files readable by the pod's group (fsGroup) only, not by others, not writable.
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    for volume in pod.get("volumes", []):
        if "secret" in volume:
            assert volume["secret"]["defaultMode"] == 0o440, volume["name"]
            assert all("mode" not in item for item in volume["secret"].get("items", [])), volume["name"]


def quantity(value: str) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "": 1}
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value)).groups()  # type: ignore[union-attr]
    return float(number) * units[unit]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_within_limits(overlay):
    for container in containers(render(overlay)).values():
        resources = container["resources"]
        for resource in ("cpu", "memory"):
            request, limit = resources["requests"][resource], resources["limits"][resource]
            assert 0 < quantity(request) <= quantity(limit), f"{container['name']} {resource}"


def test_no_real_secret_is_committed():
    for overlay in OVERLAYS:
        assert not [o for o in render(overlay) if o["kind"] == "Secret"], "secrets are created out of band"
    for name, secret in examples("Secret"):
        values = {**secret.get("stringData", {}), **secret.get("data", {})}
        assert values, name
        for key, value in values.items():
            if key == "web-config.yml":
                # Only hashes in it, and those placeholders too (a hash still invites offline guessing).
                config = parse_web_config(yaml.safe_load(value), key)
                assert config.users, name
                assert all(h.split("$")[3].startswith("REPLACE") for h in config.users.values()), name
                assert config.tls is not None and config.tls.key is None, f"{name}: the key belongs in its file"
            elif not (secret.get("type") == "kubernetes.io/basic-auth" and key == "username"):  # a name, not a secret
                assert value.startswith("REPLACE"), f"{name}: {key}: placeholders only"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_is_an_env_value_or_a_flag_value(overlay):
    """Env values show in `kubectl describe pod` and /proc/<pid>/environ, flag values in `ps`: files only."""
    for container in containers(render(overlay)).values():
        assert "envFrom" not in container, container["name"]
        for env in container.get("env", []):
            assert "secretKeyRef" not in env.get("valueFrom", {}), (container["name"], env["name"])
        for arg in container.get("args", []):
            name = arg.split("=", 1)[0]
            assert not re.search(r"password|token|secret", name) or name.endswith("-file"), (container["name"], arg)


# --- the hardened overlay: the exporter behind its web config ----------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everyone_reaching_9108_speaks_what_the_exporter_serves(overlay):
    """kubelet, the sidecar and Prometheus use HTTPS exactly when the deployed web config turns TLS on (a
    ServiceMonitor left on http -- components/servicemonitor listed after exporter-web-config -- fails here)."""
    assert_speaks_what_the_exporter_serves(render(overlay))


def assert_speaks_what_the_exporter_serves(objs: tuple[dict[str, Any], ...]) -> None:
    config = web_config(objs)
    scheme = "https" if config is not None and config.tls is not None else "http"
    exporter, scaler = containers(objs)["exporter"], containers(objs)["scaler"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert exporter[probe]["httpGet"].get("scheme", "HTTP") == scheme.upper(), probe
    # Through the scaler's own parser: a `dns+https://` exporter speaks https.
    assert {spec.scheme for spec in parse_args(scaler["args"], {}).exporter} == {scheme}
    # The exporter's port is scraped by exactly one endpoint of the ServiceMonitor or PodMonitors, if any.
    monitors = [o for o in objs if o["kind"] in ("ServiceMonitor", "PodMonitor")]
    schemes = [e.get("scheme", "http") for e in monitor_endpoints(objs) if e.get("port") == "metrics"]
    assert schemes == ([scheme] if monitors else [])
    if config is not None:
        # A generic annotation-driven job has neither the CA nor a password (and must not be given them).
        annotations = one(objs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "false"


def test_the_hardened_overlay_is_servicemonitor_scaler_mtls_and_a_protected_exporter():
    objs = render(HARDENED)
    exporter, scaler = containers(objs)["exporter"], containers(objs)["scaler"]
    assert has_flag(scaler["args"], "--tls-client-ca") and has_flag(exporter["args"], "--web-config-file")
    config = web_config(objs)
    assert config is not None and config.tls is not None and config.users
    # kubelet: HTTPS on the two paths that need no credentials, and no headers (a password would sit in the
    # pod spec); it presents no client certificate, so none may be required.
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = exporter[probe]["httpGet"]
        assert (get["scheme"], get["path"]) == ("HTTPS", path) and "httpHeaders" not in get
        assert path in UNAUTHENTICATED_PATHS
    assert config.tls.client_auth_type != "RequireAndVerifyClientCert"
    # The sidecar: the pod's loopback by the name the certificate carries, a user the web config knows, its
    # password from a mounted file, and of the exporter's TLS Secret only the CA.
    upstream = urlsplit(flag(scaler["args"], "--exporter"))
    assert (upstream.scheme, upstream.hostname) == ("https", "localhost")
    assert flag(scaler["args"], "--exporter-username") in config.users
    volume, key = mounted(objs, scaler, flag(scaler["args"], "--exporter-password-file"))
    assert (volume["secret"]["secretName"], key) == ("horizon-keda-exporter-scaler", "password")
    volumes = {v["name"]: v for v in pod_spec(objs)["volumes"]}
    for mount in scaler["volumeMounts"]:
        secret = volumes[mount["name"]].get("secret", {})
        if secret.get("secretName") == "horizon-keda-exporter-tls":
            assert [i["key"] for i in secret["items"]] == ["ca.crt"], "the sidecar must not see the exporter's key"
    # Prometheus: HTTPS verified against the CA and the Service's name (it dials pod IPs), basic auth from a
    # Secret whose user the web config knows.
    service = one(objs, "Service")["metadata"]
    endpoint = exporter_endpoint(objs)
    tls, auth = endpoint["tlsConfig"], endpoint["basicAuth"]
    assert endpoint["scheme"] == "https" and not tls.get("insecureSkipVerify")
    assert tls["ca"]["secret"] == {"name": "horizon-keda-exporter-tls", "key": "ca.crt"}
    assert tls["serverName"] == f"{service['name']}.{service['namespace']}.svc"
    assert auth["username"]["name"] == auth["password"]["name"] == "horizon-keda-exporter-prometheus"
    assert example_secret(auth["username"]["name"])["stringData"][auth["username"]["key"]] in config.users


def test_the_example_web_config_passes_the_exporters_parser_and_names_the_mounted_files():
    """parse_web_config is the exporter's own: a key renamed or a rule tightened in the code fails here."""
    objs = render(HARDENED)
    exporter = containers(objs)["exporter"]
    config = web_config(objs)
    assert config is not None and config.tls is not None
    for attribute, key in (("cert_file", "tls.crt"), ("key_file", "tls.key"), ("client_ca_file", "ca.crt")):
        volume, mounted_key = mounted(objs, exporter, getattr(config.tls, attribute))
        assert (volume["secret"]["secretName"], mounted_key) == ("horizon-keda-exporter-tls", key), attribute
    assert set(config.headers) >= {"Strict-Transport-Security", "X-Content-Type-Options"}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_a_placeholder_hash_deployed_as_is_admits_no_one():
    config = web_config(render(HARDENED))
    assert config is not None
    guard = WebGuard(None, config)
    for user, hashed in config.users.items():
        for password in ("", "REPLACE", hashed):
            assert not await guard.authenticate(basic(user, password)), user


def secrets_filled_in(objs: tuple[dict[str, Any], ...], ca: CA) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """The example Secrets as a cluster would hold them for the hardened overlay: a password per web-config user
    (hashed into the web config, written into the clients' Secrets) and a certificate for the documented DNS
    names. Returns (Secret name -> data, user -> password)."""
    secrets = {s["metadata"]["name"]: dict(s["stringData"]) for _, s in examples("Secret")}
    config = web_config(objs)
    assert config is not None
    passwords = {user: f"pw-{user}-{i}" for i, user in enumerate(config.users)}
    document = yaml.safe_load(secrets["horizon-keda-exporter-web-config"]["web-config.yml"])
    document["basic_auth_users"] = {
        user: bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode() for user, password in passwords.items()
    }
    secrets["horizon-keda-exporter-web-config"]["web-config.yml"] = yaml.safe_dump(document)
    leaf = ca.issue("horizon-keda-exporter", names=tuple(doc_certificate()["spec"]["dnsNames"]))
    secrets["horizon-keda-exporter-tls"] = {"tls.crt": leaf.cert.decode(), "tls.key": leaf.key.decode(),
                                            "ca.crt": ca.pem.decode()}  # fmt: skip
    secrets["horizon-keda-exporter-scaler"]["password"] = passwords[
        flag(containers(objs)["scaler"]["args"], "--exporter-username")
    ]
    prometheus = secrets["horizon-keda-exporter-prometheus"]
    prometheus["password"] = passwords[prometheus["username"]]
    return secrets, passwords


async def test_the_hardened_pod_works_with_its_secrets(horizon, tmp_path):
    """The mtls overlay's pod, assembled from the rendered containers, the example Secrets filled in, and the
    exporter's and scaler's own code: kubelet's probes, the sidecar (its rendered flags through the scaler's
    parser) and a client set up as the ServiceMonitor says all get through; without the password, no one."""
    objs = render(HARDENED)
    exporter, scaler = containers(objs)["exporter"], containers(objs)["scaler"]
    secrets, _ = secrets_filled_in(objs, CA())

    def local(container: dict[str, Any], path: str) -> Path:
        return tmp_path / container["name"] / path.lstrip("/")

    # The kubelet's part: every Secret volume's keys (or items) as files under the container's mount path; file
    # paths inside the web config are the container's, so they move with it.
    document = yaml.safe_load(secrets["horizon-keda-exporter-web-config"]["web-config.yml"])
    for key in ("cert_file", "key_file", "client_ca_file"):
        document["tls_server_config"][key] = str(local(exporter, document["tls_server_config"][key]))
    secrets["horizon-keda-exporter-web-config"]["web-config.yml"] = yaml.safe_dump(document)
    volumes = {v["name"]: v for v in pod_spec(objs)["volumes"]}
    for container in (exporter, scaler):
        for mount in container["volumeMounts"]:
            source = volumes[mount["name"]].get("secret")
            if source is None:
                continue  # the ConfigMap: this exporter polls the fake Horizon instead of config.yml's
            data = secrets[source["secretName"]]
            for key, path in ({i["key"]: i["path"] for i in source.get("items", [])} or {k: k for k in data}).items():
                file = local(container, mount["mountPath"]) / path
                file.parent.mkdir(parents=True, exist_ok=True)
                file.write_text(data[key])

    guard = WebGuard(str(local(exporter, flag(exporter["args"], "--web-config-file"))))
    assert guard.ssl_context is not None
    _, horizon_url = horizon
    app = create_app(Config(targets=(fixed_target("orders", horizon_url),), poll_interval=0.2), guard=guard)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=guard.ssl_context).start()
    port = runner.addresses[0][1]
    source = None
    try:
        async with aiohttp.ClientSession() as session:
            # kubelet: no certificate verification, no credentials.
            for probe in ("livenessProbe", "readinessProbe"):
                get = exporter[probe]["httpGet"]
                url = f"{get['scheme'].lower()}://127.0.0.1:{port}{get['path']}"
                async with asyncio.timeout(10):
                    while True:
                        async with session.get(url, ssl=False) as resp:
                            if resp.status == 200:
                                break
                        await asyncio.sleep(0.1)
            # Prometheus as the ServiceMonitor configures it: the CA and serverName, basic auth from the Secret.
            endpoint = exporter_endpoint(objs)
            tls, auth = endpoint["tlsConfig"], endpoint["basicAuth"]
            ca = ssl.create_default_context(cadata=secrets[tls["ca"]["secret"]["name"]][tls["ca"]["secret"]["key"]])
            user = secrets[auth["username"]["name"]][auth["username"]["key"]]
            password = secrets[auth["password"]["name"]][auth["password"]["key"]]
            url = f"{endpoint['scheme']}://127.0.0.1:{port}{endpoint['path']}"
            kw: dict[str, Any] = {"ssl": ca, "server_hostname": tls["serverName"]}
            async with session.get(url, headers={"Authorization": basic(user, password)}, **kw) as resp:
                assert resp.status == 200
                assert 'horizon_microservice_processes{microservice="orders"}' in await resp.text()
            for path in (endpoint["path"], "/api/v1/snapshot"):
                async with session.get(f"https://127.0.0.1:{port}{path}", **kw) as resp:
                    assert resp.status == 401, path
        # The sidecar: its rendered flags, files where its mounts put them, the exporter's port in place of 9108.
        argv = []
        for arg in scaler["args"]:
            name, _, value = arg.partition("=")
            if value.startswith("/"):
                value = str(local(scaler, value))
            elif name == "--exporter":
                value = urlsplit(value)._replace(netloc=f"{urlsplit(value).hostname}:{port}").geturl()
            argv.append(f"{name}={value}")
        source = scaler_cli.make_source(scaler_cli.parse_args(argv, env={}))
        await source.start()
        try:
            async with asyncio.timeout(10):
                while not source.fresh:
                    await asyncio.sleep(0.05)
        except TimeoutError:
            pytest.fail(f"the sidecar never got the exporter's snapshot: {source.description}")
    finally:
        if source is not None:
            await source.close()
        await runner.cleanup()


# --- the sharded overlay -----------------------------------------------------------------------------------


def service_named(objects: tuple[dict[str, Any], ...], name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == name]
    return found


def test_the_shards_are_a_parallel_statefulset_behind_a_headless_service():
    objs = render(SHARDED)
    shards = workload_of(objs, "exporter")
    spec = shards["spec"]
    assert shards["kind"] == "StatefulSet" and spec["replicas"] >= 2
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["updateStrategy"]["type"] == "RollingUpdate"
    assert selects(spec["selector"]["matchLabels"], spec["template"]["metadata"]["labels"])
    # The StatefulSet's governing Service: headless, the shards' pods only, the exporter's port.
    service = service_named(objs, spec["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    assert selects(service["spec"]["selector"], pod_labels(objs, "exporter"))
    assert not selects(service["spec"]["selector"], pod_labels(objs, "scaler"))
    named = container_ports(objs)
    ports = [(p["name"], p["port"], resolve_port(p["targetPort"], named)) for p in service["spec"]["ports"]]
    assert ports == [("metrics", named["metrics"], named["metrics"])]
    assert [p["name"] for p in containers(objs)["exporter"]["ports"]] == ["metrics"]
    # The probes of the base's exporter: readiness keeps a shard out of the scalers' DNS answer until it has data.
    base = containers(render("with-servicemonitor"))["exporter"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert containers(objs)["exporter"][probe] == base[probe]


def test_the_scalers_are_a_deployment_behind_a_headless_service_on_separate_nodes():
    objs = render(SHARDED)
    scalers = workload_of(objs, "scaler")
    spec = scalers["spec"]
    assert scalers["kind"] == "Deployment" and spec["replicas"] >= 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0  # a rollout never takes the last scaler
    assert [c["name"] for c in spec["template"]["spec"]["containers"]] == ["scaler"]
    (term,) = spec["template"]["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    # Away from the other scaler pods (the Deployment's own selector), not from the shards.
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]
    assert not selects(spec["selector"]["matchLabels"], pod_labels(objs, "exporter"))
    service = service_named(objs, f"{APP}-scaler")
    assert service["spec"]["clusterIP"] == "None"
    assert selects(service["spec"]["selector"], pod_labels(objs, "scaler"))
    assert not selects(service["spec"]["selector"], pod_labels(objs, "exporter"))
    named = container_ports(objs)
    ports = {p["name"]: (p["port"], resolve_port(p["targetPort"], named)) for p in service["spec"]["ports"]}
    assert ports == {"grpc": (named["grpc"], named["grpc"]), "scaler-metrics": (9109, named["scaler-metrics"])}


def test_each_shard_pod_is_its_ordinal_of_replicas_through_the_exporters_own_parser(tmp_path):
    """The env as the kubelet fills it in for pod <statefulset>-<i> (the pod-index label present, or missing on
    clusters before 1.28), through the exporter's flag and env handling: shard i of `replicas`. A pod beyond the
    total -- replicas raised without the variable -- exits 2 instead of polling targets another shard owns."""
    objs = render(SHARDED)
    replicas, exporter = workload_of(objs, "exporter")["spec"]["replicas"], containers(objs)["exporter"]
    env = {e["name"]: e for e in exporter["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_INDEX"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}
    }
    assert env["HORIZON_EXPORTER_TOTAL_SHARDS"]["value"] == str(replicas)
    assert_each_shard_pod_is_its_ordinal(objs, tmp_path)


def assert_each_shard_pod_is_its_ordinal(objs: tuple[dict[str, Any], ...], tmp_path: Path) -> None:
    """Every pod of the shards' StatefulSet resolves, through the exporter's own config code, to shard i of
    `replicas`; one pod more fails at start."""
    shards = workload_of(objs, "exporter")
    replicas, exporter = shards["spec"]["replicas"], containers(objs)["exporter"]
    config_file = tmp_path / "config.yml"
    config_file.write_text(exporter_config(objs)["data"]["config.yml"])
    argv = [str(config_file) if a == flag(exporter["args"], "--config") else a for a in exporter["args"]]

    def downward(ordinal: int, label: bool) -> dict[str, str]:
        fields = {"metadata.name": f"{shards['metadata']['name']}-{ordinal}",
                  "metadata.labels['apps.kubernetes.io/pod-index']": str(ordinal) if label else ""}  # fmt: skip
        return {e["name"]: e["value"] if "value" in e else fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
                for e in exporter["env"]}  # fmt: skip

    for ordinal in range(replicas):
        for label in (True, False):
            config = resolve_config(exporter_parser().parse_args(argv), downward(ordinal, label))
            assert (config.shard, config.total_shards) == (ordinal, replicas), (ordinal, label)
    with pytest.raises(ConfigError, match="not below the total"):
        resolve_config(exporter_parser().parse_args(argv), downward(replicas, True))


def test_the_scalers_follow_every_shard_through_the_headless_service():
    """The scaler's args through its own parser: one `dns+` exporter naming the shards' headless Service in this
    namespace, on its port; the source that makes is the fan-in, not the sidecar's single feed."""
    objs = render(SHARDED)
    args = parse_args(containers(objs)["scaler"]["args"], {})
    (spec,) = args.exporter
    assert spec.dns and spec.scheme == "http" and spec.path == ""
    name, *domain = spec.host.split(".")
    service = service_named(objs, workload_of(objs, "exporter")["spec"]["serviceName"])
    assert name == service["metadata"]["name"]
    assert domain in ([], [APP], [APP, "svc"], [APP, "svc", "cluster", "local"])  # the scalers' own namespace
    assert spec.port == {p["name"]: p["port"] for p in service["spec"]["ports"]}["metrics"]
    assert args.max_connection_age > 0, "KEDA would never re-resolve the scalers' Service"
    assert 0 < args.resolve_interval <= 30
    assert isinstance(scaler_cli.make_source(args), FanInSource)


def rules_by_port(
    rules: list[dict[str, Any]], side: str
) -> dict[tuple[str, int], list[tuple[str | None, dict[str, str]]]]:
    """(protocol, port) -> the peers a policy's ingress (`from`) or egress (`to`) rules admit, each as (namespace,
    pod labels, empty for every pod); namespace None: a podSelector alone, the policy's own namespace."""
    admitted: dict[tuple[str, int], list[tuple[str | None, dict[str, str]]]] = {}
    for rule in rules:
        assert rule.get(side), f"a rule without `{side}` admits everyone"
        for peer in rule[side]:
            namespace = peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
            for port in rule["ports"]:
                admitted.setdefault((port["protocol"], port["port"]), []).append(
                    (namespace, peer.get("podSelector", {}).get("matchLabels", {}))
                )
    return admitted


def test_the_sharded_networkpolicies_admit_exactly_what_each_workload_needs():
    objs = render(SHARDED)
    named = container_ports(objs)
    prometheus = ("monitoring", {"app.kubernetes.io/name": "prometheus"})
    dns = [("kube-system", {"k8s-app": "kube-dns"})]
    exporter, scaler = policy_for(objs, "exporter")["spec"], policy_for(objs, "scaler")["spec"]
    assert sorted(exporter["policyTypes"]) == sorted(scaler["policyTypes"]) == ["Egress", "Ingress"]
    # Shards: Prometheus and the scalers (this namespace) on 9108; out, DNS and the Horizons.
    ingress = rules_by_port(exporter["ingress"], "from")
    ((namespace, peer),) = [p for p in ingress.pop(("TCP", named["metrics"])) if p != prometheus]
    assert namespace is None and selects(peer, pod_labels(objs, "scaler"))
    assert not selects(peer, pod_labels(objs, "exporter"))
    assert ingress == {}
    egress = rules_by_port(exporter["egress"], "to")
    assert egress.pop(("UDP", 53)) == egress.pop(("TCP", 53)) == dns
    assert {namespace for peers in egress.values() for namespace, _ in peers} == {"shop"}
    # Scalers: Prometheus on 9109, the KEDA operator on 6000; out, DNS and the shards' 9108 only.
    assert rules_by_port(scaler["ingress"], "from") == {
        ("TCP", named["scaler-metrics"]): [prometheus],
        ("TCP", named["grpc"]): [("keda", {"app": "keda-operator"})],
    }
    egress = rules_by_port(scaler["egress"], "to")
    assert egress.pop(("UDP", 53)) == egress.pop(("TCP", 53)) == dns
    ((namespace, peer),) = egress.pop(("TCP", named["metrics"]))
    assert namespace is None and selects(peer, pod_labels(objs, "exporter"))
    assert not selects(peer, pod_labels(objs, "scaler"))
    assert egress == {}


def test_the_podmonitors_scrape_every_shard_and_scaler_as_the_servicemonitor_does():
    """One target per pod, with the jobs, intervals and honorLabels the other overlays' ServiceMonitor gives the
    exporter (its Service's name) and the scaler (the job deploy/monitoring selects)."""
    objs = render(SHARDED)
    monitor = one(render("with-servicemonitor"), "ServiceMonitor")
    service = one(render("with-servicemonitor"), "Service")["metadata"]["name"]
    reference = {e["port"]: e for e in monitor["spec"]["endpoints"]}
    for container, port, job in (("exporter", "metrics", service), ("scaler", "scaler-metrics", SCALER_JOB)):
        (podmonitor,) = [o for o in objs if o["kind"] == "PodMonitor"
                         and selects(o["spec"]["selector"]["matchLabels"], pod_labels(objs, container))]  # fmt: skip
        (endpoint,) = podmonitor["spec"]["podMetricsEndpoints"]
        assert endpoint["port"] == port and port in {p["name"] for p in containers(objs)[container]["ports"]}
        assert endpoint["relabelings"] == [{"action": "replace", "targetLabel": "job", "replacement": job}]
        same = ("path", "interval", "scrapeTimeout", "honorLabels")
        assert {k: endpoint.get(k) for k in same} == {k: reference[port].get(k) for k in same}, container
    assert len([o for o in objs if o["kind"] == "PodMonitor"]) == 2


def test_the_sharded_example_is_the_push_example_through_dns():
    """The same ScaledObject as (a), its scalerAddress `dns:///` to the sharded install's scaler Service (KEDA's
    resolver then round-robins over every scaler pod); the other examples keep the sidecar's address."""
    files = {name: so for name, so in examples("ScaledObject")}
    sharded, push = (
        copy.deepcopy(files["scaledobject-sharded.yaml"]),
        copy.deepcopy(files["scaledobject-external-push.yaml"]),
    )
    (trigger,) = sharded["spec"]["triggers"]
    service = service_named(render(SHARDED), f"{APP}-scaler")
    grpc = {p["name"]: p["port"] for p in service["spec"]["ports"]}["grpc"]
    assert trigger["metadata"].pop("scalerAddress") == f"dns:///{APP}-scaler.{APP}.svc.cluster.local:{grpc}"
    del push["spec"]["triggers"][0]["metadata"]["scalerAddress"]
    assert sharded == push
    others = [t["metadata"]["scalerAddress"] for name, t in EXTERNAL_TRIGGERS if name != "scaledobject-sharded.yaml"]
    assert others and not [a for a in others if a.startswith("dns:")]


# --- the Prometheus path -----------------------------------------------------------------------------------


def prometheus_query() -> str:
    (trigger,) = [t for _, so in examples("ScaledObject") for t in so["spec"]["triggers"] if t["type"] == "prometheus"]
    return trigger["metadata"]["query"]


def test_prometheus_example_query_parses(tmp_path):
    promtool = require_binary("promtool")
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({
        "groups": [{"name": "example", "rules": [{"record": "horizon:orders_processes", "expr": prometheus_query()}]}]
    }))  # fmt: skip
    out = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


async def instant_query(session: aiohttp.ClientSession, base: str, promql: str) -> list[dict[str, Any]]:
    """What KEDA's prometheus scaler sends: GET /api/v1/query?query=… (an instant query)."""
    async with session.get(f"{base}/api/v1/query", params={"query": promql}) as resp:
        body = await resp.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


async def test_prometheus_example_query_returns_the_microservice_count(horizon, make_exporter, tmp_path):
    """Two scrape jobs stand for the Deployment's two replicas: the raw selector then returns two series (KEDA
    would fail with "multiple elements"), the example's query exactly one, with the microservice's count."""
    require_binary("prometheus")  # skip (or fail under CI) before any setup
    _, url = horizon
    client = await make_exporter(Config(targets=(fixed_target("orders", url),), poll_interval=0.2))
    await wait_for(client, lambda s: s.targets["orders"].up)
    target = f"127.0.0.1:{client.port}"
    jobs = {f"replica-{i}": [target] for i in (1, 2)}  # two exporter replicas: two series of the same count
    async with real_prometheus(tmp_path, jobs) as prom:
        base = prom.base
        async with aiohttp.ClientSession() as session:
            raw: list[dict[str, Any]] = []
            selector = 'horizon_microservice_processes{microservice="orders"}'
            async with asyncio.timeout(60):
                while len(raw) < 2:
                    await asyncio.sleep(0.5)
                    try:
                        raw = await instant_query(session, base, selector)
                    except aiohttp.ClientConnectionError:
                        prom.assert_alive()
            (series,) = await instant_query(session, base, prometheus_query())
            assert float(series["value"][1]) == 9.0  # tests/payloads.py: orders runs 9 processes
            missing = prometheus_query().replace('"orders"', '"no-such-microservice"')
            assert await instant_query(session, base, missing) == []  # → an error in KEDA, not 0


def test_the_documented_scrape_job_keeps_exactly_the_scaler_metrics_port():
    """docs/deploy.md's job for annotation-driven Prometheus: pod discovery in the namespace the overlays install
    to, keeping only the container port the Deployment names `scaler-metrics`. (Debian's promtool is built without
    Kubernetes service discovery, so `promtool check config` cannot parse it here; the shape is checked instead.)"""
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", (REPO / "docs" / "deploy.md").read_text(), re.S)
                if b.startswith("# prometheus.yml: scrape_configs")]  # fmt: skip
    (job,) = yaml.safe_load(block)
    assert set(job) == {"job_name", "scrape_interval", "honor_labels", "kubernetes_sd_configs", "relabel_configs"}
    # The job name and honor_labels the ServiceMonitor gives the scaler (deploy/monitoring's rules rely on both).
    assert (job["job_name"], job["honor_labels"]) == (SCALER_JOB, True)
    (sd,) = job["kubernetes_sd_configs"]
    assert sd == {"role": "pod", "namespaces": {"names": [APP]}}
    keep = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    assert [(r["source_labels"], r["regex"]) for r in keep] == [(["__meta_kubernetes_pod_container_port_name"],
                                                                 "scaler-metrics")]  # fmt: skip
    for overlay in OVERLAYS:
        objs = render(overlay)
        assert container_ports(objs)["scaler-metrics"] == 9109
        assert {o["metadata"].get("namespace") for o in objs if o["kind"] == "Deployment"} == {APP}


# --- the scaler's own parser -------------------------------------------------------------------------------


EXTERNAL_TRIGGERS = [
    (name, t) for name, so in examples("ScaledObject")
    for t in so["spec"]["triggers"] if t["type"].startswith("external")
]  # fmt: skip


def test_both_push_examples_are_checked_by_the_parser():
    assert len(EXTERNAL_TRIGGERS) >= 2  # (a) and its mTLS variant


@pytest.mark.parametrize("name_trigger", EXTERNAL_TRIGGERS, ids=lambda x: x[0])
def test_external_trigger_metadata_passes_the_scalers_parser(name_trigger):
    """The exact map KEDA forwards as scalerMetadata, through the scaler's own parser."""
    metadata = pytest.importorskip(
        "external_scaler.metadata", reason="external_scaler/metadata.py (issue 3) is not written yet"
    )
    name, trigger = name_trigger
    parsed = metadata.parse_metadata(dict(trigger["metadata"]))
    assert (parsed.microservice, parsed.metric, parsed.threshold) == ("orders", "processes", 8.0), name


# --- docs/deploy.md's own overlay ---------------------------------------------------------------------------


def doc_files(prefix: str, doc: str = "deploy.md") -> dict[str, str]:
    """Fenced YAML blocks of docs/<doc> (also indented ones, in lists) whose first line is `# <prefix>/<file>`:
    file name -> content."""
    text = (REPO / "docs" / doc).read_text()
    blocks = [textwrap.dedent(m[2]) for m in re.finditer(r"^( *)```yaml\n(.*?)^\1```", text, re.S | re.M)]
    return {b.split("\n", 1)[0][len(f"# {prefix}/") :]: b for b in blocks if b.startswith(f"# {prefix}/")}


def render_documented(tmp_path: Path, prefix: str, files: dict[str, str]) -> tuple[dict[str, Any], ...]:
    """A user overlay of docs/deploy.md, rendered next to a copy of deploy/ as its `../deploy` paths expect, with
    its built-in objects validated."""
    kubectl = require_binary("kubectl")
    shutil.copytree(DEPLOY, tmp_path / "deploy", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (tmp_path / prefix).mkdir()
    for name, content in files.items():
        (tmp_path / prefix / name).write_text(content)
    out = subprocess.run([kubectl, "kustomize", str(tmp_path / prefix)], capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    objs = tuple(d for d in yaml.safe_load_all(out.stdout) if d)
    for obj in objs:
        if not is_custom(obj):
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    return objs


def test_the_documented_user_overlay_renders_and_retargets(tmp_path):
    files = doc_files("my-overlay")
    assert set(files) == {"kustomization.yaml", "config.yml"}
    objs = render_documented(tmp_path, "my-overlay", files)
    assert {c["image"] for c in containers(objs).values()} == {"registry.example.com/platform/horizon-keda:0.1.0"}
    config = validate(parse_config(yaml.safe_load(exporter_config(objs)["data"]["config.yml"]), "config.yml", {}))
    assert config.targets[0].name == "core.laravel.svc.cluster.local/horizon"
    egress_namespaces = {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for rule in one(objs, "NetworkPolicy")["spec"]["egress"] for peer in rule["to"]
    }  # fmt: skip
    assert egress_namespaces == {"kube-system", "laravel"}
    assert one(objs, "ServiceMonitor")["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def doc_certificate() -> dict[str, Any]:
    (text,) = doc_files("cert-manager").values()
    return yaml.safe_load(text)


def test_the_documented_certificate_names_what_prometheus_and_the_sidecar_verify():
    """cert-manager's CRDs are not among tests/schemas: checked here is what the manifests depend on."""
    certificate, objs = doc_certificate(), render(HARDENED)
    assert (certificate["apiVersion"], certificate["kind"]) == ("cert-manager.io/v1", "Certificate")
    assert certificate["metadata"]["namespace"] == APP
    config = web_config(objs)
    assert config is not None and config.tls is not None and config.tls.cert_file is not None
    volume, _ = mounted(objs, containers(objs)["exporter"], config.tls.cert_file)
    assert certificate["spec"]["secretName"] == volume["secret"]["secretName"]
    names = set(certificate["spec"]["dnsNames"])
    endpoint = exporter_endpoint(objs)
    assert endpoint["tlsConfig"]["serverName"] in names
    assert urlsplit(flag(containers(objs)["scaler"]["args"], "--exporter")).hostname in names
    assert "server auth" in certificate["spec"]["usages"]


def test_the_documented_hardened_overlay_without_the_operator_renders(tmp_path):
    files = doc_files("my-hardened-overlay")
    assert set(files) == {"kustomization.yaml"}
    objs = render_documented(tmp_path, "my-hardened-overlay", files)
    assert "ServiceMonitor" not in {o["kind"] for o in objs}
    assert_speaks_what_the_exporter_serves(objs)
    assert has_flag(containers(objs)["scaler"]["args"], "--tls-client-ca")


def test_the_documented_sharded_overlay_reshards_through_the_file(tmp_path):
    """docs/scale-out.md's overlay: the total from config.yml instead of the variable, a ConfigMap without a content
    hash (edits reach the pods as a reload, not a rollout), and still shard i of `replicas` in every pod."""
    files = doc_files("my-sharded-overlay", "scale-out.md")
    assert set(files) == {"kustomization.yaml", "config.yml"}
    objs = render_documented(tmp_path, "my-sharded-overlay", files)
    exporter = containers(objs)["exporter"]
    assert "HORIZON_EXPORTER_TOTAL_SHARDS" not in {e["name"] for e in exporter["env"]}
    assert {e["name"] for e in exporter["env"]} == {"POD_NAME", "POD_INDEX"}
    configmap = exporter_config(objs)
    assert configmap["metadata"]["name"] == f"{APP}-config"
    volumes = {v["name"]: v for v in pod_spec(objs, "exporter")["volumes"]}
    assert volumes["config"]["configMap"]["name"] == f"{APP}-config"
    replicas = workload_of(objs, "exporter")["spec"]["replicas"]
    assert yaml.safe_load(configmap["data"]["config.yml"])["sharding"]["total_shards"] == replicas != 3
    assert_each_shard_pod_is_its_ordinal(objs, tmp_path)


def test_the_documented_scrape_job_passes_promtool_and_matches_the_pod(tmp_path):
    """The job a Prometheus without the Operator needs: valid for Prometheus, keeping exactly the exporter's
    port of these pods, verifying a name the certificate carries, as a user the web config knows."""
    promtool = require_binary("promtool")
    (text,) = doc_files("prometheus").values()
    job = yaml.safe_load(text)
    # Debian's Prometheus is built without Kubernetes service discovery, so promtool checks the rest of the job
    # with the discovery block swapped for a static one; the block itself is checked below.
    checked = {k: v for k, v in job.items() if k != "kubernetes_sd_configs"}
    checked["static_configs"] = [{"targets": ["127.0.0.1:9108"]}]
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump({"scrape_configs": [checked]}))
    out = subprocess.run([promtool, "check", "config", "--syntax-only", str(config_file)], capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    objs = render(HARDENED)
    config = web_config(objs)
    assert config is not None
    assert job["scheme"] == "https" and job["tls_config"]["server_name"] in doc_certificate()["spec"]["dnsNames"]
    assert job["basic_auth"]["username"] in config.users and set(job["basic_auth"]) == {"username", "password_file"}
    (sd,) = job["kubernetes_sd_configs"]
    assert sd["role"] == "pod" and sd["namespaces"]["names"] == [one(objs, "Deployment")["metadata"]["namespace"]]
    (keep,) = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    labels = one(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    kept = []
    for port in container_ports(objs):
        meta = {"__meta_kubernetes_pod_label_app_kubernetes_io_name": labels["app.kubernetes.io/name"],
                "__meta_kubernetes_pod_container_port_name": port}  # fmt: skip
        if re.fullmatch(keep["regex"], keep.get("separator", ";").join(meta[k] for k in keep["source_labels"])):
            kept.append(port)
    assert kept == ["metrics"]


# --- headroom ---------------------------------------------------------------------------------------------


def test_headroom_renders_valid_placeholders_that_real_pods_preempt():
    out = subprocess.run([require_binary("kubectl"), "kustomize", str(DEPLOY / "headroom")], capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    objs = tuple(d for d in yaml.safe_load_all(out.stdout) if d)
    assert sorted(o["kind"] for o in objs) == ["Deployment", "Namespace", "PriorityClass"]
    for obj in objs:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    priority = one(objs, "PriorityClass")
    assert priority["value"] == -10, "the lowest priority that still makes the cluster autoscaler add a node"
    assert priority["globalDefault"] is False
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == priority["metadata"]["name"]
    assert pod["terminationGracePeriodSeconds"] == 0, "preempted placeholders must free the room at once"
    (container,) = pod["containers"]
    assert container["resources"]["requests"]["cpu"] and container["securityContext"]["readOnlyRootFilesystem"]
    assert pod["securityContext"]["runAsNonRoot"] is True
