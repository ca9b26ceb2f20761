"""The exporter behind its web config: TLS, mTLS, basic auth, headers, rate limit and reloads, over real sockets."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import bcrypt
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from exporter.app import create_app
from exporter.webguard import WebGuard, basic_credentials
from external_scaler.exporter_auth import ExporterAuth, ExporterCredentials
from external_scaler.snapshot_source import SnapshotSource
from tests.certs import CA
from tests.conftest import fixed_target, real_prometheus, require_binary
from tests.test_exporter_http import config
from tests.test_prometheus_real import query

PASSWORD = "s3cret-scrape"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()


class Exporter:
    """An exporter app on a real loopback socket with `guard` applied, as cli.main runs it."""

    def __init__(self, guard: WebGuard, runner: web.AppRunner, port: int) -> None:
        self.guard, self.runner, self.port = guard, runner, port
        self.scheme = "https" if guard.ssl_context is not None else "http"

    def url(self, path: str) -> str:
        return f"{self.scheme}://localhost:{self.port}{path}"


@pytest.fixture
async def serve(horizon) -> AsyncIterator[Callable[[Path], asyncio.Future]]:
    _fake, horizon_url = horizon
    runners: list[web.AppRunner] = []

    async def start(web_config: Path) -> Exporter:
        guard = WebGuard(str(web_config))
        app = create_app(config(fixed_target("orders", horizon_url)), guard=guard)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=guard.ssl_context)
        await site.start()
        runners.append(runner)
        return Exporter(guard, runner, runner.addresses[0][1])

    yield start  # type: ignore[misc]
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
def pki(tmp_path):
    ca = CA()
    cert, key = ca.issue("exporter").write(tmp_path, "server")
    (tmp_path / "ca.crt").write_bytes(ca.pem)
    return ca, cert, key, str(tmp_path / "ca.crt")


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def client_ssl(ca_file: str, cert: tuple[str, str] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file)
    if cert is not None:
        ctx.load_cert_chain(*cert)
    return ctx


async def get(url: str, **kw) -> tuple[int, str, dict[str, str]]:
    async with aiohttp.ClientSession() as session, session.get(url, **kw) as resp:
        return resp.status, await resp.text(), dict(resp.headers)


def refused(text: str) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name == "horizon_exporter_http_requests_refused":
            out = {s.labels["reason"]: s.value for s in family.samples if s.name.endswith("_total")}
    return out


async def metrics_until(url: str, predicate: Callable[[str], bool], **kw) -> str:
    """/metrics once `predicate` holds: the body is rendered once per snapshot revision (every poll), so a counter
    can trail by up to one poll interval."""
    async with asyncio.timeout(10):
        while True:
            status, body, _ = await get(url, **kw)
            assert status == 200
            if predicate(body):
                return body
            await asyncio.sleep(0.1)


def touch_later(path: Path) -> None:
    """Give `path` a new mtime even on a coarse clock (the reload check keys on inode, mtime and size)."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


