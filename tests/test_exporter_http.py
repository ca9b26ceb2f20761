"""The exporter end to end over HTTP: fake Horizons in, /metrics (parsed) and the snapshot API out."""

from __future__ import annotations

import asyncio
import json
import re

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import STORE, create_app
from exporter.config import Config, TargetConfig
from exporter.mapping import Pattern
from tests.conftest import fixed_target, wait_for
from tests.fake_horizon import FakeHorizon
from tests.payloads import core_masters, core_stats, core_workload


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse an exposition with prometheus_client's parser into {(name, sorted labels): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(parsed: dict, name: str, **labels: str) -> float | None:
    return parsed.get((name, tuple(sorted(labels.items()))))


def names(parsed: dict) -> set[str]:
    return {name for name, _ in parsed}


async def metrics(client) -> dict:
    resp = await client.get("/metrics")
    assert resp.status == 200
    return samples(await resp.text())


def config(*targets: TargetConfig, **kw) -> Config:
    kw.setdefault("poll_interval", 0.05)
    kw.setdefault("backoff_max", 0.1)
    return Config(targets=targets, **kw)


async def test_topology_a_processes_and_queue_gauges(horizon, make_exporter):
    fake, url = horizon
    client = await make_exporter(config(fixed_target("orders", url)))
    await wait_for(client, lambda s: s.targets["orders"].up)
    m = await metrics(client)
    assert value(m, "horizon_up", microservice="orders") == 1.0
    assert value(m, "horizon_microservice_processes", microservice="orders") == 9.0
    assert value(m, "horizon_queue_length", microservice="orders", queue="default") == 42.0
    assert value(m, "horizon_queue_wait_seconds", microservice="orders", queue="high,low") == 5.0
    assert value(m, "horizon_queue_processes", microservice="orders", queue="emails") == 1.0
    assert value(m, "horizon_supervisors", microservice="orders", status="inactive") == 1.0
    assert value(m, "horizon_jobs_per_minute", target="orders") == 128.0
    assert value(m, "horizon_recent_failed_jobs", target="orders") == 3.0
    assert value(m, "horizon_masters", target="orders", status="running") == 1.0
    assert value(m, "horizon_status", target="orders", status="running") == 1.0
    assert value(m, "horizon_target_up", target="orders") == 1.0
    # Every request asked for JSON.
    assert all(r.headers["Accept"] == "application/json" for r in fake.requests)


async def test_values_follow_horizon(horizon, make_exporter):
    fake, url = horizon
    client = await make_exporter(config(fixed_target("orders", url)))
    await wait_for(client, lambda s: s.targets["orders"].up)
    sup = fake.payloads["masters"]["orders-horizon-7d9f8-x2kqz-Ab3d"]["supervisors"][0]
    sup["processes"] = {"redis:default": 11, "redis:emails": 1}
    await wait_for(client, lambda s: s.microservices["orders"].values.processes == 14.0)
    assert value(await metrics(client), "horizon_microservice_processes", microservice="orders") == 14.0


async def test_topology_b_one_horizon_many_microservices():
    counts = {"notifications": [3, 4], "inventory": [2, 0]}
    fake = FakeHorizon()
    fake.set(core_stats(counts), core_workload(counts, {"inventory": 5}), core_masters(counts))
    async with TestServer(fake.app(), host="127.0.0.1") as server:
        target = TargetConfig(
            name="core",
            url=str(server.make_url("/horizon")),
            rule=Pattern("supervisor", re.compile(r"^(?P<microservice>[a-z0-9-]+)-worker$")),
        )
        from aiohttp.test_utils import TestClient

        from exporter.app import create_app

        async with TestClient(TestServer(create_app(config(target)), host="127.0.0.1")) as client:
            await wait_for(client, lambda s: s.targets["core"].up)
            m = await metrics(client)
            assert value(m, "horizon_microservice_processes", microservice="notifications") == 7.0
            assert value(m, "horizon_microservice_processes", microservice="inventory") == 2.0
            assert value(m, "horizon_queue_length", microservice="inventory", queue="inventory-jobs") == 5.0
            assert value(m, "horizon_up", microservice="notifications") == 1.0
            # A microservice that vanishes from Horizon vanishes from /metrics: no stale series.
            counts2 = {"notifications": [3, 4]}
            fake.set(core_stats(counts2), core_workload(counts2, {}), core_masters(counts2))
            await wait_for(client, lambda s: "inventory" not in s.microservices)
            m = await metrics(client)
            assert value(m, "horizon_microservice_processes", microservice="inventory") is None
            assert value(m, "horizon_up", microservice="inventory") is None
            assert value(m, "horizon_microservice_processes", microservice="notifications") == 7.0


