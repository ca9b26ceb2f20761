"""StreamIsActive push latency: Horizon change → pushed `true`, through the real exporter polling every second.

Run: .venv/bin/python bench/scaler_push.py [--changes 40] [--poll 1.0]
Also reports the scaler's own share: snapshot-API change → push (the "within 100 ms" figure).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time

from aiohttp.test_utils import TestServer

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from exporter.app import create_app
from exporter.config import Config, TargetConfig
from exporter.mapping import Fixed
from external_scaler._proto import externalscaler_pb2 as pb
from external_scaler.snapshot_source import SnapshotSource
from tests.fake_horizon import FakeHorizon
from tests.payloads import topology_a
from tests.scaler_fixtures import FakeExporter, microservice, running_scaler

MASTER = "orders-horizon-7d9f8-x2kqz-Ab3d"
REF = pb.ScaledObjectRef(name="orders", namespace="shop", scalerMetadata={"microservice": "orders",
                                                                         "activationThreshold": "8"})  # fmt: skip


def _pcts(values: list[float]) -> str:
    q = statistics.quantiles(values, n=100)
    return f"p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms, max {max(values) * 1000:.1f} ms (n={len(values)})"


def _set_processes(horizon: FakeHorizon, n: int) -> None:
    horizon.payloads["masters"][MASTER]["supervisors"][0]["processes"] = {"redis:default": n, "redis:emails": 0}


async def chain(changes: int, poll: float) -> list[float]:
    """Fake Horizon → real exporter (poll every `poll` s) → scaler; flip processes at random phases."""
    horizon = FakeHorizon()
    horizon.set(*topology_a())
    _set_processes(horizon, 1)
    hs = TestServer(horizon.app(), host="127.0.0.1")
    await hs.start_server()
    target = TargetConfig(name="orders", url=str(hs.make_url("/horizon")), rule=Fixed("orders"))
    exporter = TestServer(create_app(Config(targets=(target,), poll_interval=poll)), host="127.0.0.1")
    await exporter.start_server()
    latencies: list[float] = []
    try:
        source = SnapshotSource(str(exporter.make_url("")), max_staleness=10)
        async with running_scaler(source, heartbeat=3600) as scaler:
            stream = scaler.stub.StreamIsActive(REF)
            state = (await stream.read()).result
            for _ in range(changes):
                await asyncio.sleep(random.uniform(0, poll))  # the change lands anywhere in the poll cycle
                changed = time.perf_counter()
                _set_processes(horizon, 1 if state else 20)
                state = (await stream.read()).result
                latencies.append(time.perf_counter() - changed)
            stream.cancel()
    finally:
        await exporter.close()
        await hs.close()
    return latencies


async def scaler_only(changes: int) -> list[float]:
    """Snapshot-API change → push: the scaler's own share of the latency."""
    fake = FakeExporter(orders=microservice(1.0))
    await fake.start()
    latencies: list[float] = []
    try:
        source = SnapshotSource(fake.url, max_staleness=10)
        async with running_scaler(source, heartbeat=3600) as scaler:
            stream = scaler.stub.StreamIsActive(REF)
            state = (await stream.read()).result
            for _ in range(changes):
                await asyncio.sleep(0.02)
                changed = time.perf_counter()
                fake.publish(orders=microservice(1.0 if state else 20.0))
                state = (await stream.read()).result
                latencies.append(time.perf_counter() - changed)
            stream.cancel()
    finally:
        await fake.stop()
    return latencies


async def main_async(changes: int, poll: float) -> None:
    own = await scaler_only(200)
    full = await chain(changes, poll)
    print(f"machine: {os.cpu_count()} CPUs (shared), load {os.getloadavg()[0]:.1f}, Python {sys.version.split()[0]}")
    print(f"snapshot change → push (scaler only): {_pcts(own)}; goal ≤ 100 ms")
    p99 = statistics.quantiles(full, n=100)[98]
    verdict = "met" if p99 <= 1.5 else "NOT met"
    print(f"Horizon change → push, exporter poll {poll:g}s: {_pcts(full)}; goal p99 ≤ 1.5 s: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=40)
    parser.add_argument("--poll", type=float, default=1.0)
    args = parser.parse_args()
    asyncio.run(main_async(args.changes, args.poll))


if __name__ == "__main__":
    main()
