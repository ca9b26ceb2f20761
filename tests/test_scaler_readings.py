"""readings: one trigger's value from a snapshot document, memoized per document, with the staleness check per call."""

from __future__ import annotations

import pytest

from external_scaler import readings
from external_scaler.metadata import Trigger
from external_scaler.readings import NotFound, Stale, Unavailable, parse_document, read_value
from tests.scaler_fixtures import document, microservice

NOW = 1_700_000_000.0


def _view(**microservices: dict):
    return parse_document(document(7, microservices), received_at=NOW)


def test_the_staleness_check_runs_on_every_read_of_a_memoized_reading():
    view = _view(orders=microservice(9.0, fetched_at=NOW))
    assert read_value(view, Trigger("orders"), NOW + 1, max_staleness=10) == 9.0
    assert read_value(view, Trigger("orders"), NOW + 9, max_staleness=10) == 9.0
    with pytest.raises(Stale, match=r"orders: data is 11\.0s old \(max staleness 10s\)"):
        read_value(view, Trigger("orders"), NOW + 11, max_staleness=10)


def test_stale_data_is_unavailable_before_any_error_in_the_value():
    view = _view(orders=microservice(9.0, fetched_at=NOW))
    sms = Trigger("orders", metric="queueLength", queue="sms")
    with pytest.raises(NotFound, match=r"no queue 'sms' \(known queues: default\)"):
        read_value(view, sms, NOW, max_staleness=10)
    with pytest.raises(Unavailable, match=r"data is 20\.0s old"):
        read_value(view, sms, NOW + 20, max_staleness=10)


@pytest.mark.parametrize(
    ("entry", "error", "message"),
    [
        (None, NotFound, r"unknown microservice 'orders' \(the exporter reports: billing\)"),
        (microservice(None), Unavailable, "orders: never fetched from Horizon successfully"),
        ({**microservice(9.0), "fetched_at": "yesterday"}, Unavailable, "fetched_at: expected a number"),
        ({**microservice(9.0), "processes": None}, Unavailable, r"orders: processes is unknown \(null"),
    ],
)
def test_each_failure_is_raised_afresh_on_every_read(entry, error, message):
    view = _view(**({"billing": microservice(1.0, target="billing")} if entry is None else {"orders": entry}))
    raised = []
    for _ in range(3):
        with pytest.raises(error, match=message) as info:
            read_value(view, Trigger("orders"), NOW, 10)
        raised.append(info.value)
    # One instance re-raised would grow its traceback with every call; each read gets its own.
    assert len({id(e) for e in raised}) == 3


def test_a_new_document_is_read_anew():
    old, new = _view(orders=microservice(9.0, fetched_at=NOW)), _view(orders=microservice(17.0, fetched_at=NOW))
    assert read_value(old, Trigger("orders"), NOW, 10) == 9.0
    assert read_value(new, Trigger("orders"), NOW, 10) == 17.0


def test_the_memo_is_bounded_when_clients_invent_names(monkeypatch):
    monkeypatch.setattr(readings, "_MEMO_LIMIT", 5)
    view = _view(orders=microservice(9.0, fetched_at=NOW))
    for n in range(20):
        with pytest.raises(NotFound):
            read_value(view, Trigger(f"nope-{n}"), NOW, 10)
    assert len(view.located) == 5
    assert read_value(view, Trigger("orders"), NOW, 10) == 9.0
