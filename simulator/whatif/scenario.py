"""A what-if scenario file (YAML) read into frozen dataclasses; every key checked, every error naming its path.

docs/whatif.md documents every key, its default and its source.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from .. import hpa
from ..cluster import NodePolicy
from ..keda import FALLBACK_BEHAVIORS, Fallback, ScaledObject
from .dist import KINDS, Dist
from .loads import LoadError, LoadSpec, parse_load

PIPELINE_KINDS = ("seed", "pull", "push", "oracle")
FAULT_KINDS = ("metrics_down", "horizon_down")
PROVISIONERS = ("cluster-autoscaler", "karpenter")
METRICS = ("processes", "queueLength", "waitSeconds")
MODES = ("reached", "average")
METRIC_TYPES = ("AverageValue", "Value")


POD_START = Dist("fixed", 5.0)  # the pod start-up SLO's p99 (image cached), Horizon's supervisors included
CA_NODE_START = Dist("uniform", low=180.0, high=240.0)  # "3 to 4 minutes from CA request" (cluster-autoscaler FAQ)


class ScenarioError(ValueError):
    """A scenario problem: `path: what is wrong`."""


@dataclass(frozen=True, slots=True)
class HorizonSpec:
    """One Horizon supervisor per pod, one queue: Horizon's balancing options (per pod)."""

    min_processes: int = 1
    max_processes: int = 10
    balance: str = "auto"
    balance_cooldown: int = 3
    balance_max_shift: int = 1
    worker_sleep: float = 3.0
    start: str = "max"


@dataclass(frozen=True, slots=True)
class PodSpec:
    cpu: float = 0.5
    start: Dist = POD_START


@dataclass(frozen=True, slots=True)
class ScalingSpec:
    """The ScaledObject (and the HPA KEDA makes of it) for one microservice."""

    min_replicas: int = 1
    max_replicas: int = 100
    threshold: float = 8.0
    threshold_mode: str = "reached"
    metric: str = "processes"
    activation_threshold: float = 0.0
    metric_type: str = "AverageValue"
    polling_interval: float = 30.0
    cooldown_period: float = 300.0
    initial_cooldown_period: float = 0.0
    idle_replicas: int | None = None
    use_cached_metrics: bool = False
    fallback: Fallback | None = None
    behavior: hpa.Behavior | None = None

    def scaled_object(self) -> ScaledObject:
        return ScaledObject(self.min_replicas, self.max_replicas, self.idle_replicas, self.cooldown_period,
                            self.initial_cooldown_period, self.fallback)  # fmt: skip


@dataclass(frozen=True, slots=True)
class MicroserviceSpec:
    name: str
    job: Dist
    load: LoadSpec
    horizon: HorizonSpec = HorizonSpec()
    pod: PodSpec = PodSpec()
    scaling: ScalingSpec = ScalingSpec()
    initial_replicas: int | None = None

    @property
    def start_replicas(self) -> int:
        return self.scaling.min_replicas if self.initial_replicas is None else self.initial_replicas


@dataclass(frozen=True, slots=True)
class Headroom:
    """Placeholder pods of a priority class below every real pod (the usual overprovisioning setup)."""

    pods: int = 0
    cpu: float = 0.5


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    node_cpu: float = 4.0
    initial_nodes: int = 2
    min_nodes: int | None = None
    max_nodes: int = 50
    provisioner: str = "cluster-autoscaler"
    node_start: Dist = CA_NODE_START
    scan_interval: float = 10.0
    batch_idle: float = 1.0
    batch_max: float = 10.0
    scale_down_unneeded: float = 600.0
    scale_down_delay_after_add: float = 600.0
    scale_down_utilization: float = 0.5
    headroom: Headroom = Headroom()
    preemption_seconds: float = 0.0

    @property
    def floor_nodes(self) -> int:
        return self.initial_nodes if self.min_nodes is None else self.min_nodes

    def node_policy(self) -> NodePolicy:
        """The cluster model's settings (the same fields, `min_nodes` resolved)."""
        return NodePolicy(self.node_cpu, self.initial_nodes, self.floor_nodes, self.max_nodes, self.provisioner,
                          self.scan_interval, self.batch_idle, self.batch_max, self.scale_down_unneeded,
                          self.scale_down_delay_after_add, self.scale_down_utilization,
                          self.preemption_seconds)  # fmt: skip


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    """One way of getting the metric to KEDA and the HPA; unset fields follow the microservice's own settings."""

    name: str
    kind: str
    scrape_interval: float = 60.0
    ignore_null_values: bool = True
    lookback_delta: float = 300.0
    poll_interval: float = 1.0
    max_staleness: float = 10.0
    push_delay: float = 0.05
    horizon_lag: int = 1
    hpa_sync: float = hpa.SYNC_PERIOD
    threshold_mode: str | None = None
    polling_interval: float | None = None
    use_cached_metrics: bool | None = None


