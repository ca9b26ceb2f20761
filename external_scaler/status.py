"""The status page's state document (docs/scaler.md, "Status page"): pure functions of the source's microservices,
the per-trigger book and a bounded ring of recent process counts per microservice; no I/O, clocks passed in."""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from .metadata import DEFAULT_THRESHOLD
from .metrics import TriggerKey, TriggerState

SAMPLE_INTERVAL = 1.0  # seconds between two samples of the sparkline
HISTORY_SAMPLES = 300  # 5 minutes at one sample a second, per microservice

Number = int | float


def number(value: Any) -> Number | None:
    """A finite JSON number as the page shows it (9.0 → 9), else None: the snapshot's values are tenant data."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else float(value)


class History:
    """The last `capacity` samples of each microservice's process count, one per `sample` call (a tick).

    Memory is bounded by capacity × the microservices of the latest sample: a microservice missing from a sample
    is dropped with its samples. `tick` counts the samples taken; `since` gives what came after a tick.
    """

    def __init__(self, capacity: int = HISTORY_SAMPLES) -> None:
        if capacity < 1:
            raise ValueError(f"capacity: expected at least 1, got {capacity}")
        self.capacity = capacity
        self.tick = 0
        self._rings: dict[str, deque[Number | None]] = {}

    def sample(self, values: Mapping[str, Number | None]) -> None:
        """Append one sample per microservice of `values` (None: unknown now); forget the others."""
        self.tick += 1
        rings = self._rings
        for name in [n for n in rings if n not in values]:
            del rings[name]
        for name, value in values.items():
            ring = rings.get(name)
            if ring is None:
                ring = rings[name] = deque(maxlen=self.capacity)
            ring.append(value)

    def names(self) -> Iterable[str]:
        return self._rings.keys()

    def since(self, name: str, after: int, upto: int | None = None) -> list[Number | None]:
        """The samples of `name` taken after tick `after` up to tick `upto` (default: the newest), oldest first."""
        ring = self._rings.get(name)
        upto = self.tick if upto is None else min(upto, self.tick)
        if ring is None or upto <= after:
            return []
        # The ring's last sample is tick self.tick, its first self.tick - len(ring) + 1.
        first = self.tick - len(ring) + 1
        start, end = max(after + 1, first), upto
        if end < start:
            return []
        return list(itertools.islice(ring, start - first, end - first + 1))


def _whole_processes(key: TriggerKey) -> bool:
    return key[3] == "processes" and not key[4]


def current_processes(
    microservices: Mapping[str, Mapping[str, Any]] | None, triggers: Mapping[TriggerKey, TriggerState]
) -> dict[str, Number | None]:
    """Each microservice's process count now: from the snapshot when the source has one, else (Prometheus) the
    last value a whole-microservice `processes` trigger read, for the microservices triggers ask about."""
    if microservices is not None:
        return {name: number(entry.get("processes")) for name, entry in microservices.items()}
    out: dict[str, Number | None] = {}
    for key, state in sorted(triggers.items()):
        name = key[2]
        if _whole_processes(key) and out.get(name) is None:
            out[name] = number(state.value)
        else:
            out.setdefault(name, None)
    return out


def _trigger(key: TriggerKey, state: TriggerState, wall: float, book_now: float) -> dict[str, Any]:
    namespace, scaled_object, _, metric, queue = key
    decided = None if state.decided_at is None else round(wall - (book_now - state.decided_at), 3)
    return {
        "namespace": namespace,
        "scaledobject": scaled_object,
        "metric": metric,
        "queue": queue or None,
        "value": number(state.value),
        "threshold": number(state.threshold),
        "activation_threshold": number(state.activation_threshold),
        "mode": state.mode,
        "active": state.active,
        "replicas_wanted": state.replicas,
        "decided_at": decided,
    }


def build_state(
    microservices: Mapping[str, Mapping[str, Any]] | None,
    triggers: Mapping[TriggerKey, TriggerState],
    *,
    now: float,
    book_now: float,
    fresh: bool,
    age: float | None,
    history: History,
) -> dict[str, Any]:
    """The state document without the per-microservice `history` (`message` adds it for one stream).

    `now` is wall time (Unix seconds) and `book_now` the trigger book's clock at the same moment: a trigger's
    `decided_at` is given in wall time. Per microservice: the summary of every trigger asking about it — the
    threshold of its whole-microservice `processes` trigger (the first by namespace and ScaledObject), else the
    default 8 marked `"threshold_from": "default"`; the most replicas any trigger wants and whether any is active
    (as KEDA and the HPA combine a ScaledObject's triggers); the latest decision.
    """
    by_name: dict[str, list[tuple[TriggerKey, TriggerState]]] = {}
    for key, state in sorted(triggers.items()):
        by_name.setdefault(key[2], []).append((key, state))
    processes = current_processes(microservices, triggers)
    out = []
    for name in sorted(processes):
        entry = microservices.get(name, {}) if microservices is not None else {}
        asking = by_name.get(name, [])
        main = next((s for k, s in asking if _whole_processes(k)), None)
        wanted = [s.replicas for _, s in asking if s.replicas is not None]
        actives = [s.active for _, s in asking if s.active is not None]
        listed = [_trigger(k, s, now, book_now) for k, s in asking]
        decided = [t["decided_at"] for t in listed if t["decided_at"] is not None]
        up, stale = entry.get("up"), entry.get("stale")
        out.append({
            "name": name,
            "processes": processes[name],
            "max_processes": number(entry.get("max_processes")),
            "up": up if isinstance(up, bool) else None,
            "stale": stale if isinstance(stale, bool) else None,
            "threshold": number(main.threshold) if main is not None else number(DEFAULT_THRESHOLD),
            "threshold_from": "scaledobject" if main is not None else "default",
            "replicas_wanted": max(wanted) if wanted else None,
            "active": any(actives) if actives else None,
            "decided_at": max(decided) if decided else None,
            "triggers": listed,
        })  # fmt: skip
    return {
        "generated_at": round(now, 3),
        "source": {"fresh": fresh, "age_seconds": None if age is None else round(max(0.0, age), 3)},
        "history": {"interval_seconds": SAMPLE_INTERVAL, "capacity": history.capacity, "tick": history.tick},
        "default_threshold": number(DEFAULT_THRESHOLD),
        "microservices": out,
    }


def message(state: Mapping[str, Any], history: History, *, version: int, after: int | None) -> dict[str, Any]:
    """One event of the stream: the whole `state` with each microservice's samples — all of them for the first
    event of a stream (`after` None, kind `state`), else those after tick `after`, which the page appends to what
    it holds (kind `update`)."""
    since, upto = (0 if after is None else after), state["history"]["tick"]
    return {
        "kind": "state" if after is None else "update",
        "version": version,
        **state,
        "microservices": [{**m, "history": history.since(m["name"], since, upto)} for m in state["microservices"]],
    }
