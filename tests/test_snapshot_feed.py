"""The snapshot feed through the running exporter: versions only on visible changes, freshness without waking
readers, expiry on time, unchanged bodies not decoded again, /api/stats on its own cadence, and the scaler
following with deltas."""

from __future__ import annotations

import asyncio
import dataclasses

import aiohttp
import pytest

from exporter.app import STORE
from exporter.client import TargetClient
from exporter.config import Config
from exporter.snapshot import TargetError
from external_scaler.feed import Feed, OutOfStep
from external_scaler.metadata import Trigger
from external_scaler.readings import Unavailable
from external_scaler.snapshot_source import SnapshotSource
from tests.conftest import fixed_target, wait_for

ORDERS = Trigger("orders")


def config(*targets, **kw) -> Config:  # type: ignore[no-untyped-def]
    return Config(targets=targets, **kw)


def endpoint_counts(fake) -> dict[str, int]:  # type: ignore[no-untyped-def]
    out: dict[str, int] = {}
    for r in fake.requests:
        key = r.path.rsplit("/", 1)[1]
        out[key] = out.get(key, 0) + 1
    return out


async def test_an_unchanged_horizon_makes_no_version_but_stays_fresh(horizon, make_exporter):
    _fake, url = horizon
    client = await make_exporter(config(fixed_target("orders", url), poll_interval=0.1))
    store = client.app[STORE]
    first = await wait_for(client, lambda s: s.targets["orders"].up)
    await asyncio.sleep(0.05)
    version = store.version
    later = await wait_for(client, lambda s: s.targets["orders"].attempts >= first.targets["orders"].attempts + 4)
    assert store.version == version, "polls that change nothing a reader sees make no version"
    assert later.targets["orders"].last_success_at > first.targets["orders"].last_success_at
    doc = await (await client.get("/api/v1/snapshot")).json()
    assert doc["microservices"]["orders"]["fetched_at"] == store.current.targets["orders"].last_success_at


async def test_unchanged_bodies_are_not_decoded_again(horizon):
    fake, url = horizon
    async with aiohttp.ClientSession() as session:
        client = TargetClient(fixed_target("orders", url), session, 1 << 20, stats_interval=0)
        first = await client.fetch()
        assert client.decoded == 3
        again = await client.fetch()
        assert again is first and client.decoded == 3, "the same bytes: nothing decoded, the same reading"
        fake.payloads["workload"][0]["length"] = 50
        changed = await client.fetch()
        assert client.decoded == 4
        assert changed is not first and changed.masters is first.masters and changed.stats is first.stats
        assert changed.workload[0].length == 50.0
        client.forget()
        await client.fetch()
        assert client.decoded == 7, "after a failure everything is decoded afresh"


async def test_stats_are_polled_on_their_own_cadence(horizon, make_exporter):
    fake, url = horizon
    client = await make_exporter(config(fixed_target("orders", url), poll_interval=0.05, stats_interval=30))
    await wait_for(client, lambda s: s.targets["orders"].attempts >= 8)
    counts = endpoint_counts(fake)
    assert counts["stats"] == 1 and counts["masters"] >= 8 and counts["workload"] >= 8
    doc = await (await client.get("/api/v1/snapshot")).json()
    assert doc["targets"]["orders"]["jobs_per_minute"] == 128.0, "the last stats stay until the next fetch"


async def test_stats_are_fetched_again_after_a_failure(horizon, make_exporter):
    fake, url = horizon
    client = await make_exporter(config(fixed_target("orders", url), poll_interval=0.05, stats_interval=30))
    await wait_for(client, lambda s: s.targets["orders"].up)
    fake.fault = "http_500"
    await wait_for(client, lambda s: not s.targets["orders"].up)
    fake.payloads["stats"]["jobsPerMinute"] = 7
    fake.fault = None
    recovered = await wait_for(client, lambda s: s.targets["orders"].up)
    assert recovered.targets["orders"].stats.jobs_per_minute == 7.0


