"""The status page's state document (pure): per microservice its processes, health, the threshold of the trigger
asking about it (or the default, said so), KEDA's last decisions in wall time; a bounded sample ring; and the
trigger book's version, which moves only when something the page shows changed."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from external_scaler.metadata import Trigger
from external_scaler.metrics import ScalerMetrics, TriggerBook, trigger_key
from external_scaler.status import History, build_state, current_processes, message, number
from tests.scaler_fixtures import microservice

ROOT = Path(__file__).resolve().parents[1]


class Clock:
    """Monotonic time moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _state(
    snapshot: dict[str, Any] | None, metrics: ScalerMetrics, history: History | None = None, wall: float = 5000.0
) -> dict[str, Any]:
    book = metrics.triggers
    return build_state(snapshot, book.entries, now=wall, book_now=book.clock(), fresh=True, age=0.25,
                       history=history or History(10))  # fmt: skip


def _by_name(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in state["microservices"]}


# --- the trigger book's version and decision time ---------------------------------------------------------------


def test_the_book_version_moves_on_a_changed_decision_not_on_a_repeat():
    clock = Clock()
    metrics = ScalerMetrics(TriggerBook(clock=clock))
    orders = Trigger("orders", threshold=4)
    metrics.decided_active("shop", "orders", orders, 9.0, True)
    first = metrics.triggers.version
    assert first > 0
    clock.now += 5
    metrics.decided_active("shop", "orders", orders, 9.0, True)  # KEDA asks again, same answer
    assert metrics.triggers.version == first
    assert metrics.triggers.entries[trigger_key("shop", "orders", orders)].decided_at == 1005.0
    metrics.decided_replicas("shop", "orders", orders, 9.0, 3)
    assert metrics.triggers.version == first + 1
    metrics.decided_replicas("shop", "orders", orders, 9.0, 3)
    assert metrics.triggers.version == first + 1
    metrics.decided_active("shop", "orders", orders, 0.0, False)  # the value and the decision change
    assert metrics.triggers.version > first + 1
    before = metrics.triggers.version
    metrics.asked("shop", "orders", orders)  # a failed read decides nothing
    assert metrics.triggers.version == before
    clock.now += 601
    assert metrics.triggers.prune() == 1 and metrics.triggers.version == before + 1


# --- History: one sample per tick, bounded, forgetting the gone ---------------------------------------------------


def test_history_keeps_the_last_capacity_samples_and_drops_microservices_that_left():
    history = History(3)
    for value in range(5):
        history.sample({"orders": value, "payments": None})
    assert history.tick == 5
    assert history.since("orders", 0) == [2, 3, 4]
    assert history.since("orders", 3) == [3, 4]
    assert history.since("orders", 5) == []
    assert history.since("payments", 4) == [None]
    history.sample({"orders": 5})
    assert history.since("payments", 0) == [] and list(history.names()) == ["orders"]
    history.sample({"orders": 6, "payments": 1})  # back: starts afresh
    assert history.since("payments", 0) == [1]


def test_history_since_stops_at_the_tick_a_document_was_built_at():
    history = History(10)
    for value in range(4):
        history.sample({"orders": value})
    assert history.since("orders", 1, upto=3) == [1, 2]
    assert history.since("orders", 3, upto=3) == []
    with pytest.raises(ValueError, match="capacity"):
        History(0)


def test_a_stream_gets_every_sample_once_across_updates():
    history, book = History(50), TriggerBook()
    received: list[Any] = []
    after = None
    for step in range(12):
        history.sample({"orders": step})
        if step % 5 == 4 or step == 11:  # a document now and then
            state = build_state({"orders": microservice(float(step))}, book.entries, now=0, book_now=0, fresh=True,
                                age=0, history=history)  # fmt: skip
            history.sample({"orders": 100 + step})  # a sample after the document: not in it
            doc = message(state, history, version=step, after=after)
            received += doc["microservices"][0]["history"]
            after = state["history"]["tick"]
    assert received == [0, 1, 2, 3, 4, 104, 5, 6, 7, 8, 9, 109, 10, 11]


# --- build_state ------------------------------------------------------------------------------------------------


def test_a_microservice_no_scaledobject_asks_about_shows_with_the_default_threshold():
    state = _state({"orders": microservice(9.0), "payments": microservice(2.0, up=False, stale=True)}, ScalerMetrics())
    payments = _by_name(state)["payments"]
    assert payments == {
        "name": "payments", "processes": 2, "max_processes": 20, "up": False, "stale": True, "threshold": 8,
        "threshold_from": "default", "replicas_wanted": None, "active": None, "decided_at": None, "triggers": [],
    }  # fmt: skip
    assert [m["name"] for m in state["microservices"]] == ["orders", "payments"]
    assert state["source"] == {"fresh": True, "age_seconds": 0.25}
    assert state["default_threshold"] == 8