@dataclass(frozen=True, slots=True)
class FaultSpec:
    kind: str
    start: float
    end: float
    microservice: str | None = None


@dataclass(frozen=True, slots=True)
class KubernetesSpec:
    tolerance: float = hpa.TOLERANCE
    downscale_stabilization: float = hpa.DOWNSCALE_STABILIZATION


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    duration: int
    seed: int
    slo_wait_seconds: float
    microservices: tuple[MicroserviceSpec, ...]
    cluster: ClusterSpec
    pipelines: tuple[PipelineSpec, ...]
    faults: tuple[FaultSpec, ...] = ()
    kubernetes: KubernetesSpec = KubernetesSpec()
    description: str = ""
    base_dir: Path = field(default=Path("."), compare=False)


# -- reading ---------------------------------------------------------------------------------------------------


class _Map:
    """A mapping being read: `take` pops known keys; `done` refuses what is left."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, Mapping):
            raise ScenarioError(f"{path or 'scenario'}: expected a mapping, got {_kind(data)}")
        self.data = dict(data)
        self.path = path
        self.known: list[str] = []

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def take(self, key: str, default: Any = None) -> Any:
        self.known.append(key)
        return self.data.pop(key, default)

    def done(self) -> None:
        for key in self.data:
            raise ScenarioError(f"{self.at(str(key))}: unknown key; expected one of {', '.join(self.known)}")


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "true/false", type(None): "nothing"}.get(
        type(value), type(value).__name__
    )


def _number(m: _Map, key: str, default: float, *, minimum: float = 0.0, positive: bool = False) -> float:
    value = m.take(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScenarioError(f"{m.at(key)}: expected a number, got {value!r}")
    if value < minimum or (positive and value <= 0):
        raise ScenarioError(f"{m.at(key)}: expected a number {'>' if positive else '≥'} {minimum:g}, got {value!r}")
    return float(value)


def _int(m: _Map, key: str, default: int | None, *, minimum: int = 0) -> int | None:
    value = m.take(key, default)
    if value is None and default is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ScenarioError(f"{m.at(key)}: expected a whole number ≥ {minimum}, got {value!r}")
    return value


def _required_int(m: _Map, key: str, minimum: int) -> int:
    if m.data.get(key) is None:
        m.take(key)
        raise ScenarioError(f"{m.at(key)}: required, a whole number ≥ {minimum}")
    value = _int(m, key, None, minimum=minimum)
    assert value is not None
    return value


def _choice(m: _Map, key: str, default: Any, choices: tuple[Any, ...]) -> Any:
    value = m.take(key, default)
    if value not in choices:
        expected = ", ".join(str(c) for c in choices if c is not None)
        raise ScenarioError(f"{m.at(key)}: expected one of {expected}, got {value!r}")
    return value


def _optional_number(m: _Map, key: str, *, minimum: float) -> float | None:
    """A number ≥ `minimum`, or None when the key is absent or null (the pipeline then follows the microservice)."""
    if m.data.get(key) is None:
        m.take(key)
        return None
    return _number(m, key, minimum, minimum=minimum)


def _bool(m: _Map, key: str, default: bool | None) -> bool | None:
    value = m.take(key, default)
    if value is not None and not isinstance(value, bool):
        raise ScenarioError(f"{m.at(key)}: expected true or false, got {value!r}")
    return value


def parse_dist(value: Any, path: str, *, default_kind: str = "fixed") -> Dist:
    """A number (fixed, or the mean of `default_kind`) or `{dist, mean, cv, low, high}`."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0 or not math.isfinite(value):
            raise ScenarioError(f"{path}: expected seconds ≥ 0, got {value!r}")
        return Dist(default_kind, float(value))
    m = _Map(value, path)
    kind = _choice(m, "dist", default_kind, KINDS)
    if kind == "uniform":
        low, high = _number(m, "low", 0.0), _number(m, "high", 0.0)
        if high < low:
            raise ScenarioError(f"{m.at('high')}: expected ≥ low ({low:g}), got {high:g}")
        m.done()
        return Dist(kind, low=low, high=high)
    mean = _number(m, "mean", 0.0, positive=kind != "fixed")
    cv = _number(m, "cv", 1.0, positive=True) if kind in ("lognormal", "gamma") else 1.0
    m.done()
    return Dist(kind, mean, cv)


