"""The demo fleet (topologies (a) and (b)) and the exporter configuration that watches it."""

from __future__ import annotations

from typing import Any

from .model import Fleet, HorizonSpec, MicroserviceSpec, PlaceholderSpec, QueueSpec, SupervisorSpec

SUPERVISOR_PATTERN = r"^(?P<microservice>[a-z0-9-]+)-worker$"
QUEUE_PATTERN = r"^(?P<microservice>[a-z]+)-"

Q, S = QueueSpec, SupervisorSpec

# Topology (a): one Horizon per microservice, each at /<microservice>/horizon.
ORDERS = MicroserviceSpec(
    "orders",
    queues=(Q("default", 0.6, 1.2, 16.0), Q("emails", 1.5, 0.2, 2.5, 0.02),
            Q("high", 0.4, 0.5, 5.0), Q("low", 2.0, 0.1, 1.2)),
    supervisors=(S("supervisor-1", ("default", "emails"), max_processes=6),
                 S("supervisor-priority", ("high", "low"), balance="", max_processes=3)),
    pods=2,
    placeholders=(PlaceholderSpec("supervisor-exports", ("exports",), "simple"),),
)  # fmt: skip
PAYMENTS = MicroserviceSpec(
    "payments",
    queues=(Q("default", 0.9, 0.4, 5.5), Q("webhooks", 0.3, 0.6, 4.0, 0.03)),
    supervisors=(S("supervisor-1", ("default", "webhooks"), max_processes=5, timeout=90),),
    ramp_delay=10.0,
)  # fmt: skip
SHIPPING = MicroserviceSpec(
    "shipping",
    queues=(Q("default", 1.2, 0.3, 3.0), Q("labels", 0.8, 0.3, 2.2)),
    supervisors=(S("supervisor-1", ("default", "labels"), max_processes=4, strategy="size"),),
    pods=2,
    placeholders=(PlaceholderSpec("supervisor-returns", ("returns",), False),),
    ramp_delay=30.0,
)  # fmt: skip

# Topology (b): one shared Horizon at /core/horizon; supervisors `<microservice>-worker`, queues `<microservice>-*`.
NOTIFICATIONS = MicroserviceSpec(
    "notifications",
    queues=(Q("notifications-mail", 0.7, 0.8, 9.0), Q("notifications-sms", 0.4, 0.3, 4.0, 0.02)),
    supervisors=(S("notifications-worker", ("notifications-mail", "notifications-sms"), max_processes=6),),
    pods=2,
    ramp_delay=20.0,
)  # fmt: skip
INVENTORY = MicroserviceSpec(
    "inventory",
    queues=(Q("inventory-sync", 0.5, 0.5, 6.0), Q("inventory-import", 3.0, 0.05, 0.6, 0.005)),
    supervisors=(S("inventory-worker", ("inventory-sync", "inventory-import"), max_processes=8, strategy="size"),),
    ramp_delay=5.0,
)  # fmt: skip
REPORTS = MicroserviceSpec(
    "reports",
    queues=(Q("reports-urgent", 1.0, 0.2, 1.5), Q("reports-batch", 4.0, 0.05, 0.5)),
    supervisors=(S("reports-worker", ("reports-urgent", "reports-batch"), balance="off", max_processes=5,
                   timeout=300, memory=256),),
    ramp_delay=45.0,
)  # fmt: skip
CORE = MicroserviceSpec(  # the shared Horizon's own pod: matches neither pattern, so it makes no microservice
    "core",
    queues=(Q("default", 0.2, 0.2, 0.4), Q("cron", 0.5, 0.05, 0.05)),
    supervisors=(S("scheduler", ("default", "cron"), balance="simple", max_processes=2),),
)  # fmt: skip

DEFAULT_FLEET: tuple[HorizonSpec, ...] = (
    HorizonSpec("orders", (ORDERS,)),
    HorizonSpec("payments", (PAYMENTS,)),
    HorizonSpec("shipping", (SHIPPING,)),
    HorizonSpec("core", (NOTIFICATIONS, INVENTORY, REPORTS, CORE)),
)


