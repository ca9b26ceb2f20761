"""make run's closed loop: masters come and go in the fake Horizons, and a scaler that cannot answer changes
nothing (the HPA holds, as KEDA's does). The loop against the real scaler is tests/test_make_run.py's."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient, TestServer

from simulator.fleet import default_fleet, demo_microservices, demo_scaling
from simulator.live import LiveLoop
from simulator.payloads import masters_payload
from simulator.server import Simulator, create_app
from tests.conftest import free_port


def test_a_new_master_starts_its_supervisors_at_max_processes_and_leaves_the_api_when_removed():
    fleet = default_fleet(seed=1)
    fleet.advance(30)
    before = fleet.masters("orders")
    name = fleet.add_master("orders")
    assert fleet.masters("orders") == [*before, name]
    h = fleet.horizon_of("orders")
    (master,) = [m for m in h.masters if m.name == name]
    assert [s.processes for s in master.supervisors] == [s.spec.max_processes for s in master.supervisors]
    assert name in masters_payload(h) and name.startswith("orders-horizon-")
    fleet.advance(60)  # it balances down like any other
    assert sum(s.processes for s in master.supervisors) < sum(s.spec.max_processes for s in master.supervisors)
    fleet.remove_master("orders", name)
    assert fleet.masters("orders") == before and name not in masters_payload(h)


def test_shared_horizon_microservices_get_masters_of_their_own():
    fleet = default_fleet(seed=1)
    name = fleet.add_master("inventory")
    core = fleet.horizon("core")
    assert [m.microservice for m in core.masters if m.name == name] == ["inventory"]
    assert fleet.processes()["inventory"] > 0


def test_demo_scaling_thresholds_are_reachable():
    for ms in demo_microservices():
        s = demo_scaling(ms)
        assert s["threshold"] == sum(sup.max_processes for sup in ms.supervisors), ms.name
        assert s["min_replicas"] == ms.pods and s["threshold_mode"] == "reached"


async def test_a_scaler_that_cannot_answer_changes_nothing():
    sim = Simulator(default_fleet(seed=3), speed=40.0, interval=0.05)
    address = f"127.0.0.1:{free_port()}"  # nothing listens: every RPC is UNAVAILABLE
    client = TestClient(TestServer(create_app(sim, lambda s: LiveLoop(s, address, seed=3)), host="127.0.0.1"))
    await client.start_server()
    try:
        status = {}
        async with asyncio.timeout(20):
            while True:
                await asyncio.sleep(0.2)
                status = await (await client.get("/-/live")).json()
                if all(m["last_hpa"] for m in status["microservices"].values()):
                    break
        for name, m in status["microservices"].items():
            assert m["last_hpa"]["value"] is None and m["last_hpa"]["error"].startswith("UNAVAILABLE"), name
            assert m["replicas"] == m["ready"] == len(sim.fleet.masters(name)), "the HPA holds"
        assert "/-/live" in await (await client.get("/")).text()
    finally:
        await client.close()


async def test_without_keda_live_is_not_found():
    sim = Simulator(default_fleet(seed=3))
    client = TestClient(TestServer(create_app(sim), host="127.0.0.1"))
    await client.start_server()
    try:
        resp = await client.get("/-/live")
        assert resp.status == 404 and "--keda" in await resp.text()
    finally:
        await client.close()


def test_pods_evicted_by_a_node_removal_are_replaced():
    sim = Simulator(default_fleet(seed=3))  # not serving: the test drives the loop's cluster by hand at t = 0
    loop = LiveLoop(sim, "127.0.0.1:1", seed=3)
    loop._adopt_running_masters()
    orders = loop.scaled["orders"]
    node = orders.pods[0].node
    on_node = sum(1 for p in orders.pods if p.node is node)
    before = len(orders.masters)
    loop.cluster._remove(node, 0.0)  # the autoscaler drains the node
    loop._apply_cluster(0.0)
    assert len(orders.pods) == orders.replicas == before, "the ReplicaSet makes a replacement"
    assert len(orders.masters) == len(sim.fleet.masters("orders")) == before - on_node
    loop._apply_cluster(30.0)  # the replacement starts (5 s) on another node
    assert len(orders.masters) == before and len(sim.fleet.masters("orders")) == before