async def test_basic_auth_over_tls_guards_everything_but_the_probes(serve, pki, tmp_path):
    _ca, cert, key, ca_file = pki
    web_config = tmp_path / "web.yml"
    web_config.write_text(f"""tls_server_config: {{cert_file: {cert}, key_file: {key}}}
basic_auth_users:
  prometheus: "{HASH}"
http_server_config:
  headers: {{X-Frame-Options: deny, Strict-Transport-Security: max-age=63072000}}
""")
    exporter = await serve(web_config)
    tls = client_ssl(ca_file)
    good = basic("prometheus", PASSWORD)

    for path in ("/metrics", "/api/v1/snapshot", "/", "/probe?module=x&target=http://127.0.0.1:1/"):
        status, body, headers = await get(exporter.url(path), ssl=tls)
        assert (status, body) == (401, "Unauthorized\n"), path
        assert headers["WWW-Authenticate"].startswith("Basic ")
        assert headers["X-Frame-Options"] == "deny"  # configured headers ride on refusals too
    for auth in (basic("prometheus", "wrong"), basic("nobody", PASSWORD)):
        assert (await get(exporter.url("/metrics"), ssl=tls, headers=auth))[0] == 401
    bad_header = {"Authorization": "Basic !!!not-base64"}
    assert (await get(exporter.url("/metrics"), ssl=tls, headers=bad_header))[0] == 401

    status, body, headers = await get(exporter.url("/metrics"), ssl=tls, headers=good)
    assert status == 200 and "horizon_up" in body
    assert headers["Strict-Transport-Security"] == "max-age=63072000"
    body = await metrics_until(exporter.url("/metrics"), lambda b: refused(b).get("unauthenticated") == 7.0,
                               ssl=tls, headers=good)  # fmt: skip
    assert refused(body) == {"unauthenticated": 7.0, "rate_limited": 0.0, "client_certificate": 0.0}
    # kubelet's probes carry no password: /healthz and /readyz answer without one, and say nothing else.
    assert (await get(exporter.url("/healthz"), ssl=tls))[:2] == (200, "ok\n")
    status, body, _ = await get(exporter.url("/readyz"), ssl=tls)
    assert status in (200, 503) and "orders" not in body
    # Plain HTTP on the TLS port gets no answer at all.
    with pytest.raises(aiohttp.ClientError):
        await get(f"http://127.0.0.1:{exporter.port}/metrics")
    # A client that does not trust the exporter's CA does not connect.
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await get(exporter.url("/healthz"))


async def test_not_ready_names_no_target_when_authentication_is_on(horizon, tmp_path):
    fake, horizon_url = horizon
    fake.stall.clear()  # the first poll never completes
    web_config = tmp_path / "web.yml"
    web_config.write_text(f'basic_auth_users:\n  prometheus: "{HASH}"\n')
    app = create_app(config(fixed_target("orders", horizon_url)), guard=WebGuard(str(web_config)))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        status, body, _ = await get(f"http://127.0.0.1:{runner.addresses[0][1]}/readyz")
        assert (status, body) == (503, "waiting for the first poll of 1 target(s)\n")
    finally:
        fake.stall.set()
        await runner.cleanup()


async def test_a_removed_user_is_refused_at_once_even_after_a_cached_success(serve, tmp_path):
    other = bcrypt.hashpw(b"other-pass", bcrypt.gensalt(4)).decode()
    web_config = tmp_path / "web.yml"
    web_config.write_text(f'basic_auth_users:\n  prometheus: "{HASH}"\n  keda: "{other}"\n')
    exporter = await serve(web_config)
    good = basic("prometheus", PASSWORD)
    assert (await get(exporter.url("/metrics"), headers=good))[0] == 200
    assert (await get(exporter.url("/metrics"), headers=good))[0] == 200  # from the cache now
    web_config.write_text(f'basic_auth_users:\n  keda: "{other}"\n')
    touch_later(web_config)
    await asyncio.sleep(1.05)  # the file is checked at most once a second
    assert (await get(exporter.url("/metrics"), headers=good))[0] == 401
    keda = basic("keda", "other-pass")
    await metrics_until(exporter.url("/metrics"), lambda b: "web_config_last_reload_successful 1.0" in b, headers=keda)


