"""End to end: Horizon simulator → real exporter app → scaler; a microservice goes over 8 and every RPC follows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from aiohttp.test_utils import TestServer

from external_scaler._proto import externalscaler_pb2 as pb
from external_scaler.snapshot_source import SnapshotSource
from simulator.fleet import default_fleet, horizon_url
from simulator.server import Simulator, create_app
from tests.conftest import fixed_target
from tests.scaler_fixtures import ref, running_scaler, wait_until
from tests.test_exporter_http import config

SEED = 7
QUIET, BUSY = 0.0, 70.0  # simulated seconds: orders runs 6 processes at t=0 and 16 at t=70 (see test_fleet_premise)


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def _processes_at(t: float) -> int:
    fleet = default_fleet(seed=SEED)
    fleet.advance(t)
    return fleet.processes()["orders"]


def test_fleet_premise():
    assert _processes_at(QUIET) <= 8 < _processes_at(BUSY)


@pytest.fixture
async def chain(make_exporter) -> AsyncIterator[tuple[Clock, object]]:
    clock = Clock()
    sim = Simulator(default_fleet(seed=SEED), clock=clock, interval=0.05)
    horizons = TestServer(create_app(sim), host="127.0.0.1")
    await horizons.start_server()
    exporter = await make_exporter(config(fixed_target("orders", horizon_url(str(horizons.make_url("")), "orders"))))
    source = SnapshotSource(str(exporter.make_url("")), max_staleness=10)
    async with running_scaler(source) as scaler:
        await wait_until(lambda: source.fresh)
        yield clock, scaler
    await horizons.close()


async def _active_or_none(scaler, r: pb.ScaledObjectRef) -> bool | None:
    try:
        return (await scaler.stub.IsActive(r)).result
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.UNAVAILABLE  # not polled yet
        return None


async def _replicas(scaler, r: pb.ScaledObjectRef) -> float:
    spec = (await scaler.stub.GetMetricSpec(r)).metricSpecs[0]
    answer = await scaler.stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=r, metricName=spec.metricName))
    return answer.metricValues[0].metricValueFloat


async def test_going_over_8_flips_is_active_stream_and_metrics(chain):
    clock, scaler = chain
    r = ref(activationThreshold="8")
    quiet, busy = _processes_at(QUIET), _processes_at(BUSY)
    async with asyncio.timeout(20):
        while await _active_or_none(scaler, r) is not False:  # until the exporter has polled the quiet fleet
            await asyncio.sleep(0.05)
    assert await _replicas(scaler, r) == quiet // 8 + 1
    stream = scaler.stub.StreamIsActive(r)
    assert (await stream.read()).result is False

    clock.now = BUSY
    assert (await asyncio.wait_for(stream.read(), 20)).result is True
    assert (await scaler.stub.IsActive(r)).result is True
    average = await scaler.stub.GetMetrics(
        pb.GetMetricsRequest(scaledObjectRef=ref(thresholdMode="average"), metricName="horizon-orders-processes")
    )
    assert average.metricValues[0].metricValueFloat == busy
    assert await _replicas(scaler, r) == busy // 8 + 1
    stream.cancel()
