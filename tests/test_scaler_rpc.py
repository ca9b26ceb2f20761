"""Every RPC through a real grpc.aio client generated from protos/, including each error status."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from external_scaler import servicer
from external_scaler._proto import externalscaler_pb2 as pb
from external_scaler.server import ScalerServer
from external_scaler.snapshot_source import SnapshotSource
from tests.scaler_fixtures import BrokenSource, FakeExporter, Scaler, microservice, ref, running_scaler, scaler_on


@pytest.fixture
async def exporter() -> AsyncIterator[FakeExporter]:
    fake = FakeExporter(
        orders=microservice(9.0, queues={"default": {"length": 42.0, "wait_seconds": 12.4, "processes": 6.0},
                                         "emails": {"length": 3.0, "wait_seconds": 30.0, "processes": 3.0}}),
        billing=microservice(None, up=False, target="billing"),
        shipping=microservice(4.0, fetched_at=time.time() - 60, up=False, stale=True, target="shipping"),
    )  # fmt: skip
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def scaler(exporter: FakeExporter) -> AsyncIterator[Scaler]:
    async with scaler_on(exporter) as s:
        yield s


async def _metrics(scaler: Scaler, name: str | None = None, **meta: str) -> pb.MetricValue:
    r = ref(**meta)
    if name is None:
        spec = await scaler.stub.GetMetricSpec(r)
        name = spec.metricSpecs[0].metricName
    response = await scaler.stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=r, metricName=name))
    assert len(response.metricValues) == 1
    return response.metricValues[0]


async def _status(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    return info.value.code(), info.value.details() or ""


async def test_get_metric_spec_reached_mode_targets_one_replica(scaler: Scaler):
    response = await scaler.stub.GetMetricSpec(ref())
    assert list(response.metricSpecs) == [
        pb.MetricSpec(metricName="horizon-orders-processes", targetSize=1, targetSizeFloat=1.0)
    ]


async def test_get_metric_spec_average_mode_targets_the_threshold(scaler: Scaler):
    response = await scaler.stub.GetMetricSpec(ref(thresholdMode="average", threshold="7.5"))
    assert list(response.metricSpecs) == [
        pb.MetricSpec(metricName="horizon-orders-processes", targetSize=8, targetSizeFloat=7.5)
    ]


async def test_get_metrics_reached_mode_reports_the_replicas_the_threshold_wants(scaler: Scaler):
    value = await _metrics(scaler)
    assert value == pb.MetricValue(metricName="horizon-orders-processes", metricValue=2, metricValueFloat=2.0)


async def test_get_metrics_average_mode_reports_the_raw_value(scaler: Scaler):
    value = await _metrics(scaler, thresholdMode="average")
    assert (value.metricValue, value.metricValueFloat) == (9, 9.0)


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({"metric": "queueLength"}, 45.0),
        ({"metric": "queueLength", "queue": "emails"}, 3.0),
        ({"metric": "waitSeconds"}, 30.0),
        ({"metric": "waitSeconds", "queue": "default"}, 12.4),
        ({"metric": "processes", "queue": "default"}, 6.0),
    ],
)
async def test_get_metrics_reads_each_metric(scaler: Scaler, meta: dict[str, str], expected: float):
    value = await _metrics(scaler, thresholdMode="average", **meta)
    assert value.metricValueFloat == pytest.approx(expected)
    assert value.metricValue == int(expected + 0.5)


@pytest.mark.parametrize(
    "name", ["s0-horizon-orders-processes", "HORIZON-ORDERS-PROCESSES", "s12-Horizon-Orders-Processes"]
)
async def test_get_metrics_accepts_the_names_older_keda_sends(scaler: Scaler, name: str):
    assert (await _metrics(scaler, name)).metricValueFloat == 2.0


async def test_get_metrics_for_a_name_never_advertised_is_not_found(scaler: Scaler):
    code, details = await _status(_metrics(scaler, "horizon-payments-processes"))
    assert code == grpc.StatusCode.NOT_FOUND
    assert "'horizon-payments-processes' is not served" in details and "'horizon-orders-processes'" in details


@pytest.mark.parametrize(("meta", "active"), [({}, True), ({"activationThreshold": "9"}, False),
                                               ({"activationThreshold": "8.5"}, True)])  # fmt: skip
async def test_is_active_is_value_above_activation_threshold(scaler: Scaler, meta: dict[str, str], active: bool):
    assert (await scaler.stub.IsActive(ref(**meta))).result is active


async def test_zero_processes_is_inactive(exporter: FakeExporter, scaler: Scaler):
    exporter.publish(orders=microservice(0.0))
    async with asyncio.timeout(10):
        while (await scaler.stub.IsActive(ref())).result:
            pass


@pytest.mark.parametrize(
    ("meta", "code", "fragment"),
    [
        ({"microservice": "payments"}, grpc.StatusCode.NOT_FOUND, "unknown microservice 'payments'"),
        (
            {"metric": "queueLength", "queue": "sms"},
            grpc.StatusCode.NOT_FOUND,
            "no queue 'sms' (known queues: default, emails)",
        ),
        ({"microservice": "billing"}, grpc.StatusCode.UNAVAILABLE, "billing: never fetched from Horizon"),
        ({"microservice": "shipping"}, grpc.StatusCode.UNAVAILABLE, "shipping: data is 60"),
        ({"threshold": "eight"}, grpc.StatusCode.INVALID_ARGUMENT, "threshold: expected a number > 0, got 'eight'"),
        ({"color": "blue"}, grpc.StatusCode.INVALID_ARGUMENT, "trigger metadata color: expected one of the keys"),
    ],
)
async def test_errors_reach_keda_as_status_codes_naming_the_scaled_object(
    scaler: Scaler, meta: dict[str, str], code: grpc.StatusCode, fragment: str
):
    r = ref(**meta)
    calls = [scaler.stub.IsActive(r), _metrics(scaler, None, **meta)]
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        calls.append(scaler.stub.GetMetricSpec(r))
    for call in calls:
        got, details = await _status(call)
        assert (got, fragment in details, details.startswith("ScaledObject shop/orders-so: ")) == (code, True, True)


async def test_invalid_metadata_ends_stream_is_active_with_invalid_argument(scaler: Scaler):
    code, _ = await _status(scaler.stub.StreamIsActive(ref(metric="jobs")).read())
    assert code == grpc.StatusCode.INVALID_ARGUMENT


async def test_stream_metric_spec_is_unimplemented(scaler: Scaler):
    code, details = await _status(scaler.stub.StreamMetricSpec(ref()).read())
    assert code == grpc.StatusCode.UNIMPLEMENTED and "GetMetricSpec" in details


async def test_health_is_serving_while_the_source_is_fresh(scaler: Scaler):
    stub = health_pb2_grpc.HealthStub(scaler.channel)
    for service in ("", "externalscaler.ExternalScaler"):
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_services(scaler: Scaler):
    stub = reflection_pb2_grpc.ServerReflectionStub(scaler.channel)
    call = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    answer = await call.read()
    call.cancel()
    names = {s.name for s in answer.list_services_response.service}
    assert {"externalscaler.ExternalScaler", "grpc.health.v1.Health"} <= names


async def test_a_taken_port_refuses_to_start(scaler: Scaler, exporter: FakeExporter):
    second = ScalerServer(SnapshotSource(exporter.url, 10), scaler.address)
    with pytest.raises(RuntimeError, match=f"cannot listen on {scaler.address}"):
        await second.start()


async def test_one_log_line_per_activation_change(scaler: Scaler, exporter: FakeExporter, caplog):
    caplog.set_level(logging.INFO, logger="horizon_keda.scaler")
    for _ in range(3):
        await scaler.stub.IsActive(ref())
    lines = [r.getMessage() for r in caplog.records if "→" in r.getMessage()]
    assert lines == ["orders: processes 9 > 0 → active (microservice=orders metric=processes value=9 active=true)"]


async def test_one_log_line_per_scaling_change(scaler: Scaler, caplog):
    caplog.set_level(logging.INFO, logger="horizon_keda.scaler")
    for _ in range(3):
        await _metrics(scaler)
    lines = [r.getMessage() for r in caplog.records if "replica" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("orders: processes 9 ≥ 8 → 2 replica(s)")


async def test_a_bug_in_the_source_is_internal_not_unknown(caplog):
    caplog.set_level(logging.ERROR, logger="horizon_keda.scaler")
    async with running_scaler(BrokenSource()) as scaler:
        for call in (scaler.stub.IsActive(ref()), _metrics(scaler)):
            code, details = await _status(call)
            assert code == grpc.StatusCode.INTERNAL
            assert details == "ScaledObject shop/orders-so: internal error: 'processes'"
    assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [KeyError, KeyError]


def _wire(items: list[tuple[str, str]]) -> bytes:
    """A ScaledObjectRef on the wire with its map entries in exactly this order (clients may send any order)."""
    head = pb.ScaledObjectRef(name="orders-so", namespace="shop").SerializeToString()
    return head + b"".join(pb.ScaledObjectRef(scalerMetadata={k: v}).SerializeToString() for k, v in items)


async def test_metadata_in_any_key_order_is_the_same_cached_trigger(scaler: Scaler):
    items = sorted(ref(metric="queueLength", threshold="16", thresholdMode="average").scalerMetadata.items())
    forward, backward = (pb.ScaledObjectRef.FromString(_wire(order)) for order in (items, items[::-1]))
    assert _wire(items) != _wire(items[::-1])
    parse = scaler.server.servicer._parse
    assert parse(forward) is parse(backward)
    assert len(scaler.server.servicer._triggers) == 1


async def test_the_parsed_metadata_cache_is_bounded_and_keeps_the_recent_triggers(scaler: Scaler, monkeypatch):
    monkeypatch.setattr(servicer, "_CACHE_LIMIT", 3)
    for n in range(6):
        await scaler.stub.GetMetricSpec(ref(threshold=str(n + 1)))
        await scaler.stub.GetMetricSpec(ref(threshold="1"))  # used all along: never evicted
    cached = scaler.server.servicer._triggers.values()
    assert sorted(t.threshold for t in cached) == [1.0, 5.0, 6.0]
    code, _ = await _status(scaler.stub.GetMetricSpec(ref(threshold="0")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT  # errors are cached too, and still exact
    code, details = await _status(scaler.stub.GetMetricSpec(ref(threshold="0")))
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT,
                               "ScaledObject shop/orders-so: trigger metadata threshold: expected a number > 0, "
                               "got '0'")  # fmt: skip
