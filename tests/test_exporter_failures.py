"""Failure semantics: a broken Horizon sets horizon_up 0, counts the reason, keeps values for stale_after only."""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import types

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from exporter.client import TargetClient
from exporter.config import Config
from exporter.http import FetchError
from tests.conftest import fixed_target, wait_for
from tests.fake_horizon import FakeHorizon
from tests.payloads import topology_a
from tests.test_exporter_http import config, metrics, value


@pytest.mark.parametrize(
    ("fault", "reason", "fragment"),
    [
        ("http_403", "http_403", "HTTP 403"),
        ("http_500", "http_500", "HTTP 500"),
        ("http_503", "http_503", "HTTP 503"),
        ("html", "not_json", "expected application/json, got 'text/html"),
        ("invalid_json", "invalid_json", "invalid JSON"),
        ("redirect", "http_302", "redirect to /login"),
        ("huge", "too_large", "over the limit"),
    ],
)
async def test_broken_horizon_is_down_with_reason_and_never_zero(horizon, make_exporter, fault, reason, fragment):
    fake, url = horizon
    fake.fault = fault
    client = await make_exporter(config(fixed_target("orders", url), max_body_bytes=1024 * 1024))
    snap = await wait_for(client, lambda s: s.targets["orders"].attempts >= 2)
    t = snap.targets["orders"]
    assert t.error is not None and t.error.reason == reason and fragment in t.error.message
    m = await metrics(client)
    assert value(m, "horizon_up", microservice="orders") == 0.0
    assert value(m, "horizon_target_up", target="orders") == 0.0
    assert value(m, "horizon_poll_errors_total", target="orders", reason=reason) >= 1.0
    # Never seen healthy: no process count at all, not a silent zero.
    assert value(m, "horizon_microservice_processes", microservice="orders") is None
    doc = await (await client.get("/api/v1/snapshot")).json()
    assert doc["microservices"]["orders"]["processes"] is None
    assert doc["targets"]["orders"]["error"]["reason"] == reason


async def test_schema_drift_is_reported_with_the_path(horizon, make_exporter):
    fake, url = horizon
    fake.payloads["workload"] = {"default": 3}
    client = await make_exporter(config(fixed_target("orders", url)))
    snap = await wait_for(client, lambda s: s.targets["orders"].attempts >= 1)
    err = snap.targets["orders"].error
    assert err.reason == "schema" and err.message == "/api/workload $: expected an array, got dict"


async def test_timeout_on_a_stalled_socket(horizon, make_exporter):
    fake, url = horizon
    fake.fault = "stall"
    client = await make_exporter(config(fixed_target("orders", url, timeout=0.2)))
    snap = await wait_for(client, lambda s: s.targets["orders"].attempts >= 1)
    assert snap.targets["orders"].error.reason == "timeout"


async def test_connection_refused(make_exporter):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        client = await make_exporter(config(fixed_target("orders", f"http://127.0.0.1:{port}/horizon")))
        snap = await wait_for(client, lambda s: s.targets["orders"].attempts >= 1)
    assert snap.targets["orders"].error.reason == "connection"


async def test_failing_target_keeps_values_until_stale_after_then_drops_them(horizon, make_exporter):
    fake, url = horizon
    client = await make_exporter(config(fixed_target("orders", url), stale_after=0.6))
    await wait_for(client, lambda s: s.targets["orders"].up)
    fake.fault = "http_500"
    snap = await wait_for(client, lambda s: not s.targets["orders"].up)
    entry = snap.microservices["orders"]
    assert entry.stale and entry.values.processes == 9.0 and not entry.up
    m = await metrics(client)
    assert value(m, "horizon_up", microservice="orders") == 0.0
    assert value(m, "horizon_microservice_processes", microservice="orders") == 9.0
    assert value(m, "horizon_microservice_stale", microservice="orders") == 1.0
    snap = await wait_for(client, lambda s: s.microservices["orders"].values is None)
    m = await metrics(client)
    assert value(m, "horizon_up", microservice="orders") == 0.0
    assert value(m, "horizon_microservice_processes", microservice="orders") is None
    doc = await (await client.get("/api/v1/snapshot")).json()
    assert doc["microservices"]["orders"] | {"fetched_at": None} == {
        "target": "orders", "up": False, "stale": False, "fetched_at": None, "processes": None,
        "max_processes": None, "supervisors": {}, "queues": {},
    }  # fmt: skip
    fake.fault = None
    await wait_for(client, lambda s: s.targets["orders"].up)
    assert value(await metrics(client), "horizon_microservice_processes", microservice="orders") == 9.0


