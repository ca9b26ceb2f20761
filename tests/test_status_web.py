"""The scaler's status page over HTTP: one self-contained HTML file under a hash-based CSP, and `/events` (SSE) with
the whole state on connect, updates on changes, heartbeats, a bound on open streams, and a prompt end on shutdown
(in-process and through SIGTERM to the real process)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from external_scaler._proto import externalscaler_pb2 as pb
from external_scaler.cli import parse_args
from external_scaler.metrics import ScalerMetrics
from external_scaler.snapshot_source import SnapshotSource
from external_scaler.status_web import StatusPage, content_security_policy, load_page
from external_scaler.web import WebServer, create_app
from tests.conftest import free_port
from tests.scaler_fixtures import FakeExporter, Scaler, microservice, ref, running_scaler, wait_until


@dataclass
class Served:
    """A running scaler with its status page, and an HTTP client session for it."""

    scaler: Scaler
    status: StatusPage
    web_server: WebServer
    base: str
    session: aiohttp.ClientSession


@asynccontextmanager
async def status_scaler(exporter: FakeExporter, **page: Any) -> AsyncIterator[Served]:
    """A scaler following `exporter`, with /metrics and the status page on 127.0.0.1:0 (fast sampling)."""
    metrics = ScalerMetrics()
    source = SnapshotSource(exporter.url, 10.0, backoff_max=0.2)
    async with running_scaler(source, metrics=metrics) as scaler:
        await wait_until(lambda: source.fresh)
        app = create_app(metrics.registry())
        status = StatusPage(source, metrics.triggers, **{"sample_interval": 0.05, "min_gap": 0.05, **page})
        status.attach(app)
        web_server = WebServer(app, "127.0.0.1", 0)
        port = await web_server.start()
        try:
            async with aiohttp.ClientSession() as session:
                yield Served(scaler, status, web_server, f"http://127.0.0.1:{port}", session)
        finally:
            await web_server.stop()


class Events:
    """Reads a text/event-stream: whole events (`event`, `data` parsed as JSON) and comment lines."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.comments: list[str] = []
        self.retry: int | None = None

    async def next(self, timeout: float = 5.0) -> tuple[str, dict[str, Any]] | None:
        """The next event, or None at the end of the stream."""
        kind, data = "message", []
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    return None
                line = raw.decode().rstrip("\n")
                if not line:
                    if data:
                        return kind, json.loads("\n".join(data))
                    continue
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "":
                    self.comments.append(value)
                elif field == "event":
                    kind = value
                elif field == "data":
                    data.append(value)
                elif field == "retry":
                    self.retry = int(value)

    async def until(self, predicate: Any, timeout: float = 10.0) -> list[tuple[str, dict[str, Any]]]:
        """Events up to and including the first that satisfies `predicate`."""
        seen = []
        async with asyncio.timeout(timeout):
            while True:
                event = await self.next(timeout)
                assert event is not None, f"the stream ended; seen {seen}"
                seen.append(event)
                if predicate(event):
                    return seen


def _orders(doc: dict[str, Any]) -> dict[str, Any]:
    return next(m for m in doc["microservices"] if m["name"] == "orders")


@pytest.fixture
async def exporter() -> AsyncIterator[FakeExporter]:
    fake = FakeExporter(orders=microservice(9.0), payments=microservice(3.0, target="payments"))
    await fake.start()
    yield fake
    await fake.stop()


# --- the page -----------------------------------------------------------------------------------------------------


