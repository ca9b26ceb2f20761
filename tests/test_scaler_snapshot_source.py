"""SnapshotSource: follows the long-poll, reports staleness and an absent exporter as UNAVAILABLE, recovers."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from grpc_health.v1 import health_pb2, health_pb2_grpc

from external_scaler.exporter_auth import ExporterAuth, ExporterCredentials
from external_scaler.metadata import Trigger
from external_scaler.readings import Stale, Unavailable
from external_scaler.snapshot_source import SnapshotSource
from tests.scaler_fixtures import (
    FakeExporter,
    document,
    microservice,
    ref,
    running_scaler,
    scaler_on,
    wait_until,
)

ORDERS = Trigger("orders")


@pytest.fixture
async def exporter() -> AsyncIterator[FakeExporter]:
    fake = FakeExporter(orders=microservice(9.0))
    await fake.start()
    yield fake
    await fake.stop()


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_follows_the_long_poll_instead_of_sleeping(exporter: FakeExporter):
    source = SnapshotSource(exporter.url, max_staleness=10)
    await source.start()
    try:
        await wait_until(lambda: source.fresh)
        for n in range(5):
            exporter.publish(orders=microservice(10.0 + n))
        await wait_until(lambda: source.read_now(ORDERS) == 14.0)
        await asyncio.sleep(0.3)  # nothing changes: the pending long-poll must just wait
    finally:
        await source.close()
    first, *rest = exporter.requests
    assert first == {}
    # The wait leaves room for one poll interval (1 s here) within max_staleness: (10 - 1) / 2.
    assert all(r["timeout"] == "4.5" and int(r["after"]) >= 1 for r in rest)
    assert len(rest) <= 7, "one request per change plus the waiting one, no busy loop"


async def test_answers_older_than_max_staleness_are_unavailable(exporter: FakeExporter):
    clock = Clock()
    source = SnapshotSource(exporter.url, max_staleness=10, clock=clock)
    await source.start()
    try:
        await wait_until(lambda: source.fresh)
        assert source.age is not None and 0 <= source.age < 1
        clock.now += 11  # the exporter stopped answering even its long-polls
        assert not source.fresh
        assert source.age is not None and 11 <= source.age < 12
        with pytest.raises(Stale, match=r"no answer for 11\.\ds"):
            source.read_now(ORDERS)
    finally:
        await source.close()


async def test_microservice_data_older_than_max_staleness_is_unavailable(exporter: FakeExporter):
    exporter.publish(orders=microservice(9.0, fetched_at=time.time() - 12, up=False, stale=True))
    async with scaler_on(exporter, max_staleness=10) as scaler:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await scaler.stub.IsActive(ref())
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "orders: data is 12." in (info.value.details() or "")


async def test_kept_values_within_max_staleness_still_count(exporter: FakeExporter):
    exporter.publish(orders=microservice(9.0, fetched_at=time.time() - 3, up=False, stale=True))
    async with scaler_on(exporter, max_staleness=10) as scaler:
        assert (await scaler.stub.IsActive(ref())).result is True


async def test_exporter_going_away_and_coming_back(exporter: FakeExporter):
    async with scaler_on(exporter) as scaler:
        health = health_pb2_grpc.HealthStub(scaler.channel)
        serving = health_pb2.HealthCheckResponse.SERVING
        assert (await scaler.stub.IsActive(ref())).result is True

        await exporter.stop()
        await wait_until(lambda: not scaler.server.source.fresh)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await scaler.stub.IsActive(ref())
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "unreachable" in (info.value.details() or "")
        await wait_until_async(lambda: _status(health), lambda s: s != serving)

        exporter.version = 0  # a restarted exporter counts from 1 again
        await exporter.start()
        exporter.publish(orders=microservice(2.0))
        await wait_until(lambda: scaler.server.source.fresh)
        assert (await scaler.stub.IsActive(ref(activationThreshold="2"))).result is False
        await wait_until_async(lambda: _status(health), lambda s: s == serving)


async def _status(health: health_pb2_grpc.HealthStub) -> int:
    return (await health.Check(health_pb2.HealthCheckRequest(service="externalscaler.ExternalScaler"))).status


async def wait_until_async(get, predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate(await get()):
            await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("handler", "reason"),
    [
        (lambda r: web.Response(status=500, text="boom"), "HTTP 500 from the snapshot API"),
        (
            lambda r: web.Response(text="<html>login</html>", content_type="text/html"),
            r"not JSON \(the Content-Type is not application/json\)",
        ),
        (lambda r: web.json_response({"version": "x", "microservices": {}}), "version: expected an integer"),
        (lambda r: web.json_response([1, 2]), "expected a JSON object"),
    ],
)
async def test_a_hostile_exporter_is_unavailable_with_the_reason(handler, reason: str):
    async def answer(request: web.Request) -> web.Response:
        return handler(request)

    app = web.Application()
    app.router.add_get("/api/v1/snapshot", answer)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    source = SnapshotSource(str(server.make_url("")), max_staleness=10, backoff_max=0.1)
    await source.start()
    try:
        await wait_until(lambda: "unreachable:" in source.description)
        with pytest.raises(Unavailable, match=reason):
            source.read_now(ORDERS)
        assert not source.fresh
    finally:
        await source.close()
        await server.close()


def _many_microservices(count: int) -> dict[str, dict]:
    """`count` microservices with ten queues each: ~1.2 KB apiece, so hundreds make a document of several 100 KB."""
    queues = {f"queue-{q}": {"length": float(q), "wait_seconds": 2.0, "processes": 1.0} for q in range(10)}
    return {f"svc-{n:03d}": microservice(float(n), target=f"svc-{n:03d}", queues=queues) for n in range(count)}


async def test_a_snapshot_of_several_hundred_kilobytes_is_read_whole():
    fake = FakeExporter(**_many_microservices(400))
    await fake.start()
    source = SnapshotSource(fake.url, max_staleness=10)
    await source.start()
    try:
        await wait_until(lambda: source.fresh or "unreachable:" in source.description)
        assert source.fresh, source.description
        assert source.read_now(Trigger("svc-000")) == 0.0
        assert source.read_now(Trigger("svc-399")) == 399.0
        assert source.read_now(Trigger("svc-250", metric="queueLength")) == 45.0
    finally:
        await source.close()
        await fake.stop()
    body = json.dumps(document(1, fake.microservices)).encode()
    assert len(body) > 300_000, "the document must span many socket reads to prove anything"


async def _chunked(request: web.Request) -> web.StreamResponse:
    """The same document without Content-Length, in 16 KB writes, as a proxy that re-chunks would send it."""
    if "after" in request.query:
        await asyncio.sleep(float(request.query["timeout"]))  # nothing new: hold the long-poll like the exporter
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    body = json.dumps(document(1, _many_microservices(400))).encode()
    for at in range(0, len(body), 16384):
        await resp.write(body[at : at + 16384])
    await resp.write_eof()
    return resp


@pytest.mark.parametrize(
    ("framing", "reason"),
    [
        ("content-length", r"unreachable: snapshot of \d+ bytes is over the limit of 65536 bytes"),
        ("chunked", r"unreachable: snapshot over the limit of 65536 bytes"),
    ],
    ids=["content-length", "chunked"],
)
async def test_a_snapshot_over_the_size_cap_is_unavailable_with_the_reason(framing: str, reason: str):
    async def whole(request: web.Request) -> web.Response:
        return web.json_response(document(1, _many_microservices(400)))

    app = web.Application()
    app.router.add_get("/api/v1/snapshot", whole if framing == "content-length" else _chunked)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    source = SnapshotSource(str(server.make_url("")), max_staleness=10, backoff_max=0.1, max_body_bytes=65536)
    try:
        async with running_scaler(source) as scaler:
            await wait_until(lambda: "unreachable:" in source.description)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await scaler.stub.IsActive(ref(microservice="svc-001"))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert re.search(reason, info.value.details() or ""), info.value.details()
        assert not source.fresh
    finally:
        await server.close()


async def test_a_chunked_snapshot_under_the_cap_is_read_whole():
    app = web.Application()
    app.router.add_get("/api/v1/snapshot", _chunked)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    source = SnapshotSource(str(server.make_url("")), max_staleness=10)
    await source.start()
    try:
        await wait_until(lambda: source.fresh or "unreachable:" in source.description)
        assert source.read_now(Trigger("svc-399")) == 399.0, source.description
    finally:
        await source.close()
        await server.close()


async def test_an_answer_echoing_the_scalers_credentials_never_puts_them_in_a_message(tmp_path):
    """Whatever answers at the exporter's address may reflect the Authorization header (a wrong port, a debug
    service): neither a malformed HTTP answer nor a document carrying it in a field may copy it into the reason
    that reaches KEDA, its events and the audit log."""
    secret = "CANARY-scaler-pass-7c1d"
    token = base64.b64encode(f"keda:{secret}".encode())

    answered: list[int] = []

    async def reflect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        auth = next(line for line in head.split(b"\r\n") if line.lower().startswith(b"authorization"))
        answered.append(1)
        if len(answered) % 2:  # in turn: a malformed answer quoting the header, then a document carrying it
            writer.write(b"HTTP/1.1 200 OK\r\nBroken Header " + auth + b"\r\n\r\n")
        else:
            body = json.dumps({"version": auth.decode(), "microservices": {}}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)  # fmt: skip
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(reflect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    password = tmp_path / "password"
    password.write_text(secret)
    credentials = ExporterCredentials(ExporterAuth(username="keda", password_file=str(password)))
    source = SnapshotSource(f"http://127.0.0.1:{port}", 10, credentials=credentials, backoff_initial=0.05,
                            backoff_max=0.05)  # fmt: skip
    await source.start()
    seen: set[str] = set()
    try:
        async with asyncio.timeout(10):
            while not (any("not valid HTTP" in d for d in seen) and any("integer" in d for d in seen)):
                seen.add(source.description)
                await asyncio.sleep(0.005)
    finally:
        await source.close()
        server.close()
        await server.wait_closed()
    reasons = {d for d in seen if "unreachable" in d}
    assert any("not valid HTTP" in d for d in reasons) and any("version: expected an integer" in d for d in reasons)
    for description in seen:
        assert secret not in description and token.decode() not in description and "Basic" not in description