def _horizon(value: Any, path: str, base: HorizonSpec) -> HorizonSpec:
    m = _Map(value or {}, path)
    h = HorizonSpec(
        min_processes=_int(m, "min_processes", base.min_processes, minimum=1),
        max_processes=_int(m, "max_processes", base.max_processes, minimum=1),
        balance=_choice(m, "balance", base.balance, ("auto", "off", "simple")),
        balance_cooldown=_int(m, "balance_cooldown", base.balance_cooldown, minimum=1),
        balance_max_shift=_int(m, "balance_max_shift", base.balance_max_shift, minimum=1),
        worker_sleep=_number(m, "worker_sleep", base.worker_sleep),
        start=_choice(m, "start", base.start, ("max", "midpoint")),
    )
    m.done()
    if h.max_processes < h.min_processes:
        raise ScenarioError(
            f"{path}.max_processes: expected ≥ min_processes ({h.min_processes}), got {h.max_processes}"
        )
    return h


def _pod(value: Any, path: str, base: PodSpec) -> PodSpec:
    m = _Map(value or {}, path)
    cpu = _number(m, "cpu", base.cpu, positive=True)
    raw = m.take("start_seconds")
    start = base.start if raw is None else parse_dist(raw, m.at("start_seconds"))
    m.done()
    return PodSpec(cpu, start)


def _rules(value: Any, path: str) -> hpa.Rules:
    m = _Map(value or {}, path)
    window = m.take("stabilization_window_seconds")
    if window is not None and (isinstance(window, bool) or not isinstance(window, int | float) or window < 0):
        raise ScenarioError(f"{m.at('stabilization_window_seconds')}: expected seconds ≥ 0, got {window!r}")
    select = m.take("select_policy")
    if select is not None and select not in hpa.SELECT_POLICIES:
        raise ScenarioError(
            f"{m.at('select_policy')}: expected one of {', '.join(hpa.SELECT_POLICIES)}, got {select!r}"
        )
    raw_policies = m.take("policies")
    policies = None
    if raw_policies is not None:
        if not isinstance(raw_policies, list):
            raise ScenarioError(f"{m.at('policies')}: expected a list, got {_kind(raw_policies)}")
        policies = []
        for i, raw in enumerate(raw_policies):
            p = _Map(raw, f"{m.at('policies')}[{i}]")
            policies.append(hpa.Policy(
                _choice(p, "type", "", hpa.POLICY_TYPES), _required_int(p, "value", 1),
                _required_int(p, "period_seconds", 1),
            ))  # fmt: skip
            p.done()
        policies = tuple(policies)
    tolerance = m.take("tolerance")
    if tolerance is not None and (
        isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or tolerance < 0
    ):
        raise ScenarioError(f"{m.at('tolerance')}: expected a number ≥ 0, got {tolerance!r}")
    m.done()
    return hpa.Rules(None if window is None else float(window), select, policies,
                     None if tolerance is None else float(tolerance))  # fmt: skip


