"""Immutable snapshots of every target's latest poll: target states, their pure transitions, the merged view.

The poller builds a new `TargetState` per poll (`advance`, pure) and hands it to the store (store.py); readers
(collector, snapshot API) take `store.current`, a `Snapshot`, and never see half an update. A sharded exporter's
snapshot holds the targets it owns and, for a while after a reshard, those it handed off (`handed_off`: polled and
in the snapshot, not in /metrics).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from types import MappingProxyType

from .horizon import HorizonReading, Stats
from .mapping import MicroserviceValues


@dataclass(frozen=True, slots=True)
class TargetError:
    """Why the latest poll of a target failed: a short `reason` (a metric label) and a readable message."""

    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """What one poll of a target produced: a mapped reading or an error, with timing."""

    started_at: float
    duration_seconds: float
    reading: HorizonReading | None = None
    microservices: Mapping[str, MicroserviceValues] | None = None
    error: TargetError | None = None


@dataclass(frozen=True, slots=True)
class TargetState:
    """The exporter's view of one target after its latest poll; values are the last good ones."""

    name: str
    url: str
    fixed_microservice: str | None
    attempts: int = 0
    up: bool = False
    last_attempt_at: float | None = None
    last_success_at: float | None = None
    duration_seconds: float | None = None
    error: TargetError | None = None
    errors_total: Mapping[str, int] = field(default_factory=dict)
    stats: Stats | None = None
    masters: Mapping[str, int] = field(default_factory=dict)
    microservices: Mapping[str, MicroserviceValues] = field(default_factory=dict)
    # Sharding (README "Sharding"): another shard owns the target since a reshard; this one still polls it until
    # its handoff grace ends. And: this shard took the target over in a reshard (until its first poll it is in the
    # snapshot, values null, but not in /metrics, where it would read as down).
    handed_off: bool = False
    gained: bool = False

    @property
    def stale(self) -> bool:
        """Values are kept from an earlier poll because the latest one failed."""
        return not self.up and self.last_success_at is not None and bool(self.microservices)


def reuse_unchanged(
    old: Mapping[str, MicroserviceValues], new: Mapping[str, MicroserviceValues]
) -> Mapping[str, MicroserviceValues]:
    """`new` as a read-only mapping in which values equal to `old`'s are `old`'s own objects (so an unchanged
    microservice keeps its identity and readers compare with `is`); `old` itself when nothing changed."""
    if new is old:
        return old
    merged = {
        name: (prev if (prev := old.get(name)) is not None and (prev is v or prev == v) else v)
        for name, v in new.items()
    }
    if len(merged) == len(old) and all(old.get(n) is v for n, v in merged.items()):
        return old
    return MappingProxyType(merged)


def advance(state: TargetState, outcome: PollOutcome, stale_after: float) -> TargetState:
    """The target's next state after `outcome`: a failure keeps the last good values, expired after `stale_after`."""
    now = outcome.started_at + outcome.duration_seconds
    if outcome.error is None and outcome.reading is not None and outcome.microservices is not None:
        masters: dict[str, int] = {"running": 0, "paused": 0}
        for master in outcome.reading.masters:
            masters[master.status] = masters.get(master.status, 0) + 1
        return replace(
            state,
            attempts=state.attempts + 1,
            up=True,
            last_attempt_at=outcome.started_at,
            last_success_at=outcome.started_at,
            duration_seconds=outcome.duration_seconds,
            error=None,
            stats=outcome.reading.stats if outcome.reading.stats != state.stats else state.stats,
            masters=masters if masters != state.masters else state.masters,
            microservices=reuse_unchanged(state.microservices, outcome.microservices),
        )
    error = outcome.error or TargetError("internal", "poll produced neither a reading nor an error")
    errors = dict(state.errors_total)
    errors[error.reason] = errors.get(error.reason, 0) + 1
    expired = state.last_success_at is None or now - state.last_success_at >= stale_after
    return replace(
        state,
        attempts=state.attempts + 1,
        up=False,
        last_attempt_at=outcome.started_at,
        duration_seconds=outcome.duration_seconds,
        error=error,
        errors_total=MappingProxyType(errors),
        stats=None if expired else state.stats,
        masters={} if expired else state.masters,
        microservices={} if expired else state.microservices,
    )


def expire(state: TargetState, now: float, stale_after: float) -> TargetState:
    """Drop a failing target's kept values once they are older than `stale_after`; otherwise return `state`."""
    if state.up or not state.microservices or state.last_success_at is None:
        return state
    if now - state.last_success_at < stale_after:
        return state
    return replace(state, stats=None, masters={}, microservices={})


def contributed(state: TargetState) -> tuple[str, ...]:
    """The microservice names a target puts in the snapshot: its fixed one (values or not) and every mapped one."""
    names = tuple(state.microservices)
    fixed = state.fixed_microservice
    if fixed is not None and fixed not in state.microservices:
        return (fixed, *names)
    return names


@dataclass(frozen=True, slots=True)
class MicroserviceEntry:
    """One microservice as readers see it: its target's health and, when known, its values."""

    name: str
    target: str
    up: bool
    stale: bool
    fetched_at: float | None
    values: MicroserviceValues | None
    handed_off: bool = False


def _entry(target: TargetState, name: str) -> MicroserviceEntry:
    """A microservice as readers see it: `up`, `stale` and `fetched_at` follow its target (docs/snapshot-api.md)."""
    values = target.microservices.get(name)
    return MicroserviceEntry(
        name=name,
        target=target.name,
        up=target.up,
        stale=target.stale and values is not None,
        fetched_at=target.last_success_at if values is not None else None,
        values=values,
        handed_off=target.handed_off,
    )


@dataclass(frozen=True)
class Snapshot:
    """Everything the exporter knows at one moment. Never mutated; the store swaps whole snapshots."""

    version: int
    generated_at: float
    targets: Mapping[str, TargetState]
    revision: int = 0
    owners: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    was_ready: bool = False
    shard: int = 0
    total_shards: int = 1

    @property
    def ready(self) -> bool:
        """Every owned target has been polled at least once — or every target of the starting config was (targets
        a reload or a reshard adds do not make a running exporter unready). Handed-off targets do not count."""
        return self.was_ready or all(t.attempts > 0 for t in self.targets.values() if not t.handed_off)

    @cached_property
    def microservices(self) -> Mapping[str, MicroserviceEntry]:
        """Microservices of all targets; when two targets name the same one, the first in config order wins (the
        store puts owned targets before handed-off ones)."""
        out: dict[str, MicroserviceEntry] = {}
        for target in self.targets.values():
            for name in contributed(target):
                if name not in out:
                    out[name] = _entry(target, name)
        return MappingProxyType(out)

    def entry(self, name: str) -> MicroserviceEntry | None:
        """One microservice's entry (as in `microservices`) without building the whole view."""
        owners = self.owners.get(name)
        return _entry(self.targets[owners[0]], name) if owners else None

    @cached_property
    def duplicate_microservices(self) -> tuple[str, ...]:
        """Microservice names that more than one owned target reports (only the first target's values are used)."""
        seen: dict[str, str] = {}
        dups: list[str] = []
        for target in self.targets.values():
            if target.handed_off:
                continue
            for name in target.microservices:
                if name in seen and seen[name] != target.name and name not in dups:
                    dups.append(name)
                seen.setdefault(name, target.name)
        return tuple(dups)
