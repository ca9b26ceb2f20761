"""Shared fixtures: fake Horizons on loopback and the exporter app built with its factory."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from exporter.app import STORE, create_app
from exporter.config import Config, TargetConfig
from exporter.mapping import Fixed
from exporter.snapshot import Snapshot
from tests.fake_horizon import FakeHorizon
from tests.payloads import topology_a


def require_binary(name: str, package: str = "prometheus") -> str:
    """Path of a system binary from Debian's `package`; skip locally when missing, fail under CI=true (CI must not
    skip)."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not on PATH; .ci/run installs it")
        pytest.skip(f"{name} is not installed (apt-get install {package}); CI installs it")
    return path


@pytest.fixture
async def horizon() -> AsyncIterator[tuple[FakeHorizon, str]]:
    """A fake Horizon serving the reference payloads; yields it and its base URL (…/horizon)."""
    fake = FakeHorizon()
    fake.set(*topology_a())
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    yield fake, str(server.make_url("/horizon"))
    fake.stall.set()
    await server.close()


def fixed_target(name: str, url: str, **kw: object) -> TargetConfig:
    return TargetConfig(name=name, url=url, rule=Fixed(name), **kw)  # type: ignore[arg-type]


@pytest.fixture
async def make_exporter() -> AsyncIterator[Callable[[Config], Awaitable[TestClient]]]:
    """Factory: `await make_exporter(config)` gives a TestClient of a running exporter, closed at teardown."""
    clients: list[TestClient] = []

    async def make(config: Config) -> TestClient:
        client = TestClient(TestServer(create_app(config), host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def wait_for(client: TestClient, predicate: Callable[[Snapshot], bool], timeout: float = 10.0) -> Snapshot:
    """Wait until the exporter's snapshot satisfies `predicate`.

    Checked every 10 ms: freshness (attempts, times) advances without a new version, so waiting on versions
    alone would miss it."""
    store = client.app[STORE]
    async with asyncio.timeout(timeout):
        snap = store.current
        while not predicate(snap):
            await asyncio.sleep(0.01)
            snap = store.current
    return snap


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RealPrometheus:
    """A running Debian `prometheus` on loopback: its base URL, and a check that it has not died."""

    base: str
    proc: subprocess.Popen[bytes]
    log: Path

    def assert_alive(self) -> None:
        assert self.proc.poll() is None, self.log.read_text()[-2000:]


@contextlib.asynccontextmanager
async def real_prometheus(
    tmp_path: Path, jobs: Mapping[str, Sequence[str]], extra_scrape_configs: Sequence[Mapping[str, Any]] = ()
) -> AsyncIterator[RealPrometheus]:
    """Start Prometheus scraping `jobs` ({job name: [host:port, ...]}) and `extra_scrape_configs` (as written in
    prometheus.yml) every second; stop it on exit."""
    import yaml

    binary = require_binary("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": j, "static_configs": [{"targets": list(t)}]} for j, t in jobs.items()]
        + [dict(c) for c in extra_scrape_configs],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log_path = tmp_path / "prometheus.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield RealPrometheus(f"http://127.0.0.1:{port}", proc, log_path)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
