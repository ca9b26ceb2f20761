"""The direct text renderer writes exactly what prometheus_client's generate_latest writes for the same snapshot."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS

from exporter.collector import HorizonCollector, MetricsRenderer, render_text
from exporter.horizon import parse_reading
from exporter.mapping import Fixed, map_reading
from exporter.snapshot import PollOutcome, TargetError, TargetState, advance
from exporter.store import SnapshotStore
from tests.payloads import topology_a


def odd_store() -> SnapshotStore:
    stats, workload, masters = topology_a()
    workload.append({"name": 'we"ird\\queue\nname', "length": 1e21, "wait": 0.1, "processes": 1})
    stats["jobsPerMinute"] = 1234567.5
    reading = parse_reading(stats, workload, masters)
    ok = PollOutcome(1.5, 0.25, reading=reading, microservices=map_reading(reading, Fixed("orders")))
    a = advance(TargetState("orders", "http://o/horizon", "orders"), ok, 60)
    a = advance(a, PollOutcome(3.0, 0.1, error=TargetError("http_403", "no")), 60)
    timeout = PollOutcome(2.0, 5.0, error=TargetError("timeout", "t"))
    b = advance(TargetState("billing", "http://b/horizon", "billing"), timeout, 60)
    c = advance(TargetState("orders-2", "http://o2/horizon", "orders"), ok, 60)  # a duplicate microservice
    return SnapshotStore({"orders": a, "billing": b, "orders-2": c}, clock=lambda: 0.0)


def test_direct_text_is_byte_identical_to_generate_latest():
    store = odd_store()
    registry = CollectorRegistry()
    registry.register(HorizonCollector(store))
    expected = generate_latest(registry)
    assert b"horizon_microservice_duplicate" in expected and b'we\\"ird\\\\queue\\nname' in expected
    assert render_text(store.current) == expected


async def test_renderer_text_and_openmetrics_with_extra_collectors():
    store = odd_store()
    extra = CollectorRegistry()
    Gauge("extra_thing", "An extra collector's gauge.", registry=extra).set(7)
    renderer = MetricsRenderer(store, extra, lambda: store.current.version)
    body, ctype = await renderer.render(None)
    full = CollectorRegistry()
    full.register(HorizonCollector(store))
    Gauge("extra_thing", "An extra collector's gauge.", registry=full).set(7)
    assert body == generate_latest(full) and ctype.startswith("text/plain")
    om, om_type = await renderer.render("application/openmetrics-text; version=1.0.0")
    assert om_type.startswith("application/openmetrics-text") and om.endswith(b"# EOF\n")
    assert b"extra_thing 7.0" in om and b'horizon_microservice_processes{microservice="orders"} 9.0' in om
    assert OPENMETRICS.startswith("application/openmetrics-text")


async def test_concurrent_scrapes_share_one_render():
    store = odd_store()
    renderer = MetricsRenderer(store, CollectorRegistry(), lambda: store.revision)
    bodies = await asyncio.gather(*(renderer.render(None) for _ in range(10)))
    assert len({b for b, _ in bodies}) == 1
    assert renderer.renders == 1
    store.update(store.current.targets["billing"])  # a new revision: the next scrape renders again
    await renderer.render(None)
    assert renderer.renders == 2


def test_a_shard_serves_neither_handed_off_targets_nor_gained_ones_before_their_first_poll():
    stats, workload, masters = topology_a()
    reading = parse_reading(stats, workload, masters)
    ok = PollOutcome(1.5, 0.25, reading=reading, microservices=map_reading(reading, Fixed("orders")))
    owned = advance(TargetState("orders", "http://o/horizon", "orders"), ok, 60)
    ok_b = PollOutcome(1.5, 0.25, reading=reading, microservices=map_reading(reading, Fixed("billing")))
    handed = replace(advance(TargetState("billing", "http://b/horizon", "billing"), ok_b, 60), handed_off=True)
    gained = TargetState("payments", "http://p/horizon", "payments", gained=True)
    store = SnapshotStore({"orders": owned, "payments": gained, "billing": handed}, lambda: 0.0, sharding=(1, 3))
    registry = CollectorRegistry()
    registry.register(HorizonCollector(store))
    text = render_text(store.current)
    assert text == generate_latest(registry)
    body = text.decode()
    assert 'microservice="orders"' in body and 'target="orders"' in body
    assert "billing" not in body and "payments" not in body
    assert "horizon_exporter_shard 1.0\n" in body and "horizon_exporter_total_shards 3.0\n" in body
    assert 'horizon_exporter_targets{state="owned"} 2.0' in body
    assert 'horizon_exporter_targets{state="handed_off"} 1.0' in body
    assert store.current.entry("billing").handed_off and store.current.ready is False, "payments is not polled yet"
    polled = advance(gained, PollOutcome(2.0, 0.1, error=TargetError("timeout", "t")), 60)
    store.update(polled)
    assert 'horizon_up{microservice="payments"} 0.0' in render_text(store.current).decode(), "polled: a real 0"
    assert store.current.ready
