"""Hostile Horizon answers end to end: non-finite numbers, lone surrogates, deep nesting, tokens in a redirect.

Each is one error for its target with a reason and a message naming the endpoint; /metrics keeps answering 200.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from exporter.config import TargetConfig
from exporter.mapping import Pattern
from tests.conftest import fixed_target, wait_for
from tests.fake_horizon import FakeHorizon
from tests.payloads import core_masters, core_stats, core_workload, topology_a
from tests.test_exporter_http import config, metrics, value


@dataclass
class RawHorizon(FakeHorizon):
    """A fake Horizon that can also answer an endpoint with raw bytes, or redirect to a given Location."""

    raw: dict[str, bytes] = field(default_factory=dict)
    location: str | None = None

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        endpoint = request.match_info["endpoint"]
        if endpoint in self.raw:
            return web.Response(body=self.raw[endpoint], content_type="application/json")
        if self.location is not None:
            raise web.HTTPFound(self.location)
        return await super()._answer(request)


@pytest.fixture
async def raw_horizon() -> AsyncIterator[tuple[RawHorizon, str]]:
    fake = RawHorizon()
    fake.set(*topology_a())
    async with TestServer(fake.app(), host="127.0.0.1") as server:
        yield fake, str(server.make_url("/horizon"))


@pytest.mark.parametrize(
    ("endpoint", "body", "message"),
    [
        ("workload", b'[{"name": "default", "length": NaN, "wait": 0, "processes": 1}]',
         "/api/workload $[0].length: expected a finite number, got nan"),
        ("stats", b'{"status": "running", "processes": Infinity}',
         "/api/stats $.processes: expected a finite number, got inf"),
        ("masters", b'{"m": {"name": "m", "supervisors": [{"name": "m:s", "processes": {"redis:q": -Infinity}}]}}',
         "/api/masters $[#0].supervisors[0].processes[#0]: expected a finite number, got -inf"),
    ],
)  # fmt: skip
async def test_nan_and_infinity_are_schema_errors(raw_horizon, make_exporter, endpoint, body, message):
    fake, url = raw_horizon
    fake.raw[endpoint] = body
    client = await make_exporter(config(fixed_target("orders", url)))
    snap = await wait_for(client, lambda s: s.targets["orders"].attempts >= 1)
    err = snap.targets["orders"].error
    assert err is not None and err.reason == "schema" and err.message == message
    m = await metrics(client)
    assert value(m, "horizon_up", microservice="orders") == 0.0
    assert value(m, "horizon_poll_errors_total", target="orders", reason="schema") >= 1.0
    assert value(m, "horizon_microservice_processes", microservice="orders") is None


async def test_lone_surrogate_in_a_queue_name_is_a_schema_error_and_metrics_stay_200(horizon, make_exporter):
    fake, url = horizon
    client = await make_exporter(config(fixed_target("orders", url)))
    await wait_for(client, lambda s: s.targets["orders"].up)
    fake.payloads["workload"][0]["name"] = "default\ud800"  # json.dumps writes it as "default\ud800"
    snap = await wait_for(client, lambda s: not s.targets["orders"].up)
    err = snap.targets["orders"].error
    assert err.reason == "schema"
    assert err.message == "/api/workload $[0].name: expected a valid Unicode string, got a string of 8 characters"
    m = await metrics(client)  # asserts 200: nothing unencodable reached a label
    assert value(m, "horizon_up", microservice="orders") == 0.0
    assert value(m, "horizon_microservice_stale", microservice="orders") == 1.0
    assert value(m, "horizon_microservice_processes", microservice="orders") == 9.0  # kept from the good poll
    assert (await client.get("/api/v1/snapshot")).status == 200


async def test_lone_surrogate_in_a_supervisor_name_fails_the_shared_target(make_exporter):
    counts = {"orders": [2]}
    masters = core_masters(counts)
    (master,) = masters.values()
    master["supervisors"][0]["name"] = master["name"] + ":\udc00rders-worker"
    fake = FakeHorizon()
    fake.set(core_stats(counts), core_workload(counts, {}), masters)
    async with TestServer(fake.app(), host="127.0.0.1") as server:
        rule = Pattern("supervisor", re.compile(r"^(?P<microservice>.+)-worker$"))
        client = await make_exporter(config(TargetConfig("core", str(server.make_url("/horizon")), rule)))
        snap = await wait_for(client, lambda s: s.targets["core"].attempts >= 1)
        err = snap.targets["core"].error
        assert err.reason == "schema" and "supervisors[0].name: expected a valid Unicode string" in err.message
        m = await metrics(client)
        assert value(m, "horizon_target_up", target="core") == 0.0
        assert value(m, "horizon_poll_errors_total", target="core", reason="schema") >= 1.0


async def test_json_nested_too_deeply_is_invalid_json(raw_horizon, make_exporter):
    fake, url = raw_horizon
    fake.raw["stats"] = b"[" * 100_000
    client = await make_exporter(config(fixed_target("orders", url)))
    snap = await wait_for(client, lambda s: s.targets["orders"].attempts >= 1)
    err = snap.targets["orders"].error
    assert err.reason == "invalid_json" and err.message == "GET /api/stats: invalid JSON: nested too deeply to decode"
    m = await metrics(client)
    assert value(m, "horizon_poll_errors_total", target="orders", reason="invalid_json") >= 1.0


async def test_redirect_location_is_shown_without_tokens(raw_horizon, make_exporter, caplog):
    fake, url = raw_horizon
    fake.location = "https://alice:pw0rd@sso.example/login?token=abc123&next=/horizon"
    client = await make_exporter(config(fixed_target("orders", url)))
    snap = await wait_for(client, lambda s: s.targets["orders"].attempts >= 1)
    err = snap.targets["orders"].error
    assert err.reason == "http_302"
    assert "(redirect to https://***@sso.example/login?token=***&next=***: a login page?)" in err.message
    shown = err.message + await (await client.get("/api/v1/snapshot")).text() + caplog.text
    for secret in ("abc123", "pw0rd", "alice"):
        assert secret not in shown
