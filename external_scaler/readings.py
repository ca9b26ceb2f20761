"""Pure reading of one trigger's value out of the exporter's snapshot document, with its failure kinds."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .metadata import Trigger


class Unavailable(Exception):
    """No trustworthy value right now (stale, unreachable, never fetched); KEDA gets UNAVAILABLE, never a 0."""


class Stale(Unavailable):
    """Unavailable because the newest data is older than --max-staleness (told apart in the scaler's metrics)."""


class NotFound(Exception):
    """The trigger names a microservice or queue the source does not know; KEDA gets NOT_FOUND."""


class UnknownMicroservice(NotFound):
    """The microservice itself is unknown (its message lists the known ones, which tenancy hides)."""


_MEMO_LIMIT = 1024


@dataclass(frozen=True, slots=True)
class Located:
    """What one trigger reads in one document, before the clock is consulted: either the value and its
    `fetched_at`, or the failure (its class and message; a fresh exception is raised each time, since re-raising
    one instance would grow its traceback on every call). `fetched_at` is None when the failure comes before the
    staleness check."""

    fetched_at: float | None
    value: float = math.nan
    failure: tuple[type[Exception], str] | None = None

    def at(self, trigger: Trigger, now: float, max_staleness: float) -> float:
        """The value at `now`, or NotFound / Unavailable exactly as `read_value` decides them."""
        if self.fetched_at is not None:
            age = now - self.fetched_at
            if age > max_staleness:
                raise Stale(f"{trigger.microservice}: data is {age:.1f}s old (max staleness {max_staleness:g}s)")
        if self.failure is not None:
            raise self.failure[0](self.failure[1])
        return self.value


@dataclass(frozen=True, slots=True)
class ExporterView:
    """One snapshot document as the scaler keeps it: its version, when it arrived, the microservices and the targets
    (which the fan-in reads for `handed_off`)."""

    version: int
    received_at: float
    microservices: Mapping[str, Mapping[str, Any]]
    # Memo of `locate` per trigger: the document never changes, so each call only does the staleness check.
    located: dict[Trigger, Located] = field(default_factory=dict, repr=False, compare=False)
    targets: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}), repr=False)


def parse_document(doc: Any, received_at: float) -> ExporterView:
    """Check the parts of a `/api/v1/snapshot` document the scaler relies on; raises ValueError otherwise."""
    if not isinstance(doc, dict):
        raise ValueError("snapshot document: expected a JSON object")
    version = doc.get("version")
    microservices = doc.get("microservices")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"snapshot document: version: expected an integer, got {version!r}")
    if not isinstance(microservices, dict) or not all(isinstance(v, dict) for v in microservices.values()):
        raise ValueError("snapshot document: microservices: expected an object of objects")
    return ExporterView(version=version, received_at=received_at, microservices=MappingProxyType(microservices))


def _number(value: Any, what: str) -> float:
    if value is None:
        raise Unavailable(f"{what} is unknown (null in the snapshot)")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Unavailable(f"{what}: expected a number in the snapshot, got {value!r}")
    return float(value)


def _queue_values(entry: Mapping[str, Any], trigger: Trigger, field: str) -> list[Any]:
    queues = entry.get("queues") or {}
    if trigger.queue is not None:
        if trigger.queue not in queues:
            known = ", ".join(sorted(queues)) or "none"
            raise NotFound(f"{trigger.microservice}: no queue {trigger.queue!r} (known queues: {known})")
        return [queues[trigger.queue].get(field)]
    if not queues:
        raise Unavailable(f"{trigger.subject}: no queues reported yet")
    return [q.get(field) for q in queues.values()]


def _value(entry: Mapping[str, Any], trigger: Trigger) -> float:
    if trigger.metric == "processes" and trigger.queue is None:
        return _number(entry.get("processes"), f"{trigger.microservice}: processes")
    key = {"processes": "processes", "queueLength": "length", "waitSeconds": "wait_seconds"}[trigger.metric]
    values = [_number(v, f"{trigger.subject}") for v in _queue_values(entry, trigger, key)]
    # Over all queues: backlog adds up; the wait is the longest any job faces.
    return max(values) if trigger.metric == "waitSeconds" else sum(values)


def locate(view: ExporterView, trigger: Trigger) -> Located:
    """Everything `read_value` decides without the clock, in the same order of precedence."""
    entry = view.microservices.get(trigger.microservice)
    if entry is None:
        known = ", ".join(sorted(view.microservices)) or "none"
        return Located(None, failure=(UnknownMicroservice, f"unknown microservice {trigger.microservice!r} "
                                                f"(the exporter reports: {known})"))  # fmt: skip
    raw = entry.get("fetched_at")
    if raw is None:
        return Located(None, failure=(Unavailable, f"{trigger.microservice}: never fetched from Horizon successfully"))
    try:
        fetched_at = _number(raw, "fetched_at")
    except Unavailable as exc:
        return Located(None, failure=(Unavailable, str(exc)))
    try:
        return Located(fetched_at, _value(entry, trigger))
    except (NotFound, Unavailable) as exc:
        return Located(fetched_at, failure=(type(exc), str(exc)))


def read_value(view: ExporterView, trigger: Trigger, now: float, max_staleness: float) -> float:
    """The trigger's current value from `view`; raises NotFound or Unavailable instead of guessing."""
    located = view.located.get(trigger)
    if located is None:
        located = locate(view, trigger)
        if len(view.located) < _MEMO_LIMIT:  # bounded even if a client invents microservice names
            view.located[trigger] = located
    return located.at(trigger, now, max_staleness)