async def test_a_broken_reload_keeps_the_running_config_and_says_so(serve, tmp_path, caplog):
    web_config = tmp_path / "web.yml"
    web_config.write_text(f'basic_auth_users:\n  prometheus: "{HASH}"\n')
    exporter = await serve(web_config)
    good = basic("prometheus", PASSWORD)
    web_config.write_text("basic_auth_users:\n  prometheus: plaintext-by-mistake\n")
    touch_later(web_config)
    await asyncio.sleep(1.05)
    with caplog.at_level(logging.ERROR, logger="horizon_keda.web"):
        status, _body, _ = await get(exporter.url("/metrics"), headers=good)
    assert status == 200  # still the old users: nothing lost, nothing opened
    await metrics_until(exporter.url("/metrics"), lambda b: "web_config_last_reload_successful 0.0" in b, headers=good)
    (record,) = [r for r in caplog.records if r.name == "horizon_keda.web"]
    assert "keeping the running one" in record.getMessage()
    assert "basic_auth_users.prometheus: expected a bcrypt hash" in record.getMessage()
    assert "plaintext-by-mistake" not in record.getMessage()
    # Switching TLS on is a restart, not a reload: refused the same way.
    web_config.write_text(f"tls_server_config: {{cert_file: {tmp_path}/x.crt, key_file: {tmp_path}/x.key}}\n")
    touch_later(web_config)
    await asyncio.sleep(1.05)
    assert (await get(exporter.url("/metrics"), headers=good))[0] == 200


async def test_rate_limit_refuses_with_429_but_never_the_probes(serve, tmp_path):
    web_config = tmp_path / "web.yml"
    web_config.write_text("rate_limit: {interval: 1h, burst: 2}\n")
    exporter = await serve(web_config)
    assert [(await get(exporter.url("/api/v1/snapshot")))[0] for _ in range(3)] == [200, 200, 429]
    assert (await get(exporter.url("/healthz")))[0] == 200
    assert (await get(exporter.url("/readyz")))[0] in (200, 503)


def peer_common_name(port: int, ca_file: str) -> str:
    ctx = client_ssl(ca_file)
    with socket.create_connection(("127.0.0.1", port)) as raw, ctx.wrap_socket(raw, server_hostname="localhost") as s:
        cert = s.getpeercert()
    return dict(x[0] for x in cert["subject"])["commonName"]


async def test_a_rotated_certificate_serves_new_connections_without_a_restart(serve, pki, tmp_path):
    ca, cert, key, ca_file = pki
    web_config = tmp_path / "web.yml"
    web_config.write_text(f"tls_server_config: {{cert_file: {cert}, key_file: {key}}}\n")
    exporter = await serve(web_config)
    assert await asyncio.to_thread(peer_common_name, exporter.port, ca_file) == "exporter"
    # cert-manager writes a new pair in place (a Secret volume swaps both files at once).
    ca.issue("exporter-renewed").write(tmp_path, "server")
    touch_later(Path(cert))
    await asyncio.sleep(1.05)
    # The first new connection notices the change; the one after it is set up with the new certificate.
    names = [await asyncio.to_thread(peer_common_name, exporter.port, ca_file) for _ in range(2)]
    assert names[-1] == "exporter-renewed"
    assert exporter.guard.last_ok


async def test_mutual_tls_with_allowed_sans(serve, pki, tmp_path):
    ca, cert, key, ca_file = pki
    prometheus = ca.issue("prometheus", server=False, names=("prometheus.monitoring.svc",)).write(tmp_path, "prom")
    intruder = ca.issue("intruder", server=False, names=("intruder.default.svc",)).write(tmp_path, "intruder")
    stranger = CA().issue("prometheus", server=False, names=("prometheus.monitoring.svc",)).write(tmp_path, "str")
    web_config = tmp_path / "web.yml"
    web_config.write_text(f"""tls_server_config:
  cert_file: {cert}
  key_file: {key}
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: {ca_file}
  client_allowed_sans: [prometheus.monitoring.svc]
""")
    exporter = await serve(web_config)
    assert (await get(exporter.url("/metrics"), ssl=client_ssl(ca_file, prometheus)))[0] == 200
    status, body, _ = await get(exporter.url("/metrics"), ssl=client_ssl(ca_file, intruder))
    assert (status, body) == (403, "client certificate not allowed\n")
    for ctx in (client_ssl(ca_file), client_ssl(ca_file, stranger)):  # no certificate; one from another CA
        with pytest.raises(aiohttp.ClientError):
            await get(exporter.url("/metrics"), ssl=ctx)
    await metrics_until(exporter.url("/metrics"), lambda b: refused(b)["client_certificate"] == 1.0,
                        ssl=client_ssl(ca_file, prometheus))  # fmt: skip


