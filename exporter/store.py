"""The store of every target's latest state: a revision per poll, a version per visible change, a change log.

`update` takes a target's new state. Every update makes a new *revision* (freshness advances: `/metrics` and a
full `/api/v1/snapshot` show it at once). Only an update a reader can see — a value, up/down, an error, a
microservice appearing or leaving — makes a new *version*, and visible changes landing within `coalesce` seconds
of each other make one: long-polls wake on versions, not on polls. The change log says which targets and
microservices changed after a revision, so the snapshot API can answer with a delta (docs/snapshot-api.md).
A sharded exporter's reshard is a `replace_targets` like a reload: targets gained join, targets given away are
kept with `handed_off` set (after the owned ones, so an owned target wins a microservice both report) until the
poller drops them.
"""

from __future__ import annotations

import asyncio
import secrets
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .snapshot import Snapshot, TargetState, contributed

COALESCE_SECONDS = 0.005
HISTORY = 100_000  # change-log entries kept at most (a target or microservice name each); older deltas become full
# ... and only those of the last two minutes: twice the longest long-poll, which is as far behind as a follower
# gets. Without it a small fleet filled the log for minutes (200 targets: 8 minutes, +20 MB of RSS; bench/soak.py).
HISTORY_SECONDS = 120.0


def only_fresher(old: TargetState, new: TargetState) -> bool:
    """Whether the snapshot document's target object differs only in its poll times and duration."""
    return old.url == new.url and old.errors_total == new.errors_total and not visibly_differs(old, new)


def visibly_differs(old: TargetState, new: TargetState) -> bool:
    """Whether a reader sees a difference apart from freshness (times, durations, counters); microservice values
    are compared by the caller."""
    return (
        old.up != new.up
        or old.handed_off != new.handed_off
        or (old.attempts == 0) != (new.attempts == 0)
        or old.error != new.error
        or old.stats != new.stats
        or old.masters != new.masters
    )


def _unpolled(states: Iterable[TargetState]) -> int:
    """Owned targets never polled (handed-off targets do not hold readiness back)."""
    return sum(s.attempts == 0 and not s.handed_off for s in states)


@dataclass(frozen=True, slots=True)
class Changes:
    """Names of the targets and microservices that changed after some revision (present or removed now);
    `fresh`: targets whose only change is their poll times."""

    targets: frozenset[str]
    microservices: frozenset[str]
    fresh: frozenset[str] = frozenset()


