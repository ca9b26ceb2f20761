"""Scaler test helpers: snapshot documents in the docs/snapshot-api.md shape, a fake exporter, a running scaler."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from ssl import SSLContext
from typing import Any

import grpc
from aiohttp import web
from aiohttp.test_utils import TestServer

from external_scaler._proto import externalscaler_pb2 as pb
from external_scaler._proto import externalscaler_pb2_grpc as pb_grpc
from external_scaler.metadata import Trigger
from external_scaler.server import ScalerServer
from external_scaler.snapshot_source import SnapshotSource
from external_scaler.source import Source


def microservice(
    processes: float | None = 9.0,
    *,
    fetched_at: float | None = None,
    up: bool = True,
    stale: bool = False,
    queues: dict[str, dict[str, float | None]] | None = None,
    target: str = "orders",
) -> dict[str, Any]:
    """One `microservices.*` entry exactly as the exporter writes it; `processes=None` = never seen healthy."""
    never = processes is None
    if queues is None:
        queues = {} if never else {"default": {"length": 42.0, "wait_seconds": 12.0, "processes": processes}}
    return {
        "target": target,
        "up": up,
        "stale": stale,
        "fetched_at": None if never else (time.time() if fetched_at is None else fetched_at),
        "processes": processes,
        "max_processes": None if never else 20.0,
        "supervisors": {} if never else {"running": 2, "paused": 0, "inactive": 1},
        "queues": queues,
    }


def document(version: int, microservices: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A whole `/api/v1/snapshot` document (docs/snapshot-api.md)."""
    now = time.time()
    return {
        "version": version,
        "generated_at": now,
        "ready": True,
        "poll_interval_seconds": 1.0,
        "stale_after_seconds": 60.0,
        "targets": {
            m["target"]: {
                "url": f"http://{m['target']}.shop.svc/horizon",
                "up": m["up"],
                "last_attempt_at": now,
                "last_success_at": m["fetched_at"],
                "duration_seconds": 0.012,
                "error": None if m["up"] else {"reason": "connect", "message": "connection refused"},
                "errors_total": {},
                "status": "running",
                "jobs_per_minute": 128.0,
                "recent_jobs": 7421.0,
                "failed_jobs": 3.0,
                "masters": {"running": 2, "paused": 0},
            }
            for m in microservices.values()
        },
        "microservices": microservices,
    }