async def test_metrics_render_once_per_snapshot_revision(horizon, make_exporter):
    _, url = horizon
    client = await make_exporter(config(fixed_target("orders", url), poll_interval=30))
    snap = await wait_for(client, lambda s: s.targets["orders"].up)
    from exporter.app import RENDERER, STORE

    renderer = client.app[RENDERER]
    before = renderer.renders
    bodies = await asyncio.gather(*(client.get("/metrics") for _ in range(5)))
    texts = {await r.text() for r in bodies}
    assert client.app[STORE].current.revision == snap.revision  # no poll in between: one render
    assert len(texts) == 1
    assert renderer.renders - before <= 1


async def test_snapshot_api_and_long_poll(horizon, make_exporter):
    fake, url = horizon
    client = await make_exporter(config(fixed_target("orders", url), poll_interval=0.2))
    await wait_for(client, lambda s: s.targets["orders"].up)
    doc = await (await client.get("/api/v1/snapshot")).json()
    ms = doc["microservices"]["orders"]
    assert doc["ready"] is True
    assert ms["up"] is True and ms["stale"] is False and ms["processes"] == 9.0
    assert ms["queues"]["default"] == {"length": 42.0, "wait_seconds": 12.0, "processes": 6.0}
    assert doc["targets"]["orders"]["error"] is None
    await asyncio.sleep(0.05)  # the version of the first poll is out (visible changes are coalesced)
    version = client.app[STORE].version
    waiting = asyncio.ensure_future(client.get(f"/api/v1/snapshot?after={version}&timeout=10"))
    await asyncio.sleep(0.5)  # polls that change nothing a reader sees do not answer the long-poll
    assert not waiting.done()
    fake.payloads["workload"][0]["length"] = 43
    later = await (await waiting).json()
    assert later["version"] == version + 1 and later["kind"] == "full"
    assert later["microservices"]["orders"]["queues"]["default"]["length"] == 43.0
    resp = await client.get("/api/v1/snapshot?after=abc")
    assert resp.status == 400 and "after" in await resp.text()
    resp = await client.get("/api/v1/snapshot?after=1&timeout=600")
    assert resp.status == 400 and "timeout" in await resp.text()


async def test_long_poll_times_out_with_current_snapshot(horizon, make_exporter):
    _, url = horizon
    client = await make_exporter(config(fixed_target("orders", url), poll_interval=60))
    await wait_for(client, lambda s: s.targets["orders"].up)
    await asyncio.sleep(0.05)  # the version of the first poll is out (visible changes are coalesced)
    version = client.app[STORE].version
    doc = await (await client.get(f"/api/v1/snapshot?after={version}&timeout=0.2")).json()
    assert doc["version"] == version


async def test_health_ready_and_landing(horizon, make_exporter):
    fake, url = horizon
    fake.fault = "stall"
    client = await make_exporter(config(fixed_target("orders", url, timeout=5.0)))
    assert (await client.get("/healthz")).status == 200
    resp = await client.get("/readyz")
    assert resp.status == 503 and "orders" in await resp.text()
    fake.stall.set()
    await wait_for(client, lambda s: s.ready)
    assert (await client.get("/readyz")).status == 200
    landing = await (await client.get("/")).text()
    for link in ("metrics", "api/v1/snapshot", "healthz", "readyz"):
        assert f'href="{link}"' in landing
    assert "status page" not in landing, "no link unless --status-page-url is given"


async def test_the_landing_page_links_to_the_status_page_escaped():
    url = 'http://localhost:9109/?a=1&b="><script>alert(1)</script>'
    server = TestServer(create_app(Config(targets=()), status_page_url=url, start_poller=False), host="127.0.0.1")
    async with TestClient(server) as client:
        landing = await (await client.get("/")).text()
    assert '<a href="http://localhost:9109/?a=1&amp;b=&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;">' in landing
    assert "<script>" not in landing


async def test_openmetrics_negotiation(horizon, make_exporter):
    _, url = horizon
    client = await make_exporter(config(fixed_target("orders", url)))
    await wait_for(client, lambda s: s.targets["orders"].up)
    resp = await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await resp.text()).rstrip().endswith("# EOF")


async def test_snapshot_json_is_plain_json(horizon, make_exporter):
    _, url = horizon
    client = await make_exporter(config(fixed_target("orders", url)))
    await wait_for(client, lambda s: s.targets["orders"].up)
    resp = await client.get("/api/v1/snapshot")
    assert resp.content_type == "application/json"
    json.loads(await resp.text())