async def test_stale_values_expire_on_time_as_a_visible_change(horizon, make_exporter):
    fake, url = horizon
    client = await make_exporter(config(fixed_target("orders", url), poll_interval=0.05, stale_after=0.5))
    store = client.app[STORE]
    await wait_for(client, lambda s: s.targets["orders"].up)
    fake.fault = "http_500"
    down = await wait_for(client, lambda s: not s.targets["orders"].up)
    assert down.microservices["orders"].stale and down.microservices["orders"].values is not None
    version = store.version
    gone = await wait_for(client, lambda s: s.microservices["orders"].values is None, timeout=5)
    assert store.version > version
    assert gone.targets["orders"].last_success_at is not None
    doc = await (await client.get("/api/v1/snapshot")).json()
    assert doc["microservices"]["orders"]["processes"] is None and doc["microservices"]["orders"]["up"] is False


async def test_the_old_full_document_long_poll_still_works(horizon, make_exporter):
    fake, url = horizon
    client = await make_exporter(config(fixed_target("orders", url), poll_interval=0.05))
    await wait_for(client, lambda s: s.targets["orders"].up)
    await asyncio.sleep(0.05)
    version = client.app[STORE].version
    waiting = asyncio.ensure_future(client.get(f"/api/v1/snapshot?after={version}&timeout=10"))
    await asyncio.sleep(0.2)
    fake.payloads["workload"][0]["length"] = 1
    doc = await (await waiting).json()
    assert doc["kind"] == "full" and doc["version"] > version and set(doc["microservices"]) == {"orders"}
    assert doc["targets"]["orders"]["up"] is True


async def test_delta_requests_and_their_fallbacks(horizon, make_exporter):
    fake, url = horizon
    client = await make_exporter(config(fixed_target("orders", url), poll_interval=0.05))
    await wait_for(client, lambda s: s.targets["orders"].up)
    full = await (await client.get("/api/v1/snapshot")).json()
    fake.payloads["workload"][0]["length"] = 3
    await wait_for(client, lambda s: s.targets["orders"].microservices["orders"].queues["default"].length == 3.0)
    query = f"since={full['revision']}&instance={full['instance']}"
    delta = await (await client.get(f"/api/v1/snapshot?{query}")).json()
    assert delta["kind"] == "delta" and delta["since"] == full["revision"]
    assert delta["microservices"]["orders"]["queues"]["default"]["length"] == 3.0
    assert delta["targets"] == {} and set(delta["fresh"]) == {"orders"}, "the target only polled again"
    assert delta["removed_microservices"] == []
    other = await (await client.get(f"/api/v1/snapshot?since={full['revision']}&instance=0000")).json()
    assert other["kind"] == "full", "another exporter instance's revision gets the full document"
    ahead = await (await client.get(f"/api/v1/snapshot?since=999999999&instance={full['instance']}")).json()
    assert ahead["kind"] == "full"
    resp = await client.get("/api/v1/snapshot?since=x")
    assert resp.status == 400 and "since" in await resp.text()
    metrics = await (await client.get("/metrics")).text()
    assert 'horizon_exporter_snapshot_bytes_total{kind="delta"}' in metrics


async def test_the_scaler_follows_with_deltas_and_keeps_its_semantics(horizon, make_exporter):
    fake, url = horizon
    client = await make_exporter(config(fixed_target("orders", url), poll_interval=0.05))
    await wait_for(client, lambda s: s.targets["orders"].up)
    source = SnapshotSource(str(client.make_url("")), max_staleness=10)
    await source.start()
    try:
        async with asyncio.timeout(10):
            while not source.fresh:
                await asyncio.sleep(0.01)
            assert source.read_now(ORDERS) == 9.0
            fake.payloads["masters"]["orders-horizon-7d9f8-x2kqz-Ab3d"]["supervisors"][0]["processes"] = {
                "redis:default": 15, "redis:emails": 1,
            }  # fmt: skip
            while source.read_now(ORDERS) != 18.0:
                await asyncio.sleep(0.01)
            fake.fault = "http_500"  # down: the kept value still counts within max staleness
            while source._view is None or source._view.microservices["orders"]["up"]:
                await asyncio.sleep(0.01)
            assert source.read_now(ORDERS) == 18.0
        assert source.fulls == 1 and source.deltas >= 2
    finally:
        await source.close()


