"""Sharded exporters over fake Horizons on loopback, all reading the same config file: each shard polls and serves
only the targets it owns (a Horizon serving many microservices moves whole), and a reshard at run time (a reload
that changes `sharding.total_shards`) polls gained targets at once and keeps lost ones in the snapshot, marked
handed off and out of /metrics, until the grace ends — with a reading of every microservice somewhere all along and
never a 0 that the move made."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import MODULES, STORE, create_app
from exporter.cli import build_parser, resolve_config
from exporter.sharding import owner
from exporter.snapshot_json import delta_document, snapshot_document
from external_scaler.feed import Feed
from tests.conftest import wait_for
from tests.fake_horizon import FakeHorizon
from tests.payloads import core_masters, core_stats, core_workload, topology_a

NAMES = [f"ms-{i}" for i in range(12)]  # topology (a): one Horizon per microservice, 9 processes each
CORE = "core-horizon"  # topology (b): one Horizon serving two microservices
CORE_COUNTS = {"notifications": [3, 4], "inventory": [2, 0]}
EXPECTED = {**dict.fromkeys(NAMES, 9.0), "notifications": 7.0, "inventory": 2.0}
TARGETS = [*NAMES, CORE]


@pytest.fixture
async def fleet() -> AsyncIterator[tuple[str, str, FakeHorizon]]:
    """Horizons at {base}/{name}/horizon (the same payloads; requests record which target was asked) and the
    shared core Horizon; yields both base URLs and the per-microservice fake."""
    fake = FakeHorizon()
    fake.set(*topology_a())
    app = web.Application()
    app.router.add_get("/{target}/horizon/api/{endpoint}", fake.handle)
    core = FakeHorizon()
    core.set(core_stats(CORE_COUNTS), core_workload(CORE_COUNTS, {"inventory": 5}), core_masters(CORE_COUNTS))
    servers = [TestServer(app, host="127.0.0.1"), TestServer(core.app(), host="127.0.0.1")]
    for server in servers:
        await server.start_server()
    yield str(servers[0].make_url("")), str(servers[1].make_url("/horizon")), fake
    for server in servers:
        await server.close()


def write(path: Path, fleet: tuple[str, str, FakeHorizon], total: int, *, grace: float = 4.0, extra: str = "") -> None:
    base, core_url, _ = fleet
    lines = ["poll_interval: 0.05", f"sharding: {{total_shards: {total}, handoff_grace: {grace}}}", "targets:"]
    lines += [f"  - {{microservice: {n}, url: '{base}/{n}/horizon'}}" for n in NAMES]
    lines.append(f"  - {{name: {CORE}, url: '{core_url}', microservices_from: supervisor, "
                 "pattern: '^(?P<microservice>[a-z0-9-]+)-worker$'}")  # fmt: skip
    if extra:
        lines.append(f"  - {{microservice: {extra}, url: '{base}/{extra}/horizon'}}")
    path.write_text("\n".join(lines) + "\n")


Shard = Callable[[int], Awaitable[TestClient]]


@pytest.fixture
async def start_shard(tmp_path: Path) -> AsyncIterator[Shard]:
    """`await start_shard(i)`: an exporter started as `horizon-exporter --config FILE --shard i`, reloading the same
    way on SIGHUP or a file change."""
    clients: list[TestClient] = []

    async def start(shard: int) -> TestClient:
        argv = ["--config", str(tmp_path / "config.yml"), "--shard", str(shard)]
        config = resolve_config(build_parser().parse_args(argv), {})
        app = create_app(config, load=lambda: resolve_config(build_parser().parse_args(argv), {}, reload=True))
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


async def scrape(client: TestClient) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    text = await (await client.get("/metrics")).text()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def processes(m: dict[str, Any]) -> dict[str, float]:
    return {dict(k)["microservice"]: v for k, v in m.get("horizon_microservice_processes", {}).items()}


async def document(client: TestClient, query: str = "") -> dict[str, Any]:
    return await (await client.get("/api/v1/snapshot" + query)).json()


def json_doc(doc: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(doc))  # as a client decodes it


def owned_by(shard: int, total: int) -> set[str]:
    return {n for n in TARGETS if owner(n, total) == shard}


def microservices_of(targets: set[str]) -> set[str]:
    out = {n for n in targets if n != CORE}
    return out | ({"notifications", "inventory"} if CORE in targets else set())


def all_up(targets: set[str]) -> Callable[[Any], bool]:
    return lambda s: all(n in s.targets and s.targets[n].up for n in targets)


async def test_two_shards_of_one_config_poll_and_serve_disjoint_targets(tmp_path, fleet, start_shard):
    write(tmp_path / "config.yml", fleet, total=2)
    owned = [owned_by(0, 2), owned_by(1, 2)]
    assert owned[0] and owned[1], "the names split over both shards"
    assert CORE in owned[1], "the shared Horizon belongs to one shard, whole"
    fake = fleet[2]

    first = await start_shard(0)
    await wait_for(first, lambda s: all(s.targets[n].attempts >= 3 for n in owned[0] - {CORE}))
    asked = {r.match_info["target"] for r in fake.requests}
    assert asked == owned[0] - {CORE}, "a shard polls only the targets it owns"

    second = await start_shard(1)
    await wait_for(second, all_up(owned[1]))
    for shard, client in enumerate((first, second)):
        await wait_for(client, all_up(owned[shard]))
        snap = client.app[STORE].current
        assert set(snap.targets) == owned[shard]
        assert set(snap.microservices) == microservices_of(owned[shard])
        doc = await document(client)
        assert (doc["shard"], doc["total_shards"]) == (shard, 2) and doc["ready"]
        assert set(doc["targets"]) == owned[shard]
        assert not any("handed_off" in t for t in doc["targets"].values())
        assert not any("handed_off" in m for m in doc["microservices"].values())
        m = await scrape(client)
        assert processes(m) == {n: EXPECTED[n] for n in microservices_of(owned[shard])}
        assert {dict(k)["target"] for k in m["horizon_target_up"]} == owned[shard]
        assert m["horizon_exporter_shard"] == {(): shard} and m["horizon_exporter_total_shards"] == {(): 2}
        assert m["horizon_exporter_targets"] == {(("state", "owned"),): len(owned[shard]),
                                                 (("state", "handed_off"),): 0}  # fmt: skip
        assert (await client.get("/readyz")).status == 200
    assert owned[0].isdisjoint(owned[1]) and owned[0] | owned[1] == set(TARGETS)


async def test_unsharded_exports_shard_0_of_1(horizon, make_exporter):
    from exporter.config import Config
    from tests.conftest import fixed_target

    _fake, url = horizon
    client = await make_exporter(Config(targets=(fixed_target("orders", url),), poll_interval=0.05))
    await wait_for(client, lambda s: s.targets["orders"].up)
    m = await scrape(client)
    assert m["horizon_exporter_shard"] == {(): 0} and m["horizon_exporter_total_shards"] == {(): 1}
    assert m["horizon_exporter_targets"][(("state", "owned"),)] == 1
    doc = await document(client)
    assert (doc["shard"], doc["total_shards"]) == (0, 1)


async def test_reshard_2_to_3_hands_targets_off_without_a_gap_or_a_zero(tmp_path, fleet, start_shard):
    path = tmp_path / "config.yml"
    write(path, fleet, total=2, grace=4.0)
    moved = [owned_by(i, 2) & owned_by(2, 3) for i in range(2)]
    assert moved[0] and moved[1] and CORE in moved[1], "both shards give targets to the new one"
    shards = [await start_shard(0), await start_shard(1)]
    for i, client in enumerate(shards):
        await wait_for(client, all_up(owned_by(i, 2)))
    before = [await document(c) for c in shards]

    samples = 0
    stop = asyncio.Event()

    async def watch() -> None:
        """Until the end: every microservice has a real reading in some shard's snapshot, and no shard ever
        serves a 0 for one on /metrics or in its snapshot."""
        nonlocal samples
        while not stop.is_set():
            clients = list(shards)
            docs = await asyncio.gather(*(document(c) for c in clients))
            scrapes = await asyncio.gather(*(scrape(c) for c in clients))
            seen: dict[str, float] = {}
            for doc in docs:
                for name, entry in doc["microservices"].items():
                    if entry["processes"] is None:  # a shard that has not polled it yet: no reading, not a 0
                        assert entry["fetched_at"] is None, (name, entry)
                        continue
                    assert entry["processes"] == EXPECTED[name], (name, entry)
                    seen[name] = entry["processes"]
            assert seen == EXPECTED, "a microservice without a reading in any shard"
            for m in scrapes:
                for name, value in processes(m).items():
                    assert value == EXPECTED[name]
            samples += 1
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch())
    write(path, fleet, total=3, grace=4.0)
    shards.append(await start_shard(2))
    await wait_for(shards[2], all_up(owned_by(2, 3)))
    for client in shards[:2]:
        assert client.app[MODULES].reload()

    for i, client in enumerate(shards[:2]):
        snap = client.app[STORE].current
        assert (snap.shard, snap.total_shards) == (i, 3)
        handed = {n for n, t in snap.targets.items() if t.handed_off}
        assert handed == moved[i], "the targets given to shard 2 are kept, marked"
        assert {n for n, t in snap.targets.items() if not t.handed_off} == owned_by(i, 3)
        doc = await document(client)
        assert all(doc["targets"][n].get("handed_off") is True for n in moved[i])
        for name in microservices_of(moved[i]):
            assert doc["microservices"][name]["handed_off"] is True
            assert doc["microservices"][name]["processes"] == EXPECTED[name]
        assert doc["ready"] and (await client.get("/readyz")).status == 200
        m = await scrape(client)
        assert set(processes(m)) == microservices_of(owned_by(i, 3)), "handed-off targets are not on /metrics"
        assert {dict(k)["target"] for k in m["horizon_target_up"]} == owned_by(i, 3)
        assert m["horizon_exporter_targets"][(("state", "handed_off"),)] == len(moved[i])
        assert m["horizon_exporter_total_shards"] == {(): 3}
        # The change feed carries the handoff: the moved targets and their microservices, whole.
        delta = await document(client, f"?since={before[i]['revision']}&instance={before[i]['instance']}")
        assert delta["kind"] == "delta" and delta["total_shards"] == 3
        assert all(delta["targets"][n]["handed_off"] is True for n in moved[i])
        assert all(delta["microservices"][n]["handed_off"] is True for n in microservices_of(moved[i]))

    # Handed-off targets are still polled while the grace lasts.
    attempts = {n: shards[1].app[STORE].current.targets[n].attempts for n in moved[1]}
    await wait_for(shards[1], lambda s: all(s.targets[n].attempts >= attempts[n] + 2 for n in moved[1]))
    assert all(shards[1].app[STORE].current.targets[n].handed_off for n in moved[1])

    mid = [await document(c) for c in shards[:2]]
    for i, client in enumerate(shards[:2]):
        await wait_for(client, lambda s, i=i: set(s.targets) == owned_by(i, 3), timeout=30)
    stop.set()
    await watcher
    assert samples > 10

    for i, client in enumerate(shards[:2]):
        m = await scrape(client)
        assert m["horizon_exporter_targets"][(("state", "handed_off"),)] == 0
        delta = await document(client, f"?since={mid[i]['revision']}&instance={mid[i]['instance']}")
        assert delta["kind"] == "delta"
        assert set(delta["removed_targets"]) == moved[i]
        assert set(delta["removed_microservices"]) == microservices_of(moved[i])
        # A copy that followed the whole reshard by one delta is the full document (both built at one revision:
        # over HTTP, polls would land between the two requests).
        store = client.app[STORE]
        feed = Feed.from_document(before[i])
        changes = store.changes_since(before[i]["revision"])
        assert changes is not None
        feed.apply(json_doc(delta_document(store.current, before[i]["revision"], changes, 0.05, 60, store.instance)))
        full = json_doc(snapshot_document(store.current, 0.05, 60, store.instance))
        assert feed.microservices == full["microservices"] and feed.targets == full["targets"]
    union = [set(c.app[STORE].current.targets) for c in shards]
    assert sum(map(len, union)) == len(TARGETS) and set().union(*union) == set(TARGETS)


async def test_reshard_3_to_2_polls_gained_targets_at_once(tmp_path, fleet, start_shard, monkeypatch):
    path = tmp_path / "config.yml"
    write(path, fleet, total=3, grace=0.5)
    gained = owned_by(2, 3) & owned_by(0, 2)
    assert gained
    shards = [await start_shard(0), await start_shard(2)]
    await wait_for(shards[0], all_up(owned_by(0, 3)))
    await wait_for(shards[1], all_up(owned_by(2, 3)))

    # From now on a target that starts polling the ordinary way waits an hour for its first poll.
    monkeypatch.setattr("exporter.poller.first_poll_delay", lambda interval: 3600.0)
    added = next(f"new-{i}" for i in itertools.count() if owner(f"new-{i}", 2) == 0)
    write(path, fleet, total=2, grace=0.5, extra=added)
    assert shards[0].app[MODULES].reload()
    snap = shards[0].app[STORE].current
    assert gained <= set(snap.targets) and not any(t.handed_off for t in snap.targets.values())
    await wait_for(shards[0], all_up(gained))  # within the wait's timeout, not an hour: polled at once
    assert shards[0].app[STORE].current.targets[added].attempts == 0, "a target new to the config starts as usual"
    m = await scrape(shards[0])
    assert {n: processes(m)[n] for n in microservices_of(gained)} == {n: EXPECTED[n] for n in microservices_of(gained)}
    assert (await shards[0].get("/readyz")).status == 200

    # Shard 2 is left out by the new total: it owns nothing, hands everything off, and stays ready.
    assert shards[1].app[MODULES].reload()
    snap = shards[1].app[STORE].current
    assert (snap.shard, snap.total_shards) == (2, 2)
    assert set(snap.targets) == owned_by(2, 3) and all(t.handed_off for t in snap.targets.values())
    m = await scrape(shards[1])
    assert processes(m) == {} and m["horizon_exporter_targets"][(("state", "owned"),)] == 0
    assert m["horizon_exporter_shard"] == {(): 2} and m["horizon_exporter_total_shards"] == {(): 2}
    assert (await shards[1].get("/readyz")).status == 200
    await wait_for(shards[1], lambda s: not s.targets, timeout=30)
    doc = await document(shards[1])
    assert doc["targets"] == {} and doc["microservices"] == {}


async def test_a_target_handed_off_and_taken_back_keeps_its_state(tmp_path, fleet, start_shard):
    path = tmp_path / "config.yml"
    write(path, fleet, total=2, grace=60)
    client = await start_shard(0)
    lost = owned_by(0, 2) & owned_by(2, 3)
    await wait_for(client, all_up(owned_by(0, 2)))
    write(path, fleet, total=3, grace=60)
    assert client.app[MODULES].reload()
    name = sorted(lost)[0]
    attempts = client.app[STORE].current.targets[name].attempts
    assert client.app[STORE].current.targets[name].handed_off
    write(path, fleet, total=2, grace=60)
    assert client.app[MODULES].reload()
    state = client.app[STORE].current.targets[name]
    assert not state.handed_off and state.attempts >= attempts, "owned again, same loop, same state"
    m = await scrape(client)
    assert processes(m)[name] == 9.0
