"""Targets reload like modules: added ones start polling, removed ones leave the snapshot and the feed at once,
unchanged ones keep their state, a bad reload keeps everything running and says so in a metric."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from exporter.app import MODULES, STORE
from exporter.config import load_config
from tests.conftest import wait_for
from tests.fake_horizon import FakeHorizon
from tests.payloads import topology_a


@pytest.fixture
async def two_horizons() -> AsyncIterator[tuple[str, str]]:
    servers = []
    for _ in range(2):
        fake = FakeHorizon()
        fake.set(*topology_a())
        server = TestServer(fake.app(), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
    yield str(servers[0].make_url("/horizon")), str(servers[1].make_url("/horizon"))
    for server in servers:
        await server.close()


def write(path: Path, *targets: tuple[str, str], poll: float = 0.05) -> None:
    lines = [f"poll_interval: {poll}", "targets:"]
    lines += [f"  - {{microservice: {name}, url: '{url}'}}" for name, url in targets]
    path.write_text("\n".join(lines) + "\n")


async def test_added_removed_and_kept_targets(tmp_path, two_horizons, make_exporter):
    orders_url, payments_url = two_horizons
    path = tmp_path / "config.yml"
    write(path, ("orders", orders_url))
    client = await make_exporter(load_config(str(path), {}))
    store, reloader = client.app[STORE], client.app[MODULES]
    before = await wait_for(client, lambda s: s.targets["orders"].attempts >= 3)
    full = await (await client.get("/api/v1/snapshot")).json()

    write(path, ("orders", orders_url), ("payments", payments_url))
    assert reloader.reload()
    assert list(store.current.targets) == ["orders", "payments"]
    kept = store.current.targets["orders"]
    assert kept.attempts >= before.targets["orders"].attempts, "an unchanged target keeps its state"
    after = await wait_for(client, lambda s: s.targets["payments"].up)
    assert after.microservices["payments"].values is not None
    delta = await (await client.get(f"/api/v1/snapshot?since={full['revision']}&instance={full['instance']}")).json()
    assert delta["kind"] == "delta" and "payments" in delta["targets"] and "payments" in delta["microservices"]

    mark = await (await client.get("/api/v1/snapshot")).json()
    write(path, ("payments", payments_url))
    assert reloader.reload()
    assert "orders" not in store.current.targets and "orders" not in store.current.microservices
    delta = await (await client.get(f"/api/v1/snapshot?since={mark['revision']}&instance={mark['instance']}")).json()
    assert delta["removed_targets"] == ["orders"] and delta["removed_microservices"] == ["orders"]
    assert delta["version"] > mark["version"], "a reload is a visible change"
    await asyncio.sleep(0.2)
    assert "orders" not in store.current.targets, "its loop stopped: no late poll brings it back"
    assert (await client.get("/readyz")).status == 200


async def test_a_changed_target_starts_afresh(tmp_path, two_horizons, make_exporter):
    orders_url, payments_url = two_horizons
    path = tmp_path / "config.yml"
    write(path, ("orders", orders_url))
    client = await make_exporter(load_config(str(path), {}))
    await wait_for(client, lambda s: s.targets["orders"].attempts >= 3)
    write(path, ("orders", payments_url))  # the same name, another Horizon
    assert client.app[MODULES].reload()
    assert client.app[STORE].current.targets["orders"].url == payments_url
    assert client.app[STORE].current.targets["orders"].attempts <= 1
    await wait_for(client, lambda s: s.targets["orders"].up)


async def test_a_bad_reload_keeps_the_running_targets(tmp_path, two_horizons, make_exporter):
    orders_url, _ = two_horizons
    path = tmp_path / "config.yml"
    write(path, ("orders", orders_url))
    client = await make_exporter(load_config(str(path), {}))
    await wait_for(client, lambda s: s.targets["orders"].up)
    path.write_text("targets:\n  - {microservice: orders, url: 'ftp://nope'}\n")
    assert not client.app[MODULES].reload()
    assert list(client.app[STORE].current.targets) == ["orders"]
    metrics = await (await client.get("/metrics")).text()
    assert "horizon_exporter_config_last_reload_successful 0.0" in metrics
    attempts = client.app[STORE].current.targets["orders"].attempts
    await wait_for(client, lambda s: s.targets["orders"].attempts > attempts)


async def test_the_file_watcher_applies_new_targets(tmp_path, two_horizons, make_exporter):
    orders_url, payments_url = two_horizons
    path = tmp_path / "config.yml"
    write(path, ("orders", orders_url))
    client = await make_exporter(load_config(str(path), {}))
    await wait_for(client, lambda s: s.targets["orders"].up)
    write(path, ("orders", orders_url), ("payments", payments_url), poll=0.050)
    await wait_for(client, lambda s: "payments" in s.targets and s.targets["payments"].up, timeout=10)
