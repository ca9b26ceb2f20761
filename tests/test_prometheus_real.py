"""Debian's real Prometheus scrapes the exporter on loopback; promtool lints the exposition."""

from __future__ import annotations

import asyncio
import socket
import subprocess

import aiohttp

from tests.conftest import fixed_target, require_binary, wait_for
from tests.test_exporter_http import config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def query(session: aiohttp.ClientSession, base: str, promql: str) -> list[dict]:
    async with session.get(f"{base}/api/v1/query", params={"query": promql}) as resp:
        body = await resp.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


async def test_real_prometheus_scrapes_processes(horizon, make_exporter, tmp_path):
    binary = require_binary("prometheus")
    fake, url = horizon
    client = await make_exporter(config(fixed_target("orders", url)))
    await wait_for(client, lambda s: s.targets["orders"].up)
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: horizon\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{client.port}']}}]\n"
    )
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            result: list[dict] = []
            async with asyncio.timeout(60):
                while not result:
                    await asyncio.sleep(0.5)
                    try:
                        result = await query(session, base, "horizon_microservice_processes")
                    except aiohttp.ClientConnectionError:
                        assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
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
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


async def test_promtool_check_metrics_is_clean(horizon, make_exporter):
    binary = require_binary("promtool")
    _fake, url = horizon
    fake_fail_port = free_port()
    client = await make_exporter(
        config(fixed_target("orders", url), fixed_target("billing", f"http://127.0.0.1:{fake_fail_port}/horizon"))
    )
    await wait_for(client, lambda s: s.targets["orders"].up and s.targets["billing"].attempts > 0)
    text = await (await client.get("/metrics")).read()
    assert b"horizon_scrape_errors_total" in text and b"horizon_queue_length" in text
    run = subprocess.run([binary, "check", "metrics"], input=text, capture_output=True, timeout=30)
    assert run.returncode == 0 and run.stdout + run.stderr == b"", (run.stdout + run.stderr).decode()