def test_basic_credentials_parsing():
    assert basic_credentials("Basic cHJvbWV0aGV1czpwdzpjb2xvbg==") == ("prometheus", b"pw:colon")
    assert basic_credentials("basic cHJvbWV0aGV1czo=") == ("prometheus", b"")
    for bad in (None, "", "Bearer abc", "Basic", "Basic bm9jb2xvbg==", "Basic ***", "Basic /w==:"):
        assert basic_credentials(bad) is None


async def test_a_guessing_client_costs_bcrypt_time_not_event_loop_time(serve, tmp_path):
    """Wrong passwords are hashed in threads: a burst of them leaves /healthz answering at once."""
    slow = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(12)).decode()  # ~0.25 s a check
    web_config = tmp_path / "web.yml"
    web_config.write_text(f'basic_auth_users:\n  prometheus: "{slow}"\n')
    exporter = await serve(web_config)
    wrong = basic("prometheus", "guess")
    guesses = [asyncio.create_task(get(exporter.url("/metrics"), headers=wrong)) for _ in range(6)]
    await asyncio.sleep(0.05)
    started = time.monotonic()
    assert (await get(exporter.url("/healthz")))[0] == 200
    healthz = time.monotonic() - started
    results = await asyncio.gather(*guesses)
    assert [r[0] for r in results] == [401] * 6
    # Not a timing assertion on speed: six checks at two at a time take ≥ 3 check-lengths; /healthz took far less.
    assert healthz < (time.monotonic() - started)