def _scaling(value: Any, path: str, base: ScalingSpec, kube: KubernetesSpec) -> ScalingSpec:
    m = _Map(value or {}, path)
    s = ScalingSpec(
        min_replicas=_int(m, "min_replicas", base.min_replicas, minimum=0),
        max_replicas=_int(m, "max_replicas", base.max_replicas, minimum=1),
        threshold=_number(m, "threshold", base.threshold, positive=True),
        threshold_mode=_choice(m, "threshold_mode", base.threshold_mode, MODES),
        metric=_choice(m, "metric", base.metric, METRICS),
        activation_threshold=_number(m, "activation_threshold", base.activation_threshold),
        metric_type=_choice(m, "metric_type", base.metric_type, METRIC_TYPES),
        polling_interval=_number(m, "polling_interval", base.polling_interval, minimum=1),
        cooldown_period=_number(m, "cooldown_period", base.cooldown_period),
        initial_cooldown_period=_number(m, "initial_cooldown_period", base.initial_cooldown_period),
        idle_replicas=_int(m, "idle_replicas", base.idle_replicas, minimum=0),
        use_cached_metrics=bool(_bool(m, "use_cached_metrics", base.use_cached_metrics)),
    )
    raw_fallback = m.take("fallback")
    fallback = base.fallback
    if raw_fallback is not None:
        f = _Map(raw_fallback, m.at("fallback"))
        fallback = Fallback(
            _required_int(f, "failure_threshold", 0), _required_int(f, "replicas", 0),
            _choice(f, "behavior", "static", FALLBACK_BEHAVIORS),
        )  # fmt: skip
        f.done()
    raw_behavior = m.take("behavior")
    behavior = base.behavior
    if raw_behavior is not None:
        b = _Map(raw_behavior, m.at("behavior"))
        up, down = _rules(b.take("scale_up"), b.at("scale_up")), _rules(b.take("scale_down"), b.at("scale_down"))
        b.done()
        behavior = hpa.behavior(up, down, kube.downscale_stabilization)
    m.done()
    s = replace(s, fallback=fallback, behavior=behavior)
    if s.min_replicas > s.max_replicas:
        raise ScenarioError(f"{path}.min_replicas: expected ≤ max_replicas ({s.max_replicas}), got {s.min_replicas}")
    if s.idle_replicas is not None and s.idle_replicas >= max(s.min_replicas, 1):
        raise ScenarioError(f"{path}.idle_replicas: expected < min_replicas, got {s.idle_replicas}")
    return s


def _microservice(raw: Any, path: str, defaults: Mapping[str, Any], kube: KubernetesSpec, base_dir: Path):
    merged = {**defaults, **raw} if isinstance(raw, Mapping) else raw
    for key in ("horizon", "pod", "scaling"):
        if isinstance(raw, Mapping) and isinstance(defaults.get(key), Mapping) and isinstance(raw.get(key), Mapping):
            merged[key] = {**defaults[key], **raw[key]}
    m = _Map(merged, path)
    name = m.take("name")
    if not isinstance(name, str) or not name.strip():
        raise ScenarioError(f"{m.at('name')}: expected the microservice's name, got {name!r}")
    raw_job = m.take("job_seconds")
    if raw_job is None:
        raise ScenarioError(f"{m.at('job_seconds')}: expected the mean run time of a job in seconds, missing")
    job = parse_dist(raw_job, m.at("job_seconds"), default_kind="exponential")
    if job.expected <= 0:
        raise ScenarioError(f"{m.at('job_seconds')}: expected a mean > 0")
    raw_load = m.take("load")
    if raw_load is None:
        raise ScenarioError(f"{m.at('load')}: expected a load (points, a shape, a CSV or a Prometheus query), missing")
    try:
        load = parse_load(raw_load, m.at("load"), name, base_dir)
    except LoadError as exc:
        raise ScenarioError(str(exc)) from None
    spec = MicroserviceSpec(
        name=name, job=job, load=load,
        horizon=_horizon(m.take("horizon"), m.at("horizon"), HorizonSpec()),
        pod=_pod(m.take("pod"), m.at("pod"), PodSpec()),
        scaling=_scaling(m.take("scaling"), m.at("scaling"), ScalingSpec(), kube),
        initial_replicas=_int(m, "initial_replicas", None, minimum=0),
    )  # fmt: skip
    m.done()
    return spec


