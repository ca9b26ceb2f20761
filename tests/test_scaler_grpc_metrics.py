"""grpc_server_* on the scaler's /metrics: go-grpc-prometheus' names, labels, codes and buckets, counted by the
interceptor on a running server called through the generated client, and read back with prometheus_client's parser.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from external_scaler._proto import externalscaler_pb2 as pb
from external_scaler.grpc_metrics import GO_CODE_NAMES, GO_DEFAULT_BUCKETS, GrpcServerMetrics, split_method
from external_scaler.metadata import Trigger
from external_scaler.snapshot_source import SnapshotSource
from external_scaler.source import Source
from external_scaler.tenants import TenantsFile
from external_scaler.web import WebServer, create_app
from tests.scaler_fixtures import FakeExporter, Scaler, microservice, ref, scaler_with_metrics, scrape, wait_until

SERVICE = "externalscaler.ExternalScaler"


@pytest.fixture
async def exporter() -> AsyncIterator[FakeExporter]:
    fake = FakeExporter(orders=microservice(9.0), billing=microservice(None, up=False, target="billing"))
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def scaler(exporter: FakeExporter) -> AsyncIterator[tuple[Scaler, str]]:
    source = SnapshotSource(exporter.url, 10.0, backoff_max=0.2)
    async with scaler_with_metrics(source) as (scaler, url):
        await wait_until(lambda: source.fresh)
        yield scaler, url


def labels(method: str, kind: str = "unary", service: str = SERVICE) -> dict[str, str]:
    return {"grpc_type": kind, "grpc_service": service, "grpc_method": method}


async def failed(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call  # type: ignore[misc]
    return info.value.code()


# --- the names and shapes go-grpc-prometheus uses --------------------------------------------------------------


def test_every_grpc_status_has_its_go_name():
    assert set(GO_CODE_NAMES) == set(grpc.StatusCode)
    assert GO_CODE_NAMES[grpc.StatusCode.CANCELLED] == "Canceled"  # Go's spelling, one L
    assert GO_CODE_NAMES[grpc.StatusCode.PERMISSION_DENIED] == "PermissionDenied"


def test_method_names_split_like_go():
    assert split_method("/externalscaler.ExternalScaler/IsActive") == ("externalscaler.ExternalScaler", "IsActive")
    assert split_method("garbage") == ("unknown", "unknown")


async def test_families_have_the_go_names_types_and_labels(scaler):
    stub_scaler, url = scaler
    await stub_scaler.stub.IsActive(ref())
    scraped = await scrape(url)
    expected = {
        "grpc_server_started": ("counter", {"grpc_type", "grpc_service", "grpc_method"}),
        "grpc_server_handled": ("counter", {"grpc_type", "grpc_service", "grpc_method", "grpc_code"}),
        "grpc_server_msg_received": ("counter", {"grpc_type", "grpc_service", "grpc_method"}),
        "grpc_server_msg_sent": ("counter", {"grpc_type", "grpc_service", "grpc_method"}),
        "grpc_server_handling_seconds": ("histogram", {"grpc_type", "grpc_service", "grpc_method"}),
    }
    for name, (kind, label_names) in expected.items():
        family = scraped.families[name]
        assert family.type == kind, name
        assert {frozenset(s.labels) - {"le"} for s in family.samples} == {frozenset(label_names)}, name
    # Counters carry only their `_total` sample: no `_created` series doubling the cardinality.
    assert {s.name for s in scraped.families["grpc_server_started"].samples} == {"grpc_server_started_total"}


async def test_handling_seconds_uses_client_golangs_default_buckets(scaler):
    stub_scaler, url = scaler
    await stub_scaler.stub.IsActive(ref())
    buckets = (await scrape(url)).samples("grpc_server_handling_seconds_bucket")
    les = [float(s.labels["le"]) for s in buckets if s.labels["grpc_method"] == "IsActive"]
    assert les == [*GO_DEFAULT_BUCKETS, float("inf")]
    assert GO_DEFAULT_BUCKETS == (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


# --- unary calls ---------------------------------------------------------------------------------------------


async def test_a_unary_call_counts_start_messages_code_and_duration(scaler):
    stub_scaler, url = scaler
    for _ in range(3):
        await stub_scaler.stub.IsActive(ref())
    spec = await stub_scaler.stub.GetMetricSpec(ref())
    request = pb.GetMetricsRequest(scaledObjectRef=ref(), metricName=spec.metricSpecs[0].metricName)
    await stub_scaler.stub.GetMetrics(request)
    scraped = await scrape(url)
    one = labels("IsActive")
    assert scraped.value("grpc_server_started_total", **one) == 3
    assert scraped.value("grpc_server_handled_total", **one, grpc_code="OK") == 3
    assert scraped.value("grpc_server_msg_received_total", **one) == 3
    assert scraped.value("grpc_server_msg_sent_total", **one) == 3
    assert scraped.value("grpc_server_handling_seconds_count", **one) == 3
    assert 0 < scraped.value("grpc_server_handling_seconds_sum", **one) < 3  # type: ignore[operator]
    assert scraped.value("grpc_server_handled_total", **labels("GetMetrics"), grpc_code="OK") == 1
    assert scraped.value("grpc_server_handled_total", **labels("GetMetricSpec"), grpc_code="OK") == 1


async def test_refusals_are_counted_under_the_go_code_names(tmp_path: Path, exporter: FakeExporter):
    policy = tmp_path / "tenants.yml"
    policy.write_text("tenants:\n  shop:\n    namespaces: [shop]\n    microservices: [orders, billing, ghost]\n")
    source = SnapshotSource(exporter.url, 10.0, backoff_max=0.2)
    async with scaler_with_metrics(source, tenants=TenantsFile(str(policy), check_every=0)) as (scaler, url):
        await wait_until(lambda: source.fresh)
        stub = scaler.stub
        assert await failed(stub.IsActive(ref(threshold="eight"))) == grpc.StatusCode.INVALID_ARGUMENT
        assert await failed(stub.IsActive(ref(namespace="acme"))) == grpc.StatusCode.PERMISSION_DENIED
        assert await failed(stub.IsActive(ref(microservice="ghost"))) == grpc.StatusCode.NOT_FOUND
        assert await failed(stub.IsActive(ref(microservice="billing"))) == grpc.StatusCode.UNAVAILABLE
        assert await failed(stub.StreamMetricSpec(ref()).read()) == grpc.StatusCode.UNIMPLEMENTED
        scraped = await scrape(url)
    handled = {s.labels["grpc_code"]: s.value for s in scraped.samples("grpc_server_handled_total")
               if s.labels["grpc_method"] == "IsActive"}  # fmt: skip
    assert handled == {"InvalidArgument": 1, "PermissionDenied": 1, "NotFound": 1, "Unavailable": 1}
    assert scraped.value("grpc_server_msg_sent_total", **labels("IsActive")) == 0  # errors send no message
    assert scraped.value("grpc_server_msg_received_total", **labels("IsActive")) == 4
    stream = labels("StreamMetricSpec", "server_stream")
    assert scraped.value("grpc_server_handled_total", **stream, grpc_code="Unimplemented") == 1


class _Slow(Source):
    """Answers every read after `delay` seconds."""

    fresh, description = True, "slow"

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def read(self, trigger: Trigger) -> float:
        await asyncio.sleep(self.delay)
        return 9.0


async def test_a_passed_deadline_is_deadline_exceeded_and_a_slow_call_lands_in_a_higher_bucket():
    async with scaler_with_metrics(_Slow(0.3)) as (scaler, url):
        assert await failed(scaler.stub.IsActive(ref(), timeout=0.05)) == grpc.StatusCode.DEADLINE_EXCEEDED
        await scaler.stub.IsActive(ref())
        await asyncio.sleep(0.4)  # the cancelled handler finishes its bookkeeping
        scraped = await scrape(url)
    one = labels("IsActive")
    assert scraped.value("grpc_server_handled_total", **one, grpc_code="DeadlineExceeded") == 1
    assert scraped.value("grpc_server_handled_total", **one, grpc_code="OK") == 1
    # The OK call took ≥ 0.3 s: not in le=0.25, in le=0.5.
    assert scraped.value("grpc_server_handling_seconds_bucket", **one, le="0.25") == 1
    assert scraped.value("grpc_server_handling_seconds_bucket", **one, le="0.5") == 2


async def test_an_exception_escaping_a_handler_is_unknown_and_client_streams_count_their_messages():
    """A bare grpc.aio server with the interceptor and handlers the scaler does not have: a plain exception
    (grpc answers UNKNOWN) and a client-streaming method."""
    metrics = GrpcServerMetrics()

    async def boom(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise RuntimeError("bug")

    async def count(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
        return str(len([r async for r in requests])).encode()

    handlers = {"Boom": grpc.unary_unary_rpc_method_handler(boom), "Count": grpc.stream_unary_rpc_method_handler(count)}
    server = grpc.aio.server(interceptors=[metrics.interceptor()])
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.Probe", handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(metrics)
    web_server = WebServer(create_app(registry), "127.0.0.1", 0)
    web_port = await web_server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert await failed(channel.unary_unary("/test.Probe/Boom")(b"")) == grpc.StatusCode.UNKNOWN
            assert await channel.stream_unary("/test.Probe/Count")(iter([b"a", b"b", b"c"])) == b"3"
            assert await failed(channel.unary_unary("/test.Probe/Missing")(b"")) == grpc.StatusCode.UNIMPLEMENTED
        scraped = await scrape(f"http://127.0.0.1:{web_port}/metrics")
    finally:
        await web_server.stop()
        await server.stop(0)
    assert scraped.value("grpc_server_handled_total", **labels("Boom", service="test.Probe"), grpc_code="Unknown") == 1
    counted = labels("Count", "client_stream", "test.Probe")
    assert scraped.value("grpc_server_msg_received_total", **counted) == 3
    assert scraped.value("grpc_server_msg_sent_total", **counted) == 1
    # An unknown method never reaches a handler, as in Go: no series for it.
    assert not [s for s in scraped.samples("grpc_server_started_total") if s.labels["grpc_method"] == "Missing"]


# --- streams -------------------------------------------------------------------------------------------------


async def test_stream_is_active_counts_each_push_and_ends_canceled_or_ok(scaler, exporter: FakeExporter):
    stub_scaler, url = scaler
    stream = stub_scaler.stub.StreamIsActive(ref(activationThreshold="10"))
    assert (await stream.read()).result is False
    exporter.publish(orders=microservice(12.0))
    assert (await asyncio.wait_for(stream.read(), 5)).result is True
    exporter.publish(orders=microservice(2.0))
    assert (await asyncio.wait_for(stream.read(), 5)).result is False
    one = labels("StreamIsActive", "server_stream")
    scraped = await scrape(url)
    assert scraped.value("grpc_server_msg_sent_total", **one) == 3
    assert scraped.value("grpc_server_msg_received_total", **one) == 1
    assert scraped.value("grpc_server_started_total", **one) == 1
    assert scraped.value("grpc_server_handled_total", **one, grpc_code="Canceled") is None  # still open
    stream.cancel()
    ok_stream = stub_scaler.stub.StreamIsActive(ref())
    assert (await ok_stream.read()).result is True
    await wait_until(lambda: stub_scaler.server.servicer.open_streams == 1)
    await stub_scaler.server.servicer.stop_streams()  # what SIGTERM does: end the streams with OK
    assert await ok_stream.read() is grpc.aio.EOF
    scraped = await scrape(url)
    assert scraped.value("grpc_server_handled_total", **one, grpc_code="Canceled") == 1
    assert scraped.value("grpc_server_handled_total", **one, grpc_code="OK") == 1
    assert scraped.value("grpc_server_handling_seconds_count", **one) == 2


async def test_health_and_reflection_are_measured_too(scaler):
    stub_scaler, url = scaler
    health = health_pb2_grpc.HealthStub(stub_scaler.channel)
    await health.Check(health_pb2.HealthCheckRequest(service=""))
    watch = health.Watch(health_pb2.HealthCheckRequest(service=""))  # a reader/writer-style handler
    assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(stub_scaler.channel)
    requests = [reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE)]  # fmt: skip
    call = reflection.ServerReflectionInfo(iter(requests))
    answers = [answer async for answer in call]
    assert len(answers) == 2
    watch.cancel()
    await asyncio.sleep(0.1)
    scraped = await scrape(url)
    check = labels("Check", service="grpc.health.v1.Health")
    assert scraped.value("grpc_server_handled_total", **check, grpc_code="OK") == 1
    watched = labels("Watch", "server_stream", "grpc.health.v1.Health")
    assert scraped.value("grpc_server_msg_sent_total", **watched) == 1
    assert scraped.value("grpc_server_handled_total", **watched, grpc_code="Canceled") == 1
    info = labels("ServerReflectionInfo", "bidi_stream", "grpc.reflection.v1alpha.ServerReflection")
    assert scraped.value("grpc_server_msg_received_total", **info) == 2
    assert scraped.value("grpc_server_msg_sent_total", **info) == 2
    assert scraped.value("grpc_server_handled_total", **info, grpc_code="OK") == 1


async def test_a_methods_wrapper_is_built_once_not_per_call():
    interceptor = GrpcServerMetrics().interceptor()

    async def behavior(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    handler, other = grpc.unary_unary_rpc_method_handler(behavior), grpc.unary_unary_rpc_method_handler(behavior)

    async def lookup(details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        return other if details.method.endswith("Other") else handler  # type: ignore[attr-defined]

    class Details:
        def __init__(self, method: str) -> None:
            self.method = method

    first = await interceptor.intercept_service(lookup, Details("/test.Probe/Echo"))
    assert await interceptor.intercept_service(lookup, Details("/test.Probe/Echo")) is first
    assert first is not handler and first.unary_unary is not behavior
    assert await interceptor.intercept_service(lookup, Details("/test.Probe/Other")) is not first
