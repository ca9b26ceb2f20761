"""PrometheusSource: the PromQL per trigger, answers parsed without guessing, and a real Prometheus end to end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from external_scaler._proto import externalscaler_pb2 as pb
from external_scaler.metadata import Trigger
from external_scaler.prometheus_source import PrometheusSource, promql, scalar
from external_scaler.readings import Unavailable
from tests.conftest import free_port, real_prometheus, require_binary
from tests.scaler_fixtures import ref, running_scaler


@pytest.mark.parametrize(
    ("trigger", "value_query"),
    [
        (Trigger("orders"), 'max(horizon_microservice_processes{microservice="orders"})'),
        (
            Trigger("orders", "processes", "emails"),
            'max(horizon_queue_processes{microservice="orders",queue="emails"})',
        ),
        (Trigger("orders", "queueLength"), 'sum(max by (queue) (horizon_queue_length{microservice="orders"}))'),
        (Trigger("orders", "waitSeconds"), 'max(horizon_queue_wait_seconds{microservice="orders"})'),
        (Trigger('we"ird\\'), 'max(horizon_microservice_processes{microservice="we\\"ird\\\\"})'),
    ],
)
def test_promql_per_trigger(trigger: Trigger, value_query: str):
    value, age = promql(trigger)
    assert value == value_query
    series = value_query.split("(")[-1].split("{")[0]
    assert age.startswith(f"min(timestamp({series}{{microservice=")


def test_scalar_reads_one_sample():
    body = {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1.0, "9"]}]}}
    assert scalar(body, "q") == 9.0


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"status": "success", "data": {"resultType": "vector", "result": []}}, "returned no series"),
        ({"status": "success", "data": {"result": [{"value": [1.0, "NaN"]}]}}, "returned nan"),
        ({"status": "error", "error": "parse error"}, "failed: parse error"),
        ({"status": "success", "data": {"result": [{"value": []}]}}, "malformed sample"),
        ("<html>", "malformed answer"),
    ],
)
def test_scalar_never_turns_nothing_into_zero(body: object, reason: str):
    with pytest.raises(Unavailable, match=reason):
        scalar(body, "q")


class Exposition:
    """A tiny /metrics whose text the test sets."""

    def __init__(self) -> None:
        self.text = 'horizon_microservice_processes{microservice="x"} 9\n'

    async def handle(self, request: web.Request) -> web.Response:
        return web.Response(text=self.text, content_type="text/plain")


@pytest.fixture
async def prometheus(tmp_path: Path) -> AsyncIterator[tuple[Exposition, str]]:
    require_binary("prometheus")  # skip (or fail under CI) before any setup
    exposition = Exposition()
    app = web.Application()
    app.router.add_get("/metrics", exposition.handle)
    metrics = TestServer(app, host="127.0.0.1")
    await metrics.start_server()
    try:
        async with real_prometheus(tmp_path, {"horizon": [f"127.0.0.1:{metrics.port}"]}) as prom:
            base = prom.base
            async with aiohttp.ClientSession() as session, asyncio.timeout(60):
                while True:
                    prom.assert_alive()
                    try:
                        async with session.get(
                            f"{base}/api/v1/query", params={"query": "horizon_microservice_processes"}
                        ) as r:
                            if (await r.json())["data"]["result"]:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.3)
            yield exposition, base
    finally:
        await metrics.close()


async def test_real_prometheus_answers_every_rpc(prometheus: tuple[Exposition, str]):
    exposition, base = prometheus
    source = PrometheusSource(base, max_staleness=10, interval=0.2)
    async with running_scaler(source) as scaler:
        r = ref(microservice="x")
        assert (await scaler.stub.IsActive(r)).result is True
        spec = (await scaler.stub.GetMetricSpec(r)).metricSpecs[0]
        response = await scaler.stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=r, metricName=spec.metricName))
        assert (response.metricValues[0].metricValue, response.metricValues[0].metricValueFloat) == (2, 2.0)
        stream = scaler.stub.StreamIsActive(ref(microservice="x", activationThreshold="10"))
        assert (await stream.read()).result is False
        exposition.text = 'horizon_microservice_processes{microservice="x"} 11\n'
        assert (await asyncio.wait_for(stream.read(), 30)).result is True
        stream.cancel()


async def test_real_prometheus_unknown_microservice_is_unavailable_not_zero(prometheus: tuple[Exposition, str]):
    _, base = prometheus
    async with running_scaler(PrometheusSource(base, max_staleness=10)) as scaler:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await scaler.stub.IsActive(ref(microservice="nobody"))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "returned no series" in (info.value.details() or "")


async def test_unreachable_prometheus_is_unavailable_and_not_serving():
    source = PrometheusSource(f"http://127.0.0.1:{free_port()}", max_staleness=10, interval=0.1)
    async with running_scaler(source) as scaler:
        assert not source.fresh
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await scaler.stub.IsActive(ref())
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "unreachable" in (info.value.details() or "")
