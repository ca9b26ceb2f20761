"""StreamIsActive push latency: Horizon change → pushed `true`, through the real exporter polling every second.

Run: .venv/bin/python bench/scaler_push.py [--changes 40] [--poll 1.0]
The Horizon is the simulator's `orders` (simulator.server, its clock frozen so only this script changes it): a pod
starting (a master added, 6 → 15 processes) or stopping flips the trigger. Also reports the scaler's own share:
snapshot-API change → push (the "within 100 ms" figure), against a stand-in snapshot API in this script.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
from aiohttp import web
from aiohttp.test_utils import TestServer

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from exporter.app import create_app
from exporter.config import Config, TargetConfig
from exporter.mapping import Fixed
from external_scaler._proto import externalscaler_pb2 as pb
from external_scaler._proto import externalscaler_pb2_grpc as pb_grpc
from external_scaler.server import ScalerServer
from external_scaler.snapshot_source import SnapshotSource
from external_scaler.source import Source
from simulator.fleet import default_fleet, horizon_url
from simulator.server import Simulator
from simulator.server import create_app as simulator_app

REF = pb.ScaledObjectRef(name="orders", namespace="shop", scalerMetadata={"microservice": "orders",
                                                                         "activationThreshold": "8"})  # fmt: skip


class StandInExporter:
    """`/api/v1/snapshot` with the exporter's long-poll (docs/snapshot-api.md), only the fields the scaler reads;
    `publish` makes a new version at once."""

    def __init__(self, processes: float) -> None:
        self.version = 1
        self.processes = processes
        self._changed = asyncio.Event()

    def publish(self, processes: float) -> None:
        self.version, self.processes = self.version + 1, processes
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def document(self) -> dict[str, Any]:
        entry = {"target": "orders", "up": True, "stale": False, "fetched_at": time.time(),
                 "processes": self.processes, "max_processes": 20.0, "supervisors": {}, "queues": {}}  # fmt: skip
        return {"version": self.version, "microservices": {"orders": entry}}

    async def snapshot(self, request: web.Request) -> web.Response:
        if "after" in request.query:
            after, timeout = int(request.query["after"]), float(request.query.get("timeout", "30"))
            try:
                async with asyncio.timeout(timeout):
                    while self.version <= after:
                        await self._changed.wait()
            except TimeoutError:
                pass
        return web.json_response(self.document())

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/snapshot", self.snapshot)
        return app


@asynccontextmanager
async def scaler_stream(source: Source) -> AsyncIterator[grpc.aio.UnaryStreamCall]:
    """A ScalerServer on 127.0.0.1:0 over `source` (no heartbeat re-sends) and a StreamIsActive open to it."""
    server = ScalerServer(source, "127.0.0.1:0", heartbeat=3600)
    port = await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stream = pb_grpc.ExternalScalerStub(channel).StreamIsActive(REF)
    try:
        yield stream
    finally:
        stream.cancel()
        await channel.close()
        await server.stop(0)


def _pcts(values: list[float]) -> str:
    q = statistics.quantiles(values, n=100)
    return f"p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms, max {max(values) * 1000:.1f} ms (n={len(values)})"


async def chain(changes: int, poll: float) -> list[float]:
    """Simulated Horizon → real exporter (poll every `poll` s) → scaler; a pod starts or stops at random phases."""
    fleet = default_fleet()
    horizons = TestServer(simulator_app(Simulator(fleet, clock=lambda: 0.0)), host="127.0.0.1")
    await horizons.start_server()
    url = horizon_url(str(horizons.make_url("/")), "orders")
    target = TargetConfig(name="orders", url=url, rule=Fixed("orders"))
    exporter = TestServer(create_app(Config(targets=(target,), poll_interval=poll)), host="127.0.0.1")
    await exporter.start_server()
    latencies: list[float] = []
    extra: str | None = None  # the pod this script started, if it is running
    try:
        source = SnapshotSource(str(exporter.make_url("")), max_staleness=10)
        async with scaler_stream(source) as stream:
            if (await stream.read()).result is not False:
                raise SystemExit("expected orders inactive at 6 processes (activationThreshold 8)")
            for _ in range(changes):
                await asyncio.sleep(random.uniform(0, poll))  # the change lands anywhere in the poll cycle
                changed = time.perf_counter()
                if extra is None:
                    extra = fleet.add_master("orders")  # 6 → 15 processes: active
                else:
                    fleet.remove_master("orders", extra)  # back to 6: inactive
                    extra = None
                pushed = (await stream.read()).result
                latencies.append(time.perf_counter() - changed)
                if pushed != (extra is not None):
                    raise SystemExit(f"pushed {pushed} after the change, expected {extra is not None}")
    finally:
        await exporter.close()
        await horizons.close()
    return latencies


async def scaler_only(changes: int) -> list[float]:
    """Snapshot-API change → push: the scaler's own share of the latency."""
    fake = StandInExporter(1.0)
    api = TestServer(fake.app(), host="127.0.0.1")
    await api.start_server()
    latencies: list[float] = []
    try:
        source = SnapshotSource(str(api.make_url("")), max_staleness=10)
        async with scaler_stream(source) as stream:
            state = (await stream.read()).result
            for _ in range(changes):
                await asyncio.sleep(0.02)
                changed = time.perf_counter()
                fake.publish(1.0 if state else 20.0)
                state = (await stream.read()).result
                latencies.append(time.perf_counter() - changed)
    finally:
        fake.publish(fake.processes)  # answer the waiting long-poll before the server closes
        await api.close()
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