async def test_the_page_is_self_contained_under_a_policy_admitting_only_its_own_inline_code(exporter: FakeExporter):
    async with status_scaler(exporter) as served, served.session.get(served.base + "/") as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        page, headers = await resp.text(), resp.headers
    csp = headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    styles = re.findall(r"<style>(.*?)</style>", page, re.S)
    assert len(scripts) == 1 and len(styles) == 1

    def digest(body: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"

    assert directives["script-src"] == digest(scripts[0]) and directives["style-src"] == digest(styles[0])
    assert directives["default-src"] == "'none'" and directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and directives["trusted-types"] == "'none'"
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Referrer-Policy"] == "no-referrer"
    # Nothing the policy would have to admit: no external asset, inline handler or style attribute.
    assert not re.search(r"https?://", page), "an external URL: the page must work offline"
    assert not re.search(r"<(script|link|img|iframe)[^>]*\s(src|href)=\"(?!data:)", page)
    assert not re.search(r"\son[a-z]+=|\sstyle=", page)
    # Tenant data (microservice names) goes in as text: no HTML parsing of strings anywhere in the script.
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function", scripts[0])
    assert 'name="viewport"' in page


def test_the_policy_needs_exactly_one_script_and_one_style():
    assert "script-src 'sha256-" in content_security_policy(load_page())
    with pytest.raises(ValueError, match="exactly one inline"):
        content_security_policy("<style>a{}</style><script>1</script><script>2</script>")


# --- /events ------------------------------------------------------------------------------------------------------


async def test_events_send_the_state_then_updates_with_the_exporters_changes_and_kedas_decisions(
    exporter: FakeExporter,
):
    async with status_scaler(exporter) as served, served.session.get(served.base + "/events") as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        events = Events(resp)
        kind, first = await events.next()  # type: ignore[misc]
        assert kind == "state" and first["kind"] == "state" and events.retry == 2000
        assert [m["name"] for m in first["microservices"]] == ["orders", "payments"]
        orders = _orders(first)
        assert (orders["processes"], orders["threshold"], orders["threshold_from"]) == (9, 8, "default")
        history = list(orders["history"])

        exporter.publish(orders=microservice(14.0))
        seen = await events.until(lambda e: _orders(e[1])["processes"] == 14)
        assert all(kind == "update" for kind, _ in seen)
        for _, doc in seen:
            history += _orders(doc)["history"]
        assert history[-1] == 14 and 9 in history, history

        trigger = ref("orders-so", threshold="4", activationThreshold="2")
        assert (await served.scaler.stub.IsActive(trigger)).result is True
        await served.scaler.stub.GetMetrics(
            pb.GetMetricsRequest(scaledObjectRef=trigger, metricName="horizon-orders-processes")
        )
        *_, (_, decided) = await events.until(lambda e: _orders(e[1])["replicas_wanted"] is not None)
        orders = _orders(decided)
        assert (orders["threshold"], orders["threshold_from"], orders["replicas_wanted"]) == (4, "scaledobject", 4)
        assert orders["active"] is True and abs(orders["decided_at"] - time.time()) < 5
        assert orders["triggers"][0]["namespace"] == "shop" and orders["triggers"][0]["scaledobject"] == "orders-so"


async def test_updates_come_at_most_every_min_gap(exporter: FakeExporter):
    async with status_scaler(exporter, min_gap=0.4) as served, served.session.get(served.base + "/events") as resp:
        events = Events(resp)
        await events.next()
        for n in range(6):  # a change every 50 ms
            exporter.publish(orders=microservice(20.0 + n))
            await asyncio.sleep(0.05)
        times, last = [], None
        async with asyncio.timeout(3):
            while last != 25:
                event = await events.next()
                assert event is not None
                times.append(time.monotonic())
                last = _orders(event[1])["processes"]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert len(times) <= 3 and all(g >= 0.3 for g in gaps), gaps


async def test_a_quiet_stream_gets_heartbeat_comments(exporter: FakeExporter):
    async with status_scaler(exporter, heartbeat=0.1) as served, served.session.get(served.base + "/events") as resp:
        await Events(resp).next()
        async with asyncio.timeout(3):
            while await resp.content.readline() != b": keep-alive\n":
                pass


async def test_open_streams_are_bounded(exporter: FakeExporter):
    async with status_scaler(exporter, max_clients=2, heartbeat=0.2) as served:
        url = served.base + "/events"
        first, second = await served.session.get(url), await served.session.get(url)
        try:
            third = await served.session.get(url)
            assert third.status == 503 and third.headers["Retry-After"] == "10"
            assert "2 open streams" in await third.text()
            assert served.status.clients == 2
        finally:
            first.close()
            second.close()
        await wait_until(lambda: served.status.clients < 2)  # a closed page is noticed at the next write
        again = await served.session.get(url)
        assert again.status == 200
        again.close()


async def test_stopping_the_server_ends_open_streams_at_once(exporter: FakeExporter):
    async with status_scaler(exporter) as served, served.session.get(served.base + "/events") as resp:
        events = Events(resp)
        assert (await events.next()) is not None
        started = time.monotonic()
        await served.web_server.stop()
        assert time.monotonic() - started < 2, "the shutdown waited for the open stream"
        async with asyncio.timeout(2):
            while await events.next() is not None:
                pass


def test_the_status_page_flag():
    assert parse_args([], {}).status_page is True
    assert parse_args([], {"HORIZON_SCALER_STATUS_PAGE": "False"}).status_page is False
    assert parse_args(["--status-page", "true"], {"HORIZON_SCALER_STATUS_PAGE": "false"}).status_page is True


def test_a_bad_status_page_value_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(["--status-page", "off"], {})
    assert info.value.code == 2
    assert "--status-page: expected true or false, got 'off'" in capsys.readouterr().err


def _spawn(exporter: FakeExporter, log: Path, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    web_port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "external_scaler", "--listen", f"127.0.0.1:{free_port()}", "--exporter",
             exporter.url, "--metrics-listen", f"127.0.0.1:{web_port}", *extra],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return proc, web_port


async def _get_when_up(session: aiohttp.ClientSession, url: str) -> aiohttp.ClientResponse:
    async with asyncio.timeout(20):
        while True:
            try:
                return await session.get(url)
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)


