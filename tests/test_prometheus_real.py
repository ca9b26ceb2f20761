"""Debian's real Prometheus scrapes the exporter on loopback; promtool lints the exposition."""

from __future__ import annotations

import asyncio
import subprocess

import aiohttp

from tests.conftest import fixed_target, free_port, real_prometheus, require_binary, wait_for
from tests.test_exporter_http import config


async def query(session: aiohttp.ClientSession, base: str, promql: str) -> list[dict]:
    async with session.get(f"{base}/api/v1/query", params={"query": promql}) as resp:
        body = await resp.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


async def test_real_prometheus_scrapes_processes(horizon, make_exporter, tmp_path):
    require_binary("prometheus")  # skip (or fail under CI) before any setup
    fake, url = horizon
    client = await make_exporter(config(fixed_target("orders", url)))
    await wait_for(client, lambda s: s.targets["orders"].up)
    async with real_prometheus(tmp_path, {"horizon": [f"127.0.0.1:{client.port}"]}) as prom:
        base = prom.base
        async with aiohttp.ClientSession() as session:
            result: list[dict] = []
            async with asyncio.timeout(60):
                while not result:
                    await asyncio.sleep(0.5)
                    try:
                        result = await query(session, base, "horizon_microservice_processes")
                    except aiohttp.ClientConnectionError:
                        prom.assert_alive()
            (series,) = result
            assert series["metric"]["microservice"] == "orders"
            assert float(series["value"][1]) == 9.0
            # The exporter's value changes, Prometheus follows within a few scrapes.
            sup = fake.payloads["masters"]["orders-horizon-7d9f8-x2kqz-Ab3d"]["supervisors"][0]
            sup["processes"] = {"redis:default": 12, "redis:emails": 1}
            async with asyncio.timeout(30):
                while float((await query(session, base, "horizon_microservice_processes"))[0]["value"][1]) != 15.0:
                    await asyncio.sleep(0.5)
            up = await query(session, base, 'horizon_up{microservice="orders"}')
            assert float(up[0]["value"][1]) == 1.0


async def test_promtool_check_metrics_is_clean(horizon, make_exporter):
    binary = require_binary("promtool")
    _fake, url = horizon
    fake_fail_port = free_port()
    client = await make_exporter(
        config(fixed_target("orders", url), fixed_target("billing", f"http://127.0.0.1:{fake_fail_port}/horizon"))
    )
    await wait_for(client, lambda s: s.targets["orders"].up and s.targets["billing"].attempts > 0)
    text = await (await client.get("/metrics")).read()
    assert b"horizon_poll_errors_total" in text and b"horizon_queue_length" in text
    run = subprocess.run([binary, "check", "metrics"], input=text, capture_output=True, timeout=30)
    assert run.returncode == 0 and run.stdout + run.stderr == b"", (run.stdout + run.stderr).decode()