async def test_one_stalled_target_does_not_block_the_others(make_exporter):
    slow, fast = FakeHorizon(), FakeHorizon()
    slow.set(*topology_a())
    fast.set(*topology_a())
    slow.fault = "stall"
    async with TestServer(slow.app(), host="127.0.0.1") as s1, TestServer(fast.app(), host="127.0.0.1") as s2:
        cfg = Config(
            targets=(
                fixed_target("slow", str(s1.make_url("/horizon")), timeout=30.0),
                fixed_target("fast", str(s2.make_url("/horizon"))),
            ),
            poll_interval=0.05,
        )
        client = await make_exporter(cfg)
        snap = await wait_for(client, lambda s: s.targets["fast"].attempts >= 5)
        assert snap.targets["slow"].attempts == 0
        assert snap.microservices["fast"].values.processes == 9.0
        slow.stall.set()


async def test_never_two_polls_of_one_target_in_flight(horizon, make_exporter):
    fake, url = horizon
    fake.delay = 0.05  # each poll takes longer than the interval
    client = await make_exporter(config(fixed_target("orders", url), poll_interval=0.01))
    await wait_for(client, lambda s: s.targets["orders"].attempts >= 5)
    # One poll = three concurrent requests (stats, workload, masters); never more.
    assert fake.peak_in_flight == 3


@pytest.mark.parametrize(
    ("where", "reason"),
    [("a number", "schema"), ("an object", "schema"), ("a malformed header line", "connection")],
)
async def test_a_horizon_echoing_the_token_back_never_gets_it_into_a_message(make_exporter, tmp_path, where, reason):
    # Horizon (or whatever answers in its place) holds the token anyway; logs and the snapshot reach other people.
    token = "s3cret-token-0123456789abcdef"
    (tmp_path / "token").write_text(token)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        endpoint = head.split(" ", 2)[1].rsplit("/", 1)[1]
        auth = next(line for line in head.split("\r\n") if line.lower().startswith("authorization:"))[14:].strip()
        bodies = {  # per endpoint; the echo goes where the case says
            "a number": {"stats": {"processes": auth}, "workload": [], "masters": {}},
            "an object": {"stats": {"processes": 1}, "workload": [], "masters": {"m": auth}},
            "a malformed header line": {"stats": {"processes": 1}, "workload": [], "masters": {}},
        }[where]
        body = json.dumps(bodies[endpoint])
        extra = f"X-Echo\x01: {auth}\r\n" if where == "a malformed header line" else ""
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}Content-Length: {len(body)}\r\n"
                     f"Connection: close\r\n\r\n{body}".encode())  # fmt: skip
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        target = fixed_target("orders", f"http://127.0.0.1:{port}/horizon", bearer_token_file=str(tmp_path / "token"))
        client = await make_exporter(config(target))
        snap = await wait_for(client, lambda s: s.targets["orders"].attempts >= 1)
    finally:
        server.close()
    error = snap.targets["orders"].error
    assert error is not None and error.reason == reason, error
    assert token not in error.message, error.message


@pytest.mark.parametrize("fault", ["http_500", "html", "stall"])
async def test_a_failed_poll_leaves_no_reference_cycle(horizon, fault):
    """The collector runs rarely (gcpause.tune_collector), so a failed poll's exception, frames and responses must go
    by reference counting, not wait in a cycle for a full collection (bench/soak.py saw them pile up in RSS).

    (A refused connection still leaves one, made inside asyncio's sock_connect and aiohappyeyeballs.)"""
    fake, url = horizon
    fake.fault = fault
    async with aiohttp.ClientSession() as session:
        client = TargetClient(fixed_target("orders", url, timeout=0.2), session, 1 << 20)
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for _ in range(3):
                try:  # not pytest.raises: its ExceptionInfo would make a cycle with this frame
                    await client.fetch()
                except FetchError:
                    pass
                else:
                    raise AssertionError("the poll should have failed")
            gc.collect()
            cyclic = sorted({type(o).__name__ for o in gc.garbage if isinstance(o, FetchError | types.FrameType)})
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert cyclic == []