async def test_the_scaler_reads_stale_data_as_unavailable_after_max_staleness(horizon, make_exporter):
    fake, url = horizon
    client = await make_exporter(config(fixed_target("orders", url), poll_interval=0.05))
    await wait_for(client, lambda s: s.targets["orders"].up)
    source = SnapshotSource(str(client.make_url("")), max_staleness=0.6)
    await source.start()
    try:
        async with asyncio.timeout(10):
            while not source.fresh:
                await asyncio.sleep(0.01)
            await asyncio.sleep(1.0)  # quiet fleet: freshness arrives with the long-poll's timeout answers
            assert source.read_now(ORDERS) == 9.0
            fake.fault = "http_500"
            while True:
                try:
                    source.read_now(ORDERS)
                except Unavailable as exc:
                    assert "old" in str(exc)
                    break
                await asyncio.sleep(0.02)
    finally:
        await source.close()


async def test_a_cached_full_document_is_never_older_than_the_version_that_woke_the_long_poll(horizon, make_exporter):
    _fake, url = horizon
    client = await make_exporter(config(fixed_target("orders", url), poll_interval=60))
    store = client.app[STORE]
    await wait_for(client, lambda s: s.targets["orders"].up)
    await asyncio.sleep(0.05)
    state = store.state("orders")
    store.update(dataclasses.replace(state, up=False, error=TargetError("timeout", "made up")))  # visible
    early = await (await client.get("/api/v1/snapshot")).json()  # within the 5 ms before the version is out
    await asyncio.sleep(0.05)
    async with asyncio.timeout(5):
        later = await (await client.get(f"/api/v1/snapshot?after={early['version']}&timeout=30")).json()
    assert later["version"] == store.version > early["version"] and later["revision"] == early["revision"]


async def test_another_instances_copy_gets_the_full_document_without_waiting(horizon, make_exporter):
    _fake, url = horizon
    client = await make_exporter(config(fixed_target("orders", url), poll_interval=60))
    await wait_for(client, lambda s: s.targets["orders"].up)
    version = client.app[STORE].version
    async with asyncio.timeout(5):  # not the 30 s of the long-poll: a restarted exporter's client catches up at once
        doc = await (await client.get(f"/api/v1/snapshot?after={version}&timeout=30&since=3&instance=00ff")).json()
    assert doc["kind"] == "full"
    resp = await client.get("/api/v1/snapshot?since=" + "9" * 30)
    assert resp.status == 400 and "since" in await resp.text()


def test_a_rejected_delta_leaves_the_scalers_copy_as_it_was():
    full = {"kind": "full", "instance": "i", "version": 3, "revision": 9, "poll_interval_seconds": 1.0,
            "targets": {"orders": {"up": True, "last_success_at": 5.0}},
            "microservices": {"orders": {"target": "orders", "up": True, "stale": False, "fetched_at": 5.0,
                                         "processes": 9.0, "queues": {}}}}  # fmt: skip
    feed = Feed.from_document(full)
    before = (dict(feed.microservices), dict(feed.targets))
    delta = {"kind": "delta", "instance": "i", "since": 9, "version": 4, "revision": 12, "targets": {},
             "microservices": {}, "removed_microservices": ["orders"], "removed_targets": [],
             "fresh": {"payments": [6.0, 6.0, 0.01]}}  # fmt: skip
    with pytest.raises(OutOfStep):
        feed.apply(delta)
    assert (feed.microservices, feed.targets) == before and (feed.version, feed.revision) == (3, 9)
