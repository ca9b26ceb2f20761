"""The Horizon simulator over HTTP: both topologies, Horizon's catch-all, the injected clock, faults, the CLI."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from exporter.config import parse_config
from simulator.cli import main
from simulator.fleet import default_fleet
from simulator.payloads import horizon_payloads
from simulator.server import Simulator, create_app

HORIZONS = ("orders", "payments", "shipping", "core")
SEED = 7


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sim(clock: Clock) -> Simulator:
    return Simulator(default_fleet(seed=SEED), clock=clock)


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(create_app(sim), host="127.0.0.1")) as c:
        yield c


async def get_json(client: TestClient, path: str) -> object:
    resp = await client.get(path)
    assert resp.status == 200 and resp.content_type == "application/json", (path, resp.status, resp.content_type)
    return await resp.json()


@pytest.mark.parametrize("horizon", HORIZONS)
async def test_every_endpoint_of_both_topologies_answers_json(client: TestClient, horizon: str) -> None:
    stats = await get_json(client, f"/{horizon}/horizon/api/stats")
    workload = await get_json(client, f"/{horizon}/horizon/api/workload")
    masters = await get_json(client, f"/{horizon}/horizon/api/masters")
    assert isinstance(stats, dict) and isinstance(workload, list) and isinstance(masters, dict)
    assert stats["status"] == "running" and len(stats["wait"]) == 1
    assert stats["processes"] == sum(row["processes"] for row in workload) > 0
    names = {m["name"].rsplit("-", 3)[0] for m in masters.values()}
    expected = {horizon} if horizon != "core" else {"notifications", "inventory", "reports", "core"}
    assert names == {f"{ms}-horizon" for ms in expected}


async def test_payloads_follow_the_injected_clock(client: TestClient, clock: Clock) -> None:
    at_start = await get_json(client, "/orders/horizon/api/workload")
    clock.now += 90
    paths = {name: [f"/{name}/horizon/api/{e}" for e in ("stats", "workload", "masters")] for name in HORIZONS}
    served = {name: tuple([await get_json(client, p) for p in ps]) for name, ps in paths.items()}
    reference = default_fleet(seed=SEED)
    reference.advance(90)
    assert served == {name: horizon_payloads(reference.horizon(name)) for name in HORIZONS}
    assert served["orders"][1] != at_start


async def test_speed_multiplies_simulated_time(clock: Clock) -> None:
    sim = Simulator(default_fleet(), clock=clock, speed=10, start_at=20)
    async with TestClient(TestServer(create_app(sim), host="127.0.0.1")) as c:
        assert sim.fleet.time == 20
        clock.now += 9
        await get_json(c, "/payments/horizon/api/stats")
        assert sim.fleet.time == 110


async def test_the_background_task_advances_without_requests(clock: Clock) -> None:
    sim = Simulator(default_fleet(), clock=clock, interval=0)
    async with TestClient(TestServer(create_app(sim), host="127.0.0.1")):
        clock.now += 30
        for _ in range(1000):
            if sim.fleet.time == 30:
                break
            await asyncio.sleep(0)  # yield to the ticker; time itself comes from `clock`
        assert sim.fleet.time == 30


@pytest.mark.parametrize(
    "path", ["/orders/horizon/api/xyz", "/orders/horizon", "/core/horizon/jobs/pending", "/shipping/horizon/api"]
)
async def test_unknown_paths_under_horizon_answer_the_html_dashboard(client: TestClient, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 200 and resp.content_type == "text/html"
    assert '<div id="horizon"' in await resp.text()


async def test_paths_outside_any_horizon_are_not_found(client: TestClient) -> None:
    assert (await client.get("/billing/horizon/api/stats")).status == 404
    assert (await client.get("/orders/api/stats")).status == 404


async def test_index_lists_every_horizon_base_url(client: TestClient) -> None:
    resp = await client.get("/")
    text = await resp.text()
    origin = str(client.make_url("/")).rstrip("/")
    urls = re.findall(r"http://\S+/horizon", text)
    assert urls == [f"{origin}/{name}/horizon" for name in HORIZONS]
    assert "notifications:" in text and "topology (b)" in text


@pytest.mark.parametrize(("kind", "status"), [("forbidden", 403), ("error", 500), ("maintenance", 503)])
async def test_error_faults_answer_their_status(client: TestClient, sim: Simulator, kind: str, status: int) -> None:
    sim.faults["orders"] = kind
    assert (await client.get("/orders/horizon/api/stats")).status == status
    await get_json(client, "/payments/horizon/api/stats")  # the others stay healthy


async def test_html_fault_answers_200_html_on_the_api(client: TestClient, sim: Simulator) -> None:
    sim.faults["core"] = "html"
    resp = await client.get("/core/horizon/api/masters")
    assert resp.status == 200 and resp.content_type == "text/html"


async def test_down_fault_empties_a_horizon_or_drops_one_microservice(client: TestClient, sim: Simulator) -> None:
    sim.faults["shipping"] = "down"
    stats = await get_json(client, "/shipping/horizon/api/stats")
    assert await get_json(client, "/shipping/horizon/api/masters") == []
    assert await get_json(client, "/shipping/horizon/api/workload") == []
    assert stats["status"] == "inactive" and stats["wait"] == [] and stats["processes"] == 0
    sim.faults["reports"] = "down"
    masters = await get_json(client, "/core/horizon/api/masters")
    workload = await get_json(client, "/core/horizon/api/workload")
    assert masters and not [m for m in masters if m.startswith("reports-")]
    assert [r["name"] for r in workload if r["name"].startswith("reports-")] == []
    assert any(r["name"].startswith("inventory-") for r in workload)


def test_unknown_faults_are_refused(sim: Simulator) -> None:
    sim.faults["orders"] = "explode"
    with pytest.raises(ValueError, match="unknown fault"):
        create_app(sim)
    sim.faults = {"reports": "forbidden"}
    with pytest.raises(ValueError, match="applies to one of"):
        create_app(sim)


def test_print_targets_is_a_config_the_exporter_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--listen", "127.0.0.1:9300", "--print-targets"]) == 0
    config = parse_config(yaml.safe_load(capsys.readouterr().out), "print-targets")
    assert [t.name for t in config.targets] == list(HORIZONS)
    assert [t.url for t in config.targets] == [f"http://127.0.0.1:9300/{h}/horizon" for h in HORIZONS]
    assert main(["--print-targets=flags"]) == 0
    assert capsys.readouterr().out.split() == [
        w for h in HORIZONS[:3] for w in ("--target", f"{h}=http://127.0.0.1:9200/{h}/horizon")
    ]


@pytest.mark.parametrize("argv", [["--listen", "9200"], ["--speed", "0"], ["--fault", "orders=boom"]])
def test_bad_flags_exit_with_usage(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and "horizon-simulator: error:" in capsys.readouterr().err


def test_help_describes_both_topologies(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0
    for needle in ("--speed", "--print-targets", "/orders/horizon", "/core/horizon", "forbidden"):
        assert needle in out


def test_console_script_serves_on_a_free_port() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulator.cli", "--listen", "127.0.0.1:0", "--speed", "5"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"on http://127\.0\.0\.1:(\d+)/", line)
        assert match, line
        with urllib.request.urlopen(f"http://127.0.0.1:{match.group(1)}/orders/horizon/api/stats", timeout=10) as r:
            assert r.headers.get_content_type() == "application/json"
            assert json.load(r)["status"] == "running"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()