class SnapshotStore:
    """Holds the latest state of every target; `current` is an immutable `Snapshot` of them."""

    def __init__(
        self,
        targets: Mapping[str, TargetState],
        clock: Callable[[], float],
        *,
        coalesce: float = COALESCE_SECONDS,
        history: int = HISTORY,
        sharding: tuple[int, int] = (0, 1),
        history_seconds: float = HISTORY_SECONDS,
    ) -> None:
        self._clock = clock
        self._sharding = sharding  # (shard, total shards) as exported
        self._coalesce = coalesce
        self._history = history
        self._history_seconds = history_seconds
        self.instance = secrets.token_hex(8)  # a restarted exporter is another instance: deltas do not cross it
        self._states: dict[str, TargetState] = dict(targets)
        self._owners: dict[str, tuple[str, ...]] = {}
        for state in self._states.values():
            self._own(state.name, (), contributed(state))
        self._unpolled = _unpolled(self._states.values())
        self._ready = self._unpolled == 0  # once every starting target was polled; a reload does not undo it
        self._version = 1
        self._revision = 1
        self._generated_at = clock()
        self._log_revisions: list[int] = []
        self._log: list[tuple[str, str]] = []
        self._floor = 1  # deltas can be computed from any revision >= floor
        self._marks: deque[tuple[float, int]] = deque()  # (time, first revision recorded then), about one a second
        self._pending: asyncio.TimerHandle | bool | None = None
        self._changed = asyncio.Event()
        self._closed = False
        self._current: Snapshot | None = None

    # ------------------------------------------------------------------------------------------------ readers

    @property
    def current(self) -> Snapshot:
        """The latest snapshot; safe to read from any coroutine without locking (built on first read)."""
        snap = self._current
        if snap is None:
            snap = self._current = Snapshot(
                version=self._version,
                revision=self._revision,
                generated_at=self._generated_at,
                targets=MappingProxyType(self._states.copy()),
                owners=MappingProxyType(self._owners.copy()),
                was_ready=self._ready,
                shard=self._sharding[0],
                total_shards=self._sharding[1],
            )
        return snap

    @property
    def version(self) -> int:
        """Counts visible changes (what long-polls wait on)."""
        return self._version

    @property
    def revision(self) -> int:
        """Counts every update (what deltas are computed from)."""
        return self._revision

    def state(self, name: str) -> TargetState | None:
        """The latest state of one target, None when it is not (or no longer) configured."""
        return self._states.get(name)

    @property
    def closed(self) -> bool:
        """The store is shutting down; waiters return at once."""
        return self._closed

    def changes_since(self, revision: int) -> Changes | None:
        """What changed after `revision`, or None when the log no longer (or never did) cover it."""
        if revision < self._floor or revision > self._revision:
            return None
        start = bisect_right(self._log_revisions, revision)
        sets: dict[str, set[str]] = {"t": set(), "m": set(), "f": set()}
        for kind, name in self._log[start:]:
            sets[kind].add(name)
        return Changes(frozenset(sets["t"]), frozenset(sets["m"]), frozenset(sets["f"] - sets["t"]))

    # ------------------------------------------------------------------------------------------------ writers

    def update(self, state: TargetState) -> None:
        """Take a target's new state; ignored when the target is no longer configured (a poll that outlived a
        reload)."""
        old = self._states.get(state.name)
        if old is None:
            return
        self._states[state.name] = state
        if old.attempts == 0 and state.attempts > 0 and not state.handed_off:
            self._unpolled -= 1
            self._ready = self._ready or self._unpolled == 0
        changed = self._microservice_changes(old, state)
        kind = "f" if only_fresher(old, state) else "t"
        self._record((kind, state.name), *(("m", n) for n in changed))
        if changed or visibly_differs(old, state):
            self._schedule()

    def replace_targets(self, states: Iterable[TargetState], *, sharding: tuple[int, int] | None = None) -> None:
        """Reconfigure: `states` in config order (owned targets first, then handed-off ones); targets not among
        them leave, new ones join, kept ones keep their state (pass it back unchanged). `sharding`: the new (shard,
        total shards), when they changed. One visible change."""
        if sharding is not None:
            self._sharding = sharding
        new = {s.name: s for s in states}
        entries: list[tuple[str, str]] = []
        for name, old in self._states.items():
            if name not in new:
                entries.append(("t", name))
                entries.extend(("m", n) for n in self._own(name, contributed(old), ()))
        for name, state in new.items():
            old = self._states.get(name)
            if old is None or old is not state:
                before = contributed(old) if old is not None else ()
                entries.append(("t", name))
                entries.extend(("m", n) for n in self._own(name, before, contributed(state)))
                if old is not None and old.handed_off != state.handed_off:
                    # Every microservice entry carries its target's handed_off: send them again, whole.
                    entries.extend(("m", n) for n in contributed(state))
        rank = {name: i for i, name in enumerate(new)}
        self._states = new
        self._unpolled = _unpolled(new.values())
        # Config order decides which target wins a microservice both report; a new order can change the winner.
        for ms, owners in self._owners.items():
            ordered = tuple(sorted(owners, key=lambda o: rank.get(o, len(rank))))
            if ordered[:1] != owners[:1]:
                entries.append(("m", ms))
            self._owners[ms] = ordered
        self._record(*entries)
        self._schedule(at_once=True)

    def remove_targets(self, names: Iterable[str]) -> None:
        """Drop the targets called `names` (their handoff ended), keeping every other one as it is."""
        gone = set(names)
        self.replace_targets([s for name, s in self._states.items() if name not in gone])

    def close(self) -> None:
        """Release every waiter (used on shutdown)."""
        self._closed = True
        self._wake()

    async def wait_for_change(self, after_version: int, timeout: float) -> Snapshot:
        """The first snapshot whose version is greater than `after_version`, or the current one after `timeout`."""
        if self._version > after_version or self._closed:
            return self.current
        event = self._changed
        try:
            async with asyncio.timeout(timeout):
                while self._version <= after_version and not self._closed:
                    await event.wait()
                    event = self._changed
        except TimeoutError:
            pass
        return self.current

    # ------------------------------------------------------------------------------------------------ internals

    def _microservice_changes(self, old: TargetState, new: TargetState) -> list[str]:
        """Microservices whose entry readers see changed: new values from the target that owns them (a duplicate
        reported by a later target is not what readers see), or a target starting or ceasing to report them."""
        if new.microservices is old.microservices and new.fixed_microservice == old.fixed_microservice:
            return []
        before, after = old.microservices, new.microservices
        names_before, names_after = contributed(old), contributed(new)
        moved = self._own(new.name, names_before, names_after) if names_before != names_after else []
        owners = self._owners
        changed = [n for n, v in after.items() if before.get(n) is not v and owners[n][0] == new.name]
        changed += [n for n in before if n not in after and n in owners and owners[n][0] == new.name]
        return changed + moved

    def _own(self, target: str, before: Iterable[str], after: Iterable[str]) -> list[str]:
        """Move `target` in the owner index from the names `before` to `after`; the names whose owners changed."""
        before_set, after_set = set(before), set(after)
        moved = []
        for name in before_set - after_set:
            owners = tuple(o for o in self._owners.get(name, ()) if o != target)
            if owners:
                self._owners[name] = owners
            else:
                self._owners.pop(name, None)
            moved.append(name)
        order = {n: i for i, n in enumerate(self._states)}
        for name in after_set - before_set:
            owners = (*self._owners.get(name, ()), target)
            self._owners[name] = tuple(sorted(owners, key=lambda o: order.get(o, len(order))))
            moved.append(name)
        return moved

    def _record(self, *entries: tuple[str, str]) -> None:
        self._revision += 1
        now = self._generated_at = self._clock()
        self._current = None
        self._log.extend(entries)
        self._log_revisions.extend([self._revision] * len(entries))
        marks = self._marks
        if not marks or now - marks[-1][0] >= 1.0:
            marks.append((now, self._revision))
        drop = 0
        if marks[0][0] < now - self._history_seconds:
            while marks and marks[0][0] < now - self._history_seconds:
                marks.popleft()
            # Entries before the oldest mark kept were recorded more than history_seconds (+ at most a second) ago.
            drop = bisect_left(self._log_revisions, marks[0][1] if marks else self._revision + 1)
        if len(self._log) - drop > self._history:
            drop = len(self._log) - self._history // 2
        if drop:
            self._floor = max(self._floor, self._log_revisions[drop - 1])
            del self._log[:drop], self._log_revisions[:drop]

    def _schedule(self, *, at_once: bool = False) -> None:
        if self._pending is not None and not at_once:
            return
        if at_once or self._coalesce <= 0:
            self._publish()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._publish()
            return
        self._pending = loop.call_later(self._coalesce, self._publish)

    def _publish(self) -> None:
        if isinstance(self._pending, asyncio.TimerHandle):
            self._pending.cancel()
        self._pending = None
        self._version += 1
        self._current = None
        self._wake()

    def _wake(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()
