"""Credentials and TLS towards Horizon: headers, bearer token files (rotated), basic auth, custom CA, client certs.

Secrets must never reach a log line, a metric or the snapshot.
"""

from __future__ import annotations

import os
import ssl

from aiohttp.test_utils import TestServer

from exporter.http import BasicAuth
from exporter.tls import TLSConfig
from tests.certs import CA
from tests.conftest import fixed_target, wait_for
from tests.fake_horizon import FakeHorizon
from tests.payloads import topology_a
from tests.test_exporter_http import config, metrics, value

SECRET = "s3cr3t-t0ken-value"


async def test_static_headers_are_sent(horizon, make_exporter):
    fake, url = horizon
    client = await make_exporter(config(fixed_target("orders", url, headers={"X-Monitoring-Token": SECRET})))
    await wait_for(client, lambda s: s.targets["orders"].up)
    assert {r.headers["X-Monitoring-Token"] for r in fake.requests} == {SECRET}


async def test_bearer_token_file_is_reread_when_it_changes(horizon, make_exporter, tmp_path, caplog):
    fake, url = horizon
    token = tmp_path / "token"
    token.write_text(SECRET + "\n")
    client = await make_exporter(config(fixed_target("orders", url, bearer_token_file=str(token))))
    await wait_for(client, lambda s: s.targets["orders"].up)
    assert fake.requests[-1].headers["Authorization"] == f"Bearer {SECRET}"
    token.write_text("rotated-token-2")
    os.utime(token, ns=(1, 1))  # a different mtime even on coarse-grained file systems
    await wait_for(client, lambda s: fake.requests[-1].headers["Authorization"] == "Bearer rotated-token-2")
    token.unlink()
    snap = await wait_for(client, lambda s: not s.targets["orders"].up)
    err = snap.targets["orders"].error
    assert err.reason == "credentials" and str(token) in err.message
    body = await (await client.get("/metrics")).text() + await (await client.get("/api/v1/snapshot")).text()
    for secret in (SECRET, "rotated-token-2"):
        assert secret not in body
        assert secret not in caplog.text


async def test_basic_auth_with_password_file(horizon, make_exporter, tmp_path):
    fake, url = horizon
    pw = tmp_path / "pw"
    pw.write_text("hunter2")
    target = fixed_target("orders", url, basic_auth=BasicAuth("prometheus", password_file=str(pw)))
    client = await make_exporter(config(target))
    await wait_for(client, lambda s: s.targets["orders"].up)
    assert fake.requests[-1].headers["Authorization"] == "Basic cHJvbWV0aGV1czpodW50ZXIy"


async def _tls_horizon(ca: CA, tmp_path, *, require_client_ca: CA | None = None):
    fake = FakeHorizon()
    fake.set(*topology_a())
    cert, key = ca.issue("localhost").write(tmp_path, "server")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    if require_client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=require_client_ca.pem.decode())
    server = TestServer(fake.app(), host="127.0.0.1", scheme="https")
    await server.start_server(ssl=ctx)
    return fake, server


async def test_custom_ca_and_client_certificate(make_exporter, tmp_path, caplog):
    ca = CA()
    _, server = await _tls_horizon(ca, tmp_path, require_client_ca=ca)
    try:
        url = f"https://localhost:{server.port}/horizon"
        ca_file = tmp_path / "ca.crt"
        ca_file.write_bytes(ca.pem)
        client_cert, client_key = ca.issue("exporter", server=False).write(tmp_path, "client")
        good = fixed_target(
            "good", url, tls=TLSConfig(ca_file=str(ca_file), cert_file=client_cert, key_file=client_key)
        )
        no_ca = fixed_target("no-ca", url)
        no_client_cert = fixed_target("no-cert", url, tls=TLSConfig(ca_file=str(ca_file)))
        client = await make_exporter(config(good, no_ca, no_client_cert))
        snap = await wait_for(client, lambda s: all(t.attempts >= 1 for t in s.targets.values()))
        assert snap.targets["good"].up
        assert snap.microservices["good"].values.processes == 9.0
        assert snap.targets["no-ca"].error.reason == "tls"
        assert not snap.targets["no-cert"].up
    finally:
        await server.close()


async def test_insecure_skip_verify(make_exporter, tmp_path):
    _, server = await _tls_horizon(CA(), tmp_path)
    try:
        url = f"https://localhost:{server.port}/horizon"
        client = await make_exporter(config(fixed_target("orders", url, tls=TLSConfig(insecure_skip_verify=True))))
        await wait_for(client, lambda s: s.targets["orders"].up)
    finally:
        await server.close()


async def test_a_tls_file_that_does_not_load_is_a_visible_tls_error_until_fixed(make_exporter, tmp_path):
    # Config built directly, as if the file had been replaced after load: the target must not silently never poll.
    ca = CA()
    _, server = await _tls_horizon(ca, tmp_path)
    try:
        ca_file = tmp_path / "ca.crt"
        ca_file.write_text("not a certificate\n")
        url = f"https://localhost:{server.port}/horizon"
        client = await make_exporter(config(fixed_target("orders", url, tls=TLSConfig(ca_file=str(ca_file)))))
        snap = await wait_for(client, lambda s: s.targets["orders"].attempts >= 1)
        err = snap.targets["orders"].error
        assert err.reason == "tls"
        assert err.message.startswith(f"tls.ca_file: cannot load CA certificates from {ca_file}: [X509: ")
        m = await metrics(client)
        assert value(m, "horizon_up", microservice="orders") == 0.0
        assert value(m, "horizon_poll_errors_total", target="orders", reason="tls") >= 1.0
        ca_file.write_bytes(ca.pem)  # retried with backoff: a fixed file brings the target up
        snap = await wait_for(client, lambda s: s.targets["orders"].up)
        assert snap.microservices["orders"].values.processes == 9.0
    finally:
        await server.close()