def default_fleet(seed: int = 0) -> Fleet:
    """The demo fleet at t = 0: quiet, every autoscaled pool at minProcesses."""
    return Fleet(DEFAULT_FLEET, seed)


def horizon_url(base_url: str, horizon: str) -> str:
    """Horizon's base URL (config('horizon.path')) for one simulated Horizon."""
    return f"{base_url.rstrip('/')}/{horizon}/horizon"


def exporter_targets(base_url: str, specs: tuple[HorizonSpec, ...] = DEFAULT_FLEET) -> list[dict[str, Any]]:
    """`targets:` entries of a horizon-exporter config for the fleet: (a) by name, (b) by supervisor pattern."""
    out: list[dict[str, Any]] = []
    for h in specs:
        url = horizon_url(base_url, h.name)
        if h.dedicated:
            out.append({"microservice": h.name, "url": url})
        else:
            out.append({"name": h.name, "url": url, "microservices_from": "supervisor", "pattern": SUPERVISOR_PATTERN})
    return out


def target_flags(base_url: str, specs: tuple[HorizonSpec, ...] = DEFAULT_FLEET) -> list[str]:
    """`--target NAME=URL` flags for the topology-(a) Horizons (a shared Horizon needs the YAML form)."""
    return [f"--target {h.name}={horizon_url(base_url, h.name)}" for h in specs if h.dedicated]


def whatif_microservices(scale: float = 1.0, factor: float = 1.0) -> list[dict[str, Any]]:
    """The demo fleet as what-if microservices: each one's queues merged into one (rates summed, the mean run time
    weighted by peak traffic), its supervisors into one (processes summed), on the same Black-Friday curve
    stretched `scale` times and carrying `factor` times the traffic. examples/whatif/ is built from this."""
    out = []
    for h in DEFAULT_FLEET:
        for ms in h.microservices:
            if ms.name == "core":
                continue  # the shared Horizon's own scheduler pod: no microservice of its own
            base = sum(q.base_rate for q in ms.queues)
            peak = sum(q.peak_rate for q in ms.queues)
            out.append({
                "name": ms.name,
                "job_seconds": round(sum(q.peak_rate * q.runtime for q in ms.queues) / peak, 3),
                "load": {"shape": "black_friday", "base": round(base * factor, 3), "peak": round(peak * factor, 3),
                         "scale": scale, "delay": ms.ramp_delay * scale},
                "horizon": {"min_processes": sum(s.min_processes * len(s.pools) for s in ms.supervisors),
                            "max_processes": sum(s.max_processes for s in ms.supervisors)},
                "initial_replicas": ms.pods,
            })  # fmt: skip
    return out


DEMO_MAX_REPLICAS = 8
DEMO_SCALE_DOWN_WINDOW = 60


def demo_scaling(ms: MicroserviceSpec) -> dict[str, Any]:
    """How `make run`'s simulated KEDA scales one demo microservice (the live loop and examples/whatif/demo.yml):
    one more pod each time the processes reach another pod's maxProcesses (thresholdMode reached), and a
    scale-down stabilization of 60 s instead of 300 s so the pods come back within the demo's 300 s cycle."""
    return {
        "min_replicas": ms.pods,
        "max_replicas": DEMO_MAX_REPLICAS,
        "threshold": sum(s.max_processes for s in ms.supervisors),
        "threshold_mode": "reached",
        "behavior": {"scale_down": {"stabilization_window_seconds": DEMO_SCALE_DOWN_WINDOW}},
    }


def demo_microservices() -> list[MicroserviceSpec]:
    """The demo microservices the live loop scales (the shared Horizon's own `core` pod is not one)."""
    return [ms for h in DEFAULT_FLEET for ms in h.microservices if ms.name != "core"]
