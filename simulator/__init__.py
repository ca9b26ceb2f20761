"""A simulated fleet of Laravel Horizons: a pure model, payload builders, and an aiohttp server (`make run`)."""

from .fleet import DEFAULT_FLEET, default_fleet, exporter_targets
from .model import Fleet, HorizonSpec, HorizonState, MicroserviceSpec, QueueSpec, SupervisorSpec
from .payloads import horizon_payloads, masters_payload, stats_payload, workload_payload

__all__ = [
    "DEFAULT_FLEET",
    "Fleet",
    "HorizonSpec",
    "HorizonState",
    "MicroserviceSpec",
    "QueueSpec",
    "SupervisorSpec",
    "default_fleet",
    "exporter_targets",
    "horizon_payloads",
    "masters_payload",
    "stats_payload",
    "workload_payload",
]
