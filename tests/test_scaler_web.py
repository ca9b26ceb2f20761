"""The scaler's web app: `--metrics-listen` addresses, an app factory later pages add routes to, a clear bind error."""

from __future__ import annotations

import socket

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Counter

from external_scaler.web import REGISTRY, WebServer, create_app, parse_listen


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.0.0.0:9109", ("0.0.0.0", 9109)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("localhost:9109", ("localhost", 9109)),
        ("[::]:9109", ("::", 9109)),
        ("[::1]:65535", ("::1", 65535)),
    ],
)
def test_listen_addresses_parse(value: str, expected: tuple[str, int]):
    assert parse_listen(value) == expected


@pytest.mark.parametrize(
    "value", ["9109", ":9109", "host:", "host:port", "host:65536", "host:-1", "::1:9109", "[::1:9109", "[x]:9109",
              "a b:9109", "host:9109 "],
)  # fmt: skip
def test_bad_listen_addresses_say_what_was_expected(value: str):
    with pytest.raises(ValueError, match=r"expected HOST:PORT \(e\.g\. 0\.0\.0\.0:9109 or \[::\]:9109\), got "):
        parse_listen(value)


async def test_the_app_serves_its_registry_and_takes_more_routes():
    registry = CollectorRegistry()
    Counter("probe_things", "Things.", registry=registry).inc(3)
    app = create_app(registry)

    async def landing(request: web.Request) -> web.Response:
        return web.Response(text=f"{len(request.app[REGISTRY]._collector_to_names)} collector(s)")

    app.router.add_get("/", landing)  # what a later status page does
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        metrics = await client.get("/metrics")
        assert metrics.status == 200 and "probe_things_total 3.0" in await metrics.text()
        openmetrics = await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        assert openmetrics.content_type == "application/openmetrics-text"
        assert (await (await client.get("/")).text()) == "1 collector(s)"
        assert (await client.get("/nope")).status == 404


async def test_a_taken_port_raises_oserror_and_a_free_one_reports_its_number():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = WebServer(create_app(CollectorRegistry()), "127.0.0.1", taken.getsockname()[1])
        with pytest.raises(OSError):
            await server.start()
    server = WebServer(create_app(CollectorRegistry()), "127.0.0.1", 0)
    port = await server.start()
    try:
        assert port > 0 and server.port == port
    finally:
        await server.stop()
        await server.stop()  # idempotent