NODE_START = {  # provisioning delay defaults per provisioner; docs/whatif.md gives the sources
    "cluster-autoscaler": CA_NODE_START,
    "karpenter": Dist("lognormal", 35.0, 0.35),
}
UNNEEDED = {"cluster-autoscaler": 600.0, "karpenter": 15.0}  # Karpenter: consolidateAfter 0s + 15 s validation
UTILIZATION = {"cluster-autoscaler": 0.5, "karpenter": 1.0}  # Karpenter: any node whose pods fit elsewhere
DELAY_AFTER_ADD = {"cluster-autoscaler": 600.0, "karpenter": 0.0}


def _cluster(value: Any, path: str) -> ClusterSpec:
    m = _Map(value or {}, path)
    provisioner = _choice(m, "provisioner", "cluster-autoscaler", PROVISIONERS)
    raw_start = m.take("node_start_seconds")
    node_start = NODE_START[provisioner] if raw_start is None else parse_dist(raw_start, m.at("node_start_seconds"))
    raw_headroom = m.take("headroom")
    headroom = Headroom()
    if raw_headroom is not None:
        h = _Map(raw_headroom, m.at("headroom"))
        headroom = Headroom(_int(h, "pods", 0, minimum=0) or 0, _number(h, "cpu", 0.5, positive=True))
        h.done()
    c = ClusterSpec(
        node_cpu=_number(m, "node_cpu", 4.0, positive=True),
        initial_nodes=_int(m, "initial_nodes", 2, minimum=0) or 0,
        min_nodes=_int(m, "min_nodes", None, minimum=0),
        max_nodes=_int(m, "max_nodes", 50, minimum=1) or 1,
        provisioner=provisioner,
        node_start=node_start,
        scan_interval=_number(m, "scan_interval", 10.0, positive=True),
        batch_idle=_number(m, "batch_idle_seconds", 1.0),
        batch_max=_number(m, "batch_max_seconds", 10.0),
        scale_down_unneeded=_number(m, "scale_down_unneeded_seconds", UNNEEDED[provisioner]),
        scale_down_delay_after_add=_number(m, "scale_down_delay_after_add_seconds", DELAY_AFTER_ADD[provisioner]),
        scale_down_utilization=_number(m, "scale_down_utilization", UTILIZATION[provisioner]),
        headroom=headroom,
        preemption_seconds=_number(m, "preemption_seconds", 0.0),
    )
    m.done()
    if c.initial_nodes > c.max_nodes or c.floor_nodes > c.max_nodes:
        raise ScenarioError(f"{path}.max_nodes: expected ≥ initial_nodes and min_nodes, got {c.max_nodes}")
    return c


def _pipeline(name: str, raw: Any, path: str) -> PipelineSpec:
    m = _Map(raw or {}, path)
    kind = m.take("kind", name)
    if kind not in PIPELINE_KINDS:
        raise ScenarioError(f"{m.at('kind') if 'kind' in (raw or {}) else path}: expected a pipeline kind, one of "
                            f"{', '.join(PIPELINE_KINDS)}, got {kind!r}")  # fmt: skip
    spec = PipelineSpec(
        name=name, kind=kind,
        scrape_interval=_number(m, "scrape_interval", 60.0, positive=True),
        ignore_null_values=bool(_bool(m, "ignore_null_values", True)),
        lookback_delta=_number(m, "lookback_delta", 300.0, positive=True),
        poll_interval=_number(m, "poll_interval", 1.0, positive=True),
        max_staleness=_number(m, "max_staleness", 10.0, positive=True),
        push_delay=_number(m, "push_delay", 0.05),
        horizon_lag=_int(m, "horizon_lag_seconds", 1, minimum=0) or 0,
        hpa_sync=_number(m, "hpa_sync_seconds", hpa.SYNC_PERIOD, positive=True),
        threshold_mode=_choice(m, "threshold_mode", None, (None, *MODES)),
        polling_interval=_optional_number(m, "polling_interval", minimum=1),
        use_cached_metrics=_bool(m, "use_cached_metrics", None),
    )  # fmt: skip
    m.done()
    return spec