async def test_sigterm_ends_the_process_promptly_with_a_page_open(exporter: FakeExporter, tmp_path: Path):
    proc, web_port = _spawn(exporter, tmp_path / "scaler.log")
    try:
        async with aiohttp.ClientSession() as session:
            resp = await _get_when_up(session, f"http://127.0.0.1:{web_port}/events")
            events = Events(resp)
            assert (await events.next(10)) is not None
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(5):
                while await events.next() is not None:
                    pass
            assert await asyncio.to_thread(proc.wait, 10) == 0
            assert time.monotonic() - started < 4, "SIGTERM waited on the open stream"
            resp.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "the status page at /" in (tmp_path / "scaler.log").read_text()


async def test_status_page_false_serves_metrics_only(exporter: FakeExporter, tmp_path: Path):
    proc, web_port = _spawn(exporter, tmp_path / "scaler.log", "--status-page=false")
    try:
        async with aiohttp.ClientSession() as session:
            metrics = await _get_when_up(session, f"http://127.0.0.1:{web_port}/metrics")
            assert metrics.status == 200
            for path in ("/", "/events"):
                async with session.get(f"http://127.0.0.1:{web_port}{path}") as resp:
                    assert resp.status == 404
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_the_page_answers_only_to_an_address_or_localhost_in_the_host_header(exporter: FakeExporter):
    """DNS rebinding: a page on evil.example pointing its name at 127.0.0.1 reaches an operator's port-forward with
    `Host: evil.example`; the page and its stream refuse it, /metrics (scraped by pod IP) is unaffected."""
    async with status_scaler(exporter) as served:
        port = served.base.rsplit(":", 1)[1]
        for host in (f"evil.example:{port}", "localhost.evil.example", ""):
            for path in ("/", "/events"):
                async with served.session.get(served.base + path, headers={"Host": host}) as resp:
                    assert resp.status == 403, (host, path)
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", f"10.0.0.7:{port}"):
            async with served.session.get(served.base + "/", headers={"Host": host}) as resp:
                assert resp.status == 200, host
        async with served.session.get(served.base + "/metrics", headers={"Host": "evil.example"}) as resp:
            assert resp.status == 200