async def test_real_prometheus_scrapes_over_mutual_tls_with_basic_auth(serve, pki, tmp_path):
    require_binary("prometheus")
    ca, cert, key, ca_file = pki
    prom_cert, prom_key = ca.issue("prometheus", server=False, names=("prometheus.monitoring.svc",)).write(
        tmp_path, "prom"
    )
    web_config = tmp_path / "web.yml"
    web_config.write_text(f"""tls_server_config:
  cert_file: {cert}
  key_file: {key}
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: {ca_file}
basic_auth_users:
  prometheus: "{HASH}"
""")
    exporter = await serve(web_config)
    (tmp_path / "password").write_text(PASSWORD + "\n")
    (tmp_path / "wrong").write_text("not-it\n")
    tls = {"ca_file": ca_file, "cert_file": prom_cert, "key_file": prom_key, "server_name": "localhost"}
    jobs = [
        {"job_name": name, "scheme": "https", "tls_config": tls,
         "basic_auth": {"username": "prometheus", "password_file": str(tmp_path / password)},
         "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}]}
        for name, password in (("secure", "password"), ("wrong-password", "wrong"))
    ]  # fmt: skip
    async with real_prometheus(tmp_path, {}, jobs) as prom, aiohttp.ClientSession() as session:
        up: dict[str, float] = {}
        async with asyncio.timeout(60):
            while len(up) < 2:
                await asyncio.sleep(0.5)
                try:
                    up = {r["metric"]["job"]: float(r["value"][1]) for r in await query(session, prom.base, "up")}
                except aiohttp.ClientConnectionError:
                    prom.assert_alive()
        assert up == {"secure": 1.0, "wrong-password": 0.0}
        async with asyncio.timeout(30):
            while not (series := await query(session, prom.base, 'horizon_microservice_processes{job="secure"}')):
                await asyncio.sleep(0.5)
        assert series[0]["metric"]["microservice"] == "orders" and float(series[0]["value"][1]) == 9.0


async def test_the_scaler_follows_a_protected_exporter_with_credentials_from_files(serve, pki, tmp_path):
    _ca, cert, key, ca_file = pki
    web_config = tmp_path / "web.yml"
    web_config.write_text(f"""tls_server_config: {{cert_file: {cert}, key_file: {key}}}
basic_auth_users:
  keda-scaler: "{HASH}"
""")
    exporter = await serve(web_config)
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    auth = ExporterAuth(ca_file=ca_file, username="keda-scaler", password_file=str(password_file))
    source = SnapshotSource(exporter.url(""), 10, credentials=ExporterCredentials(auth), backoff_max=0.2)
    without = SnapshotSource(exporter.url(""), 10, credentials=ExporterCredentials(ExporterAuth(ca_file=ca_file)),
                             backoff_max=0.2)  # fmt: skip
    await source.start()
    await without.start()
    try:
        async with asyncio.timeout(10):
            while not source.fresh or "HTTP 401" not in without.description:  # not the port number
                await asyncio.sleep(0.05)
        assert "wants credentials" in without.description and not without.fresh
        # The password rotates: the exporter's hash and the scaler's file change; the scaler reads the new one.
        new_hash = bcrypt.hashpw(b"rotated-pass", bcrypt.gensalt(4)).decode()
        web_config.write_text(web_config.read_text().replace(HASH, new_hash))
        touch_later(web_config)
        password_file.write_text("rotated-pass\n")
        touch_later(password_file)
        version = source.changes.version
        async with asyncio.timeout(10):
            while source.changes.version == version or not source.fresh:
                await source.changes.wait(source.changes.version, 0.5)
        answers = source.fulls + source.deltas
        # And keeps following: a later answer (at the latest when the long-poll times out) comes with the new password.
        async with asyncio.timeout(source.wait * 2 + 10):
            while source.fulls + source.deltas <= answers or not source.fresh:
                await asyncio.sleep(0.1)
        assert source.fresh and PASSWORD not in source.description and "rotated-pass" not in without.description
    finally:
        await source.close()
        await without.close()


async def test_a_request_without_credentials_costs_no_bcrypt_check(serve, tmp_path, monkeypatch):
    """Only a well-formed Basic header is hashed: header-less clients cannot queue in front of a real login."""
    checks: list[bytes] = []
    real = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda password, hashed: checks.append(password) or real(password, hashed))
    web_config = tmp_path / "web.yml"
    web_config.write_text(f'basic_auth_users:\n  prometheus: "{HASH}"\n')
    exporter = await serve(web_config)
    for headers in ({}, {"Authorization": "Bearer x"}, {"Authorization": "Basic ***"}):
        assert (await get(exporter.url("/metrics"), headers=headers))[0] == 401
    assert checks == []
    assert (await get(exporter.url("/metrics"), headers=basic("nobody", "guess")))[0] == 401
    assert checks == [b"guess"]  # an unknown user still costs what a wrong password costs


@pytest.mark.parametrize(
    "content",
    [b"basic_auth_users:\n  prometheus: \xff\xfe\n", b"rate_limit: {interval: 1s, burst: 1e400}\n"],
)
async def test_a_reload_to_an_unreadable_file_is_reported_not_a_500(serve, tmp_path, content, caplog):
    web_config = tmp_path / "web.yml"
    web_config.write_text(f'basic_auth_users:\n  prometheus: "{HASH}"\n')
    exporter = await serve(web_config)
    good = basic("prometheus", PASSWORD)
    web_config.write_bytes(content)
    touch_later(web_config)
    await asyncio.sleep(1.05)
    with caplog.at_level(logging.ERROR, logger="horizon_keda.web"):
        assert (await get(exporter.url("/metrics"), headers=good))[0] == 200
    assert any("keeping the running one" in r.getMessage() for r in caplog.records)
    await metrics_until(exporter.url("/metrics"), lambda b: "web_config_last_reload_successful 0.0" in b, headers=good)