def test_the_triggers_asking_about_a_microservice_give_its_threshold_and_decisions_in_wall_time():
    clock = Clock()
    metrics = ScalerMetrics(TriggerBook(clock=clock))
    whole = Trigger("orders", threshold=4, activation_threshold=2)
    queue = Trigger("orders", metric="queueLength", queue="emails", threshold=100)
    metrics.decided_replicas("shop", "orders", whole, 9.0, 3)
    clock.now += 10
    metrics.decided_active("shop", "orders", whole, 9.0, True)
    metrics.decided_replicas("shop", "orders-mail", queue, 450.0, 5)
    clock.now += 2.5  # the document is built 2.5 s after the last decision
    orders = _by_name(_state({"orders": microservice(9.0)}, metrics, wall=5000.0))["orders"]
    assert (orders["threshold"], orders["threshold_from"]) == (4, "scaledobject")
    assert orders["replicas_wanted"] == 5, "the most any trigger wants, as the HPA takes the largest proposal"
    assert orders["active"] is True and orders["decided_at"] == 4997.5
    listed = [
        (t["scaledobject"], t["metric"], t["queue"], t["replicas_wanted"], t["active"]) for t in orders["triggers"]
    ]
    assert listed == [("orders", "processes", None, 3, True), ("orders-mail", "queueLength", "emails", 5, None)]
    assert orders["triggers"][0]["activation_threshold"] == 2 and orders["triggers"][0]["mode"] == "reached"


def test_only_a_queue_trigger_leaves_the_default_threshold_for_the_bar():
    metrics = ScalerMetrics()
    metrics.decided_active("shop", "mail", Trigger("orders", metric="queueLength", threshold=100), 3.0, False)
    orders = _by_name(_state({"orders": microservice(9.0)}, metrics))["orders"]
    assert (orders["threshold"], orders["threshold_from"], orders["active"]) == (8, "default", False)


def test_without_a_snapshot_the_microservices_are_those_triggers_ask_about():
    metrics = ScalerMetrics()  # a Prometheus source: no list of microservices
    metrics.decided_active("shop", "orders", Trigger("orders", threshold=5), 12.0, True)
    metrics.decided_active("shop", "mail", Trigger("billing", metric="waitSeconds", threshold=30), 4.0, True)
    state = _by_name(_state(None, metrics))
    assert (state["orders"]["processes"], state["orders"]["threshold"], state["orders"]["up"]) == (12, 5, None)
    assert state["billing"]["processes"] is None, "a wait in seconds is no process count"
    assert current_processes(None, metrics.triggers.entries) == {"billing": None, "orders": 12}


def test_snapshot_values_that_are_not_numbers_show_as_unknown():
    entry = {**microservice(9.0), "processes": "9", "max_processes": math.inf, "up": "yes", "stale": None}
    orders = _by_name(_state({"orders": entry}, ScalerMetrics()))["orders"]
    assert (orders["processes"], orders["max_processes"], orders["up"], orders["stale"]) == (None, None, None, None)
    assert (number(True), number(2.5), number(3.0), number(float("nan"))) == (None, 2.5, 3, None)


def test_the_document_is_json_without_nan_and_names_are_data():
    name = '<img src=x onerror="alert(1)">'
    history = History(5)
    history.sample({name: 3})
    state = _state({name: microservice(3.0)}, ScalerMetrics(), history)
    doc = message(state, history, version=7, after=None)
    text = json.dumps(doc, allow_nan=False)
    assert json.loads(text)["microservices"][0]["name"] == name
    assert doc["kind"] == "state" and doc["version"] == 7 and doc["microservices"][0]["history"] == [3]
    assert message(state, history, version=8, after=1)["kind"] == "update"


def test_the_documented_event_has_exactly_the_fields_the_scaler_sends():
    """docs/scaler.md shows one `state` event; its keys are the ones build_state and message produce."""
    text = (ROOT / "docs" / "scaler.md").read_text()
    section = text[text.index("## Status page") :]
    documented = json.loads(re.search(r"```json\n(.*?)\n```", section, re.S).group(1))  # type: ignore[union-attr]
    metrics = ScalerMetrics()
    metrics.decided_replicas("shop", "orders", Trigger("orders"), 9.0, 2)
    history = History(5)
    history.sample({"orders": 9})
    real = message(_state({"orders": microservice(9.0)}, metrics, history), history, version=1, after=None)
    assert set(documented) == set(real)
    for part in ("source", "history"):
        assert set(documented[part]) == set(real[part])
    assert set(documented["microservices"][0]) == set(real["microservices"][0])
    assert set(documented["microservices"][0]["triggers"][0]) == set(real["microservices"][0]["triggers"][0])