def _pipelines(value: Any) -> tuple[PipelineSpec, ...]:
    if value is None:
        return tuple(PipelineSpec(kind, kind) for kind in PIPELINE_KINDS)
    if isinstance(value, list):
        out = []
        for i, item in enumerate(value):
            if item not in PIPELINE_KINDS:
                raise ScenarioError(f"pipelines[{i}]: expected one of {', '.join(PIPELINE_KINDS)}, got {item!r} "
                                    "(use a mapping of name → {kind: …, overrides} for more)")  # fmt: skip
            out.append(PipelineSpec(item, item))
    elif isinstance(value, Mapping):
        out = [_pipeline(str(name), raw, f"pipelines.{name}") for name, raw in value.items()]
    else:
        raise ScenarioError(f"pipelines: expected a list or a mapping, got {_kind(value)}")
    names = [p.name for p in out]
    if not out or len(set(names)) != len(names):
        raise ScenarioError(f"pipelines: expected at least one, each named once, got {names}")
    return tuple(out)


def _faults(value: Any, duration: int, names: set[str]) -> tuple[FaultSpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ScenarioError(f"faults: expected a list, got {_kind(value)}")
    out = []
    for i, raw in enumerate(value):
        m = _Map(raw, f"faults[{i}]")
        kind = _choice(m, "kind", "", FAULT_KINDS)
        start, end = _number(m, "start", 0.0), _number(m, "end", float(duration))
        ms = m.take("microservice")
        m.done()
        if end <= start:
            raise ScenarioError(f"faults[{i}].end: expected > start ({start:g}), got {end:g}")
        if kind == "horizon_down" and ms not in names:
            raise ScenarioError(f"faults[{i}].microservice: expected one of {', '.join(sorted(names))}, got {ms!r}")
        if kind == "metrics_down" and ms is not None:
            raise ScenarioError(f"faults[{i}].microservice: metrics_down takes the whole exporter down; remove the key")
        out.append(FaultSpec(kind, start, end, ms))
    return tuple(out)


def parse_scenario(data: Any, name: str = "scenario", base_dir: Path = Path(".")) -> Scenario:
    """Validate a decoded scenario document; raises ScenarioError naming the key and what was expected."""
    m = _Map(data, "")
    duration = _int(m, "duration", None, minimum=1)
    if duration is None:
        raise ScenarioError("duration: expected the simulated seconds, missing")
    seed = _int(m, "seed", 1, minimum=0) or 0
    slo = _number(m, "slo_wait_seconds", 60.0)
    k = _Map(m.take("kubernetes") or {}, "kubernetes")
    kube = KubernetesSpec(
        _number(k, "tolerance", hpa.TOLERANCE), _number(k, "downscale_stabilization_seconds", 300.0)
    )  # fmt: skip
    k.done()
    defaults = m.take("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise ScenarioError(f"defaults: expected a mapping, got {_kind(defaults)}")
    raw_ms = m.take("microservices")
    if not isinstance(raw_ms, list) or not raw_ms:
        raise ScenarioError("microservices: expected a non-empty list")
    microservices = tuple(
        _microservice(raw, f"microservices[{i}]", defaults, kube, base_dir) for i, raw in enumerate(raw_ms)
    )
    names = [ms.name for ms in microservices]
    if len(set(names)) != len(names):
        raise ScenarioError(f"microservices: names must be unique, got {names}")
    scenario = Scenario(
        name=name, duration=duration, seed=seed, slo_wait_seconds=slo, microservices=microservices,
        cluster=_cluster(m.take("cluster"), "cluster"), pipelines=_pipelines(m.take("pipelines")),
        faults=_faults(m.take("faults"), duration, set(names)), kubernetes=kube,
        description=str(m.take("description", "") or ""), base_dir=base_dir,
    )  # fmt: skip
    m.done()
    return scenario


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    return parse_scenario(data, path.stem, path.resolve().parent)