class FakeExporter:
    """Serves `/api/v1/snapshot` with the exporter's long-poll semantics; `publish` makes a new version.

    `host`, `port` and `ssl` say where and how it listens; targets named in `handed_off` carry `"handed_off": true`
    (a shard that gave them away and keeps them during the handoff)."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, ssl: SSLContext | None = None, **microservices: dict[str, Any]
    ) -> None:
        self.version = 1
        self.microservices = microservices or {"orders": microservice(3.0)}
        self.handed_off: set[str] = set()
        self.requests: list[dict[str, str]] = []
        self._changed = asyncio.Event()
        self._server: TestServer | None = None
        self.host, self.port, self.ssl = host, port, ssl

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl else 'http'}://{self.host}:{self.port}"

    def publish(self, **microservices: dict[str, Any]) -> None:
        self.microservices = {**self.microservices, **microservices}
        self.version += 1
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def _snapshot(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.query))
        if "after" in request.query:
            after, timeout = int(request.query["after"]), float(request.query.get("timeout", "30"))
            try:
                async with asyncio.timeout(timeout):
                    while self.version <= after and self._server is not None:
                        await self._changed.wait()
            except TimeoutError:
                pass
        doc = document(self.version, self.microservices)
        for name in self.handed_off:
            doc["targets"][name]["handed_off"] = True
        return web.json_response(doc)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/snapshot", self._snapshot)
        return app

    async def start(self) -> None:
        """Listen (again, on the same port after `stop`)."""
        self._server = TestServer(self.app(), host=self.host, port=self.port or None)
        await self._server.start_server(ssl=self.ssl)
        self.port = self._server.port or 0

    async def stop(self) -> None:
        """Go away: close the listener and answer waiting long-polls."""
        server, self._server = self._server, None
        event, self._changed = self._changed, asyncio.Event()
        event.set()
        if server is not None:
            await server.close()


class BrokenSource(Source):
    """A source with a bug: `read` raises something that is neither NotFound nor Unavailable."""

    fresh, description = True, "broken"

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def read(self, trigger: Trigger) -> float:
        raise KeyError("processes")


@dataclass
class Scaler:
    """A running scaler and a real client channel to it."""

    server: ScalerServer
    channel: grpc.aio.Channel
    stub: pb_grpc.ExternalScalerStub

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"


@asynccontextmanager
async def running_scaler(source: Source, **kw: Any) -> AsyncIterator[Scaler]:
    """Start a ScalerServer on 127.0.0.1:0 with `source`; yield it with a connected stub; stop it after."""
    server = ScalerServer(source, "127.0.0.1:0", **kw)
    port = await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Scaler(server, channel, pb_grpc.ExternalScalerStub(channel))
    finally:
        await channel.close()
        await server.stop(0)


@asynccontextmanager
async def scaler_on(exporter: FakeExporter, max_staleness: float = 10.0, **kw: Any) -> AsyncIterator[Scaler]:
    """A scaler whose SnapshotSource follows `exporter`, started once the first snapshot has arrived."""
    source = SnapshotSource(exporter.url, max_staleness, backoff_max=0.2)
    async with running_scaler(source, **kw) as scaler:
        await wait_until(lambda: source.fresh)
        yield scaler


async def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    """Loose polling wait for conditions with no event to await (test-only; bounds stay generous)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def ref(name: str = "orders-so", namespace: str = "shop", **metadata: str) -> pb.ScaledObjectRef:
    """A ScaledObjectRef as KEDA sends it: the whole trigger metadata, scalerAddress included."""
    meta = {"scalerAddress": "horizon-scaler.shop:6000", "microservice": "orders", **metadata}
    return pb.ScaledObjectRef(name=name, namespace=namespace, scalerMetadata=meta)


@dataclass
class Scraped:
    """One /metrics answer parsed with prometheus_client's own parser."""

    families: dict[str, Any]  # family name (counters without `_total`) -> prometheus_client Metric

    def samples(self, name: str) -> list[Any]:
        """Samples named exactly `name` (e.g. `grpc_server_handled_total`), over every family."""
        return [s for f in self.families.values() for s in f.samples if s.name == name]

    def value(self, name: str, **labels: str) -> float | None:
        """The value of the one sample `name` whose labels include `labels`; None when there is none."""
        found = [s.value for s in self.samples(name) if labels.items() <= s.labels.items()]
        assert len(found) <= 1, f"{name}{labels}: {len(found)} samples"
        return found[0] if found else None


async def scrape(url: str) -> Scraped:
    """GET `url` (a /metrics endpoint) and parse it."""
    import aiohttp
    from prometheus_client.parser import text_string_to_metric_families

    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "text/plain"
        text = await resp.text()
    return Scraped({f.name: f for f in text_string_to_metric_families(text)})


@asynccontextmanager
async def scaler_with_metrics(source: Source, metrics: Any = None, **kw: Any) -> AsyncIterator[tuple[Scaler, str]]:
    """`running_scaler` with a ScalerMetrics and its /metrics served on 127.0.0.1:0; yields (scaler, metrics URL)."""
    from external_scaler.metrics import ScalerMetrics
    from external_scaler.web import WebServer, create_app

    metrics = metrics if metrics is not None else ScalerMetrics()
    async with running_scaler(source, metrics=metrics, **kw) as scaler:
        web_server = WebServer(create_app(metrics.registry()), "127.0.0.1", 0)
        port = await web_server.start()
        try:
            yield scaler, f"http://127.0.0.1:{port}/metrics"
        finally:
            await web_server.stop()
