"""Property: the full document at A plus the delta from A gives exactly the full document at B.

Random sequences of polls (new values, the same values), failures, expiries, reloads that add and remove targets,
reshards that hand targets off and take them back, and exporter restarts, through the real store, document builders
and the scaler's `Feed`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.horizon import HorizonReading, Stats
from exporter.mapping import MicroserviceValues, QueueValues
from exporter.snapshot import PollOutcome, TargetError, TargetState, advance, expire
from exporter.snapshot_json import delta_document, snapshot_document
from exporter.store import HISTORY_SECONDS, SnapshotStore
from external_scaler.feed import Feed

STALE_AFTER = 5.0
NAMES = ("a", "b", "c", "d")  # microservice pool shared by the pattern targets: duplicates happen
TARGETS = ("t0", "t1", "t2", "t3", "t4")


def _values(processes: int, length: int) -> MicroserviceValues:
    queues = {"default": QueueValues(float(processes), float(length), float(length // 2))}
    return MicroserviceValues(float(processes), 10.0, {"running": 1, "paused": 0, "inactive": 0}, queues)


def _fresh(name: str) -> TargetState:
    fixed = "fixed-" + name if int(name[1]) % 2 == 0 else None
    return TargetState(name=name, url=f"http://127.0.0.1/{name}", fixed_microservice=fixed)


def _reading(jobs: int) -> HorizonReading:
    return HorizonReading(Stats("running", 1.0, float(jobs), 10.0, 0.0), (), ())


ops = st.one_of(
    st.tuples(st.just("ok"), st.sampled_from(TARGETS), st.dictionaries(st.sampled_from(NAMES),
              st.tuples(st.integers(0, 3), st.integers(0, 3)), max_size=3), st.integers(0, 2)),
    st.tuples(st.just("fail"), st.sampled_from(TARGETS), st.sampled_from(("timeout", "http_500"))),
    st.tuples(st.just("tick"), st.floats(0.1, 4.0)),
    st.tuples(st.just("expire"), st.sampled_from(TARGETS)),
    st.tuples(st.just("reload"), st.lists(st.sampled_from(TARGETS), min_size=1, max_size=5, unique=True)),
    st.tuples(st.just("reshard"), st.lists(st.sampled_from(TARGETS), max_size=5, unique=True), st.integers(1, 4)),
    st.tuples(st.just("restart")),
    st.tuples(st.just("checkpoint")),
)  # fmt: skip


def _doc(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d))  # what a client decodes


class Exporter:
    """The store as the snapshot API serves it (the same instance check as exporter.app)."""

    def __init__(self, history: int, history_seconds: float = HISTORY_SECONDS) -> None:
        self.history, self.history_seconds = history, history_seconds
        self.now = 1000.0
        self.store = self._new(TARGETS[:3])

    def _new(self, names: tuple[str, ...] | list[str]) -> SnapshotStore:
        return SnapshotStore({n: _fresh(n) for n in names}, lambda: self.now, coalesce=0, history=self.history,
                             history_seconds=self.history_seconds)  # fmt: skip

    def full(self) -> dict[str, Any]:
        return _doc(snapshot_document(self.store.current, 1.0, STALE_AFTER, self.store.instance))

    def answer(self, since: int, instance: str) -> dict[str, Any]:
        changes = self.store.changes_since(since) if instance == self.store.instance else None
        if changes is None:
            return self.full()
        snap = self.store.current
        return _doc(delta_document(snap, since, changes, 1.0, STALE_AFTER, self.store.instance))

    def apply(self, op: tuple[Any, ...]) -> None:
        kind, store = op[0], self.store
        if kind == "tick":
            self.now += op[1]
        elif kind == "ok" and (state := store.state(op[1])) is not None:
            mapped = {n: _values(p, q) for n, (p, q) in op[2].items()}
            if state.fixed_microservice is not None:
                mapped = {state.fixed_microservice: _values(*next(iter(op[2].values()), (1, 1)))}
            outcome = PollOutcome(self.now, 0.01, reading=_reading(op[3]), microservices=mapped)
            store.update(advance(state, outcome, STALE_AFTER))
        elif kind == "fail" and (state := store.state(op[1])) is not None:
            outcome = PollOutcome(self.now, 0.01, error=TargetError(op[2], f"{op[2]} happened"))
            store.update(advance(state, outcome, STALE_AFTER))
        elif kind == "expire" and (state := store.state(op[1])) is not None:
            expired = expire(state, self.now, STALE_AFTER)
            if expired is not state:
                store.update(expired)
        elif kind == "reload":
            store.replace_targets([store.state(n) or _fresh(n) for n in op[1]])
        elif kind == "reshard":  # as the poller does it: the handed-off targets last, marked
            handed = set(op[1])
            states = [replace(s, handed_off=s.name in handed) for s in store.current.targets.values()]
            states.sort(key=lambda s: s.handed_off)
            store.replace_targets(states, sharding=(0, op[2]))
        elif kind == "restart":
            self.store = self._new(TARGETS[:3])


@settings(max_examples=800, deadline=None)
@given(st.lists(ops, max_size=60), st.sampled_from((8, 40, 100_000)), st.sampled_from((3.0, HISTORY_SECONDS)))
def test_full_at_a_plus_delta_equals_full_at_b(sequence: list[tuple[Any, ...]], history: int, history_seconds: float):
    exporter = Exporter(history, history_seconds)
    copies: list[Feed] = [Feed.from_document(exporter.full())]
    for op in sequence:
        exporter.apply(op)
        if op[0] == "checkpoint":
            copies.append(Feed.from_document(exporter.full()))
        # Every copy taken so far catches up with one answer, exactly as the scaler does.
        full = exporter.full()
        for copy in copies:
            doc = exporter.answer(copy.revision or 0, copy.instance or "")
            if doc["kind"] == "delta":
                copy.apply(doc)
            else:
                copy.__dict__.update(Feed.from_document(doc).__dict__)
            assert copy.microservices == full["microservices"]
            assert copy.targets == full["targets"]
            for entry in full["microservices"].values():
                assert entry.get("handed_off", False) == full["targets"][entry["target"]].get("handed_off", False)
            assert (copy.version, copy.revision) == (full["version"], full["revision"])


def test_a_delta_names_only_what_changed():
    exporter = Exporter(100_000)
    store = exporter.store
    ok = ("ok", "t1", {"a": (2, 3), "b": (1, 0)}, 0)
    exporter.apply(ok)
    base = exporter.full()
    exporter.apply(("tick", 1.0))
    exporter.apply(ok)  # the same values again: fresher, nothing else
    delta = exporter.answer(base["revision"], store.instance)
    assert delta["kind"] == "delta" and delta["microservices"] == {} and delta["targets"] == {}
    assert list(delta["fresh"]) == ["t1"], "only the poll times changed: the short form"
    assert delta["fresh"]["t1"][1] == exporter.now
    assert delta["version"] == base["version"], "freshness alone makes no new version"
    exporter.apply(("ok", "t1", {"a": (5, 3), "b": (1, 0)}, 0))
    delta = exporter.answer(base["revision"], store.instance)
    assert list(delta["microservices"]) == ["a"] and delta["version"] == base["version"] + 1
    assert exporter.answer(base["revision"], "another-instance")["kind"] == "full"
    assert exporter.answer(store.revision + 5, store.instance)["kind"] == "full"


def test_unchanged_values_keep_their_identity():
    state = _fresh("t1")
    first = advance(state, PollOutcome(1.0, 0.1, reading=_reading(0), microservices={"a": _values(1, 2)}), 60)
    again = advance(first, PollOutcome(2.0, 0.1, reading=_reading(0), microservices={"a": _values(1, 2)}), 60)
    assert again.microservices is first.microservices and again.stats is first.stats
    assert again.last_success_at == 2.0
    moved = advance(again, PollOutcome(3.0, 0.1, reading=_reading(0),
                                       microservices={"a": _values(1, 2), "b": _values(2, 2)}), 60)  # fmt: skip
    assert moved.microservices["a"] is first.microservices["a"]
    assert isinstance(moved.microservices, MappingProxyType)


def test_the_change_log_covers_two_minutes_not_a_number_of_polls():
    """A client up to HISTORY_SECONDS behind gets a delta, one further behind the full document; and the log holds
    no more than that, however long the exporter runs (it once kept 100,000 entries: 8 minutes and 20 MB of RSS
    at 200 targets, bench/soak.py)."""
    exporter = Exporter(100_000)
    store = exporter.store
    revision_at = {}
    for second in range(300):
        for target in ("t0", "t1", "t2"):
            exporter.apply(("ok", target, {"a": (second % 3, 1)}, 0))
        revision_at[second] = store.revision
        exporter.apply(("tick", 1.0))
    assert exporter.answer(revision_at[300 - 100], store.instance)["kind"] == "delta"
    assert exporter.answer(revision_at[300 - 125], store.instance)["kind"] == "full"
    assert len(store._log) <= 2 * 3 * (HISTORY_SECONDS + 2), "a poll and a changed microservice per target a second"
