"""TLS and mTLS as KEDA speaks them, with certificates made in the test; rotated files are picked up."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from external_scaler._proto import externalscaler_pb2_grpc as pb_grpc
from external_scaler.server import ScalerServer
from external_scaler.snapshot_source import SnapshotSource
from external_scaler.tls import TLSFiles
from tests.certs import CA, Pem
from tests.scaler_fixtures import FakeExporter, microservice, ref, wait_until


@pytest.fixture
async def exporter() -> AsyncIterator[FakeExporter]:
    fake = FakeExporter(orders=microservice(9.0))
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def ca() -> CA:
    return CA("scaler test CA")


async def _serve(exporter: FakeExporter, files: TLSFiles) -> ScalerServer:
    server = ScalerServer(SnapshotSource(exporter.url, 10), "127.0.0.1:0", tls=files)
    await server.start()
    await wait_until(lambda: server.source.fresh)
    return server


async def _ask(port: int, ca_pem: bytes, client: Pem | None = None) -> bool:
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca_pem,
        private_key=client.key if client else None,
        certificate_chain=client.cert if client else None,
    )
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds) as channel:
        return (await pb_grpc.ExternalScalerStub(channel).IsActive(ref(), timeout=5)).result


async def _refused(port: int, ca_pem: bytes, client: Pem | None = None) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _ask(port, ca_pem, client)
    return info.value.code()


async def test_tls_serves_clients_that_trust_the_ca_and_refuses_plaintext(exporter: FakeExporter, ca: CA, tmp_path):
    cert, key = ca.issue("horizon-scaler").write(tmp_path, "server")
    server = await _serve(exporter, TLSFiles(cert, key))
    try:
        assert await _ask(server.port, ca.pem) is True
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await pb_grpc.ExternalScalerStub(channel).IsActive(ref(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(0)


async def test_mtls_refuses_no_client_cert_and_other_cas_and_answers_the_right_one(
    exporter: FakeExporter, ca: CA, tmp_path: Path
):
    cert, key = ca.issue("horizon-scaler").write(tmp_path, "server")
    (tmp_path / "clients.crt").write_bytes(ca.pem)
    server = await _serve(exporter, TLSFiles(cert, key, str(tmp_path / "clients.crt")))
    try:
        assert await _refused(server.port, ca.pem) == grpc.StatusCode.UNAVAILABLE
        stranger = CA("someone else's CA").issue("keda-operator", server=False)
        assert await _refused(server.port, ca.pem, stranger) == grpc.StatusCode.UNAVAILABLE
        assert await _ask(server.port, ca.pem, ca.issue("keda-operator", server=False)) is True
    finally:
        await server.stop(0)


async def test_rotated_certificate_files_are_used_for_new_connections(exporter: FakeExporter, ca: CA, tmp_path: Path):
    cert, key = ca.issue("horizon-scaler").write(tmp_path, "server")
    server = await _serve(exporter, TLSFiles(cert, key))
    try:
        assert await _ask(server.port, ca.pem) is True
        rotated = CA("rotated CA")
        # Like a Secret volume update: new files swapped in atomically.
        new_cert, new_key = rotated.issue("horizon-scaler").write(tmp_path, "next")
        os.replace(new_key, key)
        os.replace(new_cert, cert)
        assert await _ask(server.port, rotated.pem) is True
        assert await _refused(server.port, ca.pem) == grpc.StatusCode.UNAVAILABLE
        assert server.tls is not None and server.tls.reloads == 1
    finally:
        await server.stop(0)
