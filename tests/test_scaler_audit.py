"""The audit trail: a JSON line for every decision change of a ScaledObject and every refused call, through a real
gRPC client; repeats of the same decision write nothing."""

from __future__ import annotations

import asyncio
import io
import json

import grpc
import pytest

from external_scaler._proto import externalscaler_pb2 as pb
from external_scaler.audit import AuditLog
from external_scaler.tenants import TenantsFile
from tests.scaler_fixtures import FakeExporter, microservice, ref, scaler_on


@pytest.fixture
async def exporter():
    fake = FakeExporter(orders=microservice(3.0))
    await fake.start()
    yield fake
    await fake.stop()


def records(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_decisions_are_written_when_they_change(exporter):
    out = io.StringIO()
    clock = iter(float(t) for t in range(1764331200, 1764331300))
    async with scaler_on(exporter, audit=AuditLog(out, clock=lambda: next(clock))) as scaler:
        so = ref(name="orders-so", namespace="shop", activationThreshold="5")
        assert (await scaler.stub.IsActive(so)).result is False
        assert (await scaler.stub.IsActive(so)).result is False  # the same decision: no line
        request = pb.GetMetricsRequest(scaledObjectRef=so, metricName="horizon-orders-processes")
        spec = await scaler.stub.GetMetricSpec(so)
        request.metricName = spec.metricSpecs[0].metricName
        await scaler.stub.GetMetrics(request)
        exporter.publish(orders=microservice(20.0))
        async with asyncio.timeout(5):
            while not (await scaler.stub.IsActive(so)).result:
                pass
    lines = records(out)
    active = [r for r in lines if r["event"] == "decision" and "active" in r]
    assert [r["active"] for r in active] == [False, True]
    first = active[0]
    assert first["namespace"] == "shop" and first["scaled_object"] == "orders-so"
    assert first["microservice"] == "orders" and first["metric"] == "processes" and first["value"] == 3.0
    assert first["threshold"] == 8.0 and first["mode"] == "reached" and first["activation_threshold"] == 5.0
    assert first["time"] == "2025-11-28T12:00:00.000Z"
    scale = [r for r in lines if r["event"] == "decision" and "replicas" in r]
    assert scale and scale[0]["replicas"] == 1


async def test_refused_calls_are_written_with_their_status_and_why(tmp_path, exporter):
    path = tmp_path / "tenants.yml"
    path.write_text("tenants:\n  shop:\n    namespaces: [shop]\n    microservices: [orders]\n")
    out = io.StringIO()
    async with scaler_on(exporter, audit=AuditLog(out), tenants=TenantsFile(str(path))) as scaler:
        for request, code in (
            (ref(namespace="acme"), grpc.StatusCode.PERMISSION_DENIED),
            (ref(namespace="shop", threshold="eight"), grpc.StatusCode.INVALID_ARGUMENT),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await scaler.stub.IsActive(request)
            assert info.value.code() == code
    refused = [r for r in records(out) if r["event"] == "refused"]
    assert [(r["rpc"], r["code"], r["namespace"]) for r in refused] == [
        ("IsActive", "PERMISSION_DENIED", "acme"), ("IsActive", "INVALID_ARGUMENT", "shop"),
    ]  # fmt: skip
    assert "may not read microservice 'orders'" in refused[0]["reason"] and "threshold" in refused[1]["reason"]


def test_the_console_script_takes_the_audit_log_flag_and_refuses_an_unwritable_path(tmp_path, caplog):
    from external_scaler.cli import main, parse_args

    args = parse_args(["--audit-log", "-", "--tenants", str(tmp_path / "t.yml")], {})
    assert args.audit_log == "-" and args.tenants.endswith("t.yml")
    assert parse_args([], {"HORIZON_SCALER_AUDIT_LOG": "/var/log/audit.jsonl"}).audit_log == "/var/log/audit.jsonl"
    assert main(["--listen", "127.0.0.1:0", "--audit-log", str(tmp_path / "missing" / "audit.jsonl")]) == 2
    assert "--audit-log: cannot open" in caplog.text
