"""Tenant isolation in the scaler: a ScaledObject reads only its tenant's microservices, through a real gRPC client,
with the same answer whether a forbidden microservice exists or not; the policy reloads; a bad file is refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from external_scaler._proto import externalscaler_pb2 as pb
from external_scaler.cli import main
from external_scaler.tenants import TenantsError, TenantsFile, parse_tenants
from tests.scaler_fixtures import FakeExporter, microservice, ref, scaler_on

POLICY = """
tenants:
  shop:
    namespaces: [shop, shop-staging]
    microservices: [orders, "payments-*"]
  acme:
    namespaces: [acme]
    microservices: ["acme-*"]
"""


@pytest.fixture
async def exporter():
    fake = FakeExporter(
        orders=microservice(9.0), **{"payments-eu": microservice(3.0), "acme-billing": microservice(12.0)}
    )
    await fake.start()
    yield fake
    await fake.stop()


def policy_file(tmp_path: Path, text: str = POLICY) -> Path:
    path = tmp_path / "tenants.yml"
    path.write_text(text)
    return path


async def denied(stub, request) -> grpc.aio.AioRpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.IsActive(request)
    return info.value


async def test_each_tenant_reads_only_its_own(tmp_path, exporter):
    tenants = TenantsFile(str(policy_file(tmp_path)), check_every=0)
    async with scaler_on(exporter, tenants=tenants) as scaler:
        stub = scaler.stub
        assert (await stub.IsActive(ref(namespace="shop"))).result is True
        assert (await stub.IsActive(ref(namespace="shop-staging", microservice="payments-eu"))).result is True
        assert (await stub.IsActive(ref(namespace="acme", microservice="acme-billing"))).result is True
        err = await denied(stub, ref(name="so", namespace="acme", microservice="orders"))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
        ghost = await denied(stub, ref(name="so", namespace="acme", microservice="shop-ghost"))
        assert ghost.code() == grpc.StatusCode.PERMISSION_DENIED
        # No oracle: an existing and a missing microservice of another tenant get the same words.
        assert err.details().replace("'orders'", "'X'") == ghost.details().replace("'shop-ghost'", "'X'")
        stranger = await denied(stub, ref(namespace="default"))
        assert stranger.code() == grpc.StatusCode.PERMISSION_DENIED
        unknown = await denied(stub, ref(name="so", namespace="acme", microservice="acme-ghost"))
        assert unknown.code() == grpc.StatusCode.NOT_FOUND
        assert "orders" not in unknown.details() and "payments" not in unknown.details(), "no list of others' names"
        for call in (
            stub.GetMetricSpec(ref(namespace="acme")),
            stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref(namespace="acme"), metricName="x")),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        stream = stub.StreamIsActive(ref(namespace="acme"))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stream.read()
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_the_policy_reloads_and_a_bad_file_keeps_the_last_good_one(tmp_path, exporter):
    path = policy_file(tmp_path)
    tenants = TenantsFile(str(path), check_every=0)
    async with scaler_on(exporter, tenants=tenants) as scaler:
        assert (await denied(scaler.stub, ref(namespace="acme"))).code() == grpc.StatusCode.PERMISSION_DENIED
        path.write_text(POLICY.replace('["acme-*"]', '["acme-*", orders]'))
        await asyncio.sleep(0.01)
        assert (await scaler.stub.IsActive(ref(namespace="acme"))).result is True
        path.write_text("tenants: [broken\n")
        assert (await scaler.stub.IsActive(ref(namespace="acme"))).result is True, "the last good policy stays"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tenants: {a: {namespaces: [x], microservices: [m]}, b: {namespaces: [x], microservices: [n]}}",
         "tenants.b.namespaces: 'x' also belongs to tenant 'a'"),
        ("tenants: {a: {namespaces: [Not_A_Namespace], microservices: [m]}}", "is not a Kubernetes namespace"),
        ("tenants: {a: {namespaces: [x], microservices: []}}", "tenants.a.microservices: expected a non-empty list"),
        ("tenants: {a: {namespaces: [x], microservices: [m], extra: 1}}", "unknown key 'extra'"),
        ("namespaces: [x]", "expected one key `tenants:`"),
    ],
)  # fmt: skip
def test_bad_policies_name_the_key(text: str, message: str):
    import yaml

    with pytest.raises(TenantsError, match=message.replace("[", r"\[").replace("`", "`")):
        parse_tenants(yaml.safe_load(text), "tenants.yml")


def test_a_bad_tenants_file_stops_the_scaler_before_it_serves(tmp_path, caplog):
    path = policy_file(tmp_path, "tenants: {a: {namespaces: [x]}}\n")
    assert main(["--listen", "127.0.0.1:0", "--tenants", str(path)]) == 2
    assert "tenants.a.microservices" in caplog.text
